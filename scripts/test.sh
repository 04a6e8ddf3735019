#!/usr/bin/env bash
# Runs every check and test of the workspace. On Debian it first installs the system packages
# the build and the tests need when they are missing, so it passes on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# The PKCS#11 tests run against a real SoftHSM2 token.
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
# The backup tests dump and restore a real PostgreSQL database, and check recovery keys with age.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v pg_dump >/dev/null || missing+=(postgresql-client)
command -v age >/dev/null || missing+=(age)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests start the kmsd and kmsctl binaries, so build them first.
cargo build --workspace --bins
cargo test --workspace
