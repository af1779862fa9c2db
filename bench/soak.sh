#!/usr/bin/env bash
# The soak: one hour of a live event on two `evd engine` nodes over a local Redis Cluster
# (3 primaries + 3 replicas) and one PostgreSQL, to show that memory stays flat and that faults
# cost no lost messages and no reconnect waves. Not run in CI.
#
#   bench/soak.sh
#
# What runs: evd-loadtest's `chat` scenario with `--api` and `--reconnect`: CONNS clients in
# rooms of ROOM_SIZE, PUBLISHERS publishers at RATE messages per second each, presence churn
# (CHURN leaves and rejoins per client per second), and one vote per client in its room's poll
# at a random time of the hour. During the hour, at RESTART_AT seconds the second node is
# restarted as an operator would (SIGTERM, it drains, start again) and its clients come back
# with `recover`; at KILL_AT seconds one Redis primary is SIGKILLed, its replica takes over,
# and the killed node is started again as a replica.
#
# Every SAMPLE seconds each node's RSS and connection count go to target/soak/rss.csv, and a
# progress line to stderr every minute. At the end target/soak/ holds the harness's report
# (report.json), the events with their times (events.csv), a plot of RSS over time per node
# (rss.png) and a summary (summary.md): RSS slope per node after the first WARMUP seconds (for
# the restarted node, after WARMUP seconds past its restart), deliveries, gaps, recovery
# figures and closes by code.
#
# Env: CONNS (20000), NODES (2), ROOM_SIZE (100), PUBLISHERS (40), RATE (0.5), CHURN (0.001),
# DURATION (3600), RAMP (1000 per second), RESTART_AT (1200), KILL_AT (2100), WARMUP (600),
# SAMPLE (10), PG (postgres://postgres@127.0.0.1:5432; the database `evd_soak` on it is dropped
# and created anew). The plot needs Python's matplotlib; it is installed with pip into
# target/soak/py if missing.
# Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-20000} NODES=${NODES:-2} ROOM_SIZE=${ROOM_SIZE:-100} PUBLISHERS=${PUBLISHERS:-40}
RATE=${RATE:-0.5} CHURN=${CHURN:-0.001} DURATION=${DURATION:-3600} RAMP=${RAMP:-1000}
RESTART_AT=${RESTART_AT:-1200} KILL_AT=${KILL_AT:-2100} WARMUP=${WARMUP:-600} SAMPLE=${SAMPLE:-10}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin evd --bin evd-loadtest
OUT=target/soak
rm -rf "$OUT/run" "$OUT/bin"
mkdir -p "$OUT/run" "$OUT/bin"
# The run's own copies: a rebuild during the hour must not change what the restart starts.
cp target/release/evd target/release/evd-loadtest "$OUT/bin/"
export EVD_BIN=$PWD/$OUT/bin/evd
if ! python3 -c 'import matplotlib' 2>/dev/null && ! PYTHONPATH="$OUT/py" python3 -c 'import matplotlib' 2>/dev/null; then
  echo "==> installing matplotlib into $OUT/py for the plot" >&2
  python3 -m pip install -q --target "$OUT/py" matplotlib
fi

API_PID= SAMPLER_PID= EVENTS_PID= LOAD_PID=
cleanup() {
  for p in $LOAD_PID $EVENTS_PID $SAMPLER_PID $API_PID; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  scripts/cluster.sh stop || true
  scripts/redis-cluster.sh stop 7000 >/dev/null || true
}
trap cleanup EXIT
scripts/redis-cluster.sh start 7000
psql "$PG/postgres" -qc 'DROP DATABASE IF EXISTS evd_soak' -c 'CREATE DATABASE evd_soak'
export DATABASE_URL="$PG/evd_soak"
# The REST API for the harness's setup (org, event, one session and poll per room). It applies
# the migrations before the engine nodes start.
EVD_LISTEN=127.0.0.1:9100 EVD_DATABASE_URL="$DATABASE_URL" EVD_LOG=warn \
  "$OUT/bin/evd" api >"$OUT/run/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:9100/healthz >/dev/null && break; sleep 0.1; done
