#!/usr/bin/env bash
# Latency from a REST write to the live event on screens, on one `evd serve` node: REST poll
# create → POLL_CREATED on every one of 1,000 connected clients, and ticket cancel →
# WAITLIST_OFFER to the next person in line.
#
#   bench/live-latency.sh [sqlite|postgres]     (default sqlite)
#
# postgres uses EVD_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) and
# creates a throwaway database there. Env: CLIENTS (1000), POLLS (50), OFFERS (100).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
cargo build --release --quiet --bin evd --bin live-latency
secret=live-latency-secret-0123456789abcdef
tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
case "$backend" in
  sqlite) url="sqlite://$tmp/evd.db" ;;
  postgres)
    admin=${EVD_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
    db="evd_bench_$$"
    psql "$admin" -qc "create database $db"
    url="${admin%/*}/$db" ;;
  *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;;
esac
cleanup() {
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  [ "$backend" = postgres ] && psql "$admin" -qc "drop database if exists $db with (force)" || true
  rm -rf "$tmp"
}
EVD_JWT_SECRET=$secret EVD_DATABASE_URL=$url EVD_LIMITS_CONN_RATE_PER_IP=0 EVD_LOG=warn \
  EVD_RATE_LIMIT_PER_SECOND=100000 EVD_RATE_LIMIT_BURST=100000 \
  target/release/evd serve --listen "127.0.0.1:$port" 2>"$tmp/evd.log" &
pid=$!
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
echo "| measure ($backend, ${CLIENTS:-1000} clients) | samples | p50 ms | p90 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|"
target/release/live-latency --url "http://127.0.0.1:$port" --secret "$secret" \
  --clients "${CLIENTS:-1000}" --polls "${POLLS:-50}" --offers "${OFFERS:-100}"
