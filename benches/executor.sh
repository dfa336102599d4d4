#!/usr/bin/env bash
# Executor overhead (issue 8): `run` against a sandbox process with no latency and no rate limit,
# checkpointing on, beside a raw HTTP load generator replaying the same kind of writes against
# the same sandbox endpoint (the HTTP floor on this machine), measured in the same invocation.
#
#   benches/executor.sh [clients]          # default 5,000 clients: about 125,000 calls
#
# Prints the run's calls/s, CPU seconds per 1,000 calls and peak RSS, the floor's calls/s (2xx
# only: every refused request is counted and shown) and the ratio. Environment:
#   CARGO_TARGET_DIR  where the release binary is built (default target/)
#   BENCH_DIR         a directory of generated data to reuse (else a fresh temporary one)
#   ROUNDS            run/floor pairs, alternated (default 1); the medians are the result
#   FLOOR_SECONDS     duration of each load generator run (default 10)
#   CONCURRENCY       the run's --concurrency and the generator's connections (default 32)
#   CREATE_EVERY      the generator creates a client every N requests, posts repayments
#                     otherwise (default 5: the run's mix is 70% transactions)
#   QUIET_WAIT        seconds to wait for the rest of the machine to go idle before each
#                     measurement (default 300; what other processes used is printed anyway)
#   PERF_RECORD=FILE  record the (first) run with `perf record --call-graph dwarf` into FILE
#                     (its CPU then includes perf's)
#   RUN_BIN           another mambu-migrate binary for `run` (an older build, to compare); the
#                     sandboxes are always the freshly built one
# The run and the sandbox (and the load generator and the sandbox) share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
clients=${1:-5000}
rounds=${ROUNDS:-1}
floor_seconds=${FLOOR_SECONDS:-10}
concurrency=${CONCURRENCY:-32}
create_every=${CREATE_EVERY:-5}
target_dir=${CARGO_TARGET_DIR:-target}
user=bench password=bench-password

cargo build --release --quiet
bin=$target_dir/release/mambu-migrate
run_bin=${RUN_BIN:-$bin}

# The load generator: wrk (with the Lua script beside this one), else oha.
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null 2>&1 || true
  else sudo -n apt-get install -y wrk >/dev/null 2>&1 || true; fi
fi
if command -v wrk >/dev/null; then
  generator=wrk
else
  command -v oha >/dev/null || cargo install oha --locked --quiet
  generator=oha
fi

data=${BENCH_DIR:-$work/data}
[ -f "$data/transactions.csv" ] || "$bin" fixtures generate --clients "$clients" --out "$data" --seed 7 >/dev/null
# The floor's setup: a small migration whose loans take the generator's repayments.
"$bin" fixtures generate --clients 400 --out "$work/setup" --seed 11 >/dev/null

# The sandbox, as the run and the generator see it.
sandbox_up() {
  start_sandbox "$work/sandbox.out" "$bin" --username "$user" --password "$password" --api-key "$user-key" --timezone Europe/Lisbon
}

# `run` with basic auth, as the generator sends it.
migrate() { # data_dir run_dir [time/perf prefix...]
  local dir=$1 run_dir=$2
  shift 2
  local sources=()
  for s in clients deposits loans schedules transactions; do sources+=(--source "$s=$dir/$s.csv"); done
  env -u MAMBU_API_KEY -u MAMBU_API_KEY_FILE MAMBU_USERNAME=$user MAMBU_PASSWORD=$password \
    "$@" "$run_bin" run plans/sample.yaml --target "$origin/api" --run-dir "$run_dir" \
    --rate 100000 --concurrency "$concurrency" --no-progress "${sources[@]}"
}

field() { sed -n "s/^$1 //p" "$2" | head -1; }
# CPU ticks (1/100 s) used by the whole machine, and by one process: what other processes used
# while a measurement ran is printed beside it (the machine is shared).
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Before each measurement: up to QUIET_WAIT seconds (default 300) for the rest of the machine to
# go idle. Another user's build halves what either side gets.
quiet() { wait_quiet "${QUIET_WAIT:-300}"; }

