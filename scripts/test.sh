#!/usr/bin/env bash
# The project's test command: formatting, lints, the whole test suite on SQLite, and — when the
# machine has PostgreSQL server binaries — the store contract and the HTTP suite on a throwaway
# PostgreSQL cluster of this script's own (own data dir, socket dir and port; removed on exit).
#
# Environment:
#   REQUIRE_POSTGRES=1   fail instead of skipping the PostgreSQL runs when no server binaries exist
#   TEST_DATABASE_URL    use this server (the user may CREATE DATABASE) instead of a throwaway one
#   REQUIRE_CHROMIUM=1   fail instead of skipping the headless-browser tests (issue 9) when no
#                        Chromium is found (RECONBANKER_CHROMIUM, `chromium` on PATH, /usr/bin/chromium)
#                        (also the dashboard's end-to-end tests, crates/ui-e2e, issue 10: they run in
#                        `cargo test --workspace` and leave screenshots under target/ui-screenshots/)
#                        and then also fail when axe-core (below) is missing
#   REQUIRE_NGINX=1      fail instead of skipping the test of the documented nginx configuration
#                        (issue 11, crates/server/tests/scaleout/nginx.rs; it runs with PostgreSQL)
#                        when no nginx is found (RECONBANKER_NGINX, `nginx` on PATH, /usr/sbin/nginx)
#   RECONBANKER_AXE      axe-core's axe.min.js for the dashboard's accessibility check (issue 10);
#                        by default scripts/fetch-axe.sh fetches it with npm into target/axe/
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

# --- PostgreSQL server binaries ----------------------------------------------------------------

# Prints the directory holding initdb, pg_ctl and postgres, or nothing.
find_pg_bindir() {
    local dir best="" ver bestver=-1
    # Debian/Ubuntu layout: /usr/lib/postgresql/<major>/bin — take the highest major.
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]] || continue
        ver=$(basename "$(dirname "$dir")")
        ver=${ver%%.*}
        [[ $ver =~ ^[0-9]+$ ]] || ver=0
        if ((ver > bestver)); then
            best=$dir
            bestver=$ver
        fi
    done
    if [[ -n $best ]]; then
        printf '%s\n' "$best"
        return
    fi
    # Otherwise whatever PATH has, resolved through symlinks so pg_ctl finds its postgres.
    local initdb pg_ctl
    initdb=$(command -v initdb 2>/dev/null) || return 0
    pg_ctl=$(command -v pg_ctl 2>/dev/null) || return 0
    initdb=$(readlink -f "$initdb")
    pg_ctl=$(readlink -f "$pg_ctl")
    dir=$(dirname "$initdb")
    if [[ $(dirname "$pg_ctl") == "$dir" && -x $dir/postgres ]]; then
        printf '%s\n' "$dir"
    fi
}

PG_DIR=""      # temp dir: data/, socket, logs
PG_STARTED=0
PG_USER=""     # unprivileged user that runs the server when we are root

# Runs a PostgreSQL binary as the unprivileged user when we are root, from the temp dir (the
# caller's working directory may not be readable by that user).
run_pg() {
    if [[ -n $PG_USER ]]; then
        (cd "$PG_DIR" && runuser -u "$PG_USER" -- "$@")
    else
        (cd "$PG_DIR" && "$@")
    fi
}

