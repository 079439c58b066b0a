# Shared by the README's two commands: install what is missing, start what is not running.
# Sourced, not run. Every step says what it does; every failure says what to do.

export PATH="$HOME/.cargo/bin:$PATH"
TANSU_VERSION=0.6.0

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_install() {
    command -v apt-get >/dev/null || die "cannot install $* here: no apt-get. Install it by hand."
    say "installing Debian packages: $*"
    if [ -z "${RAFFLE_APT_UPDATED:-}" ]; then
        apt-get update -qq >&2 || die "apt-get update failed"
        export RAFFLE_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

ensure_toolchain() {
    command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
    # librdkafka and SQLite are built from source by their -sys crates.
    local missing=()
    command -v cc >/dev/null || missing+=(gcc)
    command -v c++ >/dev/null || missing+=(g++)
    command -v make >/dev/null || missing+=(make)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    command -v perl >/dev/null || missing+=(perl)
    # librdkafka's TLS and SASL/SCRAM (the `ssl` feature) build against the system OpenSSL.
    pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    if ! cargo nextest --version >/dev/null 2>&1; then
        say "installing cargo-nextest"
        cargo install cargo-nextest --locked >&2 || die "cargo install cargo-nextest failed"
    fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Postgres: DATABASE_URL if set (its reachability is checked by `raffle stack up`, which says
# what failed). Otherwise the local server on 127.0.0.1:5432, started or installed if needed.
ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then return 0; fi
    if port_open 127.0.0.1 5432; then return 0; fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql postgresql-contrib
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>/dev/null \
        || pg_ctlcluster "$version" main start >&2 \
        || die "could not start PostgreSQL $version: start it, or set DATABASE_URL"
    for _ in $(seq 50); do port_open 127.0.0.1 5432 && break; sleep 0.2; done
    port_open 127.0.0.1 5432 || die "PostgreSQL did not listen on 127.0.0.1:5432; set DATABASE_URL to a running server"
    # The project's default role: trust auth for local development, as on the project machines.
    if ! psql -h 127.0.0.1 -U postgres -Atc 'select 1' >/dev/null 2>&1; then
        die "PostgreSQL runs but user postgres cannot log in over TCP without a password; set DATABASE_URL with credentials"
    fi
}

CARGO_DENY_VERSION=0.20.2

ensure_cargo_deny() {
    if cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then return 0; fi
    say "installing cargo-deny $CARGO_DENY_VERSION (a few minutes, once)"
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked >&2 \
        || die "cargo install cargo-deny failed"
}

# The dependency audit: licences, banned and duplicate crates, and sources always; the RustSec
# advisories when their database (on github.com) can be fetched. A vulnerable crate fails the
# run; an unreachable database is said plainly, not mistaken for a clean bill.
dependency_audit() {
    ensure_cargo_deny
    say "cargo deny: licences, bans, sources"
    cargo deny --log-level error check licenses bans sources >&2 \
        || die "cargo deny refused a dependency (see above; the rules are deny.toml)"
    local log
    log=$(mktemp)
    if cargo deny --log-level error check advisories >"$log" 2>&1; then
        say "cargo deny: no known advisories affect the dependencies"
    elif grep -q "failed to fetch advisory database" "$log"; then
        say "WARNING: advisories NOT checked: the RustSec database (github.com) cannot be fetched from this machine"
    else
        cat "$log" >&2
        rm -f "$log"
        die "cargo deny found advisories against the dependencies (above)"
    fi
    rm -f "$log"
}

# The chaos test runs a Postgres cluster of its own (so that it may restart it): it needs the
# server binaries even where DATABASE_URL points at a server elsewhere.
ensure_postgres_binaries() {
    if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/pg_ctl" ]; then return 0; fi
    if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then return 0; fi
    apt_install postgresql
}

# The broker: KAFKA_BROKERS if set; otherwise Tansu $TANSU_VERSION, built once with cargo.
ensure_tansu() {
    if [ -n "${KAFKA_BROKERS:-}" ]; then return 0; fi
    local bin
    bin=$(command -v tansu || true)
    if [ -n "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then return 0; fi
    say "installing Tansu $TANSU_VERSION with cargo (about 10-15 minutes, once)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql >&2 \
        || die "cargo install tansu failed; or set KAFKA_BROKERS to a running Kafka-compatible broker"
}

# Python tools from PyPI, in a virtual environment of the project's own (target/py): aiosmtpd,
# the SMTP server the tests and the demo send the buyers' e-mails to. RAFFLE_PYTHON names its
# interpreter for the programs that start it.
PY_TOOLS="aiosmtpd==1.4.6"
ensure_python_tools() {
    local venv="${RAFFLE_PY_ENV:-$PWD/target/py}"
    if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
        command -v python3 >/dev/null || apt_install python3
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            apt_install python3-venv
            python3 -m venv "$venv" || die "cannot make a Python virtual environment in $venv"
        fi
        say "installing Python tools into $venv: $PY_TOOLS"
        "$venv/bin/pip" install -q $PY_TOOLS >&2 || die "pip install $PY_TOOLS failed (is pypi.org reachable?)"
    fi
    export RAFFLE_PYTHON="$venv/bin/python"
}

# A real browser for the pages' tests: Debian's chromium, driven headless (RAFFLE_CHROMIUM
# names another).
ensure_chromium() {
    if [ -n "${RAFFLE_CHROMIUM:-}" ] && command -v "$RAFFLE_CHROMIUM" >/dev/null; then return 0; fi
    command -v chromium >/dev/null || apt_install chromium
    export RAFFLE_CHROMIUM="${RAFFLE_CHROMIUM:-chromium}"
}
