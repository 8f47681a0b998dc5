#!/usr/bin/env bash
# CI for the web client; `.ci/run` calls this from any directory.
#
#   1. clean install from package-lock.json
#   2. svelte-check (types + a11y; warnings fail), Vitest
#   3. rebuild dist/ and fail if it differs from the committed build
#   4. browser tests against the release server, which the caller has built
#      (`cargo build --release`); ACTORCHAT_BIN overrides its path,
#      CHROMIUM_PATH the browser's. SKIP_E2E=1 skips step 4.
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$web"

step() { printf '\n==> %s\n' "$*"; }

step "npm ci"
npm ci --no-audit --no-fund

step "npm run check"
npm run check

step "npm test"
npm test

step "npm run build (must match the committed web/dist)"
npm run build
if ! git diff --exit-code --stat -- dist || [ -n "$(git status --porcelain -- dist)" ]; then
  git status --short -- dist
  echo "web/dist is stale or has untracked files: run 'npm --prefix web run build' and commit web/dist." >&2
  exit 1
fi

if [ "${SKIP_E2E:-0}" = "1" ]; then
  echo "SKIP_E2E=1: skipping the browser tests"
  exit 0
fi

step "browser tests"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "installing Debian's chromium (Playwright cannot download browsers here)"
  sudo_cmd=""
  if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends \
    chromium fonts-noto-color-emoji
fi
bin="${ACTORCHAT_BIN:-$(cd "$web/.." && pwd)/target/release/actorchat}"
if [ ! -x "$bin" ]; then
  echo "no server binary at $bin: run 'cargo build --release' first or set ACTORCHAT_BIN" >&2
  exit 1
fi
ACTORCHAT_BIN="$bin" npm run e2e
