#!/usr/bin/env bash
# A whole cycle against its floor: the same git work done by plain git commands.
#
#   bash bench/cycle.sh [pairs]      # default 20
#
# Builds prbot (release), serves a model on loopback that answers at once, and on two
# generated repositories (20,000 files, and 12) runs, interleaved, PAIRS warm prbot
# cycles (pick-gap, propose, apply, `true` as the test, commit on the gap's branch; the
# local forge's dry run) and PAIRS floors: `status -uno` of the repository, one reset of
# a reused clone (`checkout -f`, `clean`), a model request of the same size, `true`,
# `add`, `commit`, `update-ref`. It prints the median of the pairwise ratios, the
# smallest ratio, and the medians; then the first (cold) cycle against
# `git clone --shared` plus checkout, and against that clone followed by the floor (a
# first cycle is a clone and a whole cycle), over 5 pairs. `sandbox: off` isolates the cycle's
# own cost; the sandbox's cost per command is bench/sandbox.sh's.
set -euo pipefail
pairs=${1:-20}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

now() { date +%s%N; }

# make_repo DIR FILES: FILES small Rust files and a PRD with one gap.
make_repo() {
  mkdir -p "$1/docs"
  python3 - "$1" "$2" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
words = ["alpha", "beta", "parse", "render", "walker", "pool", "config", "cache", "index", "token"]
for i in range(n):
    d = os.path.join(root, f"src/m{i % 200:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.rs"), "w") as f:
        f.write("\n".join(f"pub fn {random.choice(words)}_{j}() {{ let x = {j}; }}" for j in range(8)) + "\n")
with open(os.path.join(root, "docs/PRD.md"), "w") as f:
    f.write("# PRD\n\n- [ ] Make f0 return nothing [bot-eligible]\n")
PY
  git -C "$1" init -q -b main
  git -C "$1" add -A
  git -C "$1" -c user.name=bench -c user.email=bench@example.invalid commit -qm init
}

printf '%s\n' '{"summary": "s", "files": [{"path": "src/m000/f0.rs", "is_new": false, "edits": [{"search": "let x = 0;", "replace": "let x = 10;"}]}]}' > "$work/reply.json"
start_model "$work/reply.json"

pipeline() {
  cat <<YAML
providers:
  bench:
    base_url: http://127.0.0.1:$port/v1
workspace:
  dir: $1
sandbox: off
budget:
  calls_per_day: 1000000
  tokens_per_day: 100000000000
policy:
  gaps:
    skip_after_failures: 0
stages:
  - uses: guard
  - uses: pick-gap
  - uses: propose
    with:
      models: [bench/model]
      repair_attempts: 0
  - uses: apply
  - uses: test
    with:
      commands: ["true"]
  - uses: pr
    enabled: false
YAML
}

# floor REPO CLONE: the git work and the model request of one cycle, by hand.
floor() {
  local repo=$1 clone=$2
  git -C "$repo" status --porcelain -uno >/dev/null
  git -C "$clone" checkout -q -f --detach main
  git -C "$clone" clean -ffdxq
  curl -s -o /dev/null -H 'content-type: application/json' --data-binary @"$work/request.json" \
    "http://127.0.0.1:$port/v1/chat/completions"
  true
  sed -i 's/let x = 0;/let x = 10;/' "$clone/src/m000/f0.rs"
  git -C "$clone" add -A -- src/m000/f0.rs
  git -C "$clone" -c user.name=b -c user.email=b@b commit -qm change
  git -C "$clone" update-ref refs/heads/floor HEAD
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

bench_repo() {
  local name=$1 files=$2
  local repo="$work/$name" ws="$work/$name-ws" clone="$work/$name-floor"
  make_repo "$repo" "$files"
  pipeline "$ws" > "$work/$name.yml"
  # A request as large as prbot's prompt for this gap.
  "$prbot" run --repo "$repo" --pipeline "$work/$name.yml" --json > "$work/first.json" 2>/dev/null || true
  python3 - "$work/first.json" "$work/request.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["outcome"] == "dry_run", f"the cycle ended {r['outcome']}: {r['reason']}"
size = r["model"]["prompt_size_tokens"]
json.dump({"model": "m", "messages": [{"role": "user", "content": "x" * (4 * size)}]}, open(sys.argv[2], "w"))
PY
  git clone -q --shared "$repo" "$clone"
  : > "$work/ratios"; : > "$work/p"; : > "$work/f"
  for _ in $(seq "$pairs"); do
    local t0 t1 t2
    t0=$(now)
    "$prbot" run --repo "$repo" --pipeline "$work/$name.yml" >/dev/null 2>&1
    t1=$(now)
    floor "$repo" "$clone"
    t2=$(now)
    echo $(( (t1 - t0) / 1000 )) >> "$work/p"
    echo $(( (t2 - t1) / 1000 )) >> "$work/f"
    echo "$(( t1 - t0 )) $(( t2 - t1 ))" | awk '{printf "%.3f\n", $1 / $2}' >> "$work/ratios"
  done
  printf '| %s | %s | %.0f ms | %.0f ms | %.2fx | %.2fx |\n' "$name" "$files" \
    "$(median < "$work/p" | awk '{print $1/1000}')" "$(median < "$work/f" | awk '{print $1/1000}')" \
    "$(median < "$work/ratios")" "$(sort -g "$work/ratios" | head -1)"
}

cold_repo() {
  local name=$1
  local repo="$work/$name"
  : > "$work/cold"; : > "$work/cold-floor"
  sed "s|dir: .*-ws$|dir: $work/cold-ws|" "$work/$name.yml" > "$work/cold.yml"
  for _ in $(seq 5); do
    local t0 t1 t2 t3 t4
    # Each side removes its last copy and lets the disk settle first: deleting 20,000
    # files slows the writes that follow it, and neither side should pay for the other's.
    rm -rf "$work/cold-ws"
    sync
    t0=$(now)
    "$prbot" run --repo "$repo" --pipeline "$work/cold.yml" >/dev/null 2>&1
    t1=$(now)
    rm -rf "$work/cold-clone"
    sync
    t2=$(now)
    git clone -q --shared "$repo" "$work/cold-clone"
    t3=$(now)
    floor "$repo" "$work/cold-clone"
    t4=$(now)
    echo "$(( t1 - t0 )) $(( t3 - t2 ))" | awk '{printf "%.3f\n", $1 / $2}' >> "$work/cold"
    echo "$(( t1 - t0 )) $(( t4 - t2 ))" | awk '{printf "%.3f\n", $1 / $2}' >> "$work/cold-floor"
  done
  printf '| %s | %.2fx (min %.2fx) | %.2fx (min %.2fx) |\n' "$name" \
    "$(median < "$work/cold")" "$(sort -g "$work/cold" | head -1)" \
    "$(median < "$work/cold-floor")" "$(sort -g "$work/cold-floor" | head -1)"
}

echo "| Repository | Files | prbot warm cycle (median) | Floor (median) | Ratio (median of $pairs pairs) | Smallest ratio |"
echo "|---|---|---|---|---|---|"
bench_repo large 20000
bench_repo small 12
echo
# shellcheck disable=SC2016 # backticks are Markdown
echo '| First (cold) cycle | against `git clone --shared` + checkout (median of 5) | against the clone, then the floor above |'
echo "|---|---|---|"
cold_repo large
cold_repo small
