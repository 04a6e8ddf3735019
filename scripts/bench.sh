#!/usr/bin/env bash
# Measures data-key generation and decryption: over TLS against a release kmsd at 1, 16 and 64
# concurrent clients (kms-load), and in process (criterion). Prints markdown table rows for
# docs/benchmarks.md.
#
# Usage: scripts/bench.sh [DURATION] [shamir|pkcs11|both] [extra kmsd flags...]
# pkcs11 runs kmsd with its root key in a SoftHSM2 token made for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
modes=${2:-both}
shift 2 || shift $#
[ "$modes" = both ] && modes="shamir pkcs11"

cargo build --release --bins -q
bin=target/release
work=$(mktemp -d)
pid=""
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

json_field() {
    python3 -c "import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(v[int(sys.argv[3])] if len(sys.argv) > 3 else v)" "$@"
}

run_mode() {
    local mode=$1
    shift
    local dir="$work/$mode"
    mkdir -p "$dir"
    local flags=()
    if [ "$mode" = pkcs11 ]; then
        mkdir -p "$dir/tokens"
        printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
            "$dir" >"$dir/softhsm2.conf"
        export SOFTHSM2_CONF="$dir/softhsm2.conf" KMS_PKCS11_PIN=bench-pin
        softhsm2-util --init-token --free --label kms-bench --so-pin bench-so-pin \
            --pin "$KMS_PKCS11_PIN" >/dev/null
        flags=(--seal pkcs11 --pkcs11-module /usr/lib/softhsm/libsofthsm2.so
            --pkcs11-token-label kms-bench)
    fi
    "$bin/kmsd" --data-dir "$dir/data" --listen 127.0.0.1:0 "${flags[@]}" "$@" \
        >"$dir/out" 2>"$dir/err" &
    pid=$!
    for _ in $(seq 50); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.2; done
    export KMS_ADDR KMS_CACERT KMS_TOKEN
    KMS_ADDR=$(grep -o 'https://[^ ]*' "$dir/out")
    KMS_CACERT="$dir/data/tls/ca.pem"

    "$bin/kmsctl" --format json operator init --shares 3 --threshold 2 >"$dir/init.json" 2>/dev/null
    if [ "$mode" = shamir ]; then
        for i in 0 1; do
            json_field "$dir/init.json" shares "$i" | "$bin/kmsctl" operator unseal >/dev/null
        done
    fi
    KMS_TOKEN=$(json_field "$dir/init.json" root_token)
    "$bin/kmsctl" key create bench >/dev/null

    echo
    echo "root of trust: $mode"
    echo
    echo "| operation | clients | requests/s | p50 ms | p99 ms | errors |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for op in generate decrypt; do
        for clients in 1 16 64; do
            "$bin/kms-load" --key bench --op "$op" --concurrency "$clients" --duration "$duration"
        done
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

for mode in $modes; do
    run_mode "$mode" "$@"
done

echo
cargo bench -q -p kms --bench datakey -- --noplot 2>/dev/null | grep -E "^datakey|time:"
