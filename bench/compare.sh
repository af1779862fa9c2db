#!/usr/bin/env bash
# Side-by-side benchmark: the same evd-loadtest scenarios against `evd serve` (its native
# protocol, and its Socket.IO endpoint as `evd-sio`), the uWebSockets.js peer (the anchor for fanout), the Socket.IO 4 peer on Node and the socketioxide
# peer, in turn, on this machine. Writes the table into
# bench/RESULTS.md (between the compare markers) and keeps every raw report in target/compare/.
#
#   bench/compare.sh
#
# Environment (defaults are the full run; QUICK=1 makes a short one):
#   CONNS        members for idle, broadcast, rooms and the storm           (10000)
#   DURATION     seconds of each measured broadcast and rooms run          (15)
#   SAT_RATES    broadcast rates tried for saturation, ascending  ("5 10 20 50 100 200 500")
#   BIG          connections for evd's own idle and storm bars             (19000)
#   ROOMS_RUNS   rooms runs per server, interleaved; the table takes the median p99 run (5)
#   IDLE_CPU_S   seconds evd holds CONNS idle connections at its default heartbeat, for its
#                idle CPU (60)
#   SERVERS      which servers, in order            ("evd evd-sio uws socketio socketioxide")
#   CODEC        evd codec (json or msgpack); the peers speak Socket.IO JSON (json)
#   SCENARIOS    which parts run        ("idle broadcast saturation rooms storm big"); the table
#                keeps the rows of the parts that ran
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "${QUICK:-0}" = 1 ]; then
  : "${CONNS:=2000}" "${DURATION:=5}" "${SAT_RATES:=5 10}" "${BIG:=3000}" "${ROOMS_RUNS:=1}" "${IDLE_CPU_S:=10}"
