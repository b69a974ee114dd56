#!/usr/bin/env bash
# Benchmark of GET /v1/accounts/:id/status (issue: foundation, item 10).
#
# Starts the release server on a free port with a throwaway data directory, creates a user, an
# account and an API key through the API, and loads the status endpoint with wrk at 1 and 32
# connections, and a minimal axum handler returning the same JSON (the ceiling on this
# machine) the same way, and prints the ratio. The load generator shares the machine's cores.
#
# The two servers take turns in ROUNDS rounds, the order swapped each round, and the figures
# are the medians of the rounds: this machine's throughput drifts by 10-40 % within minutes, and
# one run of each, one after the other, measured the drift between them as much as the servers.
#
#   scripts/bench.sh                      # 3 rounds of 5 s per server and connection count
#   ROUNDS=5 DURATION=10 scripts/bench.sh
#   METRICS=1 scripts/bench.sh  # with /metrics on (issue 11): the request layer's cost
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

cargo build --release --quiet --bin reconbanker --example ceiling

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # wait until the URL answers, at most 30 s
  for _ in $(seq 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server at $1 did not start" >&2; return 1
}

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

PORT="$(free_port)"
EXTRA_ENV=()
MPORT="$(free_port)"
if [ -n "${METRICS:-}" ]; then EXTRA_ENV+=("RECONBANKER_METRICS_ADDR=127.0.0.1:$MPORT"); fi
env "${EXTRA_ENV[@]}" RECONBANKER_PORT="$PORT" RECONBANKER_DATA_DIR="$WORK/data" RUST_LOG=warn \
  RECONBANKER_V1_RATE_PER_SEC=10000000 RECONBANKER_V1_BURST=10000000 \
  "${CARGO_TARGET_DIR:-target}"/release/reconbanker serve >"$WORK/server.log" 2>&1 &
PIDS+=($!)
BASE="http://127.0.0.1:$PORT"
wait_http "$BASE/health"

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
PATH_STATUS="/v1/accounts/$ACCOUNT/status"
curl -fs "$BASE$PATH_STATUS" -H "x-api-key: $KEY" >/dev/null

CPORT="$(free_port)"
"${CARGO_TARGET_DIR:-target}"/release/examples/ceiling "$CPORT" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CPORT$PATH_STATUS"

# run NAME URL CONNS THREADS → prints "rps p50_ms p99_ms"
run() {
  local out
  out="$(wrk -t"$4" -c"$3" -d"${DURATION}s" --latency -H "x-api-key: $KEY" "$2")"
  echo "$out" >"$WORK/wrk-$1-$3.txt"
  local rps p50 p99 non2xx
  rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
  [ -z "$non2xx" ] || { echo "$1: $non2xx non-2xx answers — benchmark invalid" >&2; exit 1; }
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { # wrk prints 1.23ms / 456.00us / 1.20s
  python3 -c 'import sys,re; v=sys.argv[1]; m=re.match(r"([\d.]+)(us|ms|s)$",v); f={"us":0.001,"ms":1,"s":1000}[m.group(2)]; print(f"{float(m.group(1))*f:.3f}")' "$1"
}

echo "GET $PATH_STATUS, ${ROUNDS} rounds of ${DURATION}s per server, wrk on the same $(nproc) cores${METRICS:+, metrics on}"
curl -fs "$BASE$PATH_STATUS" -H "x-api-key: $KEY"; echo
# median of the arguments
median() { python3 -c 'import sys, statistics; print(f"{statistics.median(float(v) for v in sys.argv[1:]):.3f}")' "$@"; }
declare -A RPS
for conns in 1 32; do
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  declare -A got=()
  for round in $(seq "$ROUNDS"); do
    # Odd rounds start with Reconbanker, even rounds with the ceiling.
    order=(reconbanker ceiling)
    [ $((round % 2)) = 0 ] && order=(ceiling reconbanker)
    for target in "${order[@]}"; do
      url="$BASE$PATH_STATUS"
      [ "$target" = ceiling ] && url="http://127.0.0.1:$CPORT$PATH_STATUS"
      read -r rps p50 p99 <<<"$(run "$target-r$round" "$url" "$conns" "$threads")"
      printf '  round %s  %-12s %6s %12s %10s %10s\n' "$round" "$target" "$conns" "$rps" "$p50" "$p99"
      got[$target-rps]+="$rps "; got[$target-p50]+="$p50 "; got[$target-p99]+="$p99 "
    done
  done
  printf '%-12s %6s %12s %10s %10s   (medians of %s rounds)\n' target conns req/s p50_ms p99_ms "$ROUNDS"
  for target in reconbanker ceiling; do
    # shellcheck disable=SC2086
    rps="$(median ${got[$target-rps]})"
    # shellcheck disable=SC2086
    printf '%-12s %6s %12s %10s %10s\n' "$target" "$conns" "$rps" "$(median ${got[$target-p50]})" "$(median ${got[$target-p99]})"
    RPS[$target$conns]="$rps"
  done
  unset got
done
for conns in 1 32; do
  python3 -c "import sys; print(f'ratio at {sys.argv[1]} connections: reconbanker / ceiling = {float(sys.argv[2])/float(sys.argv[3]):.1%}')" \
    "$conns" "${RPS[reconbanker$conns]}" "${RPS[ceiling$conns]}"
done
if [ -n "${METRICS:-}" ]; then
  echo "counted by /metrics:"
  curl -fs "http://127.0.0.1:$MPORT/metrics" | grep '^reconbanker_http_requests_total{route="/v1/accounts/{account_id}/status"' || true
fi
