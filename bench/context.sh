#!/usr/bin/env bash
# The propose stage's own time on a large repository, cold and warm.
#
#   bash bench/context.sh [files]      # default 20000
#
# Builds prbot (release), generates a repository of small Rust files, serves a model on
# loopback that answers at once, and runs cycles of pick-gap, propose and apply. The
# first cycle tokenises every file and reads the history (1,000 commits); later ones read
# the term counts from the cache by blob id and the history from the cache by base.
# Propose reads the base from the object store while the worktree is reset beside it;
# apply waits for what is left of the reset. It prints both stages' times per cycle, and
# propose's without the model call (the record's `model_calls[].duration_ms`).
set -euo pipefail
files=${1:-20000}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
mkdir -p "$work/repo/docs"
python3 - "$work/repo" "$files" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
words = ["alpha", "beta", "parse", "render", "walker", "pool", "config", "cache", "index", "token",
         "search", "match", "glob", "ignore", "printer", "buffer", "stream", "reader", "writer", "span"]
for i in range(n):
    d = os.path.join(root, f"src/m{i % 200:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.rs"), "w") as f:
        f.write("\n".join(f"pub fn {random.choice(words)}_{j}() {{ let {random.choice(words)} = {j}; }}"
                          for j in range(8)) + "\n")
with open(os.path.join(root, "docs/PRD.md"), "w") as f:
    f.write("# PRD\n\n- [ ] Increase the walker pool capacity [bot-eligible]\n")
PY
git -C "$work/repo" init -q
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm init
# A thousand commits on top, each changing one to three files, as the history the ranking reads.
branch=$(git -C "$work/repo" symbolic-ref --short HEAD)
python3 - "$files" "$branch" <<'PY' | git -C "$work/repo" fast-import --quiet
import random, sys
n, branch = int(sys.argv[1]), sys.argv[2]
random.seed(2)
words = ["alpha", "beta", "parse", "render", "walker", "pool", "config", "cache", "index", "token"]
out = sys.stdout
for c in range(1000):
    subject = f"{random.choice(words)}: {random.choice(words)} the {random.choice(words)}"
    out.write(f"commit refs/heads/{branch}\ncommitter bench <bench@example.invalid> {1700000000 + c} +0000\n")
    out.write(f"data {len(subject)}\n{subject}\n")
    if c == 0:
        out.write(f"from refs/heads/{branch}^0\n")
    for _ in range(random.randint(1, 3)):
        i = random.randrange(n)
        body = f"pub fn {random.choice(words)}_{c}() {{}}\n"
        out.write(f"M 100644 inline src/m{i % 200:03d}/f{i}.rs\ndata {len(body)}\n{body}")
    out.write("\n")
PY
git -C "$work/repo" reset -q --hard
# Packed, as a clone is: prbot reads the base through the object store.
git -C "$work/repo" repack -adq
printf '%s\n' '{"summary": "s", "files": [{"path": "src/bench.rs", "is_new": true, "content": "pub fn bench() {}\n"}]}' > "$work/reply.json"
start_model "$work/reply.json"
cat > "$work/p.yml" <<YAML
providers:
  bench:
    base_url: http://127.0.0.1:$port/v1
workspace:
  dir: $work/ws
budget:
  calls_per_day: 100000
  tokens_per_day: 1000000000
policy:
  gaps:
    skip_after_failures: 0
stages:
  - uses: pick-gap
  - uses: propose
    with:
      models: [bench/model]
      repair_attempts: 0
  - uses: apply
YAML
echo "| cycle | propose (ms) | propose without the model call (ms) | apply, with what is left of the worktree reset (ms) |"
echo "|---|---|---|---|"
for i in 1 2 3 4 5 6; do
  "$prbot" run --repo "$work/repo" --pipeline "$work/p.yml" --json 2>/dev/null |
    python3 -c 'import json, sys
r = json.load(sys.stdin)
ms = {s["id"]: s["duration_ms"] for s in r["stages"]}
own = ms["propose"] - sum(c.get("duration_ms", 0) for c in r["model_calls"])
print("|", sys.argv[1], "|", ms["propose"], "|", own, "|", ms["apply"], "|")' "$i"
done
