#!/usr/bin/env bash
# Several `evd engine` nodes on one Redis (Cluster), for tests, demos and the load harness.
#
#   scripts/cluster.sh start N    # N nodes on consecutive ports from $EVD_NODES_PORT (default 9000)
#   scripts/cluster.sh stop
#   scripts/cluster.sh urls       # one ws:// URL per running node
#   scripts/cluster.sh restart PORT  # SIGTERM the node on PORT (it drains), start it again
#
# Environment:
#   EVD_BROKER_URL  the Redis to share (default: the cluster of scripts/redis-cluster.sh on its
#                   default ports, started first if it is not up);
#   DATABASE_URL    a shared store, e.g. postgres://postgres@127.0.0.1/evd (default: one SQLite
#                   file per node, enough for chat and presence);
#   EVD_BIN         the evd binary (default: target/release/evd, built if missing);
#   EVD_LIMITS_CONN_RATE_PER_IP  defaults to 0 (off) here: load tests open many connections
#                   from few loopback addresses;
#   EVD_WORKERS     defaults to the machine's cores ÷ N (at least 1) here: the nodes share them;
#   any other EVD_* setting is passed to every node.
# Logs, PIDs and SQLite files live in ./.cluster/nodes/ (gitignored). `stop` kills recorded PIDs.
set -euo pipefail

cmd=${1:-}
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cluster/nodes"
base=${EVD_NODES_PORT:-9000}
. "$root/scripts/lib.sh"

stop() {
  stop_pid_files "$dir" 100
}

urls() {
  [ -d "$dir" ] || return 0
  for f in "$dir"/*.pid; do
    [ -e "$f" ] || continue
    echo "ws://127.0.0.1:$(basename "$f" .pid)/ws"
  done
}

# Settles the binary, the broker and the limits every node shares.
prepare() {
  bin=${EVD_BIN:-$root/target/release/evd}
  if [ ! -x "$bin" ]; then
    (cd "$root" && cargo build --release -p evd-engine --bin evd)
  fi
  if [ -z "${EVD_BROKER_URL:-}" ]; then
    if ! redis-cli -p "${EVD_CLUSTER_PORT:-7000}" cluster info 2>/dev/null | grep -q cluster_state:ok; then
      "$root/scripts/redis-cluster.sh" start
    fi
    EVD_BROKER_URL=$("$root/scripts/redis-cluster.sh" seeds)
  fi
  export EVD_BROKER_URL
  export EVD_LIMITS_CONN_RATE_PER_IP=${EVD_LIMITS_CONN_RATE_PER_IP:-0}
  # One process may hold this many sockets; ask for what the machine allows.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# Nodes on one machine split its cores: each of N nodes gets cores ÷ N runtime workers (at least
# one) unless EVD_WORKERS is set. `perf` of six nodes of two workers each on two cores put a
# fifth of a node's samples in the kernel's task switch.
split_cores() { # nodes
  local cores
  cores=$(nproc)
  export EVD_WORKERS=${EVD_WORKERS:-$((cores / $1 > 0 ? cores / $1 : 1))}
}

# Starts the node on PORT in the background; its log is appended to.
launch() { # port
  local port=$1
  local db=${DATABASE_URL:-sqlite://$dir/$port.db}
  EVD_LISTEN=127.0.0.1:$port EVD_NODE_ID=node-$port EVD_DATABASE_URL=$db \
    "$bin" engine >>"$dir/$port.log" 2>&1 &
  echo $! >"$dir/$port.pid"
}

# Waits until the node on PORT is ready, or stops every node and fails.
await_ready() { # port
  local port=$1 ok=0
  for _ in $(seq 300); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$(cat "$dir/$port.pid")" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    echo "node on $port did not come up; its log:" >&2
    tail -20 "$dir/$port.log" >&2
    stop
    exit 1
  fi
  echo "ws://127.0.0.1:$port/ws pid $(cat "$dir/$port.pid")"
}

start() {
  local n=${1:-3}
  stop
  mkdir -p "$dir"
  prepare
  split_cores "$n"
  for i in $(seq 0 $((n - 1))); do
    rm -f "$dir/$((base + i)).log"
    launch $((base + i))
  done
  for i in $(seq 0 $((n - 1))); do
    await_ready $((base + i))
  done
  echo "broker: $EVD_BROKER_URL"
}

# Stops the node on PORT as an operator would (SIGTERM: it drains, telling its clients to
# reconnect), waits for it to exit, and starts it again with the same settings.
restart() { # port
  local port=$1 pid
  [ -e "$dir/$port.pid" ] || { echo "no node on $port" >&2; exit 1; }
  prepare
  split_cores "$(find "$dir" -name '*.pid' | wc -l)"
  pid=$(cat "$dir/$port.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "node on $port did not exit within 60 s; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  launch "$port"
  await_ready "$port"
}

case "$cmd" in
  start) start "${2:-3}" ;;
  stop) stop ;;
  urls) urls ;;
  restart) restart "${2:?port}" ;;
  *) echo "usage: $0 start N|stop|urls|restart PORT" >&2; exit 2 ;;
esac
