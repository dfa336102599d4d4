#!/usr/bin/env bash
# A durable sandbox (issue 21, `sandbox --state FILE`): what its log costs while it runs, and how
# long a start on a full file takes.
#
#   benches/durable.sh [clients]   # default 2,000
#
# The sample migration (plans/sample.yaml, strict tenant) of `clients` generated clients
# (`fixtures generate --seed 7`) is run against a `mambu-migrate sandbox` process twice, in memory
# and with --state, at no rate limit (`--rate 100000 --concurrency 32`): the run's wall time, its
# requests a second, and the sandbox's CPU seconds a request. Then the sandbox is killed (SIGKILL)
# and started again on its file: the replay's time as it reports it, and the file's size.
#
# BIN points at another build.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
clients=${1:-2000}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/mambu-migrate
fi
bin=$(realpath "$BIN")
data=$work/data
"$bin" fixtures generate --clients "$clients" --out "$data" --seed 7 >/dev/null
tenant=(--tenant fixtures/tenants/strict.yaml)

migrate() { # run_dir
  local sources=()
  for s in clients deposits deposit_transactions deposit_balances loans schedules transactions tranches securities loan_closures; do
    [ -f "$data/$s.csv" ] && sources+=(--source "$s=$data/$s.csv")
  done
  MAMBU_API_KEY=strict-migration-api-key MAMBU_APPROVER_API_KEY=strict-approver-api-key \
    "$bin" run plans/sample.yaml --target "$origin/api" --run-dir "$1" \
    --rate 100000 --concurrency 32 --no-progress "${sources[@]}"
}

proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "data: $clients clients ($(($(wc -l <"$data/transactions.csv") - 1)) loan transactions)"
for mode in memory state; do
  wait_quiet 60
  args=("${tenant[@]}")
  [ "$mode" = state ] && args+=(--state "$work/tenant.db")
  start_sandbox "$work/sandbox-$mode.out" "$bin" "${args[@]}"
  started=$(date +%s.%N)
  # The strict tenant refuses a few generated units (exit 1): the figures are the calls made.
  migrate "$work/run-$mode" >"$work/run-$mode.log" 2>&1 || [ $? -eq 1 ] || { cat "$work/run-$mode.log" >&2; exit 1; }
  ended=$(date +%s.%N)
  ticks=$(proc_ticks "$sandbox_pid")
  requests=$(curl -s "$origin/_sandbox/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["total"])')
  python3 - "$mode" "$started" "$ended" "$requests" "$ticks" <<'EOF'
import sys
mode, start, end, requests, ticks = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
wall = end - start
print(f"{mode:>6}: {requests} requests in {wall:.1f} s: {requests / wall:.0f} requests/s; "
      f"sandbox CPU {ticks / 100:.1f} s, {ticks * 1e4 / requests:.0f} us a request")
EOF
  if [ "$mode" = state ]; then
    kill -KILL "$sandbox_pid"; wait "$sandbox_pid" 2>/dev/null || true; sandbox_pid=
  else
    stop_sandbox
  fi
done

ls -l "$work"/tenant.db* | awk '{s += $5} END {printf "state file: %.1f MB (with its WAL)\n", s / 1e6}'
wait_quiet 60
out=$work/replay.out
started=$(date +%s.%N)
"$bin" sandbox --port 0 "${tenant[@]}" --state "$work/tenant.db" >"$out" 2>&1 &
sandbox_pid=$!
for _ in $(seq 6000); do grep -q '^listening on ' "$out" && break; sleep 0.05; done
ended=$(date +%s.%N)
grep '^sandbox: state' "$out" | sed "s|$work/||"
python3 -c "import sys; print(f'restart to listening: {float(sys.argv[2]) - float(sys.argv[1]):.2f} s')" "$started" "$ended"
echo "resident after the replay: $(awk '/^VmRSS/ {print $2 / 1024 " MB"}' "/proc/$sandbox_pid/status")"
stop_sandbox
