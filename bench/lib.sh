#!/usr/bin/env bash
# Sourced by bench/ab.sh and bench/compare.sh: a scratch directory removed on exit, the PID of
# the server under test (stopped on exit too), and a free local port.

TMP=$(mktemp -d)
PID=
stop_server() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi
}
trap 'stop_server; rm -rf "$TMP"' EXIT

# A free local port: the first free one in BENCH_PORTS (a range such as 9700-9799) when it is set,
# for a machine where only some ports are ours; otherwise any the kernel picks.
free_port() {
  python3 - "${BENCH_PORTS:-}" <<'PY'
import socket, sys
spec = sys.argv[1]
ports = [0]
if spec:
    lo, _, hi = spec.partition("-")
    ports = range(int(lo), int(hi or lo) + 1)
for port in ports:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break
else:
    sys.exit(f"no free port in {spec}")
PY
}
