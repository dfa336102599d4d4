#!/usr/bin/env python3
"""Rate accuracy of `run` (issue 5, 8): achieved calls/s against the configured rate, with the
sandbox answering after 100 ms, the 429s when the sandbox's own limit is just above the
configured rate, and when it is half of it the throttled share and the recovery time. Run from
the project root: python3 benches/rate.py [seconds per rate]

The achieved rate is measured in the steady state from the run's checkpoint: the calls between
the 10th and the 70th percentile of call times, over that span. Start-up and, above all, the
tail do not count: at 100 ms a call, a client with 285 repayments is a 30-second chain of
sequential calls on its own (the critical path `plan estimate` reports), and near the end too few
units are left to fill the rate.

Recovery (a sandbox limit below the configured rate): from the first 429 to the start of the
first 5 seconds with no 429 and at least 95% of the limit's calls answered (the pacer has found
the limit and holds it); then the 429s after that point (the pacer probing upwards again)."""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 30
BIN = "target/release/mambu-migrate"
CALLS_PER_UNIT = 26  # fixtures/sample: 6,509 calls for 250 units

subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)


def sandbox(*flags):
    proc = subprocess.Popen([BIN, "sandbox", "--port", "0", "--api-key", "bench", *flags], stdout=subprocess.PIPE, text=True)
    origin = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, origin


def measure(rate, limit=None):
    flags = ["--latency-ms", "100"]
    if limit:
        flags += ["--throttle-rps", str(limit)]
    proc, origin = sandbox(*flags)
    units = max(20, int(rate * SECONDS / CALLS_PER_UNIT))
    concurrency = max(16, int(rate * 0.1 * 4))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        # Enough data for the duration: the sample plan over generated clients.
        data = os.path.join(tmp, "data")
        subprocess.run([BIN, "fixtures", "generate", "--clients", str(units), "--out", data, "--seed", "3"], check=True, capture_output=True)
        args = [BIN, "run", "plans/sample.yaml", "--target", origin + "/api", "--run-dir", run_dir, "--rate", str(rate),
                "--concurrency", str(concurrency), "--no-progress"]
        for source in ["clients", "deposits", "loans", "schedules", "transactions"]:
            args += ["--source", f"{source}={data}/{source}.csv"]
        started = time.time()
        out = subprocess.run(args, env={**os.environ, "MAMBU_API_KEY": "bench"}, capture_output=True, text=True)
        wall = time.time() - started
        db = sqlite3.connect(os.path.join(run_dir, "checkpoint.db"))
        times = [row[0] for row in db.execute("SELECT at FROM calls ORDER BY at")]
        lo, hi = times[len(times) // 10], times[len(times) * 7 // 10]
        steady = (len(times) * 7 // 10 - len(times) // 10) / max(hi - lo, 1e-9)
        throttled = db.execute("SELECT COUNT(*) FROM calls WHERE status = 429").fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        calls = list(db.execute("SELECT at, status = 429 FROM calls ORDER BY at"))
    recovery = recovered(calls, limit) if limit and limit < rate else {}
    stats = json.loads(subprocess.run(["curl", "-s", origin + "/_sandbox/stats"], capture_output=True, text=True).stdout)
    proc.terminate()
    proc.wait()
    return {"rate": rate, "limit": limit, "exit": out.returncode, "units": units, "calls": total, "wall_s": round(wall, 1),
            "steady_calls_per_s": round(steady, 1), "achieved_ratio": round(steady / rate, 4), "throttled": throttled,
            "duplicates": stats["duplicates"]["total"], **recovery}


def recovered(calls, limit, window=5):
    """Seconds from the first 429 until `window` seconds with no 429 and 95% of the limit's
    calls answered begin; the 429s after that point."""
    first = next((at for at, throttled in calls if throttled), None)
    if first is None:
        return {"first_429_s": None, "recovery_s": 0.0, "throttled_after_recovery": 0}
    start = calls[0][0]
    seconds = int(calls[-1][0] - start) + 1
    answered, throttled = [0] * seconds, [0] * seconds
    for at, t in calls:
        (throttled if t else answered)[int(at - start)] += 1
    for s in range(int(first - start), seconds - window + 1):
        if sum(throttled[s:s + window]) == 0 and sum(answered[s:s + window]) >= 0.95 * limit * window:
            after = sum(throttled[s:])
            total_after = sum(answered[s:]) + after
            return {"first_429_s": round(first - start, 1), "recovery_s": round(start + s - first, 1),
                    "throttled_after_recovery": after,
                    "throttled_after_recovery_share": round(after / max(total_after, 1), 4)}
    return {"first_429_s": round(first - start, 1), "recovery_s": None, "throttled_after_recovery": None}


CASES = {"20": (20, None), "100": (100, None), "500": (500, None), "above": (100, 105), "half": (100, 50)}
wanted = os.environ.get("CASES", ",".join(CASES)).split(",")
results = [measure(*CASES[name]) for name in wanted]
for r in results:
    print(json.dumps(r))