cleanup() {
    local status=$?
    if ((PG_STARTED)); then
        log "stopping the throwaway PostgreSQL cluster"
        run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        PG_STARTED=0
    fi
    if [[ -n $PG_DIR && -d $PG_DIR ]]; then
        rm -rf -- "$PG_DIR"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_is_free() {
    local port=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$port" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
    else
        # Nothing answering is taken as free; pg_ctl start is retried if we were wrong.
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

pick_port() {
    local port tries
    for tries in $(seq 1 200); do
        port=$((20000 + RANDOM % 20001))
        if port_is_free "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

start_postgres() {
    if [[ $EUID -eq 0 ]]; then
        # initdb and postgres refuse to run as root. (runuser and useradd live in sbin.)
        PATH="$PATH:/usr/sbin:/sbin"
        if id -u postgres >/dev/null 2>&1; then
            PG_USER=postgres
        else
            if ! id -u rbk-pg >/dev/null 2>&1; then
                command -v useradd >/dev/null 2>&1 ||
                    die "running as root, no 'postgres' user and no useradd to create 'rbk-pg'"
                useradd --system --no-create-home --shell /usr/sbin/nologin rbk-pg ||
                    die "could not create the system user 'rbk-pg' to run PostgreSQL"
            fi
            PG_USER=rbk-pg
        fi
        command -v runuser >/dev/null 2>&1 || die "running as root but runuser is missing"
        # Under /tmp so the unprivileged user can reach it whatever TMPDIR says.
        PG_DIR=$(mktemp -d /tmp/rbk-pg.XXXXXX)
        chown "$PG_USER": "$PG_DIR"
    else
        PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rbk-pg.XXXXXX")
    fi
    chmod 700 "$PG_DIR"

    log "initdb ($PG_BIN) in $PG_DIR${PG_USER:+ as $PG_USER}"
    if ! run_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1; then
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed"
    fi

    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(pick_port) || die "found no free TCP port in 20000-40000"
        if run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -t 60 -l "$PG_DIR/pg.log" \
            -o "-k $PG_DIR -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null 2>&1; then
            PG_STARTED=1
            PG_PORT=$port
            log "$("$PG_BIN/postgres" --version) listening on 127.0.0.1:$port"
            return 0
        fi
        # A server that half-started (e.g. lost a port race) must not survive the retry.
        run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        if ! grep -qi 'address already in use\|could not create any TCP/IP sockets' "$PG_DIR/pg.log" 2>/dev/null; then
            break
        fi
        log "port $port was taken, retrying ($attempt)"
    done
    printf -- '--- %s ---\n' "$PG_DIR/pg.log" >&2
    cat "$PG_DIR/pg.log" >&2 || true
    die "could not start PostgreSQL"
}

POSTGRES=0
if [[ -n ${TEST_DATABASE_URL:-} ]]; then
    log "using the PostgreSQL server from TEST_DATABASE_URL"
    POSTGRES=1
else
    PG_BIN=$(find_pg_bindir)
    if [[ -n $PG_BIN ]]; then
        start_postgres
        export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
        POSTGRES=1
    elif [[ ${REQUIRE_POSTGRES:-0} == 1 ]]; then
        die "REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (initdb, pg_ctl) were found on PATH or under /usr/lib/postgresql/*/bin"
    else
        log "NOTICE: no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or under /usr/lib/postgresql/*/bin;"
        log "NOTICE: the PostgreSQL runs are SKIPPED (SQLite only). Install PostgreSQL or set TEST_DATABASE_URL."
    fi
fi

# --- the steps ---------------------------------------------------------------------------------

declare -a SUMMARY=()
FAILED=0

step() {
    local name=$1
    shift
    log "$name: $*"
    local start=$SECONDS
    if "$@"; then
        SUMMARY+=("PASS  $name ($((SECONDS - start))s)")
    else
        SUMMARY+=("FAIL  $name ($((SECONDS - start))s)")
        FAILED=1
    fi
}

# issue 10: axe-core, the dashboard's accessibility check in Chromium (crates/ui-e2e), fetched at a
# pinned version with npm into target/axe/ (checked, cached; never committed).
if [[ -z ${RECONBANKER_AXE:-} ]]; then
    if axe_path=$(scripts/fetch-axe.sh); then
        export RECONBANKER_AXE="$axe_path"
        log "axe-core: $RECONBANKER_AXE"
    else
        log "NOTICE: axe-core could not be fetched (scripts/fetch-axe.sh needs npm); the dashboard's"
        log "NOTICE: accessibility check is SKIPPED (a failure with REQUIRE_CHROMIUM=1)"
    fi
fi

step "fmt" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "tests (SQLite$( ((POSTGRES)) && printf '; store contract also on PostgreSQL'))" cargo test --workspace
# The README's run command, `cargo run --release -- serve`, must name one binary (a second
# binary in the workspace once made it ambiguous); checked on the debug build the tests made.
step "cargo run resolves to the server" cargo run -q -- --version
if ((POSTGRES)); then
    step "HTTP tests on PostgreSQL" env RECONBANKER_TEST_BACKEND=postgres cargo test -p reconbanker --test it
else
    SUMMARY+=("SKIP  PostgreSQL runs (no PostgreSQL server binaries)")
fi

# issue 12: schema-driven fuzzing of the OpenAPI documents (scripts/fuzz.sh), one seed for both
# backends, printed (reproduce with FUZZ_SEED=<seed> scripts/fuzz.sh).
export FUZZ_SEED="${FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
log "fuzz seed: $FUZZ_SEED"
step "fuzz on SQLite (seed $FUZZ_SEED)" scripts/fuzz.sh
if ((POSTGRES)); then
    step "fuzz on PostgreSQL (seed $FUZZ_SEED)" env FUZZ_PG_ADMIN_URL="$TEST_DATABASE_URL" scripts/fuzz.sh
fi

printf '\n==> summary\n'
printf '    %s\n' "${SUMMARY[@]}"
if ((FAILED)); then
    printf 'test.sh: FAILED\n'
    exit 1
fi
if ((POSTGRES)); then
    printf 'test.sh: ALL PASSED (SQLite and PostgreSQL)\n'
else
    printf 'test.sh: ALL PASSED (SQLite only; PostgreSQL skipped)\n'
fi
