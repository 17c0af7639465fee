#!/usr/bin/env bash
# Renders docs/report.png: `prbot report` on a made-up history of 400 cycles over two
# weeks (records copied from one real cycle), screenshotted by headless Chromium.
#
#   bash docs/report-screenshot.sh      # needs Debian's chromium package
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/common.sh
source "$here/bench/common.sh"
command -v chromium >/dev/null || { echo "install chromium (apt-get install chromium)" >&2; exit 1; }

repo="$work/repo"
mkdir -p "$repo/docs"
git -C "$repo" init --quiet -b main
printf '# PRD\n\n- [ ] Greet the world [bot-eligible]\n' > "$repo/docs/PRD.md"
git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@b commit --quiet -m init
cat > "$work/pipeline.yml" <<EOF
state:
  dir: $work/state
workspace:
  dir: $work/ws
budget:
  tokens_per_day: 160000
  usd_per_day: 2.0
stages:
  - uses: guard
  - uses: pick-gap
EOF
"$prbot" run --json --repo "$repo" --pipeline "$work/pipeline.yml" > "$work/seed.json" 2>/dev/null || true
python3 - "$work/seed.json" "$work/state" <<'PY'
import datetime, json, random, sys
seed, state = json.load(open(sys.argv[1])), sys.argv[2]
random.seed(7)
now = datetime.datetime.now(datetime.timezone.utc)
gaps = ["add-a-shout-flag", "fix-the-greeting", "docs-for-init", "retry-on-429", "speed-up-context", "colour-output"]
weights = {"ok": 5, "dry_run": 1, "tests_failed": 3, "model_failed": 1, "apply_failed": 1,
           "skipped_no_gap": 2, "skipped_pause": 1, "pr_skipped_by_policy": 1}
outcomes = [o for o, w in weights.items() for _ in range(w)]
reasons = {"tests_failed": "`cargo test` failed: exit status 101", "model_failed": "the reply holds no JSON object",
           "apply_failed": "edit 1 of 2: its search text is not in the file"}
tokens = {}
for i in range(400):
    t = now - datetime.timedelta(minutes=i * 50 + random.randint(0, 40))
    o = random.choice(outcomes)
    r = dict(seed)
    r["cycle_id"] = t.strftime("%Y%m%dT%H%M%S") + f"{t.microsecond // 1000:03d}Z-{i:04x}"
    r["started_at"] = t.isoformat()
    r["outcome"], r["reason"] = o, reasons.get(o, o.replace("_", " "))
    g = random.choice(gaps)
    r["gap"] = dict(seed["gap"], id=f"{g}-1a2b3c4d")
    r["stages"] = [dict(id=s, kind=s, status="passed", duration_ms=int(random.lognormvariate(m, 0.5)))
                   for s, m in [("guard", 3), ("pick-gap", 2.5), ("propose", 9), ("apply", 3), ("test", 10), ("pr", 6)]]
    r["pr"] = {"number": i, "url": f"https://gitea.example.com/acme/widgets/pulls/{i}", "title": "t", "created": True} if o == "ok" else None
    json.dump(r, open(f"{state}/cycles/{r['cycle_id']}.json", "w"))
    day = t.strftime("%Y-%m-%d")
    tokens[day] = tokens.get(day, 0) + random.randint(1500, 6000)
for day, n in tokens.items():
    json.dump({"day": day, "calls": n // 3000, "tokens": n, "usd": n * 1.5e-5, "prs_opened": 0},
              open(f"{state}/cost-{day}.json", "w"))
PY
"$prbot" history --reindex --limit 1 --repo "$repo" --pipeline "$work/pipeline.yml" > /dev/null
"$prbot" report --days 14 --out "$work/report.html" --repo "$repo" --pipeline "$work/pipeline.yml"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --hide-scrollbars --window-size=900,1800 \
  --screenshot="$here/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/report.png"
