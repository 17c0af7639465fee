#!/usr/bin/env bash
# Runs the fuzz targets (default: all) for SECONDS each (default 600), one after another,
# new inputs kept in fuzz/work/<target>, and prints one line per target: runs, speed,
# coverage (edges, features), crash or not.
#
#   bash fuzz/run.sh [SECONDS [TARGET...]]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
targets=(reply edits prd path_guard pipeline webhook)
if [ "$#" -gt 1 ]; then
  targets=("${@:2}")
fi
cargo +nightly fuzz build -O 2>/dev/null
bin=target/x86_64-unknown-linux-gnu/release
printf '%-11s %12s %8s %8s %9s  %s\n' target runs exec/s cov ft result
for t in "${targets[@]}"; do
  mkdir -p "work/$t"
  log="work/$t.log"
  status=ok
  "$bin/$t" -artifact_prefix="work/$t-" -max_total_time="$seconds" -print_final_stats=1 \
    "work/$t" "corpus/$t" >"$log" 2>&1 || status="CRASH (see $log)"
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  speed=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  printf '%-11s %12s %8s %8s %9s  %s\n' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$status"
done
