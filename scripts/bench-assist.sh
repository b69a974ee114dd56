#!/usr/bin/env bash
# Benchmarks of assisted login: (a) memory per waiting login with N logins all waiting for a code
# (default 10,000; the sandbox bank runs in its own process so only the server is measured), and
# (b) latency from POST /v1/.../otp to the sandbox bank receiving the code over 1,000 submissions.
#
#   scripts/bench-assist.sh            # N=10000 LATENCY_N=1000
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-10000}"
LATENCY_N="${LATENCY_N:-1000}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

cargo build --release --quiet --bin reconbanker --example assist_bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PORT="$(free_port)"
RUST_LOG=warn "${CARGO_TARGET_DIR:-target}"/release/reconbanker sandbox-bank --port "$PORT" &
BANK_PID=$!
trap 'kill $BANK_PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== (a) $N assisted logins waiting for a code"
RUST_LOG="${BENCH_LOG:-error}" "${CARGO_TARGET_DIR:-target}"/release/examples/assist_bench waiting "$N" "http://127.0.0.1:$PORT/"
echo
echo "== (b) OTP submission to bank, $LATENCY_N submissions"
RUST_LOG="${BENCH_LOG:-error}" "${CARGO_TARGET_DIR:-target}"/release/examples/assist_bench latency "$LATENCY_N"
echo
# Diagnostic: the same with each code sent 20 ms after the bank took the previous one, so the end
# of the previous login (read, movements, events, logout) does not run beside it.
echo "== (b') the same, codes 20 ms apart"
RUST_LOG="${BENCH_LOG:-error}" "${CARGO_TARGET_DIR:-target}"/release/examples/assist_bench latency "$LATENCY_N" 20
