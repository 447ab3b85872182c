#!/usr/bin/env bash
# The browser tests of kordon's dashboard: the one command CI calls.
#
#   bash web/tests/run.sh                      # all tests
#   bash web/tests/run.sh police.test.mjs      # some of them
#   KORDON_SCREENSHOTS=docs/img bash web/tests/run.sh   # refresh docs/img
#
# Installs what is missing (Debian's chromium, the npm packages, the kordon
# binary), then runs every *.test.mjs with Node's test runner, one file at a
# time (each starts its own kordon and Chromium; the machine has 2 cores),
# printing each test's name and result. Exits non-zero if any test fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "web/tests: $*"; }

# Chromium, from Debian (playwright cannot download browsers here).
if [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  fi
fi

# Node.js and the npm packages of package-lock.json.
command -v node >/dev/null || { say "node is missing (Node.js 20 or newer)"; exit 1; }
cd "$here"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -d node_modules ] || [ "$(cat node_modules/.kordon-lock-sha256 2>/dev/null)" != "$lock_sum" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.kordon-lock-sha256
fi

# The kordon binary (it embeds web/static: rebuild after front-end changes,
# or run with KORDON_REBUILD=1).
kordon="$repo/target/release/kordon"
if [ ! -x "$kordon" ] || [ "${KORDON_REBUILD:-}" = 1 ]; then
  say "building $kordon"
  (cd "$repo" && cargo build -j2 --release --bin kordon)
elif [ -n "$(find "$repo/web/static" -newer "$kordon" -type f -print -quit)" ]; then
  say "WARNING: web/static has files newer than $kordon; these tests run the dashboard embedded in the binary (KORDON_REBUILD=1 rebuilds)"
fi

if [ "$#" -gt 0 ]; then files=("$@"); else files=(*.test.mjs); fi
say "running ${files[*]}"
start=$(date +%s)
status=0
node --test --test-reporter=spec --test-concurrency=1 --test-timeout=180000 "${files[@]}" || status=$?
say "finished in $(( $(date +%s) - start )) s, exit status $status"
exit "$status"