export EVD_LOG=${EVD_LOG:-warn}
scripts/cluster.sh start "$NODES"
targets=$(scripts/cluster.sh urls | sed 's#/ws$##' | paste -sd, -)
ports=$(scripts/cluster.sh urls | sed -E 's#.*:([0-9]+)/ws$#\1#' | paste -sd' ' -)
last_port=${ports##* }
t0=$(date +%s)

# Sleeps until T seconds after the start of the load, a second at a time (so a stopped loop
# leaves no long sleep behind).
until_t() { while [ $(( $(date +%s) - t0 )) -lt "$1" ]; do sleep 1; done; }

# RSS and connections per node; the PID is read anew each time, so a restarted node goes on.
sampler() {
  echo "t_s,port,pid,rss_kib,connections" >"$OUT/rss.csv"
  local n=0
  while true; do
    local now line progress=""
    now=$(( $(date +%s) - t0 ))
    for port in $ports; do
      local pid rss conns
      pid=$(cat ".cluster/nodes/$port.pid" 2>/dev/null || echo 0)
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$rss" ] || continue
      conns=$(curl -fs --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null \
        | awk '$1 ~ /^evd_connections(\{|$)/ {n += $2} END {if (NR) print n}' || true)
      line="$now,$port,$pid,$rss,${conns:-}"
      echo "$line" >>"$OUT/rss.csv"
      progress+=" node $port: $((rss / 1024)) MiB, ${conns:-?} connections;"
    done
    if [ $((n % (SAMPLE >= 60 ? 1 : 60 / SAMPLE))) = 0 ]; then
      echo "[soak $((now / 60))/$((DURATION / 60)) min]$progress" >&2
    fi
    n=$((n + 1))
    until_t $(( now + SAMPLE ))
  done
}
sampler &
SAMPLER_PID=$!

# The faults, at their times from the start of the load.
events() {
  echo "t_s,event" >"$OUT/events.csv"
  until_t "$RESTART_AT"
  echo "$(( $(date +%s) - t0 )),restart node $last_port" >>"$OUT/events.csv"
  echo "==> restarting node $last_port" >&2
  scripts/cluster.sh restart "$last_port" >&2
  echo "$(( $(date +%s) - t0 )),node $last_port ready" >>"$OUT/events.csv"
  until_t "$KILL_AT"
  echo "$(( $(date +%s) - t0 )),kill a redis primary" >>"$OUT/events.csv"
  echo "==> killing a Redis primary" >&2
  scripts/redis-cluster.sh kill-primary 7000 >&2
  echo "$(( $(date +%s) - t0 )),redis whole again" >>"$OUT/events.csv"
}
events &
EVENTS_PID=$!

echo "==> evd-loadtest chat -c $CONNS over $NODES nodes for $DURATION s: $targets" >&2
"$OUT/bin/evd-loadtest" chat -c "$CONNS" --room-size "$ROOM_SIZE" -p "$PUBLISHERS" \
  --rate "$RATE" --churn "$CHURN" --duration "$DURATION" --ramp "$RAMP" --connect-timeout 300 \
  --targets "$targets" --api http://127.0.0.1:9100 --reconnect --json >"$OUT/report.json" &
LOAD_PID=$!
wait "$LOAD_PID"
LOAD_PID=
kill "$SAMPLER_PID" "$EVENTS_PID" 2>/dev/null || true
for p in $SAMPLER_PID $EVENTS_PID; do wait "$p" 2>/dev/null || true; done
SAMPLER_PID= EVENTS_PID=

PYTHONPATH="$OUT/py${PYTHONPATH:+:$PYTHONPATH}" python3 bench/soak_report.py "$OUT" "$WARMUP" \
  "CONNS=$CONNS NODES=$NODES ROOM_SIZE=$ROOM_SIZE PUBLISHERS=$PUBLISHERS RATE=$RATE CHURN=$CHURN DURATION=$DURATION RESTART_AT=$RESTART_AT KILL_AT=$KILL_AT bench/soak.sh"
cat "$OUT/summary.md"
