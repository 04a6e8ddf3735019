#!/usr/bin/env bash
# Measures the client-side encryption of the SDK and prints what docs/benchmarks.md records:
# the file format on one core and on every core (criterion), OpenSSL's AES-256-GCM and age on
# the same machine in the same run, the peak memory of `kmsctl backup encrypt` for a small and a
# 4 GiB stream, and field encryption with a warm data-key cache.
#
# Usage: scripts/bench-files.sh [STREAM_GIB]   (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:-4}

cargo build --release --bins -q
bin=target/release
work=$(mktemp -d)
pid=""
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "## file format (criterion, 64 MiB per iteration, 64 KiB segments)"
cargo bench -q -p client-sdk --bench stream -- --noplot 2>/dev/null | grep -E "^(stream|file)/|thrpt:"

echo
echo "## OpenSSL AES-256-GCM, 64 KiB blocks"
openssl speed -evp aes-256-gcm -bytes 65536 -seconds 3 2>/dev/null | tail -1
openssl speed -multi "$(nproc)" -evp aes-256-gcm -bytes 65536 -seconds 3 2>/dev/null | tail -1

echo
echo "## age $(age --version) X25519, 1 GiB from memory to /dev/null"
age-keygen -o "$work/age.key" 2>/dev/null
recipient=$(age-keygen -y "$work/age.key")
head -c 1G /dev/zero >"$work/zero.1g"
/usr/bin/time -f "encrypt: %e s" age -r "$recipient" -o "$work/zero.age" "$work/zero.1g"
/usr/bin/time -f "decrypt: %e s" age -d -i "$work/age.key" -o /dev/null "$work/zero.age"
rm -f "$work/zero.age"

echo
echo "## kmsctl, 1 GiB file and ${gib} GiB stream"
"$bin/kmsd" --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.2; done
export KMS_ADDR KMS_CACERT KMS_TOKEN
KMS_ADDR=$(grep -o 'https://[^ ]*' "$work/out")
KMS_CACERT="$work/data/tls/ca.pem"
"$bin/kmsctl" --format json operator init --shares 1 --threshold 1 --allow-single-share \
    >"$work/init.json" 2>/dev/null
python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['shares'][0])" "$work/init.json" |
    "$bin/kmsctl" operator unseal >/dev/null
KMS_TOKEN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['root_token'])" "$work/init.json")
"$bin/kmsctl" key create bench >/dev/null

/usr/bin/time -f "file encrypt, all cores: %e s, peak RSS %M KiB" \
    "$bin/kmsctl" file encrypt --key bench "$work/zero.1g" "$work/zero.kmsf"
/usr/bin/time -f "file decrypt, all cores: %e s, peak RSS %M KiB" \
    "$bin/kmsctl" file decrypt "$work/zero.kmsf" "$work/zero.out"
rm -f "$work/zero.kmsf" "$work/zero.out" "$work/zero.1g"
for size in 64M "${gib}G"; do
    head -c "$size" /dev/zero |
        /usr/bin/time -f "backup encrypt, $size from a pipe: %e s, peak RSS %M KiB" \
            "$bin/kmsctl" backup encrypt --key bench >/dev/null
done
kill "$pid"

echo
echo "## field encryption, warm cache (criterion)"
cargo bench -q -p client-sdk --bench field -- --noplot 2>/dev/null | grep -E "^field/|time:|thrpt:"
