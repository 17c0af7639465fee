#!/usr/bin/env bash
# The sandbox's cost per project command, measured on prbot itself.
#
#   bash bench/sandbox.sh [rounds]      # default 15
#
# Builds prbot (release), makes a throwaway repository holding a small Rust crate
# (serde, serde_json; a few modules), serves a model on loopback that always proposes
# the same one-line edit, and runs dry-run cycles with two test commands, `true` and
# `cargo test --offline`, under `sandbox: off`, `bwrap` and `landlock`, interleaved
# round by round. Each cycle starts from a reset worktree with the edit applied again,
# so `cargo test` rebuilds the crate as after a one-line change, with a warm target dir.
# The times are the test runs' `duration_ms` from the cycle records (sandbox set-up
# included); the script prints the median per backend and the ratio to `off`, and the
# rest of the test stage's time (the `cargo fetch` that sandboxed stages run first).
set -euo pipefail
rounds=${1:-15}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

repo="$work/repo"
mkdir -p "$repo/src" "$repo/docs"
cat > "$repo/Cargo.toml" <<'TOML'
[package]
name = "benchcrate"
version = "0.1.0"
edition = "2021"

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
TOML
for m in a b c d e; do
  cat > "$repo/src/$m.rs" <<RS
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
pub struct Item { pub name: String, pub n: u32 }
pub fn roundtrip(n: u32) -> Item {
    let json = serde_json::to_string(&Item { name: "$m".into(), n }).unwrap();
    serde_json::from_str(&json).unwrap()
}
#[test]
fn roundtrips() { assert_eq!(roundtrip(3).n, 3); }
RS
done
printf 'pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\npub fn version() -> u32 { 1 }\n' > "$repo/src/lib.rs"
printf '# PRD\n\n- [ ] Bump `version` in `src/lib.rs` [bot-eligible]\n' > "$repo/docs/PRD.md"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm init
(cd "$repo" && cargo generate-lockfile --quiet && cargo fetch --quiet)
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm lock

cat > "$work/reply.json" <<'JSON'
{"summary": "Bump the version.", "files": [{"path": "src/lib.rs", "is_new": false,
  "edits": [{"search": "{ 1 }", "replace": "{ 2 }"}]}]}
JSON
start_model "$work/reply.json"

pipeline() {
  cat <<YAML
providers:
  bench:
    base_url: http://127.0.0.1:$port/v1
workspace:
  dir: $work/ws
budget:
  calls_per_day: 100000
  tokens_per_day: 100000000
policy:
  gaps:
    skip_after_failures: 0
sandbox: $1
stages:
  - uses: pick-gap
  - uses: propose
    with:
      models: [bench/model]
  - uses: apply
  - uses: test
    with:
      commands: ["true", "cargo test --offline --quiet"]
YAML
}
backends=(off)
for b in bwrap landlock; do
  pipeline "$b" > "$work/p-$b.yml"
  if "$prbot" run --repo "$repo" --pipeline "$work/p-$b.yml" --json > "$work/probe.json" 2>/dev/null ||
     grep -q '"outcome": "dry_run"' "$work/probe.json"; then
    backends+=("$b")
  else
    echo "note: $b is not usable here; skipped" >&2
  fi
done
pipeline off > "$work/p-off.yml"
# Warm the target dir once per backend.
for b in "${backends[@]}"; do "$prbot" run --repo "$repo" --pipeline "$work/p-$b.yml" > /dev/null 2>&1; done
for r in $(seq "$rounds"); do
  for b in "${backends[@]}"; do
    "$prbot" run --repo "$repo" --pipeline "$work/p-$b.yml" --json 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["outcome"]=="dry_run", r["reason"]; st=[s["duration_ms"] for s in r["stages"] if s["id"]=="test"][0]; t0=r["tests"][0]["duration_ms"]; t1=r["tests"][1]["duration_ms"]; print(sys.argv[1], t0, t1, st-t0-t1)' "$b" >> "$work/times"
  done
  printf '.' >&2
done
echo >&2
python3 - "$work/times" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for b in dict.fromkeys(r[0] for r in rows):
    t = [int(r[1]) for r in rows if r[0] == b]
    c = [int(r[2]) for r in rows if r[0] == b]
    f = [int(r[3]) for r in rows if r[0] == b]
    med[b] = (statistics.median(t), statistics.median(c), statistics.median(f), len(t))
base = med["off"]
print("| backend | `true` (median ms) | extra vs off | warm `cargo test` (median ms) | ratio vs off | rest of the test stage (`cargo fetch`) | runs |")
print("|---|---|---|---|---|---|---|")
for b, (t, c, f, n) in med.items():
    print(f"| {b} | {t:.0f} | {t - base[0]:+.0f} ms | {c:.0f} | {c / base[1]:.2f}x | {f:.0f} ms | {n} |")
PY
