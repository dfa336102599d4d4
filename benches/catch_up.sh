#!/usr/bin/env bash
# Catch-up runs (issue 19): the night's calls against a full run's, and the comparison of two
# extracts at a bank's size in bounded memory.
#
#   benches/catch_up.sh [clients] [big_clients]   # default 2,000 and 1,000,000
#
# 1. A real run: `clients` generated clients migrated into a `mambu-migrate sandbox` process
#    (strict tenant, no latency); then a newer extract (a new repayment on every 50th loan still
#    open, a new phone for every 100th client, a new amount for every 500th loan) is estimated
#    with `plan estimate --catch-up` and caught up with `run --catch-up`: calls of the full run,
#    the estimate and the catch-up, side by side.
# 2. The comparison at `big_clients`: the same changes on a generated extract of that size,
#    against a run directory whose checkpoint holds every unit done (written directly: migrating
#    a million clients takes hours); `plan estimate --catch-up` groups and compares both
#    extracts, unit by unit, as `run --catch-up` does. Seconds and peak RSS beside `wc -l` of
#    both extracts and a plain `plan estimate` of the new one.
#
# BENCH_DIR keeps the generated files between runs; BIN points at another build.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-2000}
big=${2:-1000000}
dir=${BENCH_DIR:-$(mktemp -d)}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/mambu-migrate
fi
BIN=$(realpath "$BIN")
SOURCES="clients deposits deposit_transactions deposit_balances loans schedules transactions tranches securities loan_closures"

# A newer extract: $1 the older one's folder, $2 the newer one's; $3 (optional) an errors.csv
# whose units are left as they are (a unit that failed would be tried again, and fail again).
newer() {
  python3 - "$1" "$2" "${3:-}" <<'EOF'
import csv, os, shutil, sys
old, new = sys.argv[1], sys.argv[2]
failed = set()
if sys.argv[3]:
    with open(sys.argv[3], newline="") as f:
        failed = {r["unit"] for r in csv.DictReader(f)}
os.makedirs(new, exist_ok=True)
for name in os.listdir(old):
    if name.endswith(".csv"):
        shutil.copy(os.path.join(old, name), os.path.join(new, name))
closed = set()
with open(os.path.join(old, "loan_closures.csv"), newline="") as f:
    closed = {r["loan_id"] for r in csv.DictReader(f)}
def rewrite(name, change, append=None):
    path = os.path.join(new, name)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    out = [header] + [change(header, i, r) for i, r in enumerate(body)]
    if append:
        out += append(header, body)
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(out)
def phone(header, i, r):
    if i % 100 == 99 and r[header.index("client_id")] not in failed:
        r[header.index("phone")] = "+351 910 000 %03d" % (i % 1000)
    return r
def amount(header, i, r):
    if i % 500 == 499 and r[header.index("loan_id")] not in closed and r[header.index("client_id")] not in failed:
        r[header.index("amount")] = "%.2f" % (float(r[header.index("amount")]) + 100)
    return r
loans = []
def note(header, i, r):
    # Products that take a payment ahead of its due date (the strict tenant's MICRO does not).
    if i % 50 == 49 and r[header.index("loan_id")] not in closed and r[header.index("product_id")] in ("PL-STD", "SME-TERM") and r[header.index("client_id")] not in failed:
        loans.append(r[header.index("loan_id")])
    return amount(header, i, r)
rewrite("clients.csv", phone)
rewrite("loans.csv", note)
def repayments(header, body):
    row = lambda loan: [{"txn_id": "NIGHT-" + loan, "loan_id": loan, "kind": "REPAYMENT", "amount": "10.00", "value_date": "2026-12-01"}.get(c, "") for c in header]
    return [row(loan) for loan in loans]
rewrite("transactions.csv", lambda h, i, r: r, repayments)
EOF
}

args_for() { # --source NAME=PATH for every file in $1
  for s in $SOURCES; do printf -- '--source\n%s=%s/%s.csv\n' "$s" "$1" "$s"; done
}

