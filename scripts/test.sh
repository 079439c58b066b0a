#!/usr/bin/env bash
# The README's test command: installs and starts what is missing, then runs every test
# (format and lint checks first) against a real Postgres and a real Kafka-API broker.
# Extra arguments go to `cargo nextest run`, e.g. `scripts/test.sh exactly_once`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_postgres
ensure_postgres_binaries
ensure_tansu
ensure_python_tools
ensure_chromium

if [ -z "${RAFFLE_SKIP_LINT:-}" ]; then
    say "cargo fmt --check"
    cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all'"
    say "cargo clippy"
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    dependency_audit
fi

# No Docker engine here: the compose file is checked for syntax and for using the variables
# the services read.
if python3 -c 'import yaml' 2>/dev/null; then
    say "checking compose/docker-compose.yml"
    python3 scripts/check_compose.py compose/docker-compose.yml
fi

say "building"
cargo build --workspace --quiet
cargo nextest run --workspace --no-run --cargo-quiet

# A broker of its own for this run, with fresh data, unless KAFKA_BROKERS points elsewhere.
export RAFFLE_STATE_DIR="${RAFFLE_STATE_DIR:-target/test-stack}"
raffle=target/debug/raffle
if [ -z "${KAFKA_BROKERS:-}" ]; then
    "$raffle" stack down >/dev/null 2>&1 || true
    rm -rf "$RAFFLE_STATE_DIR"
    trap '"$raffle" stack down >/dev/null 2>&1 || true' EXIT
fi
say "bringing the stack up"
"$raffle" stack up
eval "$("$raffle" stack env)"
export KAFKA_BROKERS

# Test databases left behind by an interrupted run.
admin_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/raffle}"
admin_url="${admin_url%/*}/postgres"
if command -v psql >/dev/null; then
    psql "$admin_url" -Atc "select datname from pg_database where datname like 'raffle\_test\_%' or datname like 'raffle\_clitest\_%'" 2>/dev/null |
        while read -r db; do psql "$admin_url" -qc "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true; done
fi

say "running the tests"
cargo nextest run --workspace --no-fail-fast "$@"
