#!/usr/bin/env bash
# Sourced by scripts/cluster.sh and scripts/redis-cluster.sh.

# Stops the processes recorded in DIR's *.pid files and removes the files; before removing
# each, waits up to WAIT tenths of a second for its process to exit (0: no wait).
stop_pid_files() { # dir, wait
  [ -d "$1" ] || return 0
  local f pid
  for f in "$1"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
    for _ in $(seq "$2"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$f"
  done
}
