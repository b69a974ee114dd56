#!/usr/bin/env bash
# Benchmarks of push: latency from the bank asking for a code to (a) the notification webhook
# receiver and (b) an SSE client on /v1/events (p50/p99), and 1,000 SSE clients held by one
# server process with their memory cost.
#
#   scripts/bench-push.sh          # LATENCY_N=200 CLIENTS=1000
set -euo pipefail
cd "$(dirname "$0")/.."
LATENCY_N="${LATENCY_N:-200}"
CLIENTS="${CLIENTS:-1000}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
cargo build --release --quiet --bin reconbanker --example push_bench

echo "== latency, $LATENCY_N assisted logins"
RUST_LOG=warn "${CARGO_TARGET_DIR:-target}"/release/examples/push_bench latency "$LATENCY_N"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
WORK="$(mktemp -d)"
PORT="$(free_port)"; SPORT="$(free_port)"
RECONBANKER_PORT="$PORT" RECONBANKER_SANDBOX_PORT="$SPORT" RECONBANKER_DATA_DIR="$WORK/data" RUST_LOG=warn \
  RECONBANKER_V1_RATE_PER_SEC=1000000 RECONBANKER_V1_BURST=1000000 \
  "${CARGO_TARGET_DIR:-target}"/release/reconbanker serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo
echo "== $CLIENTS SSE clients on one server"
"${CARGO_TARGET_DIR:-target}"/release/examples/push_bench fanout "$CLIENTS" "http://127.0.0.1:$PORT" "$PID"
