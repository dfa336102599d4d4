#!/usr/bin/env bash
# The sandbox at a bank's scale (issue 21): a whole rehearsal of N generated clients through the
# sample plan into a `mambu-migrate sandbox` process serving the strict tenant, and what the
# sandbox holds resident at the end (VmRSS) and at its peak (VmHWM), per client, per transaction
# and per call, beside the run's own figures.
#
#   benches/sandbox_memory.sh [clients...]      # default 100000
#
# Environment:
#   BENCH_DIR    keeps the generated extracts between runs (fx<clients>/); default a scratch dir
#   BIN          another mambu-migrate binary (default: a release build of this checkout)
#   STATE=1      the sandbox keeps its tenant in a file too (`sandbox --state`)
#   VERIFY=1     then `verify` every unit against the same sandbox (default 1 up to 100,000
#                clients; at a million it takes as long as the run)
#   RATE, CONCURRENCY   the run's (default 100000 and 32: as fast as the machine goes)
#   DUPLICATE_FIELDS   the strict tenant's duplicate-client check compares these instead of its
#                own (e.g. DOCUMENT_ID_AND_TYPE): the generated extracts draw last names and birth
#                dates from pools that a million clients exhaust, so that LAST_NAME_AND_DATE_OF_BIRTH
#                refuses a share that grows with the book (6% of 100,000, most of the last of a
#                million), and the sandbox would hold a smaller book than the rehearsal's
#   MAX_GIB      the sandbox is killed (and the bench fails) past this resident size, so that a
#                build that does not fit cannot push the machine into swap (default 12)
#
# "Every record once": the sandbox's duplicate counters are 0 and its counts of clients, loans,
# deposits and transactions equal what the run reports created; verify finds 0 mismatches.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
sizes=("${@:-100000}")
dir=${BENCH_DIR:-$work}
rate=${RATE:-100000}
concurrency=${CONCURRENCY:-32}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/mambu-migrate
fi
BIN=$(realpath "$BIN")
SOURCES="clients deposits deposit_transactions deposit_balances loans schedules transactions tranches securities loan_closures"
export MAMBU_API_KEY=strict-migration-api-key MAMBU_APPROVER_API_KEY=strict-approver-api-key

kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$sandbox_pid/status"; }

for clients in "${sizes[@]}"; do
  data=$dir/fx$clients
  [ -f "$data/clients.csv" ] || "$BIN" fixtures generate --clients "$clients" --out "$data" --seed 7 >/dev/null
  args=()
  for s in $SOURCES; do args+=(--source "$s=$data/$s.csv"); done
  state=()
  if [ "${STATE:-0}" = 1 ]; then state=(--state "$work/tenant-$clients.db"); rm -f "$work/tenant-$clients.db"*; fi
  tenant=fixtures/tenants/strict.yaml
  if [ -n "${DUPLICATE_FIELDS:-}" ]; then
    tenant=$work/strict.yaml
    sed "s/^    fields: \[DOCUMENT_ID_AND_TYPE, LAST_NAME_AND_DATE_OF_BIRTH\]\$/    fields: [$DUPLICATE_FIELDS]/" \
      fixtures/tenants/strict.yaml >"$tenant"
    cmp -s "$tenant" fixtures/tenants/strict.yaml && { echo "strict.yaml's duplicate check was not found" >&2; exit 1; }
  fi
  start_sandbox "$work/sandbox.out" "$BIN" --tenant "$tenant" "${state[@]}"
  run_dir=$work/run-$clients
  rm -rf "$run_dir"
  # The watchdog: checks the sandbox's VmRSS every 2 s.
  max_kb=$(( ${MAX_GIB:-12} * 1024 * 1024 ))
  ( while kill -0 "$sandbox_pid" 2>/dev/null; do
      r=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$sandbox_pid/status" 2>/dev/null || echo 0)
      if [ "${r:-0}" -gt "$max_kb" ]; then echo "the sandbox passed ${MAX_GIB:-12} GiB: killed" >&2; kill -9 "$sandbox_pid"; fi
      sleep 2
    done ) &
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/run.rss" "$BIN" run plans/sample.yaml "${args[@]}" --target "$origin/api" \
    --run-dir "$run_dir" --rate "$rate" --concurrency "$concurrency" --no-progress \
    >"$work/run.log" 2>&1 || true
  t1=$(date +%s.%N)
  rss=$(kb VmRSS) hwm=$(kb VmHWM)
  echo "sandbox at the end: VmRSS ${rss} kB, VmHWM ${hwm} kB; $(tail -1 "$work/run.log")"
  curl -s "$origin/_sandbox/stats" >"$work/stats.json"
  s0=$(date +%s.%N)
  curl -s "$origin/_sandbox/stats" >/dev/null
  s1=$(date +%s.%N)
  mismatches=-
  if [ "${VERIFY:-$([ "$clients" -le 100000 ] && echo 1 || echo 0)}" = 1 ]; then
    "$BIN" verify "$run_dir" --no-progress --format json >"$work/verify.json" 2>"$work/verify.log" || true
    mismatches=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['mismatches']))" "$work/verify.json")
  fi
  stop_sandbox
  python3 - "$run_dir/report.json" "$work/stats.json" "$clients" "$rss" "$hwm" "$t0" "$t1" "$s0" "$s1" "$mismatches" "$(tail -1 "$work/run.rss")" <<'EOF'
import json, sys
report, stats = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
clients = int(sys.argv[3]); rss, hwm = int(sys.argv[4]) * 1024, int(sys.argv[5]) * 1024
wall = float(sys.argv[7]) - float(sys.argv[6]); stats_s = float(sys.argv[9]) - float(sys.argv[8])
calls = report["calls"]["total"]; tx = stats["transactions"]
mb = lambda b: f"{b / 1e6:,.0f} MB"
print(f"{clients:,} clients: {calls:,} calls in {wall:,.0f} s ({calls / wall:,.0f} calls/s); "
      f"units done {report['units']['done']:,}, failed {report['units']['failed']:,}; run peak RSS {int(sys.argv[11]) // 1024} MiB")
print(f"  sandbox holds: {stats['clients']:,} clients, {stats['loans']:,} loans, {stats['deposits']:,} deposits, "
      f"{tx:,} transactions; duplicates {stats['duplicates']['total']}; verify mismatches {sys.argv[10]}")
print(f"  sandbox resident at the end {mb(rss)} ({rss / 2**30:.2f} GiB), peak {mb(hwm)} ({hwm / 2**30:.2f} GiB); "
      f"{rss / clients / 1e3:,.1f} KB a client, {rss / tx:,.0f} B a transaction, {rss / calls:,.0f} B a call")
print(f"  GET /_sandbox/stats: {stats_s * 1e3:,.1f} ms")
EOF
done
