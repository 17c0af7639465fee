#!/usr/bin/env bash
# How the state's readers and a cycle's first stages scale with the number of records:
# `prbot stats`, `history --limit 20`, `history --gap`, `report --days 30`, and guard +
# pick-gap of a cycle, on state folders of 1k and 100k records, one every five minutes
# up to now (warm cache, median of 9 runs each).
#
#   bash bench/state.sh [sizes, default "1000 100000"]
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
sizes=${1:-"1000 100000"}

repo="$work/repo"
mkdir -p "$repo/docs"
git -C "$repo" init --quiet -b main
# shellcheck disable=SC2016 # backticks are Markdown
printf '# PRD\n\n- [ ] Make `greet.sh` say hello to the world [bot-eligible]\n' > "$repo/docs/PRD.md"
echo 'echo hi' > "$repo/greet.sh"
git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@b commit --quiet -m init

# One real record to copy: a cycle that picks the gap and stops.
pipeline() {
  cat > "$work/pipeline.yml" <<EOF
state:
  dir: $1
workspace:
  dir: $work/ws
stages:
  - uses: guard
  - uses: pick-gap
EOF
}
pipeline "$work/seed"
"$prbot" run --json --repo "$repo" --pipeline "$work/pipeline.yml" > "$work/seed.json" 2>/dev/null || true
gap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gap"]["id"])' "$work/seed.json")

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { # ms CMD...: the median wall time of 9 runs, in milliseconds
  for _ in $(seq 9); do
    s=$(date +%s%N); "$@" > /dev/null 2>&1 || true; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
  done | median
}

echo "| Records | stats | history --limit 20 | history --gap | report --days 30 | guard + pick-gap (stages) | whole run |"
echo "|---|---|---|---|---|---|---|"
for n in $sizes; do
  state="$work/state-$n"
  python3 - "$work/seed.json" "$state" "$n" "$gap" <<'EOF'
import datetime, json, os, sys
seed, state, n, gap = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), sys.argv[4]
now = datetime.datetime.now(datetime.timezone.utc)
os.makedirs(f"{state}/cycles", exist_ok=True)
outcomes = ["tests_failed", "dry_run", "model_failed", "ok", "skipped_no_gap"]
for i in range(n):
    r = dict(seed)
    r["cycle_id"] = f"2025{i // 86400000:02d}01T{i:012d}Z-{i % 65536:04x}"
    r["outcome"] = outcomes[i % len(outcomes)]
    r["started_at"] = (now - datetime.timedelta(minutes=5 * (n - i))).isoformat()
    # One cycle in ten is on the PRD's gap; the rest on 200 others.
    r["gap"] = dict(seed["gap"], id=gap if i % 10 == 0 else f"other-gap-{i % 200}")
    with open(f"{state}/cycles/{r['cycle_id']}.json", "w") as f:
        json.dump(r, f)
EOF
  pipeline "$state"
  "$prbot" history --reindex --limit 1 --repo "$repo" --pipeline "$work/pipeline.yml" > /dev/null 2>&1
  st=$(ms "$prbot" stats --json --repo "$repo" --pipeline "$work/pipeline.yml")
  hl=$(ms "$prbot" history --limit 20 --repo "$repo" --pipeline "$work/pipeline.yml")
  hg=$(ms "$prbot" history --gap "$gap" --repo "$repo" --pipeline "$work/pipeline.yml")
  rp=$(ms "$prbot" report --days 30 --out "$work/report.html" --repo "$repo" --pipeline "$work/pipeline.yml")
  # A cycle appends a record each time; stage times come from its record.
  stages=$(for _ in $(seq 9); do
    "$prbot" run --json --repo "$repo" --pipeline "$work/pipeline.yml" 2>/dev/null |
      python3 -c 'import json,sys; print(sum(s["duration_ms"] for s in json.load(sys.stdin)["stages"]))'
  done | median)
  whole=$(ms "$prbot" run --json --repo "$repo" --pipeline "$work/pipeline.yml")
  echo "| $n | $st ms | $hl ms | $hg ms | $rp ms | $stages ms | $whole ms |"
done
