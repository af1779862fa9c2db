#!/usr/bin/env bash
# The Socket.IO drop-in's tests: the real socket.io-client from npm against a real `evd serve`.
#
#   scripts/socketio-tests.sh setup   npm ci in clients/socketio-tests (the lockfile is committed)
#
# `cargo test -p evd-engine --test socketio` then runs them against the evd it built; without
# this setup that test says skipped (or fails under EVD_REQUIRE_SERVICES=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/clients/socketio-tests"

setup() {
  command -v node >/dev/null || { echo "node is not installed (the tests need Node 20+)" >&2; exit 1; }
  npm ci --no-audit --no-fund
}

case "${1:-}" in
  setup) setup ;;
  *) echo "usage: $0 setup" >&2; exit 2 ;;
esac
