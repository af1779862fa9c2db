#!/usr/bin/env bash
# Votes under a crowd, A/B: two `evd` binaries run in turn (A, B, A, B, ...) on the same setup,
# so that a busy machine's noise falls on both alike. Each run: a fresh PostgreSQL database, an
# `evd api` for the harness's setup, NODES `evd engine` nodes on a Redis Cluster, and
# `evd-loadtest chat --api` (every client votes once in its room's poll at a random time of the
# run). Prints, per run, the harness's vote lines and the votes writer's group-commit figures
# summed over the nodes' /metrics.
#
#   bench/vote-ab.sh BIN_A BIN_B
#
# Env: ROUNDS (2), NODES (2), CONNS (15000), ROOM_SIZE (100), DURATION (25: CONNS/DURATION
# votes per second), PUBLISHERS (50) at RATE (1), PG (postgres://postgres@127.0.0.1:5432;
# the database evd_poll_bench on it is dropped and created anew per run, and dropped at the
# end), NODES_PORT (9400), API_PORT (9450), CLUSTER_PORT (7300: the Redis Cluster is started on
# it and stopped at the end). Every process it starts is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?binary A} B=${2:?binary B}
ROUNDS=${ROUNDS:-2} NODES=${NODES:-2} CONNS=${CONNS:-15000} ROOM_SIZE=${ROOM_SIZE:-100}
DURATION=${DURATION:-25} PUBLISHERS=${PUBLISHERS:-50} RATE=${RATE:-1}
PG=${PG:-postgres://postgres@127.0.0.1:5432} NODES_PORT=${NODES_PORT:-9400}
API_PORT=${API_PORT:-9450} CLUSTER_PORT=${CLUSTER_PORT:-7300}
DB=evd_poll_bench
OUT=target/vote-ab
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

API_PID=
stop_run() {
  EVD_NODES_PORT=$NODES_PORT scripts/cluster.sh stop || true
  if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; fi
  API_PID=
}
cleanup() {
  stop_run
  scripts/redis-cluster.sh stop "$CLUSTER_PORT" >/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" || true
}
trap cleanup EXIT
scripts/redis-cluster.sh start "$CLUSTER_PORT"
export EVD_BROKER_URL
EVD_BROKER_URL=$(scripts/redis-cluster.sh seeds "$CLUSTER_PORT")

# Sums a metric's series of the votes writer over the nodes: `name_sum`, `name_count`.
scrape() {
  for p in $(seq "$NODES_PORT" $((NODES_PORT + NODES - 1))); do
    curl -fs "http://127.0.0.1:$p/metrics" || true
  done | awk -v m="$1" '$1 ~ "^"m"_(sum|count)\\{.*writer=\"votes\"" {
      split($1, k, "{"); t[k[1]] += $2 }
    END { s = t[m"_sum"]; c = t[m"_count"]; printf "%s count %d mean %.3f", m, c, (c ? s / c : 0) }'
}

run() {
  local label=$1 bin=$2 round=$3
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  export DATABASE_URL="$PG/$DB"
  EVD_LISTEN=127.0.0.1:$API_PORT EVD_DATABASE_URL="$DATABASE_URL" EVD_LOG=warn \
    "$bin" api >"$OUT/api-$label-$round.log" 2>&1 &
  API_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$API_PORT/healthz" >/dev/null && break; sleep 0.1; done
  EVD_BIN=$bin EVD_NODES_PORT=$NODES_PORT EVD_LOG=warn scripts/cluster.sh start "$NODES"
  local targets
  targets=$(EVD_NODES_PORT=$NODES_PORT scripts/cluster.sh urls | sed 's#/ws$##' | paste -sd, -)
  target/release/evd-loadtest chat -c "$CONNS" --room-size "$ROOM_SIZE" -p "$PUBLISHERS" \
    --rate "$RATE" --churn 0 --duration "$DURATION" --connect-timeout 120 \
    --targets "$targets" --api "http://127.0.0.1:$API_PORT" >"$OUT/report-$label-$round.txt" 2>&1 || true
  echo "== $label round $round ($bin)"
  grep -E '^(votes|vote latency|tally)' "$OUT/report-$label-$round.txt" || tail -5 "$OUT/report-$label-$round.txt"
  echo "   $(scrape evd_group_commit_batch_size)"
  echo "   $(scrape evd_group_commit_wait_seconds)"
  stop_run
}

for round in $(seq "$ROUNDS"); do
  run A "$A" "$round"
  run B "$B" "$round"
done
