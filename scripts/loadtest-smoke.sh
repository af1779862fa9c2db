#!/usr/bin/env bash
# Smoke run of the load harness against a freshly started `evd serve` (free port, temporary
# SQLite): 500 connections each time; broadcast and rooms for 10 s, then, with polls made
# through the REST API (`--api`), a poll burst and a short chat run with churn and votes.
# Asserts function only: every connection joined, a delivery ratio of exactly 1.0, no gaps, no
# reorders and zero errors; for votes, every vote acknowledged, no vote errors, and every room's
# final tally equal to the votes acknowledged in it. Then a short `loopback-floor` run, which
# fails when any message is lost. No timing is asserted.
#
#   scripts/loadtest-smoke.sh        (honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

# One build for the three binaries; the workspace-hack crate gives every selection of packages
# the same dependency features, so this reuses the cache of any earlier workspace build.
cargo build --release --bin evd --bin evd-loadtest --bin loopback-floor
TARGET=${CARGO_TARGET_DIR:-target}
TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The harness connects from 127.0.0.2 and .3; the per-IP rate limit is off so the ramp is not
# refused, and the op rate is raised for the publishers.
EVD_DATABASE_URL="sqlite://$TMP/evd.db" EVD_LIMITS_CONN_RATE_PER_IP=0 \
  EVD_LIMITS_OPS_PER_SEC=10000 EVD_LIMITS_OPS_BURST=10000 EVD_LOG=warn \
  "$TARGET/release/evd" serve --listen "127.0.0.1:$PORT" >"$TMP/evd.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/evd.log" >&2; exit 1; }
  sleep 0.1
done

check() { # name, json report, [votes expected: every client votes once]
  python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
name, r, votes = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "votes"
problems = []
if r["connections"] != r["connections_requested"]: problems.append(f'{r["connections"]} of {r["connections_requested"]} connected')
if r["expected"] == 0 and r["publishers"] > 0: problems.append("nothing expected")
if r["delivery_ratio"] != 1.0: problems.append(f'delivery ratio {r["delivery_ratio"]}')
for k in ("errors", "gaps", "reorders"):
    if r[k] != 0: problems.append(f'{k} {r[k]} {r.get("error_kinds", "")}')
if r["closes"]: problems.append(f'closes {r["closes"]}')
print(f'{name}: {r["received"]} of {r["expected"]} delivered, ratio {r["delivery_ratio"]}, errors {r["errors"]}')
v = r.get("votes")
if votes and v is None: problems.append("no vote report")
if votes and v is not None:
    n = r["connections_requested"]
    if not (v["sent"] == v["acked"] == n): problems.append(f'votes: {v["sent"]} sent, {v["acked"]} acked, want {n} each')
    if v["errors"] != 0: problems.append(f'vote errors {v["errors"]} {v["error_kinds"]}')
    rooms = -(-n // r["room_size"])
    if not (v["rooms_tally_ok"] == v["rooms_checked"] == rooms):
        problems.append(f'tally ok in {v["rooms_tally_ok"]} of {v["rooms_checked"]} rooms checked, want {rooms}: {v["tally_mismatches"]}')
    print(f'{name}: votes {v["acked"]} of {v["sent"]} acked, p99 {v["latency_ms"]["p99"]} ms, '
          f'tally ok in {v["rooms_tally_ok"]} of {v["rooms_checked"]} rooms, '
          f'converged in {v["results_converged_s"]} s, {v["members_missed_final"]} members missed the final tally')
if problems:
    print(f'{name}: FAILED: ' + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
PY
}

LT=("$TARGET/release/evd-loadtest" --targets "ws://127.0.0.1:$PORT" --server-pid "$PID" --json
    -c 500 --ramp 1000)
check broadcast "$("${LT[@]}" --duration 10 broadcast --rate 5)"
check rooms "$("${LT[@]}" --duration 10 rooms --room-size 10 --publishers 10 --rate 10)"
# Each --api run makes its own org with 50 sessions and polls through REST first.
API=(--api "http://127.0.0.1:$PORT")
check poll-burst "$("${LT[@]}" "${API[@]}" --duration 3 poll-burst --room-size 10 --publishers 0)" votes
check chat "$("${LT[@]}" "${API[@]}" --duration 5 chat --room-size 10 --publishers 10 --rate 10 --churn 0.05)" votes
# The kernel floor that bench/compare.sh sets beside the broadcasts: it exits non-zero when a
# message is lost.
"$TARGET/release/loopback-floor" --conns 500 --rate 10 --rounds 20
echo "loadtest smoke: ok"
