#!/usr/bin/env bash
# Scale-out run: a local Redis Cluster (3 primaries + 3 replicas), NODES `evd engine` nodes on
# it sharing one PostgreSQL database, an `evd api` for the REST setup, and evd-loadtest's `chat`
# scenario spread over every node for DURATION seconds: chat messages, presence churn, and a
# live poll per room that every client votes in once (see `--api` in the README). Prints the
# harness report, then the Redis processes' CPU over the run; the raw JSON report goes to
# target/scale-out/.
#
#   bench/scale-out.sh
#
# Env: NODES (6), CONNS (100000), ROOM_SIZE (100), PUBLISHERS (200), RATE (0.5 per publisher
# per second), CHURN (0.0005 of clients leave and rejoin with `recover` each second),
# DURATION (600), RAMP (1000 connections per second), PG (the PostgreSQL server URL without a
# database, default postgres://postgres@127.0.0.1:5432); the database `evd_scale_out` on it is
# dropped and created anew. POLLS=0 runs chat without the REST setup and votes (one SQLite file
# per node).
# Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-6} CONNS=${CONNS:-100000} ROOM_SIZE=${ROOM_SIZE:-100} PUBLISHERS=${PUBLISHERS:-200}
RATE=${RATE:-0.5} CHURN=${CHURN:-0.0005} DURATION=${DURATION:-600} RAMP=${RAMP:-1000}
PG=${PG:-postgres://postgres@127.0.0.1:5432} POLLS=${POLLS:-1}
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin evd --bin evd-loadtest
OUT=target/scale-out
mkdir -p "$OUT"

API_PID=
cleanup() {
  if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; fi
  scripts/cluster.sh stop || true
  scripts/redis-cluster.sh stop 7000 >/dev/null || true
}
trap cleanup EXIT
scripts/redis-cluster.sh start 7000
api_args=()
if [ "$POLLS" = 1 ]; then
  psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS evd_scale_out' -c 'CREATE DATABASE evd_scale_out'
  export DATABASE_URL="$PG/evd_scale_out"
  # The REST API for the harness's setup (org, event, one session and poll per room). It applies
  # the migrations before the engine nodes start.
  EVD_LISTEN=127.0.0.1:9100 EVD_DATABASE_URL="$DATABASE_URL" EVD_LOG=warn \
    target/release/evd api >"$OUT/api.log" 2>&1 &
  API_PID=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:9100/healthz >/dev/null && break; sleep 0.1; done
  api_args=(--api http://127.0.0.1:9100)
fi
EVD_LOG=${EVD_LOG:-warn} scripts/cluster.sh start "$NODES"
targets=$(scripts/cluster.sh urls | sed 's#/ws$##' | paste -sd, -)
pids=()
for f in .cluster/nodes/*.pid; do pids+=(--server-pid "$(cat "$f")"); done
redis_pids=$(cat .cluster/7000/*.pid)
cpu_ticks() { local t=0; for p in $redis_pids; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

echo "==> evd-loadtest chat -c $CONNS over $NODES nodes: $targets" >&2
before=$(cpu_ticks); t0=$(date +%s)
target/release/evd-loadtest chat -c "$CONNS" --room-size "$ROOM_SIZE" -p "$PUBLISHERS" \
  --rate "$RATE" --churn "$CHURN" --duration "$DURATION" --ramp "$RAMP" --connect-timeout 300 \
  --targets "$targets" "${pids[@]}" "${api_args[@]}" --json >"$OUT/report.json"
after=$(cpu_ticks); t1=$(date +%s)
hz=$(getconf CLK_TCK)
python3 - "$OUT/report.json" "$before" "$after" "$hz" "$((t1 - t0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
before, after, hz, secs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(json.dumps(r, indent=1))
cpu = (after - before) / hz
print(f"redis cluster (6 processes) CPU: {cpu:.1f} s over {secs} s = {100 * cpu / secs:.1f}% of one core")
PY
