#!/usr/bin/env bash
# Issue 11 (scale-out) benchmark: OTP submitted on instance B -> code at the sandbox bank through
# the login instance A holds (two instances on one PostgreSQL database), p50/p99, and the same
# with the code submitted to A itself for comparison.
#
#   BENCH_POSTGRES_URL=postgres://user@host:port/postgres scripts/bench-scaleout.sh   # N=500
#
# A fresh database is created on that server for the run and dropped after it.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-500}"
: "${BENCH_POSTGRES_URL:?set BENCH_POSTGRES_URL to a PostgreSQL server URL (a database is created on it)}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

cargo build --release --quiet --example scaleout_bench
DB="rbk_bench_scaleout_$$"
BASE="${BENCH_POSTGRES_URL%/*}"
psql "$BENCH_POSTGRES_URL" -qc "CREATE DATABASE $DB"
trap 'psql "$BENCH_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true' EXIT
RUST_LOG=warn ./target/release/examples/scaleout_bench otp "$N" "$BASE/$DB"
