# Shared by the bench scripts (sourced): a sandbox in another process on a free port, and a wait
# for the rest of the machine to go idle.

# A scratch directory, removed on exit with the sandbox if one is still up.
work=$(mktemp -d)
sandbox_pid=
cleanup() {
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# start_sandbox LOG BIN [sandbox options...]: starts `BIN sandbox --port 0 ...`, logging to LOG;
# sets sandbox_pid and origin (http://127.0.0.1:PORT).
start_sandbox() {
  local out=$1 bin=$2
  shift 2
  : >"$out"
  "$bin" sandbox --port 0 "$@" >"$out" 2>&1 &
  sandbox_pid=$!
  for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.05; done
  origin=$(sed -n 's/^listening on //p' "$out" | head -1)
  [ -n "$origin" ] || { echo "the sandbox did not start: $(cat "$out")" >&2; exit 1; }
}

stop_sandbox() {
  kill "$sandbox_pid"
  wait "$sandbox_pid" 2>/dev/null || true
  sandbox_pid=
}

# CPU ticks the whole machine has used (user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# wait_quiet SECONDS: waits at most that long until the machine is idle (under 0.15 CPU-s used
# in 2 s); measures anyway after it, saying so.
wait_quiet() {
  local a b limit=$1 deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    a=$(busy_ticks); sleep 2; b=$(busy_ticks)
    [ $((b - a)) -lt 15 ] && return
  done
  echo "note: the machine did not become idle within ${limit}s; measuring anyway" >&2
}
