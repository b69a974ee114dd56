#!/usr/bin/env bash
# Benchmarks of reconciliation (release build), each scenario in a fresh process so its peak
# RSS is its own:
#   (a) one poll of 50,000 open orders through the real poller, which runs the first match
#       pass with 10,000 new movements (5,000 match) in its transaction: goal <= 2 s, peak RSS
#       <= 150 MB;
#   (b) with those orders open, one new matching movement stored -> the signed result webhook
#       at a local receiver, one at a time: goal p50 <= 10 ms, p99 <= 50 ms;
#   (c) the poll alone, then a naive matcher (a scan of every open order per movement): the
#       baseline.
#
#   scripts/bench-reconcile.sh                 # SQLite, LATENCY_N=200
#   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/bench-reconcile.sh
#                                              # a fresh database per scenario on that server
set -euo pipefail
cd "$(dirname "$0")/.."
LATENCY_N="${LATENCY_N:-200}"
cargo build --release --quiet --example reconcile_bench
BIN="${CARGO_TARGET_DIR:-target}"/release/examples/reconcile_bench
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

if [[ -n "${BENCH_POSTGRES_URL:-}" ]]; then echo "== backend: postgres (a fresh database per scenario)"; else echo "== backend: sqlite"; fi
for scenario in a c "b $LATENCY_N"; do
  echo
  # shellcheck disable=SC2086
  RUST_LOG=warn $BIN $scenario | tee -a "$OUT"
done

echo
echo "== summary"
awk '
  $1 == "RESULT" && $2 == "a" { a = $5; arss = $6; apoll = $3; apass = $4 }
  $1 == "RESULT" && $2 == "c" { c = $5; cpass = $4 }
  $1 == "RESULT" && $2 == "b" { p50 = $3; p99 = $4 }
  END {
    printf "(a) poll + pass:  %.0f ms (poll %.0f, pass %.0f; goal <= 2000), peak RSS %.1f MB (goal <= 150)\n", a, apoll, apass, arss
    printf "(c) naive:        %.0f ms (pass %.0f)\n", c, cpass
    if (a > 0) printf "    naive / indexed: poll + pass x%.1f, pass alone x%.1f\n", c / a, cpass / apass
    printf "(b) latency:      p50 %.2f ms, p99 %.2f ms (goal <= 10 / <= 50)\n", p50, p99
  }' "$OUT"
