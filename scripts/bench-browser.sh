#!/usr/bin/env bash
# The browser connector's benchmark (issue 9): memory per login parked on the OTP screen (PSS
# of the Chromium tree, marginal, at 16 and 48 logins; goal <= 40 MB each on sandbox-js), login
# time p50 of user_good on sandbox-js (browser) vs the HTML sandbox over HTTP, and code handed
# to the parked login -> judged by the bank p50 (goal <= 50 ms). Needs Chromium
# (apt-get install chromium). Not part of scripts/test.sh: run it by hand or nightly.
#
#   scripts/bench-browser.sh            # 16 and 48 parked logins
#   scripts/bench-browser.sh 8 16 32    # other sizes
#   BENCH_LOGINS=30 scripts/bench-browser.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p reconbanker-browser --example browser_bench
exec "${CARGO_TARGET_DIR:-target}"/release/examples/browser_bench "$@"
