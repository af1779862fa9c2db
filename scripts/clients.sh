#!/usr/bin/env bash
# The browser side: the client SDK (clients/js) and the page evd serves (clients/page, built
# into engine/assets/app.js, which the binary embeds and git holds).
#
#   scripts/clients.sh setup   npm ci in clients/js, and Debian's chromium if it is missing
#                              (root or sudo): what the SDK and browser tests need
#   scripts/clients.sh check   typecheck, rebuild, fail if engine/assets differs from the commit,
#                              and the SDK's size budget
#
# `cargo test --workspace` then runs the SDK tests (engine/tests/js_sdk.rs) and the browser tests
# (engine/tests/page_browser.rs) against the evd it built; without this setup they say skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/clients/js"

setup() {
  command -v node >/dev/null || { echo "node is not installed (the SDK needs Node 20+)" >&2; exit 1; }
  npm ci --no-audit --no-fund
  if ! command -v chromium >/dev/null; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  chromium --version
}

check() {
  npm run --silent typecheck
  npm run --silent build
  if ! git -C "$root" diff --exit-code --stat -- engine/assets; then
    echo "engine/assets differs from a rebuild of clients/: run 'npm run build' in clients/js and commit it" >&2
    exit 1
  fi
  npm run --silent size
}

case "${1:-}" in
  setup) setup ;;
  check) check ;;
  *) echo "usage: $0 setup|check" >&2; exit 2 ;;
esac
