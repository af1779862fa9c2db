#!/usr/bin/env bash
# Smoke run of the load harness against a freshly started `evd serve` (free port, temporary
# SQLite): 500 connections for 10 s, broadcast and rooms. Asserts function only: every
# connection joined, a delivery ratio of exactly 1.0, no gaps, no reorders and zero errors.
# No timing is asserted.
#
#   scripts/loadtest-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Built one at a time, as the other scripts do, so each binary reuses its cached build.
cargo build --release --bin evd
cargo build --release -p evd-loadtest
TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The harness connects from 127.0.0.2 and .3; the per-IP rate limit is off so the ramp is not
# refused, and the op rate is raised for the publishers.
EVD_DATABASE_URL="sqlite://$TMP/evd.db" EVD_LIMITS_CONN_RATE_PER_IP=0 \
  EVD_LIMITS_OPS_PER_SEC=10000 EVD_LIMITS_OPS_BURST=10000 EVD_LOG=warn \
  target/release/evd serve --listen "127.0.0.1:$PORT" >"$TMP/evd.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/evd.log" >&2; exit 1; }
  sleep 0.1
done

check() { # name, json report
  python3 - "$1" "$2" <<'PY'
import json, sys
name, r = sys.argv[1], json.loads(sys.argv[2])
problems = []
if r["connections"] != r["connections_requested"]: problems.append(f'{r["connections"]} of {r["connections_requested"]} connected')
if r["expected"] == 0: problems.append("nothing expected")
if r["delivery_ratio"] != 1.0: problems.append(f'delivery ratio {r["delivery_ratio"]}')
for k in ("errors", "gaps", "reorders"):
    if r[k] != 0: problems.append(f'{k} {r[k]} {r.get("error_kinds", "")}')
if r["closes"]: problems.append(f'closes {r["closes"]}')
print(f'{name}: {r["received"]} of {r["expected"]} delivered, ratio {r["delivery_ratio"]}, errors {r["errors"]}')
if problems:
    print(f'{name}: FAILED: ' + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
PY
}

LT=(target/release/evd-loadtest --targets "ws://127.0.0.1:$PORT" --server-pid "$PID" --json
    -c 500 --duration 10 --ramp 1000)
check broadcast "$("${LT[@]}" broadcast --rate 5)"
check rooms "$("${LT[@]}" rooms --room-size 10 --publishers 10 --rate 10)"
echo "loadtest smoke: ok"
