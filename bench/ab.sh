#!/usr/bin/env bash
# A/B: the same evd-loadtest broadcast against two evd binaries, interleaved round by round, so
# a change's effect can be told from run-to-run noise (a restructuring must show none).
#
#   bench/ab.sh BASE_BIN NEW_BIN        # e.g. a build of the previous commit, and target/release/evd
#
# Environment: CONNS (10000), RATES ("1 10 50"), DURATION (15), ROUNDS (2), RAMP (4000).
# Needs target/release/evd-loadtest. Prints a table; the raw reports are in target/ab/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n 2,8p "$0" >&2; exit 2; }
BASE=$1 NEW=$2
CONNS=${CONNS:-10000} RATES=${RATES:-1 10 50} DURATION=${DURATION:-15} ROUNDS=${ROUNDS:-2}
RAMP=${RAMP:-4000}
OUT=target/ab
mkdir -p "$OUT"
rm -f "$OUT"/*.json
ulimit -n "$(ulimit -Hn)"

. bench/lib.sh

# The same settings as compare.sh: no per-IP connection rate, an op rate for a fast publisher.
run() { # label, binary, rate, round
  PORT=$(free_port)
  EVD_LIMITS_CONN_RATE_PER_IP=0 EVD_LIMITS_OPS_PER_SEC=100000 EVD_LIMITS_OPS_BURST=100000 \
    EVD_LOG=warn EVD_DATABASE_URL="sqlite://$TMP/evd-$PORT.db" \
    "$2" serve --listen "127.0.0.1:$PORT" >"$OUT/server-$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
  done
  echo "==> $1 broadcast $3/s, round $4" >&2
  target/release/evd-loadtest broadcast -c "$CONNS" --rate "$3" --duration "$DURATION" \
    --target evd --targets "ws://127.0.0.1:$PORT" --server-pid "$PID" --ramp "$RAMP" --json \
    >"$OUT/$1-$3-$4.json" || echo '{}' >"$OUT/$1-$3-$4.json"
  stop_server
}

for round in $(seq "$ROUNDS"); do
  for rate in $RATES; do
    run base "$BASE" "$rate" "$round"
    run new "$NEW" "$rate" "$round"
  done
done

python3 - "$OUT" "$RATES" "$ROUNDS" <<'PY'
import json, sys
out, rates, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def get(r, *k):
    for x in k:
        r = r.get(x) if isinstance(r, dict) else None
    return r
def cell(v, unit):
    return "–" if v is None else f"{v:.3g}{unit}"
print("| rate | figure | base (each round) | new (each round) |")
print("|---|---|---|---|")
for rate in rates:
    runs = {s: [json.load(open(f"{out}/{s}-{rate}-{i}.json")) for i in range(1, rounds + 1)] for s in ("base", "new")}
    for name, keys, unit in (("p50", ("latency_ms", "p50"), " ms"), ("p99", ("latency_ms", "p99"), " ms"),
                             ("delivery ratio", ("delivery_ratio",), ""),
                             ("server CPU per delivery", ("server", "cpu_per_delivery_us"), " µs")):
        row = [" / ".join(cell(get(r, *keys), unit) for r in runs[s]) for s in ("base", "new")]
        print(f"| {rate}/s | {name} | {row[0]} | {row[1]} |")
PY
