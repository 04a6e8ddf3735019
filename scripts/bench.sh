#!/usr/bin/env bash
# Measures data-key generation and decryption: over TLS against a release kmsd at 1, 16 and 64
# concurrent clients (kms-load), and in process (criterion). Prints markdown table rows for
# docs/benchmarks.md. Usage: scripts/bench.sh [DURATION] [extra kmsd flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
shift || true

cargo build --release --bins -q
bin=target/release
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/kmsd" --data-dir "$work/data" --listen 127.0.0.1:0 "$@" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.2; done
export KMS_ADDR KMS_CACERT KMS_TOKEN
KMS_ADDR=$(grep -o 'https://[^ ]*' "$work/out")
KMS_CACERT="$work/data/tls/ca.pem"

"$bin/kmsctl" --format json operator init --shares 3 --threshold 2 >"$work/init.json"
for i in 0 1; do
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['shares'][$i])" "$work/init.json" |
        "$bin/kmsctl" operator unseal >/dev/null
done
KMS_TOKEN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['root_token'])" "$work/init.json")
"$bin/kmsctl" key create bench >/dev/null

echo "| operation | clients | requests/s | p50 ms | p99 ms | errors |"
echo "| --- | --- | --- | --- | --- | --- |"
for op in generate decrypt; do
    for clients in 1 16 64; do
        "$bin/kms-load" --key bench --op "$op" --concurrency "$clients" --duration "$duration"
    done
done

cargo bench -q -p kms --bench datakey -- --noplot 2>/dev/null | grep -E "^datakey|time:"
