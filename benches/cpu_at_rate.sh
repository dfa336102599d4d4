#!/usr/bin/env bash
# CPU cost of `run` at a tenant's rate (issue 8: under 0.1 CPU s per 1,000 calls at 100 calls/s):
# the sample plan over fixtures/sample at `--rate 100 --concurrency 8` against a
# `mambu-migrate sandbox --latency-ms 50` in another process, API-key auth, checkpointing on.
#
#   benches/cpu_at_rate.sh                 # --sample 100: 2,729 calls, about 30 s per round
#   ROUNDS=3 benches/cpu_at_rate.sh        # 3 rounds; the medians are the result
#
# The `run` process is watched from outside (/proc/PID/stat and every thread's /proc/.../task/*,
# every 0.2 s) and its user + system CPU is split three ways:
#   start-up  from exec to the first call committed (plan, sources, sort, connection),
#   steady    the calls between the 10th and the 90th percentile of call times (checkpoint's
#             `calls.at`): the figure that scales with the run's length, per 1,000 calls,
#   head, tail  the first and the last 10% of the calls (the tail runs below the rate: a few
#             long units left, fewer calls per wake-up),
#   end       from the last call to the exit: the final reports.
# The whole run's CPU per 1,000 calls is printed too (what /usr/bin/time would say), and, for
# the steady window, context switches per call and CPU per thread name (where the time goes).
# Environment:
#   BIN          the mambu-migrate binary for `run` (default: built here, release); the
#                sandbox is the same binary unless SANDBOX_BIN says otherwise
#   SAMPLE       --sample (default 100)      RATE          --rate (default 100)
#   CONCURRENCY  --concurrency (default 8)   LATENCY_MS    the sandbox's latency (default 50)
#   ROUNDS       rounds (default 1)
#   DATA         a directory with the five CSV files (default fixtures/sample)
#   QUIET_WAIT   seconds to wait for the rest of the machine to go idle before each round
#                (default 120; what other processes used is printed anyway)
# The floor, measured in the same round against the same sandbox: oha (a raw HTTP load
# generator, tokio and hyper like the run; installed by this script if missing) sending as many
# calls at the same rate and concurrency with the same API key (GET /loanproducts: an answer of
# about the size the run's writes get). Its CPU per 1,000 calls is what any HTTP client pays
# here at that rate, for waking up once per answer.
# The machine is shared: the CPU other processes used during each round is printed beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
sample=${SAMPLE:-100}
rate=${RATE:-100}
concurrency=${CONCURRENCY:-8}
latency=${LATENCY_MS:-50}
rounds=${ROUNDS:-1}
data=${DATA:-fixtures/sample}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/mambu-migrate
fi
sandbox_bin=${SANDBOX_BIN:-$BIN}
command -v oha >/dev/null || cargo install oha --locked --quiet

# Up to QUIET_WAIT seconds for the rest of the machine to go idle before each round: at 100
# calls/s every wake-up of the run finds caches another process filled: a busy machine makes each
# call dearer.

for round in $(seq "$rounds"); do
  wait_quiet "${QUIET_WAIT:-120}"
  start_sandbox "$work/sandbox.out" "$sandbox_bin" --api-key bench-key --latency-ms "$latency" --timezone Europe/Lisbon
  run_dir=$work/run-$round
  args=("$BIN" run plans/sample.yaml --target "$origin/api" --run-dir "$run_dir" --sample "$sample"
    --rate "$rate" --concurrency "$concurrency" --no-progress)
  for s in clients deposits loans schedules transactions; do args+=(--source "$s=$data/$s.csv"); done
  env -u MAMBU_USERNAME -u MAMBU_PASSWORD -u MAMBU_API_KEY_FILE MAMBU_API_KEY=bench-key \
    python3 - "$run_dir" "$work/round-$round" "$sandbox_pid" "${args[@]}" <<'EOF'
import os, sqlite3, subprocess, sys, time
run_dir, out, sandbox_pid, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
tick = os.sysconf("SC_CLK_TCK")

def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick

def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / tick

