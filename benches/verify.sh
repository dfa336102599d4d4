#!/usr/bin/env bash
# `verify` at the run's pace (issue 15): migrate N generated clients into a sandbox process,
# then verify them, and compare verify's achieved calls/s with the configured rate and its
# wall time with the run's, measured in the same invocation against the same sandbox.
#
#   benches/verify.sh [clients]      # default 2,000 clients
#
# Environment:
#   LATENCY_MS   the sandbox's latency on every answer (default 100: a tenant's)
#   RATE         calls per second of the run (and so of verify, which takes the run's)
#                (default 400)
#   CONCURRENCY  units in flight (default 64: enough for RATE x LATENCY calls in flight)
#   CARGO_TARGET_DIR  where the release binary is built (default target/)
#   VERIFY_BIN   another mambu-migrate binary for `verify` (an older build, to compare), with
#   VERIFY_ARGS  its arguments besides the run directory (default: --no-progress)
# Prints, for the run and for verify: calls, wall seconds, calls/s, and their ratio to RATE.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
clients=${1:-2000}
latency=${LATENCY_MS:-100}
rate=${RATE:-400}
concurrency=${CONCURRENCY:-64}
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet
bin=$target_dir/release/mambu-migrate
data=$work/data
"$bin" fixtures generate --clients "$clients" --out "$data" --seed 7 >/dev/null
start_sandbox "$work/sandbox.out" "$bin" --api-key bench-key --latency-ms "$latency" --timezone Europe/Lisbon
export MAMBU_API_KEY=bench-key
sources=()
for s in clients deposits loans schedules transactions; do sources+=(--source "$s=$data/$s.csv"); done

t0=$(date +%s.%N)
"$bin" run plans/sample.yaml --target "$origin/api" --run-dir "$work/run" --rate "$rate" \
  --concurrency "$concurrency" --no-progress "${sources[@]}" >"$work/run.log" 2>&1 || {
  cat "$work/run.log" >&2
  exit 1
}
t1=$(date +%s.%N)
# shellcheck disable=SC2086
"${VERIFY_BIN:-$bin}" verify "$work/run" ${VERIFY_ARGS---no-progress} --format json >"$work/verify.json" 2>"$work/verify.log" || {
  cat "$work/verify.log" >&2
  exit 1
}
t2=$(date +%s.%N)

python3 - "$work/run/report.json" "$work/verify.json" "$t0" "$t1" "$t2" "$rate" "$clients" "$latency" <<'EOF'
import json, sys
run, verify = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t0, t1, t2, rate = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
assert run["units"]["failed"] == 0 and not verify["mismatches"], "a clean run, verified clean"
rows = [("run", run["calls"]["total"], t1 - t0), ("verify", verify["calls"], t2 - t1)]
print(f"{sys.argv[7]} clients, sandbox latency {sys.argv[8]} ms, rate {rate:.0f}/s")
for name, calls, seconds in rows:
    print(f"{name:7} {calls:>9,} calls in {seconds:8.1f} s = {calls / seconds:8.1f}/s ({100 * calls / seconds / rate:5.1f}% of the rate)")
print(f"verify's wall time / the run's: {(t2 - t1) / (t1 - t0):.2f}; units verified: {verify['units_verified']:,}")
EOF
