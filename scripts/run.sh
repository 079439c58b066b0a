#!/usr/bin/env bash
# The README's main command: installs and starts what is missing, builds `raffle` and runs the
# main job: `raffle demo`, a whole raffle end to end on the local stack (arguments go to it, e.g.
# --orders 5000 --rsus 5).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_postgres
ensure_tansu
ensure_python_tools

say "building raffle (release)"
cargo build --release --bin raffle --quiet
target/release/raffle --version
exec target/release/raffle demo "$@"