measure_run() { # round
  local run_dir=$work/run-$1 log=$work/run-$1.log prefix=(/usr/bin/time -v)
  if [ -n "${PERF_RECORD:-}" ] && [ "$1" = 1 ]; then prefix+=(perf record -F 499 --call-graph dwarf,16384 -o "$PERF_RECORD" --); fi
  quiet
  sandbox_up
  local b0 b1 sandbox_ticks
  b0=$(busy_ticks)
  migrate "$data" "$run_dir" "${prefix[@]}" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  b1=$(busy_ticks)
  sandbox_ticks=$(proc_ticks "$sandbox_pid")
  stop_sandbox
  # The executor's own time (from its first call to its last answer, reports excluded), as it
  # prints it: "finished: ... N calls (...) in S s".
  local line calls seconds
  line=$(grep '^finished: ' "$log")
  calls=$(python3 -c "import json; print(json.load(open('$run_dir/report.json'))['calls']['total'])")
  seconds=$(sed -E 's/.* in ([0-9.]+)s$/\1/' <<<"$line")
  python3 - "$log" "$calls" "$seconds" "$run_dir/report.json" "$((b1 - b0))" "$sandbox_ticks" >"$work/run-$1.result" <<'EOF'
import json, re, sys
log, calls, seconds, report = open(sys.argv[1]).read(), int(sys.argv[2]), float(sys.argv[3]), json.load(open(sys.argv[4]))
machine, sandbox = int(sys.argv[5]) / 100, int(sys.argv[6]) / 100
get = lambda name: re.search(re.escape(name) + r": (.*)", log).group(1).strip()
user, system = float(get("User time (seconds)")), float(get("System time (seconds)"))
wall = get("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
assert report["calls"]["ok"] == calls and report["units"]["failed"] == 0, "every call must succeed"
print(f"run_calls {calls}")
print(f"run_seconds {seconds}")
print(f"run_wall {wall}")
print(f"run_per_second {calls / seconds:.1f}")
print(f"run_cpu {user + system:.2f}")
print(f"run_cpu_user {user:.2f}")
print(f"run_cpu_per_1000 {1000 * (user + system) / calls:.4f}")
print(f"run_rss_mb {int(get('Maximum resident set size (kbytes)')) / 1024:.0f}")
print(f"run_sandbox_cpu_per_1000 {1000 * sandbox / calls:.4f}")
print(f"run_other_cpu {max(0.0, machine - user - system - sandbox):.1f}")
EOF
}

measure_floor() { # round
  local out=$work/floor-$1.out
  sandbox_up
  migrate "$work/setup" "$work/setup-run-$1" >"$work/setup-$1.log" 2>&1 || { cat "$work/setup-$1.log" >&2; exit 1; }
  cut -d, -f1 "$work/setup/loans.csv" | tail -n +2 >"$work/loans.txt"
  local branch
  branch=$(curl -sf -u "$user:$password" -H 'Accept: application/vnd.mambu.v2+json' "$origin/api/branches" |
    python3 -c "import json, sys; print(json.load(sys.stdin)[0]['encodedKey'])")
  local b0 b1 s0 s1
  quiet
  b0=$(busy_ticks) s0=$(proc_ticks "$sandbox_pid")
  if [ "$generator" = wrk ]; then
    EXEC_LOANS=$work/loans.txt EXEC_BRANCH=$branch EXEC_AUTH=$(printf '%s' "$user:$password" | base64) \
      EXEC_DATE=$(date -u +%F) EXEC_NONCE=$((RANDOM * 32768 + RANDOM)) EXEC_CREATE_EVERY=$create_every \
      /usr/bin/time -f "%U %S" -o "$work/generator.time" \
      wrk -t2 -c"$concurrency" -d"${floor_seconds}s" -s benches/executor.lua "$origin" >"$out" 2>&1
  else
    # oha sends one fixed request: repayments with neither Idempotency-Key nor externalId (the
    # sandbox accepts them as duplicates), so less work per request than the run's writes.
    local loan
    loan=$(head -1 "$work/loans.txt")
    /usr/bin/time -f "%U %S" -o "$work/generator.time" oha --no-tui -z "${floor_seconds}s" -c "$concurrency" -m POST -a "$user:$password" \
      -H 'Accept: application/vnd.mambu.v2+json' -T application/json \
      -d "{\"amount\":0.01,\"notes\":\"standing order\",\"valueDate\":\"$(date -u +%F)T00:00:00+00:00\"}" \
      "$origin/api/loans/$loan/repayment-transactions" >"$work/oha.txt" 2>&1
    python3 - "$work/oha.txt" "$floor_seconds" >"$out" <<'EOF'
import re, sys
text, seconds = open(sys.argv[1]).read(), float(sys.argv[2])
codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\] (\d+) responses", text)}
ok = sum(n for c, n in codes.items() if 200 <= c < 300)
print(f"floor_ok {ok}\nfloor_seconds {seconds}\nfloor_not_2xx {sum(codes.values()) - ok}\nfloor_ok_per_second {ok / seconds:.1f}")
EOF
  fi
  b1=$(busy_ticks) s1=$(proc_ticks "$sandbox_pid")
  stop_sandbox
  read -r gen_user gen_system <"$work/generator.time"
  python3 - "$out" "$((b1 - b0))" "$((s1 - s0))" "$gen_user" "$gen_system" >>"$out" <<'EOF'
import sys
ok = int(next(l.split()[1] for l in open(sys.argv[1]) if l.startswith("floor_ok ")))
machine, sandbox, generator = int(sys.argv[2]) / 100, int(sys.argv[3]) / 100, float(sys.argv[4]) + float(sys.argv[5])
print(f"floor_sandbox_cpu_per_1000 {1000 * sandbox / ok:.4f}")
print(f"floor_generator_cpu_per_1000 {1000 * generator / ok:.4f}")
print(f"floor_other_cpu {max(0.0, machine - sandbox - generator):.1f}")
EOF
  local bad
  bad=$(field floor_not_2xx "$out")
  if [ "${bad:-1}" != 0 ]; then
    echo "the load generator's requests were refused ($bad not 2xx): a floor made of them is worthless" >&2
    cat "$out" >&2
    exit 1
  fi
}

