#!/usr/bin/env bash
# REST API load on loopback: one read (GET /api/v1/events, a page of 20) and one write
# (POST /api/v1/sessions/{id}/tickets, a new user each time) against a release `evd-api`, on
# SQLite and on PostgreSQL. Prints one Markdown table row per case for bench/RESULTS.md.
#
# Usage: bench/rest.sh [sqlite|postgres|all]       (default: all)
# Env:   BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 32), BENCH_THREADS (wrk,
#        default 2), EVD_BENCH_DATABASE_URL (an admin URL of the PostgreSQL server, default
#        postgres://postgres@127.0.0.1:5432/postgres; a database evd_bench_<pid> is created on
#        it and dropped after).
# Needs: wrk (Debian: apt-get install -y wrk), curl, python3; psql for PostgreSQL.
# Bounded: each case runs for BENCH_DURATION seconds; every server started here is stopped by
# its PID; all traffic stays on 127.0.0.1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
which=${1:-all}
duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-32}
threads=${BENCH_THREADS:-2}
admin_url=${EVD_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
target=${CARGO_TARGET_DIR:-$root/target}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --quiet --release -p evd-api --bin evd-api
bin=$target/release/evd-api
tmp=$(mktemp -d)
pid=""
pg_db=""

stop_server() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
cleanup() {
    stop_server
    if [ -n "$pg_db" ]; then
        psql "$admin_url" -qc "drop database if exists $pg_db with (force)" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

api() { # method path [body]
    curl -fsS -X "$1" "$base/api/v1$2" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' ${3:+-d "$3"}
}

start_server() { # database_url
    local port
    port=$(free_port)
    base=http://127.0.0.1:$port
    EVD_LISTEN=127.0.0.1:$port DATABASE_URL=$1 EVD_POOL_SIZE=16 \
        EVD_RATE_LIMIT_PER_SECOND=1000000 EVD_RATE_LIMIT_BURST=1000000 RUST_LOG=warn \
        "$bin" serve >"$tmp/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fsS "$base/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$tmp/server.log" >&2
    return 1
}

seed() {
    token=$("$bin" token --user bench-owner --org bench --role owner --ttl-secs 3600)
    api POST /orgs '{"id":"bench","name":"Bench"}' >/dev/null
    local event i
    for i in $(seq 1 200); do
        event=$(api POST /events "{\"name\":\"Event $i\",\"description\":\"bench event $i\",\"status\":\"published\",\"starts_at\":\"2026-12-01T09:00:00Z\",\"ends_at\":\"2026-12-01T18:00:00Z\"}")
    done
    event=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$event")
    session=$(api POST "/events/$event/sessions" '{"title":"Bench","capacity":1000000,"starts_at":"2026-12-01T09:00:00Z","ends_at":"2026-12-01T10:00:00Z"}')
    session=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$session")
}

# One wrk run; prints "| backend | case | p50 | p99 | req/s | non-2xx |".
measure() { # backend label script
    local out p50 p99 rps errors
    out=$(EVD_BENCH_TOKEN=$token EVD_BENCH_SESSION=$session \
        wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "bench/$3" "$base")
    echo "$out" >"$tmp/wrk-$1-${3%.lua}.txt"
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    rps=$(awk '$1 == "Requests/sec:" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "| $1 | $2 | $p50 | $p99 | $rps | ${errors:-0} |"
}

run_backend() { # backend database_url
    start_server "$2"
    seed
    measure "$1" "GET /events (page of 20)" rest-read.lua
    measure "$1" "POST /sessions/{id}/tickets" rest-write.lua
    local issued
    issued=$(api GET "/sessions/$session" | python3 -c 'import json,sys; print(json.load(sys.stdin)["issued"])')
    echo "<!-- $1: $issued tickets issued -->"
    stop_server
}

echo "| backend | request | p50 | p99 | throughput (req/s) | non-2xx |"
echo "|---|---|---|---|---|---|"
if [ "$which" = sqlite ] || [ "$which" = all ]; then
    run_backend SQLite "sqlite://$tmp/bench.db"
fi
if [ "$which" = postgres ] || [ "$which" = all ]; then
    pg_db=evd_bench_$$
    psql "$admin_url" -qc "create database $pg_db" >/dev/null
    run_backend PostgreSQL "${admin_url%/*}/$pg_db"
fi
