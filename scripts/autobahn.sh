#!/usr/bin/env bash
# Runs the Autobahn|Testsuite WebSocket compliance checks against the engine's own connection
# stack: `evd serve` with the test-only `/echo` endpoint (same upgrade limits, read buffer,
# queue and writer as `/ws`).
#
#   scripts/autobahn.sh [CASES]
#
# CASES is passed to the suite's run.sh (default: everything but 9.*, 12.*, 13.*).
# AUTOBAHN_TOOL points at the suite's tool folder; by default the first `shared/tools/autobahn`
# found beside the repository or beside one of its parent folders. The report goes to
# target/autobahn-report. Exit 0 only when no case failed (or, with AUTOBAHN_OPTIONAL=1, when
# the tool folder is missing: it says SKIPPED).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOL=${AUTOBAHN_TOOL:-}
if [ -z "$TOOL" ]; then
  dir=$(pwd)
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    if [ -x "$dir/shared/tools/autobahn/run.sh" ]; then TOOL="$dir/shared/tools/autobahn"; break; fi
  done
fi
if [ -z "$TOOL" ] || [ ! -x "$TOOL/run.sh" ]; then
  echo "autobahn.sh: the Autobahn tool folder was not found; set AUTOBAHN_TOOL" >&2
  # AUTOBAHN_OPTIONAL=1: a checkout without the team's tool folder beside it skips, loudly.
  if [ "${AUTOBAHN_OPTIONAL:-0}" = 1 ]; then echo "autobahn.sh: SKIPPED" >&2; exit 0; fi
  exit 2
fi

cargo build --release --bin evd
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=target/autobahn-evd.log
# Default limits, except the per-IP connection rate: the suite opens a connection per case.
EVD_TEST_ECHO=true EVD_LIMITS_CONN_RATE_PER_IP=0 EVD_LOG=warn \
  target/release/evd serve --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true' EXIT
"$TOOL/run.sh" "ws://127.0.0.1:$PORT/echo" "${1:-}" target/autobahn-report
