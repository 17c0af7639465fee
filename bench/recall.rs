//! Retrieval recall of the prompt's context, the measure of the SWE-bench paper (Jimenez
//! et al., 2024, table 3): on real commits of a repository, with the commit's subject as
//! the gap and the files it modified as the gold set, how often does the prompt hold
//! every gold file?
//!
//!     cargo bench --bench recall -- <git dir or clone> [commits, default 150]
//!
//! For each of the newest non-merge commits that modify 1 to 6 existing files (and no
//! submodule), the tree of its parent is checked out into a temp folder and the context
//! is chosen at 12k, 24k and 48k tokens. Next to it, prbot with the gold files put first, as if an earlier
//! attempt had touched them (the ceiling of its budget and parts under perfect ranking),
//! and plain BM25 over path and contents on the same budget, whole files only, in score
//! order. Printed as a markdown table. The history prbot ranks with is the parent's
//! (`RECALL_NO_HISTORY=1`: none). `RECALL_FAST=1` runs 24k only, without the ceiling and
//! the baseline; `RECALL_DETAIL=1` prints each commit's gold files with their rank, size
//! and how they were shown (for a part that misses, the changed lines and those shown);
//! with `RECALL_TOP=1` too, the 20 best files, each with its size and score (`*`: gold),
//! and what the prompt shows. `RECALL_SKIP=n` passes over the newest `n` commits that
//! qualify: older commits, to check that a change holds beyond the sample it was tuned on.

use prbot::Gap;
use prbot::{choose_context as choose, index_of, Folder, History, Tree};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const BUDGETS: [usize; 3] = [12_000, 24_000, 48_000];

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("--git-dir").arg(dir).args(args).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Default)]
struct Tally {
    commits: usize,
    all_whole: usize,
    all_any: usize,
    one_whole: usize,
    one_any: usize,
    recall_sum: f64,
}

impl Tally {
    fn add(&mut self, gold: &[String], whole: &[String], part: &[String]) {
        let w = gold.iter().filter(|g| whole.contains(g)).count();
        let a = gold.iter().filter(|g| whole.contains(g) || part.contains(g)).count();
        self.commits += 1;
        self.all_whole += (w == gold.len()) as usize;
        self.all_any += (a == gold.len()) as usize;
        self.one_whole += (w > 0) as usize;
        self.one_any += (a > 0) as usize;
        self.recall_sum += w as f64 / gold.len() as f64;
    }

    fn pct(&self, n: usize) -> String {
        format!("{:.1}%", 100.0 * n as f64 / self.commits.max(1) as f64)
    }
}

/// The old-side line ranges a commit changed in `file`, 1-based and inclusive; a pure
/// insertion after line `a` is the range `a..=a+1`, the lines it goes between (only `a`
/// at the end of the file).
fn changed_lines(git_dir: &Path, parent: &str, commit: &str, file: &str) -> Vec<(usize, usize)> {
    let diff = git(git_dir, &["diff", "-U0", "--no-renames", parent, commit, "--", file]);
    let lines = git(git_dir, &["show", &format!("{parent}:{file}")]).lines().count();
    diff.lines()
        .filter_map(|l| l.strip_prefix("@@ -"))
        .filter_map(|l| {
            let old = l.split(' ').next()?;
            let (start, count) = match old.split_once(',') {
                Some((s, c)) => (s.parse::<usize>().ok()?, c.parse::<usize>().ok()?),
                None => (old.parse::<usize>().ok()?, 1),
            };
            Some(if count == 0 {
                (start.max(1), (start + 1).min(lines.max(1)))
            } else {
                (start, start + count - 1)
            })
        })
        .collect()
}

/// A partial file's verbatim regions (`@@ lines a-b @@`).
fn regions(partial: &str) -> Vec<(usize, usize)> {
    partial
        .lines()
        .filter_map(|l| l.strip_prefix("@@ lines ")?.strip_suffix(" @@")?.split_once('-'))
        .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .collect()
}

/// Whether a partial file's verbatim regions (`@@ lines a-b @@`) hold every changed line.
fn regions_cover(partial: &str, changed: &[(usize, usize)]) -> bool {
    let regions = regions(partial);
    !changed.is_empty()
        && changed.iter().all(|(from, to)| {
            (*from..=*to).all(|line| regions.iter().any(|(a, b)| (*a..=*b).contains(&line)))
        })
}

