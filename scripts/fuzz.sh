#!/usr/bin/env bash
# Issue 12: schema-driven fuzzing of the published OpenAPI documents with Schemathesis.
#
# Installs Schemathesis (pinned) into its own virtual environment (default .venv-fuzz/, from the
# package registry with pip), starts the debug `reconbanker serve` on a throwaway data directory
# — SQLite, or PostgreSQL when DATABASE_URL is given — creates a real user, account and API key,
# then runs Schemathesis against every document the server publishes (/v1/openapi.json with the
# API key, /openapi.json — the dashboard API — with the user's Bearer JWT) with the checks: no
# 5xx, status code, content type and body conforming to the document. Seeded and bounded; the
# seed and each run's duration are printed.
#
# Dashboard operations left out, so that the run stays meaningful to its end (the fuzzer acts as
# the real user, on the real account):
#   POST   /auth/logout      would revoke the token every later request uses;
#   GET    /realtime/events  a Server-Sent Events stream never ends (the request would only time out).
# Both are covered by the black-box tests (tests/it/users.rs, streams.rs).
# `DELETE /accounts/{id}` and `DELETE /me/api-keys/{id}` are fuzzed on throwaway resources (a spare
# account and a spare key: their `{id}` is set to those), never on the real account or key. The
# stateful phase may still follow the ids a key list returns and revoke the real key, which cannot
# hurt: /v1, the key's only user, is fuzzed first.
#
#   scripts/fuzz.sh                                   # SQLite, a random seed
#   FUZZ_SEED=1234 scripts/fuzz.sh                    # reproduce a run
#   FUZZ_PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/fuzz.sh
#       # PostgreSQL: a database of its own is created there with psql (and dropped at the end)
#
# Environment: FUZZ_SEED, FUZZ_MAX_EXAMPLES (default 40 per operation), FUZZ_MAX_TIME (seconds
# per document, default 45), FUZZ_VENV (default .venv-fuzz), FUZZ_BIN (a built binary: no build),
# FUZZ_SERVER_LOG (a file to keep the server's log in, for a failure's post-mortem).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
SEED="${FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-40}"
MAX_TIME="${FUZZ_MAX_TIME:-45}"
VENV="${FUZZ_VENV:-.venv-fuzz}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

log() { printf '==> fuzz: %s\n' "$*" >&2; }
die() { printf 'fuzz.sh: error: %s\n' "$*" >&2; exit 1; }

log "seed $SEED (reproduce with FUZZ_SEED=$SEED)"
STAGE_START=$SECONDS

# --- Schemathesis in its own virtual environment ------------------------------------------------
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    command -v python3 >/dev/null || die "python3 is needed"
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
ST="$VENV/bin/schemathesis"

# --- the server ---------------------------------------------------------------------------------
if [[ -n ${FUZZ_BIN:-} ]]; then
    BIN="$FUZZ_BIN"
else
    cargo build --quiet --bin reconbanker
    BIN="$TARGET_DIR/debug/reconbanker"
fi
WORK="$(mktemp -d)"
SERVER=""
PG_DB=""
cleanup() {
    if [[ -n $SERVER ]]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    if [[ -n $PG_DB ]]; then psql -q "$FUZZ_PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true; fi
    if [[ -n ${FUZZ_SERVER_LOG:-} && -f $WORK/server.log ]]; then cat "$WORK/server.log" "$WORK/server.err" >"$FUZZ_SERVER_LOG" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -n ${FUZZ_PG_ADMIN_URL:-} ]]; then
    command -v psql >/dev/null || die "FUZZ_PG_ADMIN_URL needs psql"
    PG_DB="rbk_fuzz_$$_$SEED"
    psql -q "$FUZZ_PG_ADMIN_URL" -c "CREATE DATABASE $PG_DB" >/dev/null
    DB="$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$FUZZ_PG_ADMIN_URL" "$PG_DB")"
else
    DB="sqlite://$WORK/fuzz.db"
fi
mkfifo "$WORK/out"
RECONBANKER_PORT=0 RECONBANKER_SANDBOX_PORT=0 RECONBANKER_DATA_DIR="$WORK/data" DATABASE_URL="$DB" \
    RUST_LOG=warn,reconbanker=info NO_COLOR=1 RECONBANKER_V1_RATE_PER_SEC=100000 RECONBANKER_V1_BURST=100000 \
    RECONBANKER_AUTH_FAILURES_PER_MIN=100000 RECONBANKER_LOGIN_FAILURES=100000 \
    "$BIN" serve >"$WORK/out" 2>"$WORK/server.err" &
SERVER=$!
# Readiness: the ready line with the bound address (no polling).
ADDR=""
while IFS= read -r line; do
    printf '%s\n' "$line" >>"$WORK/server.log"
    if [[ $line == *"listening on http://"* ]]; then
        ADDR="${line#*listening on http://}"
        ADDR="${ADDR%% *}"
        break
    fi
done <"$WORK/out"
[[ -n $ADDR ]] || { cat "$WORK/server.log" "$WORK/server.err" >&2; die "the server did not start"; }
# Keep draining the server's output.
cat "$WORK/out" >>"$WORK/server.log" &
BASE="http://$ADDR"
log "server at $BASE ($(sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$DB" | cut -d'?' -f1))"

