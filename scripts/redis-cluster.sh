#!/usr/bin/env bash
# A local Redis Cluster for tests, demos and the load harness: 3 primaries + 3 replicas on
# loopback, from the `redis-server` binary, no persistence.
#
#   scripts/redis-cluster.sh start [BASE]   # ports BASE..BASE+5 (default 7000, or $EVD_CLUSTER_PORT)
#   scripts/redis-cluster.sh stop [BASE]
#   scripts/redis-cluster.sh seeds [BASE]   # prints the seed list for EVD_BROKER_URL
#   scripts/redis-cluster.sh kill-primary [BASE]  # SIGKILL a primary, await the failover, restart it
#
# Data and PID files live in ./.cluster/<BASE>/ (gitignored). `start` waits until every node
# reports cluster_state:ok; `stop` kills the recorded PIDs only.
# Environment: EVD_CLUSTER_NODE_TIMEOUT_MS (cluster-node-timeout, default 2000: a dead primary's
# replica takes over within a few seconds).
set -euo pipefail

cmd=${1:-}
base=${2:-${EVD_CLUSTER_PORT:-7000}}
node_timeout=${EVD_CLUSTER_NODE_TIMEOUT_MS:-2000}
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cluster/$base"
. "$root/scripts/lib.sh"
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

seeds() {
  local s=""
  for p in "${ports[@]:0:3}"; do s+="${s:+,}127.0.0.1:$p"; done
  echo "redis-cluster://$s"
}

stop() {
  [ -d "$dir" ] || return 0
  stop_pid_files "$dir" 0
  # Give them a moment to release the ports.
  for _ in $(seq 50); do
    alive=0
    for p in "${ports[@]}"; do
      redis-cli -p "$p" ping >/dev/null 2>&1 && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  rm -rf "$dir"
}

# Starts the Redis node on port P in the background (it rejoins the cluster it knows from its
# nodes.conf, if it has one).
launch() { # p
  local p=$1
  mkdir -p "$dir/$p"
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout "$node_timeout" \
    --cluster-replica-validity-factor 0 \
    --dir "$dir/$p" --save '' --appendonly no --daemonize no \
    --logfile "$dir/$p/redis.log" --maxclients 20000 >/dev/null 2>&1 &
  echo $! >"$dir/$p.pid"
}

# SIGKILLs one primary (the first port that is one), waits until its replica has taken over and
# the cluster is whole, then starts the killed node again, which rejoins as a replica.
kill_primary() {
  local victim="" p pid t0
  for p in "${ports[@]}"; do
    if redis-cli -p "$p" info replication 2>/dev/null | grep -q 'role:master'; then victim=$p; break; fi
  done
  [ -n "$victim" ] || { echo "no primary found on ${ports[*]}" >&2; exit 1; }
  local replica
  replica=$(redis-cli -p "$victim" info replication | grep -o 'slave0:ip=[^,]*,port=[0-9]*' | grep -o '[0-9]*$' || true)
  [ -n "$replica" ] || { echo "primary $victim has no replica" >&2; exit 1; }
  pid=$(cat "$dir/$victim.pid")
  t0=$(date +%s.%N)
  kill -9 "$pid"
  echo "killed primary $victim (pid $pid); its replica is $replica"
  local ok=0
  for _ in $(seq 600); do
    sleep 0.1
    ok=1
    for p in "${ports[@]}"; do
      [ "$p" = "$victim" ] && continue
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    # The replica was promoted and every live node sees the cluster whole.
    if [ "$ok" = 1 ] && redis-cli -p "$replica" info replication 2>/dev/null | grep -q 'role:master'; then break; fi
    ok=0
  done
  [ "$ok" = 1 ] || { echo "the cluster did not recover from the kill of $victim within 60 s" >&2; exit 1; }
  echo "a replica took over after $(python3 -c "import time;print(round(time.time()-$t0,2))") s"
  launch "$victim"
  for _ in $(seq 600); do
    redis-cli -p "$victim" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
    sleep 0.1
  done
  echo "node $victim is back as $(redis-cli -p "$victim" info replication | grep -o 'role:[a-z]*')"
}

start() {
  command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }
  stop
  mkdir -p "$dir"
  for p in "${ports[@]}"; do
    launch "$p"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 100); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.05
    done
  done
  hosts=()
  for p in "${ports[@]}"; do hosts+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { cat "$dir/create.log" >&2; stop; exit 1; }
  for p in "${ports[@]}"; do
    ok=0
    for _ in $(seq 300); do
      if redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then ok=1; break; fi
      sleep 0.1
    done
    [ "$ok" = 1 ] || { echo "node $p never reached cluster_state:ok" >&2; stop; exit 1; }
  done
  # A failover needs replicas that have synced with their primary.
  for p in "${ports[@]}"; do
    for _ in $(seq 300); do
      info=$(redis-cli -p "$p" info replication 2>/dev/null)
      if grep -q 'role:master' <<<"$info" && grep -q 'connected_slaves:1' <<<"$info"; then break; fi
      if grep -q 'master_link_status:up' <<<"$info"; then break; fi
      sleep 0.1
    done
  done
  echo "redis cluster up on 127.0.0.1:${ports[0]}..${ports[5]}; pids: $(cat "$dir"/*.pid | tr '\n' ' ')"
  echo "EVD_BROKER_URL=$(seeds)"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  seeds) seeds ;;
  kill-primary) kill_primary ;;
  *) echo "usage: $0 start|stop|seeds|kill-primary [port base]" >&2; exit 2 ;;
esac
