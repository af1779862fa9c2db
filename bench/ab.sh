#!/usr/bin/env bash
# A/B: two builds of evd under the same evd-loadtest scenario, interleaved run by run, so a
# change's effect can be told from run-to-run noise. Prints, per figure, the median of each side,
# its spread (lowest–highest) and new ÷ base.
#
#   bench/ab.sh REV_A REV_B [SCENARIO]
#
# REV_A and REV_B are git revisions (each is checked out in a worktree under target/ab/ and
# built there, sharing one target directory) or paths to evd binaries. SCENARIO:
#   broadcast  one room of CONNS, one publisher at each of RATES             (default)
#   idle       CONNS idle connections in rooms of each of ROOM_SIZES: RSS per connection
#   idle-cpu   CONNS idle connections in rooms of 10 held IDLE_CPU_S seconds at the default
#              heartbeat (each client pings every 20 s): the server's CPU, % of a core
#   rooms      CONNS in rooms of 10, 100 publishers at 10/s
#   connect    CONNS connections opened at RAMP per second into rooms of 10: the server's CPU
#              per connection over the whole run (ramp and a 3 s hold), and connect p50/p99
# Environment: CONNS (10000), RATES ("1 10"), ROOM_SIZES ("10 100"), DURATION (15),
# RUNS (3 per side and step), RAMP (4000), BENCH_PORTS (a range such as 9700-9799 to take the
# server's port from; any free port when unset). The raw reports are in target/ab/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,16p "$0" >&2; exit 2; }
A=$1 B=$2 SCENARIO=${3:-broadcast}
CONNS=${CONNS:-10000} RATES=${RATES:-1 10} ROOM_SIZES=${ROOM_SIZES:-10 100}
DURATION=${DURATION:-15} RUNS=${RUNS:-3} RAMP=${RAMP:-4000} IDLE_CPU_S=${IDLE_CPU_S:-60}
OUT=target/ab
mkdir -p "$OUT"
rm -f "$OUT"/*.json
ulimit -n "$(ulimit -Hn)"
case "$SCENARIO" in broadcast|idle|idle-cpu|rooms|connect) ;; *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;; esac

. bench/lib.sh

cargo build --release --bin evd-loadtest

# A binary for a revision: built in a worktree of its own, with one target dir for both sides.
binary() { # rev-or-path, side
  if [ -x "$1" ] && [ -f "$1" ]; then echo "$1"; return; fi
  local sha dir
  sha=$(git rev-parse --verify "$1^{commit}")
  dir=$OUT/src-${sha:0:12}
  [ -d "$dir" ] || git worktree add --detach "$dir" "$sha" >&2
  echo "==> building $1 (${sha:0:12})" >&2
  (cd "$dir" && CARGO_TARGET_DIR="$ROOT_TARGET" cargo build --release --bin evd >&2)
  cp "$ROOT_TARGET/release/evd" "$OUT/evd-$2"
  echo "$OUT/evd-$2"
}
ROOT_TARGET=$(pwd)/$OUT/target
BIN_A=$(binary "$A" a)
BIN_B=$(binary "$B" b)

run() { # side, binary, step, run-number
  PORT=$(free_port)
  EVD_LIMITS_CONN_RATE_PER_IP=0 EVD_LIMITS_OPS_PER_SEC=100000 EVD_LIMITS_OPS_BURST=100000 \
    EVD_LOG=warn EVD_DATABASE_URL="sqlite://$TMP/evd-$PORT.db" \
    "$2" serve --listen "127.0.0.1:$PORT" >"$OUT/server-$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
  done
  local args
  case "$SCENARIO" in
    broadcast) args=(broadcast -c "$CONNS" --rate "$3" --duration "$DURATION") ;;
    idle) args=(idle -c "$CONNS" --room-size "$3" --duration 5 --drain 0) ;;
    idle-cpu) args=(idle -c "$CONNS" --room-size 10 --duration "$IDLE_CPU_S" --drain 0) ;;
    rooms) args=(rooms -c "$CONNS" --room-size 10 --publishers 100 --rate 10 --duration "$DURATION") ;;
    connect) args=(idle -c "$CONNS" --room-size 10 --duration 3 --drain 0) ;;
  esac
  echo "==> $1 ${args[*]}, run $4 of $RUNS" >&2
  local ticks0
  ticks0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  target/release/evd-loadtest "${args[@]}" --target evd --targets "ws://127.0.0.1:$PORT" \
    --server-pid "$PID" --ramp "$RAMP" --json >"$OUT/$1-$3-$4.json" || echo '{}' >"$OUT/$1-$3-$4.json"
  # The server's CPU over the whole harness run, ramp included (the report's covers the hold).
  python3 - "$OUT/$1-$3-$4.json" "$ticks0" "$(awk '{print $14 + $15}' "/proc/$PID/stat")" \
    "$(getconf CLK_TCK)" "$CONNS" <<'PY'
import json, sys
path, t0, t1, hz, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.load(open(path))
r["server_cpu_us_per_connection"] = (t1 - t0) / hz * 1e6 / conns
json.dump(r, open(path, "w"))
PY
  stop_server
}

case "$SCENARIO" in
  broadcast) STEPS=$RATES ;;
  idle) STEPS=$ROOM_SIZES ;;
  idle-cpu) STEPS=10 ;;
  rooms) STEPS=10 ;;
  connect) STEPS=10 ;;
esac
# Interleaved: a, b, a, b … for each step, so drift in the machine's load touches both alike.
for step in $STEPS; do
  for n in $(seq "$RUNS"); do
    run a "$BIN_A" "$step" "$n"
    run b "$BIN_B" "$step" "$n"
  done
done

echo "A = $A, B = $B, scenario $SCENARIO, $RUNS runs per side, CONNS=$CONNS, $(date -u +%F), $(nproc) cores"
python3 - "$OUT" "$SCENARIO" "$STEPS" "$RUNS" <<'PY'
import json, statistics, sys
out, scenario, steps, runs = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4])
def get(r, keys):
    for k in keys:
        r = r.get(k) if isinstance(r, dict) else None
    return r
figures = {
    "broadcast": [("p50", ("latency_ms", "p50"), "ms"), ("p99", ("latency_ms", "p99"), "ms"),
                  ("delivery ratio", ("delivery_ratio",), ""),
                  ("server CPU per delivery", ("server", "cpu_per_delivery_us"), "µs")],
    "rooms": [("p50", ("latency_ms", "p50"), "ms"), ("p99", ("latency_ms", "p99"), "ms"),
              ("delivery ratio", ("delivery_ratio",), ""),
              ("server CPU per delivery", ("server", "cpu_per_delivery_us"), "µs")],
    "idle": [("RSS per connection", ("server", "rss_per_connection_kib"), "KiB"),
             ("connections held", ("connections",), "")],
    "idle-cpu": [("server CPU", ("server", "cpu_percent"), "% of a core"),
                 ("connections held", ("connections",), "")],
    "connect": [("server CPU per connection", ("server_cpu_us_per_connection",), "µs"),
                ("connect p50", ("connect_p50_ms",), "ms"), ("connect p99", ("connect_p99_ms",), "ms"),
                ("connections held", ("connections",), "")],
}[scenario]
label = {"broadcast": "rate /s", "idle": "room size", "idle-cpu": "room size", "rooms": "rate /s",
         "connect": "room size"}[scenario]
print(f"| {label} | figure | A median (spread) | B median (spread) | B ÷ A |")
print("|---|---|---|---|---|")
def fmt(v):
    return f"{v:,.3g}" if v < 1000 else f"{v:,.0f}"
for step in steps:
    for name, keys, unit in figures:
        sides = []
        for side in ("a", "b"):
            vals = [get(json.load(open(f"{out}/{side}-{step}-{n}.json")), keys) for n in range(1, runs + 1)]
            vals = [v for v in vals if isinstance(v, (int, float))]
            sides.append(vals)
        cells, meds = [], []
        for vals in sides:
            if not vals:
                cells.append("–"); meds.append(None); continue
            m = statistics.median(vals)
            meds.append(m)
            cells.append(f"{fmt(m)} {unit} ({fmt(min(vals))}–{fmt(max(vals))})".replace("  ", " "))
        ratio = "–" if None in meds or not meds[0] else f"{meds[1] / meds[0]:.2f}"
        print(f"| {step} | {name} | {cells[0]} | {cells[1]} | {ratio} |")
PY