json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
call() { # METHOD PATH [BODY] [HEADER]
    local args=(-fsS -X "$1" "$BASE$2" -H 'content-type: application/json')
    [[ -n ${3:-} ]] && args+=(-d "$3")
    [[ -n ${4:-} ]] && args+=(-H "$4")
    curl "${args[@]}"
}
EMAIL="fuzz-$SEED@example.com"
PASSWORD="fuzz password $SEED"
call POST /auth/register "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN=$(call POST /auth/login "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json '["token"]')
AUTH="authorization: Bearer $TOKEN"
BANK=$(call GET /banks "" "$AUTH" | python3 -c 'import json,sys; print([b["id"] for b in json.load(sys.stdin) if b["code"]=="sandbox"][0])')
ACCOUNT=$(call POST /accounts "{\"bankId\":\"$BANK\",\"name\":\"Fuzzed\"}" "$AUTH" | json '["id"]')
call PUT "/accounts/$ACCOUNT/config" '{"login_mode":"assisted","bank_username":"user_otp","bank_password":"pass_otp"}' "$AUTH" >/dev/null
KEY=$(call POST /me/api-keys "{\"name\":\"fuzz\",\"scopes\":[\"status:read\",\"otp:write\"],\"account_ids\":[\"$ACCOUNT\"]}" "$AUTH" | json '["key"]')
# Throwaway resources for the destructive operations (see the top): each `{id}` of these names
# its own victim, never the real account or key.
SPARE_ACCOUNT=$(call POST /accounts "{\"bankId\":\"$BANK\",\"name\":\"Spare\"}" "$AUTH" | json '["id"]')
SPARE_KEY=$(call POST /me/api-keys '{"name":"spare","scopes":["status:read"]}' "$AUTH" | json '["id"]')
log "user, account $ACCOUNT and API key ready (spare account $SPARE_ACCOUNT, spare key $SPARE_KEY)"

# --- the runs -----------------------------------------------------------------------------------
export FUZZ_ACCOUNT="$ACCOUNT" FUZZ_BANK="$BANK" FUZZ_SPARE_ACCOUNT="$SPARE_ACCOUNT" FUZZ_SPARE_KEY="$SPARE_KEY"
cat >"$WORK/schemathesis.toml" <<'TOML'
# The real account, so operations reach past the 404 of an unknown id.
[parameters]
"path.accountId" = "${FUZZ_ACCOUNT}"
"path.id" = "${FUZZ_ACCOUNT}"

# `{id}`s that are not an account's: a real bank; the throwaway account and key for deleting.
[[operations]]
include-operation-id = "banks_get"
parameters = { "path.id" = "${FUZZ_BANK}" }

[[operations]]
include-operation-id = "api_keys_revoke"
parameters = { "path.id" = "${FUZZ_SPARE_KEY}" }

[[operations]]
include-operation-id = "accounts_delete"
parameters = { "path.id" = "${FUZZ_SPARE_ACCOUNT}" }
TOML

FAILED=0
# One worker: with two, Hypothesis can call Python's ast.parse from two threads at once, which
# CPython 3.11 (Debian's) answers now and then with "SystemError: AST constructor recursion depth
# mismatch" (cpython#106905) — a tool error that failed a run whose checks all passed.
fuzz() { # NAME SCHEMA-PATH HEADER [extra schemathesis args...]
    local name=$1 schema=$2 header=$3
    shift 3
    log "$name: $BASE$schema (max $MAX_EXAMPLES examples per operation, $MAX_TIME s)"
    local start=$SECONDS
    if ! "$ST" --config-file "$WORK/schemathesis.toml" run "$BASE$schema" \
        --url "$BASE" \
        --header "$header" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --seed "$SEED" \
        --max-examples "$MAX_EXAMPLES" \
        --max-time "$MAX_TIME" \
        --workers 1 \
        --request-timeout 10 \
        --no-color \
        "$@"; then
        FAILED=1
    fi
    log "$name: done in $((SECONDS - start)) s"
}

# /v1 first: the dashboard run may revoke the key (see above).
fuzz "/v1" /v1/openapi.json "x-api-key: $KEY" \
    --exclude-path /v1/events
if curl -fs -o /dev/null "$BASE/openapi.json"; then
    # The documented exclusions above (operation ids; repeated flags add up).
    fuzz "dashboard" /openapi.json "$AUTH" \
        --exclude-operation-id users_logout \
        --exclude-operation-id realtime_realtime_events
else
    die "the server publishes no dashboard document at /openapi.json"
fi
# The run must still have been the real user's to its end: the token and the account still work.
call GET "/accounts/$ACCOUNT" "" "$AUTH" >/dev/null || { log "the fuzzed user's token or account no longer works"; FAILED=1; }
# What became of the throwaway resources (a 404 / a revoked_at: the deletes were reached).
SPARE_ACCOUNT_STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$BASE/accounts/$SPARE_ACCOUNT")
SPARE_KEY_REVOKED=$(call GET "/me/api-keys?limit=500" "" "$AUTH" | python3 -c 'import json,sys; print([k["revoked_at"] is not None for k in json.load(sys.stdin)["keys"] if k["id"]==sys.argv[1]])' "$SPARE_KEY")
log "spare account: GET answers $SPARE_ACCOUNT_STATUS; spare key revoked: $SPARE_KEY_REVOKED"
if curl -fsS -o /dev/null -H "x-api-key: $KEY" "$BASE/v1/accounts/$ACCOUNT/status" 2>/dev/null; then
    log "the API key survived the dashboard run"
else
    log "the dashboard run revoked the API key (after the /v1 run: expected now and then)"
fi

if grep -q ' ERROR \|panicked' "$WORK/server.log" "$WORK/server.err"; then
    grep ' ERROR \|panicked' "$WORK/server.log" "$WORK/server.err" | head -20 >&2
    log "the server logged errors"
    FAILED=1
fi
if ((FAILED)); then
    die "fuzzing failed (seed $SEED)"
fi
log "passed (seed $SEED) in $((SECONDS - STAGE_START)) s"
