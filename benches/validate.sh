#!/usr/bin/env bash
# `plan validate` on a large generated extract: seconds and peak RSS, beside `wc -l` on the same
# files (the I/O floor), measured in the same run. Usage: benches/validate.sh [clients]
# (57,000 clients make about 1,000,000 transaction rows; 1,000,000 clients about 17.6 million).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-57000}
dir=${BENCH_DIR:-$(mktemp -d)}
cargo build --release --quiet
bin=target/release/mambu-migrate
[ -f "$dir/transactions.csv" ] || $bin fixtures generate --clients "$clients" --out "$dir" --seed 7 >/dev/null
sources=()
for s in clients deposits loans schedules transactions; do sources+=(--source "$s=$dir/$s.csv"); done
cat "$dir"/*.csv >/dev/null # warm the page cache for both
echo "rows: $(wc -l "$dir"/*.csv | tail -1)"
start=$(date +%s.%N); wc -l "$dir"/*.csv >/dev/null; floor=$(python3 -c "print(round($(date +%s.%N) - $start, 3))")
echo "wc -l: ${floor}s"
for target in "" "--target sandbox"; do
  out=$( { /usr/bin/time -f "%e %M" $bin plan validate plans/sample.yaml "${sources[@]}" $target >/dev/null; } 2>&1 | tail -1)
  set -- $out
  echo "plan validate ${target:-(data only)}: ${1}s, peak RSS $(( $2 / 1024 )) MiB, $(python3 -c "print(round($1 / max($floor, 0.01), 1))")x wc -l"
done