def threads(pid):
    """name -> (cpu s, context switches), summed over the threads of that name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            base = f"/proc/{pid}/task/{tid}"
            name = open(f"{base}/comm").read().strip()
            v = open(f"{base}/stat").read().rsplit(")", 1)[1].split()
            cs = sum(int(l.split()[1]) for l in open(f"{base}/status") if "ctxt_switches" in l)
        except OSError:
            continue
        cpu, n = out.get(name, (0.0, 0))
        out[name] = (cpu + (int(v[11]) + int(v[12])) / tick, n + cs)
    return out

started = time.time()
m0, s0 = machine(), proc_cpu(sandbox_pid)
log = open(out + ".log", "w")
p = subprocess.Popen(args, stdout=log, stderr=log)
samples = []  # (time, cpu, threads)
while True:
    pid, status, usage = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    try:
        samples.append((time.time(), proc_cpu(p.pid), threads(p.pid)))
    except OSError:
        pass
    time.sleep(0.2)
ended = time.time()
m1, s1 = machine(), proc_cpu(sandbox_pid)
user, system, rss = usage.ru_utime, usage.ru_stime, usage.ru_maxrss
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.exit(f"run exited {code}: {open(out + '.log').read()}")
db = sqlite3.connect(os.path.join(run_dir, "checkpoint.db"))
times = [r[0] for r in db.execute("SELECT at FROM calls ORDER BY at")]
assert db.execute("SELECT COUNT(*) FROM calls WHERE status IS NULL OR status >= 300").fetchone()[0] == 0, "every call must succeed"
calls = len(times)

def at(t):
    """The sample nearest to time t."""
    return min(samples, key=lambda s: abs(s[0] - t))

lo_i, hi_i = calls // 10, calls * 9 // 10
lo, hi = at(times[lo_i]), at(times[hi_i])
window_calls = sum(1 for t in times if lo[0] <= t < hi[0])
steady_cpu, steady_s = hi[1] - lo[1], hi[0] - lo[0]
first, last = at(times[0]), at(times[-1])
startup = first[1]
total = user + system
per_thread = {k: (v[0] - lo[2].get(k, (0, 0))[0], v[1] - lo[2].get(k, (0, 0))[1]) for k, v in hi[2].items()}
with open(out, "w") as f:
    print(f"calls {calls}", file=f)
    print(f"wall {ended - started:.2f}", file=f)
    print(f"cpu {total:.3f}", file=f)
    print(f"cpu_user {user:.3f}", file=f)
    print(f"cpu_system {system:.3f}", file=f)
    print(f"cpu_per_1000 {1000 * total / calls:.4f}", file=f)
    print(f"startup_cpu {startup:.3f}", file=f)
    print(f"steady_calls {window_calls}", file=f)
    print(f"steady_seconds {steady_s:.2f}", file=f)
    print(f"steady_rate {window_calls / steady_s:.1f}", file=f)
    print(f"steady_cpu {steady_cpu:.3f}", file=f)
    print(f"steady_cpu_per_1000 {1000 * steady_cpu / window_calls:.4f}", file=f)
    print(f"steady_cs_per_call {sum(v[1] for v in per_thread.values()) / window_calls:.2f}", file=f)
    print(f"head_cpu {lo[1] - first[1]:.3f}", file=f)
    print(f"tail_cpu {last[1] - hi[1]:.3f}", file=f)
    print(f"tail_calls {sum(1 for t in times if t >= hi[0])}", file=f)
    print(f"tail_seconds {last[0] - hi[0]:.2f}", file=f)
    print(f"end_cpu {total - last[1]:.3f}", file=f)
    print(f"rss_mb {rss / 1024:.0f}", file=f)
    print(f"other_cpu {max(0.0, (m1 - m0) - total - (s1 - s0)):.1f}", file=f)
    print("threads " + ", ".join(f"{k} {1000 * c / window_calls:.3f} s+{n / window_calls:.2f} cs"
          for k, (c, n) in sorted(per_thread.items(), key=lambda kv: -kv[1][0])), file=f)
EOF
  r=$work/round-$round
  f() { sed -n "s/^$1 //p" "$r" | head -1; }
  wait_quiet "${QUIET_WAIT:-120}"
  /usr/bin/time -f "%U %S" -o "$work/floor-$round.time" oha --no-tui -q "$rate" -n "$(f calls)" -c "$concurrency" \
    -H 'apikey: bench-key' -H 'Accept: application/vnd.mambu.v2+json' "$origin/api/loanproducts" >"$work/floor-$round.txt" 2>&1
  stop_sandbox
  grep -q 'Success rate:.*100.00%' "$work/floor-$round.txt" || { echo "oha's calls failed:" >&2; cat "$work/floor-$round.txt" >&2; exit 1; }
  read -r floor_user floor_system <"$work/floor-$round.time"
  python3 -c "import sys; u, s, n = map(float, sys.argv[1:]); print(f'floor_cpu_per_1000 {1000 * (u + s) / n:.4f}')" \
    "$floor_user" "$floor_system" "$(f calls)" >>"$r"
  printf 'round %s: %s calls in %ss, CPU %ss (user %s, sys %s) = %s s/1,000 calls; peak RSS %s MB; other processes %s CPU-s\n' \
    "$round" "$(f calls)" "$(f wall)" "$(f cpu)" "$(f cpu_user)" "$(f cpu_system)" "$(f cpu_per_1000)" "$(f rss_mb)" "$(f other_cpu)"
  printf '         CPU s: start-up %s, head %s, steady %s (%s calls in %ss, %s/s: %s s/1,000 calls, %s context switches/call), tail %s (%s calls in %ss), reports and exit %s\n' \
    "$(f startup_cpu)" "$(f head_cpu)" "$(f steady_cpu)" "$(f steady_calls)" "$(f steady_seconds)" "$(f steady_rate)" \
    "$(f steady_cpu_per_1000)" "$(f steady_cs_per_call)" "$(f tail_cpu)" "$(f tail_calls)" "$(f tail_seconds)" "$(f end_cpu)"
  printf '         steady, per thread name (CPU s / 1,000 calls + context switches / call): %s\n' "$(f threads)"
  printf '         floor: oha, %s calls at %s/s, concurrency %s: %s CPU s / 1,000 calls\n' "$(f calls)" "$rate" "$concurrency" "$(f floor_cpu_per_1000)"
done
python3 - "$work" "$rounds" <<'EOF'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
rs = [{k: v for k, v in (l.split(" ", 1) for l in open(f"{work}/round-{i}")) if k != "threads"} for i in range(1, rounds + 1)]
med = lambda k: statistics.median(float(r[k]) for r in rs)
print(f"median of {rounds}: {med('cpu_per_1000'):.3f} CPU s per 1,000 calls over the whole run, "
      f"steady state {med('steady_cpu_per_1000'):.3f} (target: under 0.1); "
      f"start-up {med('startup_cpu'):.3f} s, reports {med('end_cpu'):.3f} s; steady rate {med('steady_rate'):.1f}/s")
print(f"floor (oha at the same rate): {med('floor_cpu_per_1000'):.3f} CPU s per 1,000 calls; "
      f"the run costs {med('cpu_per_1000') / med('floor_cpu_per_1000'):.2f} x the floor over the whole run, "
      f"{med('steady_cpu_per_1000') / med('floor_cpu_per_1000'):.2f} x in the steady state")
EOF
