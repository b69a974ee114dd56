#!/usr/bin/env bash
# Issue 10: fetches axe-core (the accessibility rules engine the dashboard's browser tests run in
# Chromium, crates/ui-e2e) at a pinned version with npm's ordinary client, checks the tarball's
# SHA-256, unpacks `axe.min.js` into a cache under target/ and prints its path. axe-core's code is
# never committed to the repository; a second run finds the cache and fetches nothing.
#
#   RECONBANKER_AXE="$(scripts/fetch-axe.sh)" cargo test -p reconbanker-ui-e2e
#
# Exits non-zero (with a message on stderr, nothing on stdout) when npm is missing or the fetch or
# the check fails. Environment: CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

AXE_VERSION=4.14.1
AXE_SHA256=e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745

die() { printf 'fetch-axe.sh: error: %s\n' "$*" >&2; exit 1; }

CACHE="${CARGO_TARGET_DIR:-target}/axe/$AXE_VERSION"
OUT="$CACHE/axe.min.js"
if [[ -s $OUT ]]; then
    printf '%s\n' "$(cd "$CACHE" && pwd)/axe.min.js"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is not installed (Debian: apt-get install --no-install-recommends npm)"
mkdir -p "$CACHE"
TGZ="$CACHE/axe-core-$AXE_VERSION.tgz"
if [[ ! -s $TGZ ]]; then
    # npm's own cache stays under target/ too; npm's output goes to stderr (stdout is the path).
    (cd "$CACHE" && npm_config_cache="$PWD/npm-cache" npm pack --silent "axe-core@$AXE_VERSION" >&2) ||
        die "npm pack axe-core@$AXE_VERSION failed"
fi
actual=$(sha256sum "$TGZ" | cut -d' ' -f1)
if [[ $actual != "$AXE_SHA256" ]]; then
    rm -f "$TGZ"
    die "axe-core-$AXE_VERSION.tgz has SHA-256 $actual, expected $AXE_SHA256"
fi
tar -xzf "$TGZ" -C "$CACHE" package/axe.min.js
mv "$CACHE/package/axe.min.js" "$OUT.part"
rmdir "$CACHE/package"
mv "$OUT.part" "$OUT"
printf '%s\n' "$(cd "$CACHE" && pwd)/axe.min.js"
