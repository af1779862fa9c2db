#!/usr/bin/env bash
# Sourced by bench/ab.sh and bench/compare.sh: a scratch directory removed on exit, the PID of
# the server under test (stopped on exit too), and a free local port.

TMP=$(mktemp -d)
PID=
stop_server() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi
}
trap 'stop_server; rm -rf "$TMP"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
