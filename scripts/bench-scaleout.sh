#!/usr/bin/env bash
# Issue 11 (scale-out) benchmarks on one PostgreSQL database:
#
# 1. OTP submitted on instance B -> code at the sandbox bank through the login instance A holds
#    (two instances on one PostgreSQL), p50/p99, and the same with the code submitted to A itself;
#    codes back to back, then again with each code 20 ms after the previous one was taken.
# 2. GET /v1/accounts/:id/status req/s with 1, 2 and 3 real `reconbanker serve` processes on the
#    same database (release build), one wrk per instance running at once, their req/s summed,
#    and the ratios to one instance. The machine's cores are shared by the instances, PostgreSQL
#    and wrk: the ratios say what the cores allow, not what N machines would.
#
# 3. Take-over: real `reconbanker serve` processes (one api-only, two full) on one database, an
#    assisted login waiting for its code on one of them; `kill -9` of the instance holding the
#    account's lease, then the time until another instance took the lease over (the old request
#    cancelled `owner_lost`) and until the account's work resumed there (the new login asks for
#    its code), p50 and max over RUNS kills, against the lease length (LEASE_SECS, default 3).
#
#   BENCH_POSTGRES_URL=postgres://user@host:port/postgres scripts/bench-scaleout.sh   # N=500
#   PARTS=v1 DURATION=10 CONNS=32 BENCH_POSTGRES_URL=… scripts/bench-scaleout.sh      # only 2.
#   PARTS=takeover RUNS=7 LEASE_SECS=3 BENCH_POSTGRES_URL=… scripts/bench-scaleout.sh  # only 3.
#
# A fresh database is created on that server for each part and dropped after it.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-500}"
PARTS="${PARTS:-otp v1 takeover}"
RUNS="${RUNS:-7}"
LEASE_SECS="${LEASE_SECS:-3}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
: "${BENCH_POSTGRES_URL:?set BENCH_POSTGRES_URL to a PostgreSQL server URL (a database is created on it)}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
BASE="${BENCH_POSTGRES_URL%/*}"
DBS=()
PIDS=()
WORK="$(mktemp -d)"
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${DBS[@]:-}"; do [ -n "$db" ] && psql "$BENCH_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ " $PARTS " == *" otp "* ]]; then
  cargo build --release --quiet --example scaleout_bench
  DB="rbk_bench_scaleout_$$"
  psql "$BENCH_POSTGRES_URL" -qc "CREATE DATABASE $DB"
  DBS+=("$DB")
  RUST_LOG="${BENCH_LOG:-error}" "${CARGO_TARGET_DIR:-target}"/release/examples/scaleout_bench otp "$N" "$BASE/$DB"
  # The same with each code 20 ms after the bank took the previous one: back to back, the end of
  # the previous login (read, movements, events, lease) shares the cores with the next code.
  DB="rbk_bench_scaleout_paced_$$"
  psql "$BENCH_POSTGRES_URL" -qc "CREATE DATABASE $DB"
  DBS+=("$DB")
  RUST_LOG="${BENCH_LOG:-error}" "${CARGO_TARGET_DIR:-target}"/release/examples/scaleout_bench otp "$N" "$BASE/$DB" 20
fi

if [[ " $PARTS " == *" v1 "* ]]; then
  command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
  cargo build --release --quiet --bin reconbanker
  DB="rbk_bench_scaleout_v1_$$"
  psql "$BENCH_POSTGRES_URL" -qc "CREATE DATABASE $DB"
  DBS+=("$DB")
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
  start() { # start N: appends the instance's base URL to URLS once its ready line is logged
    local port log
    port="$(free_port)"
    log="$WORK/instance-$1.log"
    DATABASE_URL="$BASE/$DB" RECONBANKER_PORT="$port" RECONBANKER_DATA_DIR="$WORK/data-$1" RUST_LOG=info \
      JWT_SECRET=scaleout-bench-jwt-secret-0123456789abcdef \
      RECONBANKER_MASTER_KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff \
      RECONBANKER_SANDBOX_BANK=off RECONBANKER_DB_MAX_CONNECTIONS=8 \
      RECONBANKER_V1_RATE_PER_SEC=10000000 RECONBANKER_V1_BURST=10000000 \
      "${CARGO_TARGET_DIR:-target}"/release/reconbanker serve >"$log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 600); do
      grep -q "reconbanker ready on" "$log" && { URLS+=("http://127.0.0.1:$port"); return 0; }
      kill -0 "${PIDS[-1]}" 2>/dev/null || break
      sleep 0.1
    done
    echo "instance $1 did not become ready:" >&2; cat "$log" >&2; return 1
  }
  json() { python3 -c 'import json,sys; print(json.load(sys.stdin)'"$1"')'; }
  URLS=()
  start 1
  B="${URLS[0]}"
  curl -fs -X POST "$B/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark-password"}' >/dev/null
  TOKEN="$(curl -fs -X POST "$B/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"benchmark-password"}' | json '["token"]')"
  BANK="$(curl -fs "$B/banks" -H "authorization: Bearer $TOKEN" | json '[0]["id"]')"
  ACCOUNT="$(curl -fs -X POST "$B/accounts" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"bankId\":\"$BANK\",\"name\":\"bench\"}" | json '["id"]')"
  KEY="$(curl -fs -X POST "$B/me/api-keys" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"bench","scopes":["status:read"]}' | json '["key"]')"
  STATUS="/v1/accounts/$ACCOUNT/status"
  echo "GET $STATUS on 1-3 instances, one PostgreSQL, ${DURATION}s per run, $CONNS connections in all, $(nproc) cores shared by all"
  printf '%-10s %12s %10s\n' instances req/s ratio
  ONE=""
  for n in 1 2 3; do
    while [ "${#URLS[@]}" -lt "$n" ]; do start $((${#URLS[@]} + 1)); done
    for u in "${URLS[@]}"; do curl -fs "$u$STATUS" -H "x-api-key: $KEY" >/dev/null; done
    per=$((CONNS / n))
    WRKS=()
    for i in $(seq 0 $((n - 1))); do
      wrk -t1 -c"$per" -d"${DURATION}s" -H "x-api-key: $KEY" "${URLS[$i]}$STATUS" >"$WORK/wrk-$n-$i.txt" &
      WRKS+=($!)
    done
    for w in "${WRKS[@]}"; do wait "$w"; done
    total=0
    for i in $(seq 0 $((n - 1))); do
      f="$WORK/wrk-$n-$i.txt"
      if grep -q "Non-2xx" "$f"; then echo "instance $((i + 1)): non-2xx answers — benchmark invalid" >&2; cat "$f" >&2; exit 1; fi
      total="$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$total" "$(awk '/^Requests\/sec/ {print $2}' "$f")")"
    done
    [ -n "$ONE" ] || ONE="$total"
    printf '%-10s %12.0f %9.2fx\n' "$n" "$total" "$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "$total" "$ONE")"
  done
fi

if [[ " $PARTS " == *" takeover "* ]]; then
  cargo build --release --quiet --example takeover_bench --bin reconbanker
  DB="rbk_bench_scaleout_takeover_$$"
  psql "$BENCH_POSTGRES_URL" -qc "CREATE DATABASE $DB"
  DBS+=("$DB")
  RUST_LOG=warn "${CARGO_TARGET_DIR:-target}"/release/examples/takeover_bench "$RUNS" "$BASE/$DB" "${CARGO_TARGET_DIR:-target}"/release/reconbanker "$LEASE_SECS"
fi
