#!/usr/bin/env bash
# Refusing a key must be cheaper than accepting one (issue 12, finding 11). Starts the release
# server with a throwaway data directory, creates a user, an account and a valid key, then runs
# wrk (32 connections) on GET /v1/accounts/:id/status with, in turn: the valid key, a
# well-formed key this server never issued, and a malformed key. During each invalid run a
# probe sends the valid key from the same address every 200 ms and counts answers other than 200
# (must be 0: failures never lock out a valid key). The three keys take turns in ROUNDS rounds,
# each round in a different order (this machine's throughput drifts by 10-25 % over a minute: a
# fixed order once showed a 'slower' malformed key that was only the last run); prints each run,
# then the median req/s of each key and its probe's total.
#
#   scripts/bench-invalid-keys.sh           # 3 rounds of 5 s per key
#   ROUNDS=5 DURATION=10 scripts/bench-invalid-keys.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --bin reconbanker
BIN="$TARGET_DIR/release/reconbanker"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

PORT="$(free_port)"
RECONBANKER_PORT="$PORT" RECONBANKER_DATA_DIR="$WORK/data" RUST_LOG=warn RECONBANKER_SANDBOX_BANK=off \
  RECONBANKER_V1_RATE_PER_SEC=10000000 RECONBANKER_V1_BURST=10000000 \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
PIDS+=($!)
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 300); do curl -fs "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done

json() { python3 -c 'import json,sys; print(json.load(sys.stdin)'"$1"')'; }
curl -fs -X POST "$BASE/auth/register" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"benchmark-password"}' >/dev/null
TOKEN="$(curl -fs -X POST "$BASE/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"benchmark-password"}' | json '["token"]')"
BANK="$(curl -fs "$BASE/banks" -H "authorization: Bearer $TOKEN" | json '[0]["id"]')"
ACCOUNT="$(curl -fs -X POST "$BASE/accounts" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"bankId\":\"$BANK\",\"name\":\"bench\"}" | json '["id"]')"
KEY="$(curl -fs -X POST "$BASE/me/api-keys" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["status:read"]}' | json '["key"]')"
URL="$BASE/v1/accounts/$ACCOUNT/status"
# Well-formed (the seed's shape) but never issued: its checksum is not this server's.
UNKNOWN="rbk_0badc0de_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
MALFORMED="rbk_not-a-key"

run() { # NAME KEY → req/s; the valid-key probe runs alongside
  local name=$1 key=$2 rps
  ( while :; do
      code=$(curl -s -o /dev/null -w '%{http_code}' "$URL" -H "x-api-key: $KEY")
      [ "$code" = 200 ] || echo "$code" >>"$WORK/probe-$name"
      sleep 0.2
    done ) &
  local probe=$!
  rps="$(wrk -t2 -c32 -d"${DURATION}s" -H "x-api-key: $key" "$URL" | awk '/^Requests\/sec/ {print $2}')"
  kill "$probe" 2>/dev/null || true; wait "$probe" 2>/dev/null || true
  echo "$rps" >>"$WORK/rps-$name"
  printf 'round %s: %-10s %12s req/s\n' "$round" "$name" "$rps"
}
median() { sort -n "$1" | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "GET /v1/accounts/:id/status, 32 connections, ${ROUNDS} rounds of ${DURATION}s per key, wrk on the same $(nproc) cores"
NAMES=(valid unknown malformed)
declare -A KEYS=([valid]="$KEY" [unknown]="$UNKNOWN" [malformed]="$MALFORMED")
for round in $(seq "$ROUNDS"); do
  for i in 0 1 2; do # rotate the order each round
    name=${NAMES[$(( (i + round - 1) % 3 ))]}
    run "$name" "${KEYS[$name]}"
  done
done
for name in "${NAMES[@]}"; do
  bad=0
  [ -f "$WORK/probe-$name" ] && bad=$(wc -l <"$WORK/probe-$name")
  printf '%-10s %12s req/s   valid-key probe: %s non-200\n' "$name" "$(median "$WORK/rps-$name")" "$bad"
done
