#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis (from PyPI): no answer
# may be a 5xx, and every answer must match the document (status, content type, headers,
# body schema).
#
# Starts `evd-api` on a free loopback port over a temporary SQLite database, mints an owner
# token with `evd-api token`, creates the token's org, runs schemathesis within a time budget,
# then stops the server by its PID.
#
# Env: SCHEMATHESIS_MAX_TIME (seconds, default 120), SCHEMATHESIS_MAX_EXAMPLES (per operation,
# default 30), EVD_SCHEMATHESIS_VENV (default ~/.cache/evd/schemathesis-venv).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
venv=${EVD_SCHEMATHESIS_VENV:-$HOME/.cache/evd/schemathesis-venv}
version=4.32.5

if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $version" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

cargo build --quiet -p evd-api --bin evd-api
bin=$target/debug/evd-api

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export EVD_LISTEN=127.0.0.1:$port
export DATABASE_URL=sqlite://$tmp/evd.db
# The fuzzer is one user sending thousands of requests; the limit itself is tested elsewhere.
export EVD_RATE_LIMIT_PER_SECOND=1000000 EVD_RATE_LIMIT_BURST=1000000
unset EVD_DATABASE_URL

RUST_LOG=warn "$bin" serve >"$tmp/server.log" 2>&1 &
pid=$!
stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap stop EXIT

# Ready when /healthz answers; give up after 10 s.
for _ in $(seq 100); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log"; exit 1; }
    sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null

token=$("$bin" token --user fuzzer --org fuzz --role owner --ttl-secs 3600)
curl -fsS -X POST "$base/api/v1/orgs" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"id":"fuzz","name":"Fuzz"}' >/dev/null

# The suppressed health checks judge the data generator (too many unusable path values, a slow
# machine), not the API.
status=0
# From the temporary folder: schemathesis keeps a cache in its working directory.
(cd "$tmp" && "$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-time "${SCHEMATHESIS_MAX_TIME:-120}" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
    --request-timeout 10 \
    --workers 2 \
    --generation-database none \
    --suppress-health-check filter_too_much,too_slow \
    --no-color) || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- server log (last 50 lines)"
    tail -n 50 "$tmp/server.log"
fi
exit "$status"