echo "data: $clients clients ($(($(wc -l <"$data/transactions.csv") - 1)) transactions), concurrency $concurrency, generator $generator (-t2 -c$concurrency, ${floor_seconds}s)"
for round in $(seq "$rounds"); do
  measure_run "$round"
  measure_floor "$round"
  r=$work/run-$round.result f=$work/floor-$round.out
  printf 'round %s: run %s calls in %ss = %s calls/s (wall %ss with start and reports), CPU %ss = %s s/1,000 calls (sandbox %s), peak RSS %s MB, other processes %s CPU-s\n' \
    "$round" "$(field run_calls "$r")" "$(field run_seconds "$r")" "$(field run_per_second "$r")" \
    "$(field run_wall "$r")" "$(field run_cpu "$r")" "$(field run_cpu_per_1000 "$r")" \
    "$(field run_sandbox_cpu_per_1000 "$r")" "$(field run_rss_mb "$r")" "$(field run_other_cpu "$r")"
  printf '         floor %s calls/s (%s answered 2xx, none refused), CPU s/1,000 calls: %s %s, sandbox %s; other processes %s CPU-s | ratio %s%%\n' \
    "$(field floor_ok_per_second "$f")" "$(field floor_ok "$f")" "$generator" "$(field floor_generator_cpu_per_1000 "$f")" \
    "$(field floor_sandbox_cpu_per_1000 "$f")" "$(field floor_other_cpu "$f")" \
    "$(python3 -c "print(round(100 * $(field run_per_second "$r") / $(field floor_ok_per_second "$f"), 1))")"
done
python3 - "$work" "$rounds" <<'EOF'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def read(path):
    return {k: float(v) for k, v in (line.split(" ", 1) for line in open(path) if line.startswith(("run_", "floor_")) and not line.startswith("floor_refused"))}
runs = [read(f"{work}/run-{i}.result") for i in range(1, rounds + 1)]
floors = [read(f"{work}/floor-{i}.out") for i in range(1, rounds + 1)]
run = statistics.median(r["run_per_second"] for r in runs)
floor = statistics.median(f["floor_ok_per_second"] for f in floors)
cpu = statistics.median(r["run_cpu_per_1000"] for r in runs)
ratio = statistics.median(r["run_per_second"] / f["floor_ok_per_second"] for r, f in zip(runs, floors))
print(f"median: run {run:,.0f} calls/s, floor {floor:,.0f} calls/s, ratio {100 * ratio:.1f}% (target 50%), "
      f"run CPU {cpu:.4f} s per 1,000 calls, peak RSS {max(r['run_rss_mb'] for r in runs):.0f} MB")
EOF