/// The baseline's words: split on anything but letters and digits, lower-cased; no
/// stemming or camelCase splitting, so prbot's changes to its own words leave it alone.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Plain BM25 over path and contents, whole files in score order until the budget is spent.
fn baseline(root: &Path, files: &[String], gap: &str, budget: usize) -> Vec<String> {
    let query: Vec<String> = {
        let mut q = tokens(gap);
        q.sort();
        q.dedup();
        q
    };
    let docs: Vec<(String, HashMap<String, f64>, f64, usize)> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(root.join(f)).ok()?;
            let mut tf: HashMap<String, f64> = HashMap::new();
            let toks: Vec<String> = tokens(f).into_iter().chain(tokens(&text)).collect();
            for t in &toks {
                *tf.entry(t.clone()).or_default() += 1.0;
            }
            Some((f.clone(), tf, toks.len() as f64, text.len() / 4 + 20))
        })
        .collect();
    let n = docs.len() as f64;
    let avg = docs.iter().map(|d| d.2).sum::<f64>() / n.max(1.0);
    let mut scored: Vec<(f64, &String, usize)> = docs
        .iter()
        .map(|(f, tf, len, cost)| {
            let s: f64 = query
                .iter()
                .map(|q| {
                    let df = docs.iter().filter(|d| d.1.contains_key(q)).count() as f64;
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    let t = *tf.get(q).unwrap_or(&0.0);
                    idf * t * 2.2 / (t + 1.2 * (0.25 + 0.75 * len / avg))
                })
                .sum();
            (s, f, *cost)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let mut left = budget;
    let mut out = Vec::new();
    for (s, f, cost) in scored {
        if s <= 0.0 {
            break;
        }
        if cost <= left {
            left -= cost;
            out.push(f.clone());
        }
    }
    out
}

/// One line per commit on stderr: each gold file's rank, size and how it was shown at 24k.
fn detail(
    root: &Path,
    files: &[String],
    history: Option<&History>,
    gap: &Gap,
    gold: &[String],
    changed: &dyn Fn(&str) -> Vec<(usize, usize)>,
) {
    let index = index_of(files, &mut Folder(root));
    let (mut a, mut b) = (Folder(root), Folder(root));
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let files = &files[..];
    let all = choose(Tree { source: &mut a, files, index: &index, history }, gap, &[], &[], usize::MAX / 4);
    let ctx = choose(Tree { source: &mut b, files, index: &index, history }, gap, &[], &[], 23_200);
    let mut line = format!("{:?}", gap.text);
    for g in gold {
        let rank = all.files.iter().position(|f| &f.path == g);
        let size = std::fs::read_to_string(root.join(g)).map(|t| t.len() / 4).unwrap_or(0);
        let shown = match ctx.files.iter().find(|f| &f.path == g) {
            Some(f) if f.pick.whole => "WHOLE".to_string(),
            Some(f) => {
                let cov = regions_cover(&f.text, &changed(g));
                if cov {
                    "part+".to_string()
                } else {
                    format!("part- changed {:?} shown {:?}", changed(g), regions(&f.text))
                }
            }
            None => "-".to_string(),
        };
        line.push_str(&format!(" | {g} r{} {}t {shown}", rank.map_or("?".into(), |r| r.to_string()), size));
    }
    if std::env::var_os("RECALL_TOP").is_some() {
        // Ranked by score for the size, with each file's raw score.
        let top: Vec<String> = all
            .files
            .iter()
            .take(20)
            .map(|f| {
                let size = std::fs::read_to_string(root.join(&f.path)).map(|t| t.len() / 4).unwrap_or(0);
                format!(
                    "{}{} {}t {:.2}",
                    if gold.contains(&f.path) { "*" } else { "" },
                    f.path,
                    size,
                    f.pick.score
                )
            })
            .collect();
        line.push_str(&format!("\n    TOP {}", top.join(", ")));
        // What the prompt shows at 24k (`~`: in part), each with what it costs.
        let shown: Vec<String> = ctx
            .files
            .iter()
            .map(|f| format!("{}{} {}t", if f.pick.whole { "" } else { "~" }, f.path, f.text.len() / 4))
            .collect();
        line.push_str(&format!("\n    SHOWN {}", shown.join(", ")));
    }
    eprintln!("{line}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some(repo) = args.first() else {
        eprintln!("usage: cargo bench --bench recall -- <git dir or clone> [commits]");
        std::process::exit(2);
    };
    let want: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(150);
    let mut git_dir = Path::new(repo).to_path_buf();
    if git_dir.join(".git").exists() {
        git_dir = git_dir.join(".git");
    }
    let log = git(&git_dir, &["log", "--no-merges", "--format=%H %P%x09%s", "-n", "3000"]);
    let mut ours: HashMap<usize, Tally> = HashMap::new();
    let mut base: HashMap<usize, Tally> = HashMap::new();
    let mut gold_first: HashMap<usize, Tally> = HashMap::new();
    let mut done = 0;
    let skip: usize = std::env::var("RECALL_SKIP").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut skipped = 0;
    let tmp = tempfile::tempdir().unwrap();
    for line in log.lines() {
        if done >= want {
            break;
        }
        let Some((ids, subject)) = line.split_once('\t') else { continue };
        let ids: Vec<&str> = ids.split(' ').collect();
        if ids.len() != 2 {
            continue;
        }
        let (commit, parent) = (ids[0], ids[1]);
        // `:100644 100644 <old> <new> M\t<path>`; a submodule's pointer (mode 160000) is
        // no file any prompt could hold, so a commit that moves one is left out.
        let changed = git(&git_dir, &["diff-tree", "-r", "--no-renames", "--raw", parent, commit]);
        let gold: Vec<String> = changed
            .lines()
            .filter(|l| !l.starts_with(":160000") && !l.contains(" 160000 "))
            .filter_map(|l| l.split_once(" M\t").map(|(_, p)| p))
            .filter(|p| !p.ends_with(".lock"))
            .map(str::to_string)
            .collect();
        if gold.is_empty() || gold.len() > 6 || changed.lines().count() != gold.len() {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        let root = tmp.path().join(format!("c{done}"));
        std::fs::create_dir_all(&root).unwrap();
        let archive =
            Command::new("git").arg("--git-dir").arg(&git_dir).args(["archive", parent]).output().unwrap();
        let mut tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&root)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &archive.stdout).unwrap();
        drop(tar.stdin.take());
        tar.wait().unwrap();
        let files: Vec<String> =
            git(&git_dir, &["ls-tree", "-r", "--name-only", parent]).lines().map(str::to_string).collect();
        let gap = Gap { id: "bench".into(), text: subject.to_string(), line: 1 };
        let log = git(
            &git_dir,
            &["log", "--no-merges", "--format=%x1e%P%x09%s", "--name-only", "-z", "-n", "1000", parent],
        );
        let history = (std::env::var_os("RECALL_NO_HISTORY").is_none()).then(|| History::parse(&log));
        if std::env::var_os("RECALL_DETAIL").is_some() {
            detail(&root, &files, history.as_ref(), &gap, &gold, &|f| {
                changed_lines(&git_dir, parent, commit, f)
            });
        }
        let index = index_of(&files, &mut Folder(&root));
        let paths: Vec<&str> = files.iter().map(String::as_str).collect();
        let budgets: &[usize] =
            if std::env::var_os("RECALL_FAST").is_some() { &BUDGETS[1..2] } else { &BUDGETS };
        for &budget in budgets {
            // The ranking as it is, then with the gold files first (passed as the files an
            // earlier attempt touched): what the same budget and parts give when ranking
            // is perfect.
            for (tally, first) in [(&mut ours, &[][..]), (&mut gold_first, &gold[..])] {
                if !first.is_empty() && std::env::var_os("RECALL_FAST").is_some() {
                    continue;
                }
                let mut folder = Folder(&root);
                let tree =
                    Tree { source: &mut folder, files: &paths, index: &index, history: history.as_ref() };
                // The prompt's own text (system prompt, task) takes about this much.
                let ctx = choose(tree, &gap, first, &[], budget.saturating_sub(800));
                let whole: Vec<String> =
                    ctx.files.iter().filter(|f| f.pick.whole).map(|f| f.path.clone()).collect();
                // A partial file counts only when its regions hold every line the commit changed.
                let part: Vec<String> = ctx
                    .files
                    .iter()
                    .filter(|f| !f.pick.whole && gold.contains(&f.path))
                    .filter(|f| regions_cover(&f.text, &changed_lines(&git_dir, parent, commit, &f.path)))
                    .map(|f| f.path.clone())
                    .collect();
                tally.entry(budget).or_default().add(&gold, &whole, &part);
            }
            if std::env::var_os("RECALL_FAST").is_none() {
                let b = baseline(&root, &files, subject, budget.saturating_sub(800));
                base.entry(budget).or_default().add(&gold, &b, &[]);
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
        done += 1;
        eprint!(".");
    }
    eprintln!();
    println!("{done} commits of {repo}\n");
    println!("| Budget | Context | Every gold file whole | Every gold file, whole or its changed lines | At least one whole | At least one, whole or its changed lines | Mean per-file recall (whole) |");
    println!("|---|---|---|---|---|---|---|");
    for budget in BUDGETS {
        let rows = [
            ("prbot", ours.get(&budget)),
            ("prbot, gold files first", gold_first.get(&budget)),
            ("plain BM25", base.get(&budget)),
        ];
        for (name, t) in rows {
            let Some(t) = t else { continue };
            println!(
                "| {}k | {name} | {} | {} | {} | {} | {:.1}% |",
                budget / 1000,
                t.pct(t.all_whole),
                t.pct(t.all_any),
                t.pct(t.one_whole),
                t.pct(t.one_any),
                100.0 * t.recall_sum / t.commits.max(1) as f64
            );
        }
    }
}
