#!/usr/bin/env bash
# The README's main command: installs and starts what is missing, builds `raffle` and runs the
# main job. Today that brings the stack up (Postgres migrated, broker running, topics created)
# and prints the health of each part; arguments go to `raffle stack up` (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_postgres
ensure_tansu

say "building raffle (release)"
cargo build --release --bin raffle --quiet
target/release/raffle --version
exec target/release/raffle stack up "$@"