fi
CONNS=${CONNS:-10000}
DURATION=${DURATION:-15}
SAT_RATES=${SAT_RATES:-5 10 20 50 100 200 500}
BIG=${BIG:-19000}
ROOMS_RUNS=${ROOMS_RUNS:-5}
IDLE_CPU_S=${IDLE_CPU_S:-60}
SERVERS=${SERVERS:-evd evd-sio uws socketio socketioxide}
CODEC=${CODEC:-json}
SCENARIOS=${SCENARIOS:-idle broadcast saturation rooms storm big}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
RAMP=${RAMP:-4000}
OUT=target/compare
mkdir -p "$OUT"
rm -f "$OUT"/*.json

# One process may open 20,000 files here; the harness spreads connections over workers, but
# each server needs the limit raised to its maximum to hold 19k.
ulimit -n "$(ulimit -Hn)"

echo "==> building evd, the harness and the peers" >&2
cargo build --release --bin evd --bin evd-loadtest --bin loopback-floor
# Only the peers this run measures are set up.
if [[ " $SERVERS " == *" socketio "* ]]; then
  (cd bench/peers/socketio && npm ci --no-audit --no-fund --silent)
fi
if [[ " $SERVERS " == *" socketioxide "* ]]; then
  (cd bench/peers/socketioxide && cargo build --release)
fi
if [[ " $SERVERS " == *" uws "* ]]; then
  (cd bench/peers/uws && npm ci --no-audit --no-fund --silent)
  # Its prebuilt addon needs glibc 2.38; below that, run node through a private newer glibc.
  UWS_NODE=(node)
  if ! (cd bench/peers/uws && node -e "require('@btc-vision/uwebsockets.js')" 2>/dev/null); then
    [ -x bench/peers/uws/glibc/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 ] || bench/peers/uws/setup-glibc.sh
    G=$ROOT/bench/peers/uws/glibc/root/usr/lib/x86_64-linux-gnu
    UWS_NODE=("$G/ld-linux-x86-64.so.2" --library-path "$G:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu"
      "$(readlink -f "$(command -v node)")")
  fi
fi

. bench/lib.sh

# The evd settings for load runs: no per-IP connection rate limit (the harness connects from
# a few 127.0.0.x addresses) and an op rate that lets one publisher send hundreds per second.
EVD_ENV=(EVD_LIMITS_CONN_RATE_PER_IP=0 EVD_LIMITS_OPS_PER_SEC=100000 EVD_LIMITS_OPS_BURST=100000 EVD_LOG=warn)

start_server() { # name
  stop_server
  PORT=$(free_port)
  case "$1" in
    evd|evd-sio)
      env "${EVD_ENV[@]}" EVD_DATABASE_URL="sqlite://$TMP/evd-$PORT.db" \
        target/release/evd serve --listen "127.0.0.1:$PORT" >"$OUT/server-$1.log" 2>&1 &
      PID=$! ;;
    uws)
      STATS_INTERVAL_MS=0 "${UWS_NODE[@]}" bench/peers/uws/server.js "$PORT" >"$OUT/server-uws.log" 2>&1 &
      PID=$! ;;
    socketio)
      PORT=$PORT node bench/peers/socketio/server.js >"$OUT/server-socketio.log" 2>&1 &
      PID=$! ;;
    socketioxide)
      PORT=$PORT bench/peers/socketioxide/target/release/socketioxide-peer >"$OUT/server-socketioxide.log" 2>&1 &
      PID=$! ;;
  esac
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || { echo "$1 did not start" >&2; exit 1; }
    sleep 0.05
  done
  echo "$1 did not listen on $PORT" >&2; exit 1
}

run() { # server, label, scenario args...
  local server=$1 label=$2; shift 2
  local target
  # evd-sio is evd driven through its Socket.IO endpoint, as the Node peers are.
  case "$server" in evd) target=evd ;; uws) target=uws ;; *) target=socketio ;; esac
  start_server "$server"
  echo "==> $server $label: evd-loadtest $*" >&2
  target/release/evd-loadtest "$@" --target "$target" --codec "$CODEC" --targets "ws://127.0.0.1:$PORT" \
    --server-pid "$PID" --ramp "$RAMP" --json >"$OUT/$server-$label.json" || echo '{}' >"$OUT/$server-$label.json"
  stop_server
}

# Scenario by scenario, each server in turn, so a change in the machine's background load
# during the run touches them all alike.
# Idle memory with members in rooms of 100 and in rooms of 10 (more rooms, so more room state).
if want idle; then
  for s in $SERVERS; do run "$s" idle idle -c "$CONNS" --room-size 100 --duration 5 --drain 0; done
  for s in $SERVERS; do run "$s" idle-10 idle -c "$CONNS" --room-size 10 --duration 5 --drain 0; done
  # Idle CPU: the connections only send their heartbeat (every 20 s, within the default 25 s).
  if [[ " $SERVERS " == *" evd "* ]]; then
    run evd idle-cpu idle -c "$CONNS" --room-size 10 --duration "$IDLE_CPU_S" --drain 0
  fi
fi
want broadcast && for r in 1 10 50; do
  for s in $SERVERS; do run "$s" "broadcast-$r" broadcast -c "$CONNS" --rate "$r" --duration "$DURATION"; done
  # The machine's floor for the same broadcast: plain threads doing one write() per connection
  # per message, a bare epoll reader on the other end, no server code at all.
  echo "==> floor broadcast-$r: loopback-floor" >&2
  target/release/loopback-floor --conns "$CONNS" --rate "$r" --rounds "$((r * DURATION))" --json \
    >"$OUT/floor-broadcast-$r.json" || echo '{}' >"$OUT/floor-broadcast-$r.json"
done
# Saturation: step the rate up; a server drops out at its first step that misses a delivery
# ratio of 1.0 or p99 ≤ 1 s. Its figure is the highest step it passed.
ALIVE=$SERVERS
want saturation || ALIVE=
for r in $SAT_RATES; do
  [ -n "$ALIVE" ] || break
  NEXT=
  for s in $ALIVE; do
    run "$s" "sat-$r" broadcast -c "$CONNS" --rate "$r" --duration 10
    if python3 - "$OUT/$s-sat-$r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r.get("delivery_ratio") == 1.0 and r.get("latency_ms", {}).get("p99", 1e9) <= 1000
sys.exit(0 if ok else 1)
PY
    then NEXT="$NEXT $s"; fi
  done
  ALIVE=$NEXT
  [ -n "$ALIVE" ] || break
done
# Rooms p99 is a couple of milliseconds and moves by about one from run to run, so it runs
# several times, the servers taking turns; the table takes each server's median-p99 run.
want rooms && for i in $(seq "$ROOMS_RUNS"); do
  for s in $SERVERS; do
    run "$s" "rooms-$i" rooms -c "$CONNS" --room-size 10 --publishers 100 --rate 10 --duration "$DURATION"
  done
done
want storm && for s in $SERVERS; do
  run "$s" storm reconnect-storm -c "$CONNS" --room-size 10 --publishers 100 --rate 1 --duration 20
done

# The engine's own bars at the size one process may hold here.
if want big && [[ " $SERVERS " == *" evd "* ]]; then
  run evd idle-big idle -c "$BIG" --room-size 100 --duration 5 --drain 0
  run evd idle-big-10 idle -c "$BIG" --room-size 10 --duration 5 --drain 0
  run evd storm-big reconnect-storm -c "$BIG" --room-size 10 --publishers 100 --rate 1 --duration 30
fi

CMD="bench/compare.sh"
[ "${QUICK:-0}" = 1 ] && CMD="QUICK=1 $CMD"
[ "$SERVERS" = "evd evd-sio uws socketio socketioxide" ] || CMD="SERVERS=\"$SERVERS\" $CMD"
[ "$SCENARIOS" = "idle broadcast saturation rooms storm big" ] || CMD="SCENARIOS=\"$SCENARIOS\" $CMD"
python3 bench/compare_table.py "$OUT" "$CMD" "SERVERS='$SERVERS' CONNS=$CONNS DURATION=$DURATION SAT_RATES='$SAT_RATES' BIG=$BIG ROOMS_RUNS=$ROOMS_RUNS IDLE_CPU_S=$IDLE_CPU_S CODEC=$CODEC RAMP=$RAMP"
echo "==> wrote bench/RESULTS.md" >&2
