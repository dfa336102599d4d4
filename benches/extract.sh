#!/usr/bin/env bash
# `plan estimate` and `plan validate` on a large generated extract: seconds and peak RSS, beside
# two floors measured in the same run on the same files: `wc -l` (the I/O floor) and
# examples/csv_floor.rs (every record read by the `csv` crate, one thread per file, nothing done
# with it: the floor of a tool that reads records with the usual parser).
#
#   benches/extract.sh [clients]      # default 1,000,000 clients (about 27 million rows, 1.6 GB)
#
# Each timed command runs 3 times; the best time is reported (the machine is shared) with the
# peak RSS of that run. `plan validate` renders every call of every unit: at 1,000,000 clients
# it takes minutes, so it runs only with VALIDATE=1 (once). BENCH_DIR keeps the generated files
# between runs; BIN points at another build.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-1000000}
dir=${BENCH_DIR:-$(mktemp -d)}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/mambu-migrate
fi
cargo build --release --quiet --example csv_floor
csv_floor=${CARGO_TARGET_DIR:-target}/release/examples/csv_floor
[ -f "$dir/transactions.csv" ] || "$BIN" fixtures generate --clients "$clients" --out "$dir" --seed 7 >/dev/null
sources=()
for s in clients deposits loans schedules transactions; do sources+=(--source "$s=$dir/$s.csv"); done
cat "$dir"/*.csv >/dev/null # warm the page cache for every command alike
echo "data: $(du -sh "$dir" | cut -f1), $(wc -l "$dir"/*.csv | tail -1 | awk '{print $1}') lines"

# best-of-3 "seconds peak_kb" of a command
best() {
  local best_s="" best_kb=""
  for _ in 1 2 3; do
    local out
    out=$( { /usr/bin/time -f "%e %M" "$@" >/dev/null; } 2>&1 | tail -1)
    local s=${out% *} kb=${out#* }
    if [ -z "$best_s" ] || python3 -c "import sys; sys.exit(0 if $s < $best_s else 1)"; then
      best_s=$s best_kb=$kb
    fi
  done
  echo "$best_s $best_kb"
}

read -r floor _ < <(best wc -l "$dir"/clients.csv "$dir"/deposits.csv "$dir"/loans.csv "$dir"/schedules.csv "$dir"/transactions.csv)
echo "wc -l: ${floor}s"
read -r parse _ < <(best "$csv_floor" "$dir"/clients.csv "$dir"/deposits.csv "$dir"/loans.csv "$dir"/schedules.csv "$dir"/transactions.csv)
echo "csv crate, every record, a thread per file: ${parse}s"
ratio() { python3 -c "print(round($1 / max($floor, 0.01), 1))"; }
read -r est est_kb < <(best "$BIN" plan estimate plans/sample.yaml "${sources[@]}" --format json)
echo "plan estimate: ${est}s, peak RSS $((est_kb / 1024)) MiB, $(ratio "$est")x wc -l, $(python3 -c "print(round($est / max($parse, 0.01), 2))")x the csv crate"
if [ "${VALIDATE:-0}" = 1 ]; then
  out=$( { /usr/bin/time -f "%e %M" "$BIN" plan validate plans/sample.yaml "${sources[@]}" >/dev/null; } 2>&1 | tail -1) || true
  set -- $out
  echo "plan validate: ${1}s, peak RSS $(($2 / 1024)) MiB, $(ratio "$1")x wc -l, $(python3 -c "print(round($1 / max($parse, 0.01), 1))")x the csv crate"
fi