# 1. The night's calls against a full run's (SMALL=0 skips it).
if [ "${SMALL:-1}" = 1 ]; then
mkdir -p "$dir/small"
[ -f "$dir/small/day1/clients.csv" ] || "$BIN" fixtures generate --clients "$clients" --out "$dir/small/day1" --seed 11 >/dev/null
port=$((20000 + RANDOM % 20000))
"$BIN" sandbox --tenant fixtures/tenants/strict.yaml --port "$port" >/dev/null 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true' EXIT
sleep 1
run_dir="$dir/small/run"
rm -rf "$run_dir"
mapfile -t day1 < <(args_for "$dir/small/day1")
export MAMBU_API_KEY=strict-migration-api-key MAMBU_APPROVER_API_KEY=strict-approver-api-key
calls() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['calls']['total'])" "$1/report.json"; }
"$BIN" run plans/sample.yaml "${day1[@]}" --target "http://127.0.0.1:$port/api" --run-dir "$run_dir" --rate 100000 --concurrency 32 --no-progress 2>/dev/null || true
full=$(calls "$run_dir")
failed_before=$(python3 -c "import csv,sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1]))))" "$run_dir/errors.csv")
rm -rf "$dir/small/day2"
newer "$dir/small/day1" "$dir/small/day2" "$run_dir/errors.csv"
mapfile -t day2 < <(args_for "$dir/small/day2")
estimate=$("$BIN" plan estimate plans/sample.yaml "${day2[@]}" --catch-up "$run_dir" --format json | python3 -c "import json,sys; e=json.load(sys.stdin); print(e['total_calls'], e['catch_up']['unit_calls'], e['catch_up']['units_unchanged'], e['catch_up']['units_changed'])")
"$BIN" run plans/sample.yaml "${day2[@]}" --catch-up --target "http://127.0.0.1:$port/api" --run-dir "$run_dir" --rate 100000 --concurrency 32 --no-progress 2>"$dir/small/catch-up.log" || true
night=$(( $(calls "$run_dir") - full ))
night_units=$(python3 - "$run_dir/checkpoint.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("SELECT COUNT(*) FROM calls WHERE unit != '' AND at >= (SELECT started_at FROM phases WHERE n = 2)").fetchone()[0])
EOF
)
tail -2 "$dir/small/catch-up.log"
echo "small: $clients clients ($failed_before failed in the full run, left unchanged); full run $full calls; catch-up $night calls ($night_units of units); estimate (total, of units, unchanged, changed): $estimate"
kill $sandbox; trap - EXIT
fi

# 2. The comparison at a bank's size (BIG=0 skips it).
[ "${BIG:-1}" = 1 ] || exit 0
mkdir -p "$dir/big"
[ -f "$dir/big/day1/clients.csv" ] || "$BIN" fixtures generate --clients "$big" --out "$dir/big/day1" --seed 7 >/dev/null
[ -f "$dir/big/day2/clients.csv" ] || newer "$dir/big/day1" "$dir/big/day2"
mapfile -t big1 < <(args_for "$dir/big/day1")
mapfile -t big2 < <(args_for "$dir/big/day2")
big_run="$dir/big/run"
if [ ! -f "$big_run/checkpoint.db" ]; then
  # A real (tiny) run makes the checkpoint and records the extract; then every unit is marked
  # done, as a finished migration of it leaves them.
  "$BIN" sandbox --tenant fixtures/tenants/strict.yaml --port "$port" >/dev/null 2>&1 &
  sandbox=$!
  sleep 1
  "$BIN" run plans/sample.yaml "${big1[@]}" --sample 20 --target "http://127.0.0.1:$port/api" --run-dir "$big_run" --rate 100000 --no-progress 2>/dev/null || true
  kill $sandbox
  python3 - "$big_run/checkpoint.db" "$dir/big/day1/clients.csv" <<'EOF'
import csv, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with open(sys.argv[2], newline="") as f:
    keys = [(r["client_id"], i) for i, r in enumerate(csv.DictReader(f))]
db.executemany("INSERT OR IGNORE INTO units (key, ordinal, status, attempt) VALUES (?, ?, 'done', 1)", keys)
db.execute("UPDATE units SET status = 'done'")
db.commit()
EOF
fi
cat "$dir"/big/day1/*.csv "$dir"/big/day2/*.csv >/dev/null
echo "big: $(du -sh "$dir/big/day1" | cut -f1) an extract, $(cat "$dir"/big/day1/*.csv | wc -l) lines"
t() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1; }
read -r wc_s _ < <(t wc -l "$dir"/big/day1/*.csv "$dir"/big/day2/*.csv)
read -r full_s full_kb < <(t "$BIN" plan estimate plans/sample.yaml "${big2[@]}" --format json)
read -r cu_s cu_kb < <(t "$BIN" plan estimate plans/sample.yaml "${big2[@]}" --catch-up "$big_run" --format json)
"$BIN" plan estimate plans/sample.yaml "${big2[@]}" --catch-up "$big_run" --format json | python3 -c "import json,sys; e=json.load(sys.stdin); c=e['catch_up']; print('big catch-up: units unchanged', c['units_unchanged'], 'changed', c['units_changed'], 'new', c['units_new'], 'rows added', c['rows_added'], 'drift', c['drift'], 'calls of units', c['unit_calls'])"
echo "wc -l of both extracts: ${wc_s}s"
echo "plan estimate (the new extract, one pass): ${full_s}s, peak RSS $((full_kb / 1024)) MiB"
echo "plan estimate --catch-up (both extracts grouped and compared): ${cu_s}s, peak RSS $((cu_kb / 1024)) MiB, $(python3 -c "print(round($cu_s / max($wc_s, 0.01), 1))")x wc -l"
