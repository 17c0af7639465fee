//! Choosing what of the repository goes into the prompt, within a token budget.
//!
//! Every tracked text file is ranked against the gap: first the files the gap names and
//! the files earlier attempts touched, then the rest by BM25 over contents and over path,
//! plus the files earlier commits worded like the gap changed or changed with the best
//! matches; of the files that score, those the newest commits changed rank higher. The
//! budget is filled from the best, then by score for the size; a relevant file too large
//! to fit whole is shown in part: the regions that match the gap, verbatim, and an
//! outline of the rest.
//! Ranking reads an [`Index`] by term, so it looks up only the gap's words; files are
//! read through a [`Source`]: the base's objects in a cycle, a folder in the benches.

mod index;

use super::client::estimate_tokens;
use crate::domain::prd::Gap;
use index::Field;
pub use index::{Entry as IndexEntry, Index, Object as IndexObject};

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The repository context of a prompt.
pub struct Context {
    /// Files shown, most relevant first.
    pub files: Vec<Shown>,
    /// `(path, link target)` of the chosen paths that are symbolic links: named, never read.
    pub links: Vec<(String, String)>,
    /// As much of the file list as fits.
    pub listed: Vec<String>,
    pub total_files: usize,
}

/// One file in the prompt.
pub struct Shown {
    pub path: String,
    /// The whole file, or the parts of it that were chosen (see [`Shown::whole`]).
    pub text: String,
    pub pick: Pick,
}

pub use crate::domain::records::Pick;

/// Search terms: words split on everything but letters and digits, camelCase and
/// snake_case split into their parts (the joined word is kept too), lower-cased, and the
/// parts reduced to their English stem (`dependencies` and `dependency` meet).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // An identifier joined by `_` or `-` is kept whole too (`justfile_name`,
    // `--justfile-name` and `justfileName` meet as `justfilename`): its parts may be in
    // every file, the whole in few.
    for run in text.split(ends_a_run) {
        let mut words = run.split(['_', '-']).filter(|w| !w.is_empty()).peekable();
        let first = words.next();
        if first.is_some() && words.peek().is_some() {
            out.push(run.replace(['_', '-'], "").to_lowercase());
        }
        for word in first.into_iter().chain(words) {
            tokens_of_word(word, &mut out);
        }
    }
    out
}

/// What ends a run of [`tokens`]: anything but letters, digits, `_` and `-`. The term
/// counts split text the same way, so the index holds what a query asks for.
fn ends_a_run(c: char) -> bool {
    !c.is_alphanumeric() && c != '_' && c != '-'
}

fn tokens_of_word(word: &str, out: &mut Vec<String>) {
    let parts = camel_parts(word);
    if parts.len() > 1 {
        out.push(word.to_lowercase());
    }
    out.extend(parts.into_iter().filter(|p| p.len() >= 2).map(stem));
}

/// A word's English stem; a part with digits (`f123`, `utf8`) is no English word and stays.
/// Stems are remembered: a repository repeats its words, and stemming costs more than
/// a lookup.
fn stem(word: String) -> String {
    use std::cell::RefCell;
    thread_local! {
        static STEMS: RefCell<FxHashMap<String, String>> = RefCell::new(FxHashMap::default());
    }
    static STEMMER: std::sync::OnceLock<rust_stemmers::Stemmer> = std::sync::OnceLock::new();
    if !word.chars().all(char::is_alphabetic) {
        return word;
    }
    STEMS.with_borrow_mut(|stems| {
        if let Some(s) = stems.get(&word) {
            return s.clone();
        }
        let stemmer =
            STEMMER.get_or_init(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English));
        let s = stemmer.stem(&word).into_owned();
        // Bounded: a huge repository's vocabulary is not kept for the life of `serve`.
        if stems.len() >= 200_000 {
            stems.clear();
        }
        stems.insert(word, s.clone());
        s
    })
}

/// `parseHTTPRequest2` → `parse`, `http`, `request2`.
fn camel_parts(word: &str) -> Vec<String> {
    if word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return vec![word.to_string()];
    }
    let chars: Vec<char> = word.chars().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..chars.len() {
        let (prev, cur) = (chars[i - 1], chars[i]);
        let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
        let boundary = (prev.is_lowercase() && cur.is_uppercase())
            || (prev.is_uppercase() && cur.is_uppercase() && next_lower);
        if boundary {
            parts.push(chars[start..i].iter().collect::<String>().to_lowercase());
            start = i;
        }
    }
    parts.push(chars[start..].iter().collect::<String>().to_lowercase());
    parts
}

/// Words that say nothing about where a change goes.
const STOPWORDS: [&str; 40] = [
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have", "if",
    "in", "into", "is", "it", "its", "make", "new", "no", "not", "of", "on", "or", "so", "that", "the",
    "then", "this", "to", "use", "when", "which", "will", "with", "without",
];

fn query_terms(gap: &str) -> Vec<String> {
    static STOPPED: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    let stopped = STOPPED.get_or_init(|| STOPWORDS.iter().flat_map(|w| tokens(w)).collect());
    let mut seen = HashSet::new();
    tokens(gap).into_iter().filter(|t| !stopped.contains(t) && seen.insert(t.clone())).collect()
}

/// Each query term's weight: [`CODE_WEIGHT`] for a word the gap puts in backticks, else 1.
fn term_weights(gap: &str, query: &[String]) -> Vec<f64> {
    let code: HashSet<String> = gap.split('`').skip(1).step_by(2).flat_map(tokens).collect();
    query.iter().map(|t| if code.contains(t) { CODE_WEIGHT } else { 1.0 }).collect()
}

/// The kinds of files that can't inform a change unless the gap names the kind: lock
/// files, licenses, CI entry points, vendored and generated code. The words that name
/// a kind: `ci: cache the toolchain`, `bump actions/checkout`, `update the license year`.
#[derive(Clone, Copy, PartialEq)]
enum LeftOut {
    Lock,
    License,
    Ci,
    Vendored,
    Generated,
}

impl LeftOut {
    /// Words, or runs of words, that name the kind. Plain words such as `lock` or
    /// `actions` are too common in code to name it alone.
    fn names(self) -> &'static [&'static [&'static str]] {
        match self {
            LeftOut::Lock => &[&["lockfile"], &["lockfiles"], &["lock", "file"], &["lock", "files"]],
            LeftOut::License => &[&["license"], &["licenses"], &["licence"], &["licensing"]],
            LeftOut::Ci => &[
                &["ci"],
                &["workflow"],
                &["workflows"],
                &["pipeline"],
                &["runners"],
                &["github", "actions"],
                &["github", "action"],
            ],
            LeftOut::Vendored => &[&["vendor"], &["vendored"], &["vendoring"]],
            LeftOut::Generated => &[&["generated"], &["regenerate"], &["snapshot"], &["snapshots"]],
        }
    }

    /// Whether the gap names the kind; an action's name (`bump actions/checkout`) names
    /// the CI too.
    fn named_in(self, gap: &str) -> bool {
        let gap = gap.to_lowercase();
        let words: Vec<&str> = gap.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        self.names().iter().any(|run| words.windows(run.len()).any(|w| w == *run))
            || (self == LeftOut::Ci && gap.contains("actions/"))
    }
}

fn kind_left_out(path: &str) -> Option<LeftOut> {
    let lower = if path.bytes().any(|b| b.is_ascii_uppercase()) || !path.is_ascii() {
        std::borrow::Cow::Owned(path.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(path)
    };
    let parts: Vec<&str> = lower.split('/').collect();
    let name = *parts.last().unwrap_or(&"");
    let lock = name.ends_with(".lock")
        || matches!(name, "package-lock.json" | "pnpm-lock.yaml" | "go.sum" | "npm-shrinkwrap.json");
    let license =
        ["license", "licence", "copying", "notice", "unlicense"].iter().any(|l| name.starts_with(l));
    let ci = crate::domain::guardrails::CI_ENTRY_POINTS.iter().any(|e| match e.strip_suffix('/') {
        Some(folder) => parts.len() > 1 && parts[0] == folder,
        None => parts.len() == 1 && parts[0] == *e,
    });
    let vendored =
        parts.iter().any(|p| matches!(*p, "vendor" | "third_party" | "third-party" | "node_modules"));
    let generated =
        [".min.js", ".min.css", ".map", ".pb.go", "_pb2.py", ".snap"].iter().any(|s| name.ends_with(s))
            || name.contains(".generated.");
    [
        (lock, LeftOut::Lock),
        (license, LeftOut::License),
        (ci, LeftOut::Ci),
        (vendored, LeftOut::Vendored),
        (generated, LeftOut::Generated),
    ]
    .into_iter()
    .find_map(|(is, kind)| is.then_some(kind))
}

/// What a gap leaves out: the kinds of files it does not name.
pub struct LeftOutFor {
    named: Vec<LeftOut>,
}

impl LeftOutFor {
    pub fn gap(gap: &Gap) -> LeftOutFor {
        let kinds = [LeftOut::Lock, LeftOut::License, LeftOut::Ci, LeftOut::Vendored, LeftOut::Generated];
        LeftOutFor { named: kinds.into_iter().filter(|k| k.named_in(&gap.text)).collect() }
    }

    /// A gap that names an action the CI workflows use (`bump softprops/action-gh-release
    /// from 2 to 3`) names the CI too. Only the CI's own files are read, and only when the
    /// gap holds an `owner/name` word.
    pub fn or_actions_the_ci_uses(&mut self, gap: &Gap, all: &[&str], source: &mut dyn Source) {
        if self.named.contains(&LeftOut::Ci) {
            return;
        }
        let names: Vec<String> = gap
            .text
            .split(|c: char| c.is_whitespace() || matches!(c, '`' | '\'' | '"' | ',' | '(' | ')'))
            .map(|w| w.trim_end_matches(['.', ':', ';']).to_lowercase())
            .filter(|w| {
                w.split_once('/').is_some_and(|(owner, name)| {
                    let part = |p: &str| {
                        !p.is_empty()
                            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    };
                    part(owner)
                        && part(name)
                        && !all.iter().any(|f| {
                            let (f, w) = (f.as_bytes(), w.as_bytes());
                            f.len() >= w.len() && f[f.len() - w.len()..].eq_ignore_ascii_case(w)
                        })
                })
            })
            .collect();
        if names.is_empty() {
            return;
        }
        let uses = |text: &str| {
            text.lines().filter_map(|l| l.trim_start().trim_start_matches("- ").strip_prefix("uses:")).any(
                |u| {
                    let action = u.trim().trim_matches(['"', '\'']).to_lowercase();
                    let action = action.split('@').next().unwrap_or("");
                    names.iter().any(|n| action == *n || action.starts_with(&format!("{n}/")))
                },
            )
        };
        let named = all
            .iter()
            .filter(|f| kind_left_out(f) == Some(LeftOut::Ci))
            .any(|f| source.read(f, INDEX_BYTES).is_ok_and(|text| uses(&text)));
        if named {
            self.named.push(LeftOut::Ci);
        }
    }

    /// A gap whose scope is a CI workflow's name and nothing else's (`release: add
    /// binaries for riscv64`, with `.github/workflows/release.yml` and no `release` folder
    /// or file outside the CI) names the CI too.
    pub fn or_a_workflow_by_scope(&mut self, gap: &Gap, all: &[&str]) {
        if self.named.contains(&LeftOut::Ci) {
            return;
        }
        let Some((scope, _)) = gap.text.split_once(':') else { return };
        // `fix(release)` and `release` alike; a scope is one word.
        let scope = scope.trim();
        let scope = scope.split_once('(').map_or(scope, |(_, s)| s.trim_end_matches([')', '!']));
        let scope = scope.trim_end_matches('!').to_ascii_lowercase();
        if scope.is_empty() || !scope.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
            return;
        }
        // Named by a path's part, a file's name without its extensions or a folder, in
        // any form of the word (`tests/` for `test:`).
        let scope = stem(scope);
        // A stem keeps its word's first letter, so most names are told apart without one.
        let names = |part: &str| {
            let word = part.split('.').next().unwrap_or("");
            word.as_bytes().first().map(u8::to_ascii_lowercase) == scope.as_bytes().first().copied()
                && stem(word.to_ascii_lowercase()) == scope
        };
        // Names first; the rest of the tree is looked through only when a workflow is so
        // named.
        let workflow = all
            .iter()
            .any(|f| names(f.rsplit('/').next().unwrap_or(f)) && kind_left_out(f) == Some(LeftOut::Ci));
        // A scope the rest of the tree names too (`test:` beside `tests/`) is not the CI's.
        let other = || all.iter().any(|f| f.split('/').any(names) && kind_left_out(f) != Some(LeftOut::Ci));
        if workflow && !other() {
            self.named.push(LeftOut::Ci);
        }
    }

    /// Whether `path` is of a kind left out that the gap does not name.
    #[cfg(test)]
    fn leaves_out(&self, path: &str) -> bool {
        self.leaves_out_kind(kind_left_out(path))
    }

    fn leaves_out_kind(&self, kind: Option<LeftOut>) -> bool {
        kind.is_some_and(|k| !self.named.contains(&k))
    }
}

/// How much a match in the path weighs against one in the contents. The path is its own
/// field with its own term rarity: `show` is in most files' contents but few files' names.
const PATH_WEIGHT: f64 = 1.0;
/// How much the earlier commits worded like the gap weigh against the files' own text
/// (both scaled to their best file first).
const HISTORY_WEIGHT: f64 = 0.5;
/// How well, against the best, an earlier commit's subject must match to count.
const LIKE_THE_BEST: f64 = 0.5;
/// How much changing in the same commits as the best matches weighs (scaled to the
/// file changed with them most), and how many of the best matches count.
const CHANGED_WITH_WEIGHT: f64 = 0.1;
const CHANGED_WITH_BEST: usize = 3;
/// How much more a word the gap puts in backticks weighs: it names code.
const CODE_WEIGHT: f64 = 1.5;
/// The weight of the newest commits' files, and how many commits back a commit's weight
/// falls by e: work on a part of a project comes in runs of commits.
const RECENT_WEIGHT: f64 = 0.25;
const RECENT_SPAN: f64 = 10.0;
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Files larger than this are ranked by their path alone.
pub const INDEX_BYTES: usize = 1024 * 1024;
/// The ranking reads at most this much in all.
pub const INDEX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// How often each query term occurs in one field of a document, and the field's length.
struct Terms {
    /// Counts of the query's terms, in the query's order.
    tf: Vec<u32>,
    len: u32,
}

impl Terms {
    fn of(words: &[String], query: &[String]) -> Terms {
        let tf = query.iter().map(|q| words.iter().filter(|w| *w == q).count() as u32).collect();
        Terms { tf, len: words.len() as u32 }
    }
}

/// A file's contents as term counts, `<total> term:count term:count ...` in term order,
/// or `-` when it is ranked by its path alone (binary, too large).
fn content_counts(text: &str) -> String {
    // Each distinct word is tokenised once: a file repeats its words.
    let mut words: FxHashMap<&str, u32> = FxHashMap::default();
    for word in text.split(ends_a_run).filter(|w| !w.is_empty()) {
        *words.entry(word).or_default() += 1;
    }
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for (word, n) in words {
        for t in tokens(word) {
            *counts.entry(t).or_default() += n;
        }
    }
    let total: u32 = counts.values().sum();
    let mut out = total.to_string();
    for (t, n) in counts {
        out.push(' ');
        out.push_str(&t);
        out.push(':');
        out.push_str(&n.to_string());
    }
    out
}

/// Term counts of file contents by blob id, kept in prbot's cache folder, so a warm
/// cycle reads and tokenises only what changed. Entries stay as text until used.
pub struct TermCache {
    path: PathBuf,
    text: String,
    /// Blob id → byte range of its counts in `text`.
    stored: FxHashMap<String, std::ops::Range<usize>>,
    added: FxHashMap<String, String>,
}

impl TermCache {
    const HEADER: &'static str = "prbot-context-terms 5";

    /// Reads the cache at `path`; a missing or unreadable one starts empty.
    pub fn load(path: &Path) -> TermCache {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut stored = FxHashMap::default();
        if text.starts_with(Self::HEADER) {
            let mut at = 0;
            for line in text.split_inclusive('\n') {
                let start = at;
                at += line.len();
                let Some((blob, _)) = line.split_once('\t') else { continue };
                let from = start + blob.len() + 1;
                stored.insert(blob.to_string(), from..start + line.trim_end_matches('\n').len());
            }
        }
        TermCache { path: path.to_path_buf(), text, stored, added: FxHashMap::default() }
    }

    pub fn has(&self, blob: &str) -> bool {
        self.get(blob).is_some()
    }

    /// Counts the terms of a blob's contents; `None` (binary, unreadable) ranks it by path.
    pub fn add(&mut self, blob: &str, contents: Option<&[u8]>) {
        let text = contents.filter(|b| !b.contains(&0)).and_then(|b| std::str::from_utf8(b).ok());
        let counts = text.map_or_else(|| "-".to_string(), content_counts);
        self.added.insert(blob.to_string(), counts);
    }

    /// A blob's term counts, as [`content_counts`] writes them.
    pub fn get(&self, blob: &str) -> Option<&str> {
        self.added
            .get(blob)
            .map(String::as_str)
            .or_else(|| self.stored.get(blob).map(|r| &self.text[r.clone()]))
    }

    /// Writes the entries of `keep` back, when anything changed.
    pub fn save(&self, keep: &HashSet<&str>) -> std::io::Result<()> {
        if self.added.is_empty() && self.stored.len() == keep.len() {
            return Ok(());
        }
        let mut out = String::from(Self::HEADER);
        out.push('\n');
        let mut blobs: Vec<&str> = keep.iter().copied().filter(|b| self.get(b).is_some()).collect();
        blobs.sort();
        for b in blobs {
            out.push_str(b);
            out.push('\t');
            out.push_str(self.get(b).unwrap_or("-"));
            out.push('\n');
        }
        crate::infra::fsutil::write_atomic(&self.path, out.as_bytes())
    }
}

/// What [`choose`] ranks: where its files are read from, its tracked files, their
/// [`Index`], and the commits that led to it.
pub struct Tree<'a> {
    pub source: &'a mut dyn Source,
    pub files: &'a [&'a str],
    pub index: &'a Index,
    pub history: Option<&'a History>,
}

/// Earlier commits of the base, newest first: each one's subject and the files it changed.
/// A gap worded like earlier subjects likely needs the files those commits changed (a
/// `printer:` fix and the printer's sources, a bug fix and the regression tests).
#[derive(Default)]
pub struct History {
    commits: Vec<(Vec<String>, Vec<String>)>,
}

impl History {
    /// How many commits back the history reaches.
    pub const DEPTH: usize = 1000;

    /// A commit that changed more files than this (a reformatting, a rename of a folder)
    /// says little about where a change goes.
    const MOST_FILES: usize = 100;

    /// Reads `git log --format=%x1e%P%x09%s --name-only -z` output: per commit, `\x1e`, the
    /// parents, a tab, the subject, NUL, a newline, then each file followed by NUL. A
    /// commit without parents (the first, or a shallow clone's oldest) lists every file it
    /// holds, not what it changed, and is left out.
    pub fn parse(log: &str) -> History {
        let commits = log
            .split('\x1e')
            .filter_map(|c| {
                let (head, files) = c.split_once('\0')?;
                let (parents, subject) = head.split_once('\t')?;
                if parents.trim().is_empty() {
                    return None;
                }
                let files: Vec<String> = files
                    .split('\0')
                    .map(|f| f.trim_start_matches('\n'))
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect();
                (!files.is_empty() && files.len() <= Self::MOST_FILES).then(|| (query_terms(subject), files))
            })
            .collect();
        History { commits }
    }

    /// Each file's share of the commits whose subjects match the query about as well as the
    /// best, by BM25 over the subjects; a commit that changed many files gives each a
    /// smaller part.
    fn scores(&self, query: &[String]) -> HashMap<&str, f64> {
        let subjects: Vec<Terms> = self.commits.iter().map(|(words, _)| Terms::of(words, query)).collect();
        let scores = bm25(subjects.iter(), query.len());
        // A subject that matches less than half as well as the best shares a word or two
        // with the gap, not its subject; hundreds of those drown the few that do.
        let least = LIKE_THE_BEST * scores.iter().copied().fold(0.0, f64::max);
        let mut out: HashMap<&str, f64> = HashMap::new();
        for ((_, files), s) in self.commits.iter().zip(scores).filter(|(_, s)| *s > 0.0 && *s >= least) {
            let share = s / (files.len() as f64).sqrt();
            for f in files {
                *out.entry(f.as_str()).or_default() += share;
            }
        }
        out
    }

    /// Each file's share of the newest commits: a commit weighs less the further back it
    /// is and the more files it changed.
    fn recent(&self) -> HashMap<&str, f64> {
        let mut out: HashMap<&str, f64> = HashMap::new();
        // Past ten spans a commit weighs under 1/20,000 of the newest.
        let reach = (RECENT_SPAN * 10.0) as usize;
        for (age, (_, files)) in self.commits.iter().take(reach).enumerate() {
            let share = (-(age as f64) / RECENT_SPAN).exp() / (files.len() as f64).sqrt();
            for f in files {
                *out.entry(f.as_str()).or_default() += share;
            }
        }
        out
    }

    /// Each file's share of the commits that changed any of `best` (paths with their
    /// weights), the files of `best` left out; a commit that changed many files gives each
    /// a smaller part.
    fn changed_with(&self, best: &[(&str, f64)]) -> HashMap<&str, f64> {
        let mut out: HashMap<&str, f64> = HashMap::new();
        for (_, files) in &self.commits {
            let weight: f64 = best.iter().filter(|(b, _)| files.iter().any(|f| f == b)).map(|(_, w)| w).sum();
            if weight == 0.0 {
                continue;
            }
            let share = weight / files.len() as f64;
            for f in files.iter().filter(|f| !best.iter().any(|(b, _)| b == f)) {
                *out.entry(f.as_str()).or_default() += share;
            }
        }
        out
    }
}

/// BM25 of each document against the query, in the documents' order.
fn bm25<'a>(docs: impl Iterator<Item = &'a Terms> + Clone, terms: usize) -> Vec<f64> {
    let n = docs.clone().count() as f64;
    let avg = (docs.clone().map(|d| d.len as f64).sum::<f64>() / n.max(1.0)).max(1.0);
    let idf: Vec<f64> = (0..terms)
        .map(|i| {
            let df = docs.clone().filter(|d| d.tf[i] > 0).count() as f64;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    docs.map(|d| {
        d.tf.iter()
            .zip(&idf)
            .filter(|(tf, _)| **tf > 0)
            .map(|(tf, idf)| {
                let tf = *tf as f64;
                idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * d.len as f64 / avg))
            })
            .sum()
    })
    .collect()
}

/// Files the gap names: by path, by a path's end (`greet.sh`), or by a partial path whose
/// parts appear in order in a file's path (`ignore/types` → `crates/ignore/src/types.rs`),
/// when that is specific enough to pick a few files.
fn named(gap: &str, all: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in crate::domain::prd::mentioned_paths(gap) {
        let end = format!("/{m}");
        let exact: Vec<&str> = all.iter().copied().filter(|f| *f == m || f.ends_with(&end)).collect();
        let found: Vec<&str> = if !exact.is_empty() {
            exact
        } else {
            let wanted: Vec<String> =
                m.to_lowercase().split('/').filter(|p| !p.is_empty()).map(str::to_string).collect();
            // Most paths are lower-case already: only the others are copied to compare.
            let partial: Vec<&str> = all
                .iter()
                .copied()
                .filter(|f| {
                    if f.chars().any(char::is_uppercase) {
                        in_order(&f.to_lowercase(), &wanted)
                    } else {
                        in_order(f, &wanted)
                    }
                })
                .collect();
            if partial.len() <= 3 {
                partial
            } else {
                Vec::new()
            }
        };
        for f in found {
            if !out.iter().any(|o| o == f) {
                out.push(f.to_string());
            }
        }
    }
    out
}

fn in_order(path: &str, wanted: &[String]) -> bool {
    if wanted.len() < 2 {
        return false;
    }
    let mut parts = path.split('/');
    wanted.iter().all(|w| parts.any(|p| p.contains(w.as_str())))
}

/// Each file's score against the query, by its place in the index, and why it scores:
/// BM25 of its contents plus BM25 of its path, each term by its weight in `weights`,
/// and, with history, the earlier commits worded like the gap and those that changed
/// the best matches. `ranked` says which files take part; only they count in the terms'
/// rarity, and the others score 0.
fn score(
    index: &Index,
    query: &[String],
    weights: &[f64],
    history: Option<&History>,
    ranked: &dyn Fn(usize) -> bool,
) -> Vec<(f64, &'static str)> {
    let in_rank: Vec<bool> = (0..index.len()).map(|d| !index.is_link(d) && ranked(d)).collect();
    let n = in_rank.iter().filter(|r| **r).count() as f64;
    let mut own = vec![0.0f64; index.len()];
    for (field, weight) in [(Field::Contents, 1.0), (Field::Path, PATH_WEIGHT)] {
        let total: f64 =
            (0..index.len()).filter(|d| in_rank[*d]).map(|d| index.field_len(d, field) as f64).sum();
        let avg = (total / n.max(1.0)).max(1.0);
        let mut field_score = vec![0.0f64; index.len()];
        for (term, weight) in query.iter().zip(weights) {
            let postings: Vec<(usize, u32)> =
                index.postings(field, term).filter(|(d, _)| in_rank[*d]).collect();
            let df = postings.len() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for (d, tf) in postings {
                let (tf, len) = (tf as f64, index.field_len(d, field) as f64);
                field_score[d] += weight * idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
            }
        }
        for (o, f) in own.iter_mut().zip(field_score) {
            *o += weight * f;
        }
    }
    let mut past = vec![0.0f64; index.len()];
    let mut best_past = f64::MIN_POSITIVE;
    if let Some(history) = history {
        for (path, s) in history.scores(query) {
            best_past = best_past.max(s);
            if let Some(d) = index.doc(path) {
                past[d] = s;
            }
        }
    }
    let best_own = (0..index.len()).filter(|d| in_rank[*d]).map(|d| own[d]).fold(f64::MIN_POSITIVE, f64::max);
    let mut scored: Vec<(f64, &'static str)> = (0..index.len())
        .map(|d| {
            if !in_rank[d] {
                return (0.0, "");
            }
            if history.is_none() {
                return (own[d], "matches the gap");
            }
            let (own, past) = (own[d] / best_own, HISTORY_WEIGHT * past[d] / best_past);
            let why =
                if past > own { "changed by earlier commits worded like the gap" } else { "matches the gap" };
            (own + past, why)
        })
        .collect();
    if let Some(history) = history {
        changed_with_the_best(index, history, &in_rank, &mut scored);
        changed_lately(index, history, &in_rank, &mut scored);
    }
    scored
}

/// Adds to the score of each file that scores already its share of the newest commits.
/// That orders the files picked for other reasons, and so leaves why each is picked alone.
fn changed_lately(index: &Index, history: &History, in_rank: &[bool], scored: &mut [(f64, &'static str)]) {
    let recent = history.recent();
    let most = recent.values().copied().fold(f64::MIN_POSITIVE, f64::max);
    for (path, share) in recent {
        let Some(d) = index.doc(path).filter(|d| in_rank[*d] && scored[*d].0 > 0.0) else { continue };
        scored[d].0 += RECENT_WEIGHT * share / most;
    }
}

/// Adds to each file's score its share of the earlier commits that changed the best
/// matches: a change to a parser's tests often needs the parser, whatever words it holds.
fn changed_with_the_best(
    index: &Index,
    history: &History,
    in_rank: &[bool],
    scored: &mut [(f64, &'static str)],
) {
    let mut order: Vec<usize> = (0..scored.len()).filter(|d| scored[*d].0 > 0.0).collect();
    let by_score = |a: &usize, b: &usize| {
        scored[*b].0.total_cmp(&scored[*a].0).then_with(|| index.path(*a).cmp(index.path(*b)))
    };
    if order.len() > CHANGED_WITH_BEST {
        order.select_nth_unstable_by(CHANGED_WITH_BEST - 1, by_score);
        order.truncate(CHANGED_WITH_BEST);
    }
    order.sort_by(by_score);
    let Some(&first) = order.first() else { return };
    let best: Vec<(&str, f64)> =
        order.iter().map(|d| (index.path(*d), scored[*d].0 / scored[first].0)).collect();
    let shares = history.changed_with(&best);
    let most = shares.values().copied().fold(f64::MIN_POSITIVE, f64::max);
    for (path, share) in shares {
        let Some(d) = index.doc(path).filter(|d| in_rank[*d]) else { continue };
        let added = CHANGED_WITH_WEIGHT * share / most;
        if added > scored[d].0 {
            scored[d].1 = "changed in earlier commits with the best matches";
        }
        scored[d].0 += added;
    }
}

/// Ranks the repository against the gap and fills `budget_tokens`: the files first, the
/// file list with what is left. `exclude` lists paths never shown (the PRD: the gap is
/// already in the prompt).
pub fn choose(
    tree: Tree<'_>,
    gap: &Gap,
    touched_before: &[String],
    exclude: &[String],
    budget_tokens: usize,
) -> Context {
    let (source, all) = (tree.source, tree.files);
    let query = query_terms(&gap.text);
    let weights = term_weights(&gap.text, &query);
    let mut left_out = LeftOutFor::gap(gap);
    left_out.or_actions_the_ci_uses(gap, all, source);
    left_out.or_a_workflow_by_scope(gap, all);
    let named = named(&gap.text, all);
    let mut explicit: Vec<(String, &'static str)> =
        named.iter().map(|f| (f.clone(), "named by the gap")).collect();
    for f in touched_before.iter().filter(|f| all.contains(&f.as_str())) {
        if !explicit.iter().any(|(e, _)| e == f) {
            explicit.push((f.clone(), "touched by an earlier attempt"));
        }
    }
    explicit.retain(|(f, _)| !exclude.contains(f));

    // Only the gap's terms are looked up: the index says which files hold them.
    let index = tree.index;
    let excluded: Vec<usize> = exclude.iter().filter_map(|p| index.doc(p)).collect();
    let explicit_docs: Vec<usize> = explicit.iter().filter_map(|(p, _)| index.doc(p)).collect();
    // A gap with a word only the CI workflows hold (`chore: update the os matrix`), whose
    // best match is a workflow, is about the CI. Words the rest of the tree holds too say
    // nothing of the sort, however often a workflow repeats them.
    let only_in_ci = |term: &String| {
        let mut docs =
            [Field::Contents, Field::Path].into_iter().flat_map(|f| index.postings(f, term)).peekable();
        docs.peek().is_some() && docs.all(|(d, _)| index.kind(d) == Some(LeftOut::Ci))
    };
    if left_out.leaves_out_kind(Some(LeftOut::Ci)) && query.iter().any(only_in_ci) {
        let with_ci = |d: usize| {
            !excluded.contains(&d)
                && (matches!(index.kind(d), None | Some(LeftOut::Ci)) || explicit_docs.contains(&d))
        };
        let best = score(index, &query, &weights, tree.history, &with_ci)
            .into_iter()
            .enumerate()
            .max_by(|(a, x), (b, y)| x.0.total_cmp(&y.0).then_with(|| index.path(*b).cmp(index.path(*a))));
        if best.is_some_and(|(d, (s, _))| s > 0.0 && index.kind(d) == Some(LeftOut::Ci)) {
            left_out.named.push(LeftOut::Ci);
        }
    }
    let ranked_doc = |d: usize| {
        !excluded.contains(&d) && (!left_out.leaves_out_kind(index.kind(d)) || explicit_docs.contains(&d))
    };
    let scored = score(index, &query, &weights, tree.history, &ranked_doc);
    let explicit: Vec<Ranked> = explicit
        .iter()
        .map(|(f, why)| (f.as_str(), index.doc(f).map_or(0.0, |d| scored[d].0), *why))
        .collect();
    // The best first; after it, by score for the size (see [`for_the_size`]). Ties go by
    // path, so the same tree always gives the same prompt.
    let mut by_score: Vec<(f64, Ranked)> = scored
        .iter()
        .enumerate()
        .filter(|(d, (s, _))| *s > 0.0 && !explicit_docs.contains(d))
        .map(|(d, (s, why))| {
            let words = index.field_len(d, Field::Contents);
            (for_the_size(*s, words), (index.path(d), *s, *why))
        })
        .collect();
    let best = (0..by_score.len()).max_by(|&a, &b| {
        let ((_, a), (_, b)) = (by_score[a], by_score[b]);
        a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0))
    });
    let best = best.map(|b| by_score.swap_remove(b).1);
    let rest = Sorted::new(by_score, |a: &(f64, Ranked), b: &(f64, Ranked)| {
        b.0.total_cmp(&a.0).then_with(|| a.1 .0.cmp(b.1 .0))
    });
    let mut ranked = Ranking { first: explicit.into_iter().chain(best).collect(), rest };

    // Most of the budget for contents; the file list gets what it needs, up to a tenth.
    let list_cost: usize = all.iter().map(|f| estimate_tokens(f) as usize + 1).sum();
    let list_share = list_cost.min(budget_tokens / 10);
    let mut left = budget_tokens.saturating_sub(list_share);
    let part_cap = (budget_tokens * PART_PERCENT / 100).max(200);
    let mut files = Vec::new();
    let mut links = Vec::new();
    // What filling will read, judged by the files' sizes, is read together rather than
    // one by one: the whole files that fit, and the best few in part.
    let cost = |bytes: u64| usize::try_from(bytes).unwrap_or(usize::MAX).div_ceil(4).saturating_add(20);
    let mut plan_left = left;
    let mut planned = Vec::new();
    for rank in 0.. {
        let Some((path, ..)) = ranked.get(rank) else { break };
        if plan_left < 100 {
            break;
        }
        match source.size(path) {
            Some(bytes) if cost(bytes) <= plan_left => plan_left -= cost(bytes),
            Some(_) if rank >= PARTIAL_RANKS => continue,
            Some(_) => plan_left -= part_cap.min(plan_left),
            None => {}
        }
        planned.push(path);
    }
    source.prefetch(&planned);
    for rank in 0.. {
        let Some((path, score, why)) = ranked.get(rank) else { break };
        if left < 100 {
            break;
        }
        // Below the top few, a file too large to show whole is not even read.
        if rank >= PARTIAL_RANKS && source.size(path).is_some_and(|bytes| cost(bytes) > left) {
            continue;
        }
        let text = match source.read(path, INDEX_BYTES) {
            Ok(t) => t,
            Err(Unreadable::Link(target)) => {
                links.push((path.to_string(), target));
                continue;
            }
            Err(Unreadable::Other) => continue,
        };
        let whole_cost = estimate_tokens(&text) as usize + 20;
        let score = (score * 1000.0).round() / 1000.0;
        if whole_cost <= left {
            left -= whole_cost;
            files.push(Shown {
                pick: Pick { path: path.to_string(), whole: true, score, why: why.into() },
                path: path.to_string(),
                text,
            });
            continue;
        }
        // Below the top few, a file too large to show whole is rarely what the change
        // needs; its share of the budget goes to whole files further down.
        if rank >= PARTIAL_RANKS {
            continue;
        }
        let part = partial(path, &text, &query, part_cap.min(left));
        // The part's own estimate can run past what was asked; it must still fit.
        let part = part.filter(|p| estimate_tokens(p) as usize + 20 <= left);
        if let Some(part) = part {
            left -= estimate_tokens(&part) as usize + 20;
            files.push(Shown {
                pick: Pick { path: path.to_string(), whole: false, score, why: why.into() },
                path: path.to_string(),
                text: part,
            });
        }
    }
    let mut list_left = list_share + left;
    let mut listed = Vec::new();
    for f in all {
        let cost = estimate_tokens(f) as usize + 1;
        if cost > list_left {
            break;
        }
        list_left -= cost;
        listed.push(f.to_string());
    }
    Context { files, links, listed, total_files: all.len() }
}

/// A file's score for its size, the order the budget is filled in: five small files that
/// match well inform more than one large one that matches a little better. Past
/// [`SIZE_CAP_WORDS`] size holds a file back no further: what is shown of a file that
/// large is mostly a part, whose cost does not grow with the file.
fn for_the_size(score: f64, words: u32) -> f64 {
    score / (words.min(SIZE_CAP_WORDS) as f64 + 200.0).powf(SIZE_DAMPING)
}

/// A ranked file: its path, its score and why it scores.
type Ranked<'a> = (&'a str, f64, &'static str);

/// The ranking, best first: the files placed first (named, touched before, the best
/// match), then the rest, sorted only as far as filling the budget asks.
struct Ranking<'a, F> {
    first: Vec<Ranked<'a>>,
    rest: Sorted<(f64, Ranked<'a>), F>,
}

impl<'a, F: Fn(&(f64, Ranked<'a>), &(f64, Ranked<'a>)) -> std::cmp::Ordering> Ranking<'a, F> {
    fn get(&mut self, rank: usize) -> Option<Ranked<'a>> {
        match rank.checked_sub(self.first.len()) {
            None => Some(self.first[rank]),
            Some(i) => self.rest.get(i).map(|(_, r)| *r),
        }
    }
}

/// Items in the order `cmp` gives, sorted in growing runs as they are asked for: filling
/// a budget takes the best few hundred of what may be thousands of matching files. With
/// a total order the result is the same as sorting them all.
struct Sorted<T, F> {
    items: Vec<T>,
    sorted: usize,
    cmp: F,
}

impl<T, F: Fn(&T, &T) -> std::cmp::Ordering> Sorted<T, F> {
    fn new(items: Vec<T>, cmp: F) -> Self {
        Sorted { items, sorted: 0, cmp }
    }

    fn get(&mut self, i: usize) -> Option<&T> {
        if i >= self.items.len() {
            return None;
        }
        if i >= self.sorted {
            let upto = (i + 1).max(self.sorted * 2).max(256).min(self.items.len());
            let (rest, k) = (&mut self.items[self.sorted..], upto - self.sorted);
            if k < rest.len() {
                rest.select_nth_unstable_by(k - 1, &self.cmp);
            }
            rest[..k].sort_unstable_by(&self.cmp);
            self.sorted = upto;
        }
        Some(&self.items[i])
    }
}

/// How far down the ranking a file too large to show whole is still shown in part, and
/// the share of the budget each such part may take.
const PARTIAL_RANKS: usize = 16;
const PART_PERCENT: usize = 8;
/// How much a file's size holds it back when the budget is filled (0: not at all).
const SIZE_DAMPING: f64 = 0.3;
/// The size, in words (about 45 KB of code), past which it holds a file back no further:
/// the best bound on ripgrep, just and fd at 12k, 24k and 48k tokens alike.
const SIZE_CAP_WORDS: u32 = 6_000;
/// Lines of context around each match in a partial file.
const AROUND: usize = 6;
/// The widest gap between two regions of a partial file that is shown rather than left.
const BRIDGE: usize = 3;
/// The longest section of a document shown whole around a match.
const SECTION_LINES: usize = 80;
/// Lines shown from the start and the end of a partial file.
const HEAD: usize = 20;
const TAIL: usize = 8;

/// The parts of a large file worth showing, within `budget` tokens: the regions whose
/// lines match the query, verbatim, headed by their line numbers, then an outline of
/// the file's items. `None` when nothing matches and there is no outline either.
fn partial(path: &str, text: &str, query: &[String], budget: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let wanted: HashSet<&str> = query.iter().map(String::as_str).collect();
    // Lines by the weight of the query's terms they hold, a term weighing more the fewer
    // lines of this file hold it (a crate's name is on every line, a bug's word on few);
    // best first, then by position.
    let found: Vec<HashSet<String>> = lines
        .iter()
        .map(|l| tokens(l).into_iter().filter(|t| wanted.contains(t.as_str())).collect())
        .collect();
    let mut lines_with: HashMap<&str, usize> = HashMap::new();
    for terms in &found {
        for t in terms {
            *lines_with.entry(t.as_str()).or_default() += 1;
        }
    }
    let n = lines.len() as f64;
    let mut hits: Vec<(f64, usize)> = found
        .iter()
        .enumerate()
        .filter(|(_, terms)| !terms.is_empty())
        .map(|(i, terms)| (terms.iter().map(|t| (1.0 + n / lines_with[t.as_str()] as f64).ln()).sum(), i))
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let region_budget = budget * 3 / 4;
    let mut chosen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut spent = 0;
    let line_cost = |l: usize| lines[l].len() / 4 + 1;
    // A changelog's newest section first, as much of it as the regions' budget holds:
    // that is where its next entry goes, wherever the gap's words are.
    let newest = if is_changelog(path) { newest_section(&lines) } else { 0 };
    if newest > 0 {
        let mut to = 0;
        while to < newest && spent + line_cost(to) <= region_budget {
            spent += line_cost(to);
            to += 1;
        }
        if to > 0 {
            add_region(&mut chosen, 0, to);
        }
    }
    // The head and the tail: imports and the place new tests are appended are where many
    // changes to a large file land.
    let ends = [(0, HEAD.min(lines.len())), (lines.len().saturating_sub(TAIL), lines.len())];
    for (from, to) in ends.into_iter().filter(|_| !hits.is_empty() && newest == 0) {
        let cost: usize = (from..to).filter(|l| !covered(&chosen, *l)).map(line_cost).sum();
        if spent + cost <= region_budget / 3 {
            spent += cost;
            add_region(&mut chosen, from, to);
        }
    }
    let sections = if is_prose(path) { headings(&lines) } else { Vec::new() };
    for (_, i) in hits {
        let around = (i.saturating_sub(AROUND), (i + AROUND + 1).min(lines.len()));
        // The match's section when it fits, else the lines around it.
        for (from, to) in [section_of(i, around, &sections, lines.len()), around] {
            let (from, to) = bridged(&chosen, from, to);
            let cost: usize = (from..to).filter(|l| !covered(&chosen, *l)).map(line_cost).sum();
            if spent + cost <= region_budget {
                spent += cost;
                add_region(&mut chosen, from, to);
                break;
            }
        }
    }
    let regions = merge(chosen);
    let mut out = format!(
        "(partial: {} lines in all; the regions below are verbatim, then an outline of the rest)\n",
        lines.len()
    );
    for (from, to) in &regions {
        out.push_str(&format!("@@ lines {}-{} @@\n", from + 1, to));
        for l in &lines[*from..*to] {
            out.push_str(l);
            out.push('\n');
        }
    }
    let mut outline = String::new();
    let mut outline_spent = 0;
    for (i, l) in lines.iter().enumerate() {
        if regions.iter().any(|(f, t)| i >= *f && i < *t) || !is_item(l) {
            continue;
        }
        let entry = format!("{}: {}\n", i + 1, l.trim_end());
        outline_spent += entry.len() / 4 + 1;
        if spent + outline_spent > budget {
            outline.push_str("…\n");
            break;
        }
        outline.push_str(&entry);
    }
    if regions.is_empty() && outline.is_empty() {
        return None;
    }
    if !outline.is_empty() {
        out.push_str("@@ outline (line: item) @@\n");
        out.push_str(&outline);
    }
    Some(out)
}

/// The section of a document that holds line `i`, with the heading that closes it (new
/// text goes at a section's end, and a model editing prose needs the whole of it), and
/// the lines `around` it; only those when the section is long or there are none.
fn section_of(i: usize, around: (usize, usize), headings: &[usize], len: usize) -> (usize, usize) {
    let next = headings.partition_point(|&h| h <= i);
    let start = next.checked_sub(1).map_or(0, |p| headings[p]);
    let end = headings.get(next).map_or(len, |h| h + 1);
    if headings.is_empty() || end - start > SECTION_LINES {
        around
    } else {
        (start.min(around.0), end.max(around.1))
    }
}

/// Whether a file is a document in a markup with headings (Markdown, reStructuredText,
/// AsciiDoc).
fn is_prose(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    matches!(name.rsplit_once('.').map(|(_, e)| e), Some("md" | "markdown" | "rst" | "adoc"))
}

/// The lines that start a section: Markdown `#` headings outside code blocks, and setext
/// headings (a title underlined with `===` or `---`).
fn headings(lines: &[&str]) -> Vec<usize> {
    let underline = |l: &str| {
        let t = l.trim();
        t.len() >= 3 && (t.bytes().all(|b| b == b'=') || t.bytes().all(|b| b == b'-'))
    };
    // A code block closes on its opening fence's character, at least as many times
    // (a ```` block may hold ``` lines); its `#` lines are comments.
    let fence = |t: &str| {
        let c = t.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let n = t.chars().take_while(|&x| x == c).count();
        (n >= 3).then_some((c, n))
    };
    let mut open: Option<(char, usize)> = None;
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        match (open, fence(t)) {
            (None, Some(f)) => open = Some(f),
            (Some((c, n)), Some((d, m))) if c == d && m >= n && t.trim_end().len() == m => open = None,
            _ => {}
        }
        if open.is_some() || fence(t).is_some() {
            continue;
        }
        let atx = t.starts_with('#') && t.trim_start_matches('#').starts_with(' ');
        let setext = !l.trim().is_empty() && !underline(l) && lines.get(i + 1).is_some_and(|n| underline(n));
        if atx || setext {
            out.push(i);
        }
    }
    out
}

/// Whether a file's name says it is a changelog (`CHANGELOG.md`, `HISTORY.rst`, `NEWS`);
/// a module named like one (`src/history.rs`) is not.
fn is_changelog(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let (stem, extension) = name.split_once('.').unwrap_or((&name, ""));
    if !matches!(extension, "" | "md" | "markdown" | "rst" | "txt" | "adoc" | "org") {
        return false;
    }
    matches!(
        stem,
        "changelog" | "changes" | "history" | "news" | "releases" | "release-notes" | "release_notes"
    )
}

/// Where a changelog's newest section ends, counting the heading that closes it (an entry
/// added last goes right before it): the line after its second version heading (a
/// Markdown or setext heading with a digit, or one saying `unreleased`), or the end of
/// the file when it has one such heading; 0 when it has none.
fn newest_section(lines: &[&str]) -> usize {
    let version = |title: &str| {
        let t = title.to_ascii_lowercase();
        t.bytes().any(|b| b.is_ascii_digit()) || t.contains("unreleased") || t.contains("tbd")
    };
    let mut versions = headings(lines).into_iter().filter(|&i| version(lines[i]));
    match (versions.next(), versions.next()) {
        (Some(_), Some(second)) => second + 1,
        (Some(_), None) => lines.len(),
        _ => 0,
    }
}

/// Regions are keyed by their first line; two that start alike keep the longer.
fn add_region(chosen: &mut BTreeMap<usize, usize>, from: usize, to: usize) {
    let end = chosen.entry(from).or_insert(to);
    *end = (*end).max(to);
}

/// `from..to` widened over a gap of at most [`BRIDGE`] lines to a region already chosen:
/// an edit that spans the gap needs its lines verbatim, and they cost little.
fn bridged(chosen: &BTreeMap<usize, usize>, from: usize, to: usize) -> (usize, usize) {
    let before = chosen.values().copied().filter(|&t| t <= from).max();
    let after = chosen.keys().copied().filter(|&f| f >= to).min();
    let from = before.filter(|&t| from - t <= BRIDGE).unwrap_or(from);
    let to = after.filter(|&f| f - to <= BRIDGE).unwrap_or(to);
    (from, to)
}

fn covered(chosen: &BTreeMap<usize, usize>, line: usize) -> bool {
    chosen.iter().any(|(f, t)| line >= *f && line < *t)
}

fn merge(chosen: BTreeMap<usize, usize>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (from, to) in chosen {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

/// A line that starts an item worth listing in an outline, in common languages.
fn is_item(line: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("pub(crate) ").or_else(|| t.strip_prefix("pub ")).unwrap_or(t);
    let t = t.strip_prefix("async ").or_else(|| t.strip_prefix("export ")).unwrap_or(t);
    [
        "fn ",
        "struct ",
        "enum ",
        "trait ",
        "impl ",
        "impl<",
        "mod ",
        "type ",
        "const ",
        "static ",
        "macro_rules!",
        "class ",
        "def ",
        "function ",
        "interface ",
    ]
    .iter()
    .any(|k| t.starts_with(k))
}

/// The [`Index`] of `files`, each read from `source` (the benches' and the tests' way; a
/// cycle builds it from the [`TermCache`]). Links are not ranked; binary files, files over
/// [`INDEX_BYTES`] and whatever comes after the first [`INDEX_TOTAL_BYTES`] are ranked by
/// their paths alone.
pub fn index_of(files: &[String], source: &mut dyn Source) -> Index {
    let mut read_total = 0usize;
    let mut counted: Vec<(&str, String)> = Vec::new();
    for f in files {
        let text =
            if read_total < INDEX_TOTAL_BYTES { source.read(f, INDEX_BYTES) } else { Err(Unreadable::Other) };
        let counts = match text {
            Ok(t) => {
                read_total += t.len();
                content_counts(&t)
            }
            Err(Unreadable::Other) => "-".to_string(),
            Err(Unreadable::Link(_)) => continue,
        };
        counted.push((f, counts));
    }
    Index::build(counted.iter().map(|(f, c)| (*f, c.as_str())))
}

/// Where [`choose`] reads files: the base's objects in a cycle, a folder in the benches.
pub trait Source {
    /// `path`'s text, if it is a regular UTF-8 file of at most `max` bytes.
    fn read(&mut self, path: &str, max: usize) -> Result<String, Unreadable>;

    /// `path`'s size in bytes, when it is a regular file whose size is known cheaply.
    fn size(&self, path: &str) -> Option<u64>;

    /// `paths` are about to be read: a source may read them together.
    fn prefetch(&mut self, _paths: &[&str]) {}
}

/// Why a file is not shown.
pub enum Unreadable {
    /// A symbolic link on the way, or the file itself: its target, as the link says.
    Link(String),
    /// Not a regular UTF-8 file of at most the size asked for, or not there.
    Other,
}

/// Files in a folder, never read through a symbolic link.
pub struct Folder<'a>(pub &'a Path);

impl Source for Folder<'_> {
    fn read(&mut self, path: &str, max: usize) -> Result<String, Unreadable> {
        read_regular(self.0, path, max)
    }

    fn size(&self, path: &str) -> Option<u64> {
        let plain = Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let meta = std::fs::symlink_metadata(self.0.join(path)).ok().filter(|_| plain)?;
        meta.is_file().then_some(meta.len())
    }
}

/// The base commit's files, read from the object store: what the commit holds, whatever
/// the worktree holds now, and a link is only ever its target's name. Where each file's
/// blob is comes from the base's index.
pub struct Stored<'a> {
    objects: &'a mut crate::infra::git::Objects,
    index: &'a Index,
    /// Blobs read ahead, by blob id: `None` when the store has no such blob.
    ahead: HashMap<String, Option<Vec<u8>>>,
}

impl<'a> Stored<'a> {
    pub fn new(objects: &'a mut crate::infra::git::Objects, index: &'a Index) -> Self {
        Stored { objects, index, ahead: HashMap::new() }
    }

    fn file(&self, path: &str) -> Option<index::Object<'a>> {
        self.index.doc(path).and_then(|d| self.index.object(d))
    }
}

impl Source for Stored<'_> {
    fn read(&mut self, path: &str, max: usize) -> Result<String, Unreadable> {
        let file = self.file(path).ok_or(Unreadable::Other)?;
        if !file.link && file.size > max as u64 {
            return Err(Unreadable::Other);
        }
        let read = match self.ahead.remove(file.blob) {
            Some(bytes) => Ok(bytes),
            None => self.objects.read(file.blob).map(|o| o.filter(|o| o.kind == "blob").map(|o| o.bytes)),
        };
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(Unreadable::Other),
            Err(e) => {
                tracing::warn!("cannot read {path} from the object store: {e}");
                return Err(Unreadable::Other);
            }
        };
        if file.link {
            return Err(Unreadable::Link(String::from_utf8_lossy(&bytes).into_owned()));
        }
        if bytes.len() > max || bytes.contains(&0) {
            return Err(Unreadable::Other);
        }
        String::from_utf8(bytes).map_err(|_| Unreadable::Other)
    }

    fn size(&self, path: &str) -> Option<u64> {
        self.file(path).filter(|f| !f.link).map(|f| f.size)
    }

    fn prefetch(&mut self, paths: &[&str]) {
        let blobs: Vec<&str> = paths
            .iter()
            .filter_map(|p| self.file(p))
            .filter(|f| f.link || f.size <= INDEX_BYTES as u64)
            .map(|f| f.blob)
            .collect();
        let ahead = &mut self.ahead;
        let read = self.objects.each(&blobs, |blob, o| {
            ahead.insert(blob.to_string(), o.filter(|o| o.kind == "blob").map(|o| o.bytes));
        });
        if let Err(e) = read {
            tracing::warn!("cannot read ahead from the object store: {e}");
        }
    }
}

/// Reads `rel` under `root` only if it is a regular file of at most `max` bytes reached
/// through no symbolic link; a link is never followed (a tracked link may point at
/// `/proc/self/environ` or `/dev/zero`).
fn read_regular(root: &Path, rel: &str, max: usize) -> Result<String, Unreadable> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let rel = Path::new(rel);
    // Only plain names: a listing from a cache or a gap's words cannot lead out of the tree.
    if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return Err(Unreadable::Other);
    }
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        let meta = std::fs::symlink_metadata(&at).map_err(|_| Unreadable::Other)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&at).map(|t| t.display().to_string()).unwrap_or_default();
            return Err(Unreadable::Link(target));
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&at)
        .map_err(|_| Unreadable::Other)?;
    let meta = file.metadata().map_err(|_| Unreadable::Other)?;
    if !meta.is_file() || meta.len() > max as u64 {
        return Err(Unreadable::Other);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|_| Unreadable::Other)?;
    if bytes.len() > max || bytes.contains(&0) {
        return Err(Unreadable::Other);
    }
    String::from_utf8(bytes).map_err(|_| Unreadable::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_counts_by_whole_term_only() {
        let counts = content_counts("spool pool pool poolsize 77 x77");
        assert_eq!(counts, "6 77:1 pool:2 poolsiz:1 spool:1 x77:1");
        let index = Index::build([("src/pool.rs", counts.as_str()), ("a/binary.png", "-")].into_iter());
        let found = |field, term| index.postings(field, term).collect::<Vec<_>>();
        let pool = index.doc("src/pool.rs").unwrap();
        assert_eq!(found(Field::Contents, "pool"), [(pool, 2)]);
        assert_eq!(found(Field::Contents, "spool"), [(pool, 1)]);
        assert_eq!(found(Field::Contents, "77"), [(pool, 1)]);
        assert_eq!(found(Field::Contents, "x"), []);
        assert_eq!(found(Field::Contents, "size"), []);
        assert_eq!(found(Field::Path, "pool"), [(pool, 1)]);
        assert_eq!((index.field_len(pool, Field::Contents), index.field_len(pool, Field::Path)), (6, 3));
        let png = index.doc("a/binary.png").unwrap();
        assert_eq!((index.field_len(png, Field::Contents), index.path(png)), (0, "a/binary.png"));
        assert!(index.doc("src/none.rs").is_none());
        // Damaged bytes are no index at all, not a wrong one.
        let bytes = index.bytes().to_vec();
        assert!(Index::from_bytes(bytes[..bytes.len() - 1].to_vec()).is_none());
        assert!(Index::from_bytes(b"PRBOTIX0".iter().copied().chain(bytes[8..].iter().copied()).collect())
            .is_none());
    }

    #[test]
    fn the_index_keeps_each_files_object_and_never_ranks_a_link() {
        let object = |blob, size, link| Some(IndexObject { blob, size, link });
        let counts = content_counts("pool pool");
        let files = [
            IndexEntry { path: "src/pool.rs", counts: &counts, object: object("b1", 9, false) },
            IndexEntry { path: "pool/Cargo.lock", counts: "-", object: object("b2", 11, true) },
            IndexEntry { path: "big.bin", counts: "-", object: object("b3", 5_000_000_000, false) },
        ];
        let index = Index::build(files.into_iter());
        // Every file, links too, in byte order: the prompt's file list.
        assert_eq!(index.paths().collect::<Vec<_>>(), ["big.bin", "pool/Cargo.lock", "src/pool.rs"]);
        let at = |p| index.object(index.doc(p).unwrap());
        assert_eq!(at("src/pool.rs"), object("b1", 9, false));
        assert_eq!(at("pool/Cargo.lock"), object("b2", 11, true));
        // A size past what the index holds stays past every bound prbot reads to.
        assert_eq!(at("big.bin").map(|o| o.size), Some(u32::MAX as u64));
        // The link's path holds the gap's word, yet only the file ranks; it keeps its kind.
        let link = index.doc("pool/Cargo.lock").unwrap();
        assert!(matches!(index.kind(link), Some(LeftOut::Lock)));
        assert!(index.postings(Field::Path, "pool").all(|(d, _)| d != link));
        let scored = score(&index, &query_terms("pool link"), &[1.0, 1.0], None, &|_| true);
        assert_eq!(scored[link].0, 0.0);
        assert!(scored[index.doc("src/pool.rs").unwrap()].0 > 0.0);
        // Built from a folder, an index holds no objects.
        let plain = Index::build([("src/pool.rs", counts.as_str())].into_iter());
        assert_eq!(plain.object(0), None);
    }

    #[test]
    fn a_files_counts_are_its_tokens_counted() {
        let text = "fn parseHTTPRequest2(x: u8) { parse_http(x); PARSE Ünïcode_wörter ÜberCase }\n// parse parse f0 utf8 HTTPServer httpServer\n";
        let mut want: BTreeMap<String, u32> = BTreeMap::new();
        for t in tokens(text) {
            *want.entry(t).or_default() += 1;
        }
        let total: u32 = want.values().sum();
        let want = std::iter::once(total.to_string())
            .chain(want.iter().map(|(t, n)| format!("{t}:{n}")))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(content_counts(text), want);
        assert!(want.contains(" pars:5 "), "{want}");
    }

    #[test]
    fn tokenises_and_splits_camel_and_snake_case() {
        assert_eq!(
            tokens("parseHTTPRequest2 max_file-size"),
            ["parsehttprequest2", "pars", "http", "request2", "maxfilesize", "max", "file", "size"]
        );
        // An identifier is one term in each of its spellings, besides its parts.
        let whole = |t: &str| tokens(t).into_iter().next().unwrap();
        assert_eq!(whole("`--justfile-name`"), "justfilename");
        assert_eq!(whole("justfile_name"), "justfilename");
        assert_eq!(whole("justfileName"), "justfilename");
        assert_eq!(tokens("ab -- cd - ef_"), ["ab", "cd", "ef"]);
        assert_eq!(tokens("GreetConfig::new(a)"), ["greetconfig", "greet", "config", "new"]);
        // Parts are stemmed, so a word's forms meet; the joined identifier is kept as is.
        assert_eq!(tokens("dependencies"), tokens("Dependency"));
        assert_eq!(tokens("escaping escaped"), ["escap", "escap"]);
        assert_eq!(tokens("ParsedArgs"), ["parsedargs", "pars", "arg"]);
        // Stopwords are dropped in every form, and each term is asked once.
        assert_eq!(query_terms("Make the greeting use the Greeter, greeted"), ["greet", "greeter"]);
    }

    #[test]
    fn size_holds_a_file_back_until_it_is_shown_in_part() {
        // Smaller files come first at the same score...
        assert!(for_the_size(1.0, 100) > for_the_size(1.0, 1_000));
        assert!(for_the_size(1.0, 1_000) > for_the_size(1.0, SIZE_CAP_WORDS - 1));
        // ...up to the bound; past it, only the score counts.
        assert_eq!(for_the_size(1.0, SIZE_CAP_WORDS), for_the_size(1.0, 60_000));
        assert!(for_the_size(1.1, 60_000) > for_the_size(1.0, SIZE_CAP_WORDS));
    }

    #[test]
    fn sorting_as_far_as_asked_gives_the_full_sort() {
        // Scores with many ties, broken by name: a total order, as the ranking's.
        let items: Vec<(u32, String)> = (0..3_000u32).map(|i| ((i * 7_919) % 613, format!("f{i}"))).collect();
        let cmp = |a: &(u32, String), b: &(u32, String)| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1));
        let mut full = items.clone();
        full.sort_by(cmp);
        let mut lazy = Sorted::new(items, cmp);
        // Asked in order past a run's end: only what was asked for is sorted.
        for (i, item) in full.iter().enumerate().take(700) {
            assert_eq!(lazy.get(i), Some(item), "item {i}");
        }
        assert!(lazy.sorted < 3_000);
        // Then far ahead, and back.
        for i in [2_999, 1_500, 5] {
            assert_eq!(lazy.get(i), Some(&full[i]), "item {i}");
        }
        assert_eq!(lazy.get(3_000), None);
    }

    #[test]
    fn a_path_match_outweighs_a_passing_mention() {
        let q = query_terms("increase pool capacity");
        let files = [
            ("src/pool.rs", content_counts("pub struct Pool { size: usize }")),
            ("src/other.rs", content_counts("// a pool of helpers, see pool.rs\nfn other() {}")),
            ("README.md", content_counts("nothing relevant")),
        ];
        let index = Index::build(files.iter().map(|(p, c)| (*p, c.as_str())));
        let s = |path| score(&index, &q, &[1.0; 3], None, &|_| true)[index.doc(path).unwrap()].0;
        let (pool, other, readme) = (s("src/pool.rs"), s("src/other.rs"), s("README.md"));
        assert!(pool > other && other > 0.0 && readme == 0.0, "{pool} {other} {readme}");
    }

    #[test]
    fn history_gives_each_file_its_share_of_the_commits_worded_like_the_gap() {
        let mut log = String::from(
            "\x1ea1 b2\tprinter: align columns\0\nsrc/printer.rs\0\
             \x1ea2\tprinter: fix colours\0\nsrc/printer.rs\0src/color.rs\0CHANGELOG.md\0\
             \x1ea3\twalk: skip hidden files\0\nsrc/walk.rs\0\
             \x1ea4\tprinter: empty\0\n\
             \x1e\tprinter: the first commit\0\nsrc/walk.rs\0",
        );
        log.push_str("\x1ea5\tprinter: reformat everything\0\n");
        for i in 0..=History::MOST_FILES {
            log.push_str(&format!("src/walk_{i}.rs\0"));
        }
        let h = History::parse(&log);
        assert_eq!(
            h.commits.len(),
            3,
            "a commit that changed no file or too many, or has no parent, is left out"
        );
        let s = h.scores(&query_terms("printer: trim the colours of columns"));
        assert!(s["src/printer.rs"] > s["src/color.rs"], "{s:?}");
        assert!(s["src/color.rs"] > 0.0 && (s["src/color.rs"] - s["CHANGELOG.md"]).abs() < 1e-9, "{s:?}");
        assert!(!s.contains_key("src/walk.rs"), "{s:?}");
        assert!(History::parse("").scores(&query_terms("anything")).is_empty());
    }

    #[test]
    fn a_subject_matching_far_less_than_the_best_counts_for_nothing() {
        let log = "\x1ea1 b\tfix the pool leak\0\nsrc/pool.rs\0\
                   \x1ea2 b\tfix a typo\0\nREADME.md\0\
                   \x1ea3 b\tfix the build\0\nbuild.rs\0\
                   \x1ea4 b\ta pool leak in grow\0\nsrc/grow.rs\0";
        let history = History::parse(log);
        let s = history.scores(&query_terms("fix the pool leak"));
        assert!(s["src/pool.rs"] > 0.0, "{s:?}");
        // `pool leak` matches over half as well as the best; `fix` alone does not.
        assert!(s.get("src/grow.rs").is_some_and(|g| *g > 0.0), "{s:?}");
        assert!(!s.contains_key("README.md") && !s.contains_key("build.rs"), "{s:?}");
    }

    #[test]
    fn a_word_in_backticks_weighs_more() {
        let gap = "Make `spool` rotate the reel";
        let q = query_terms(gap);
        assert_eq!(term_weights(gap, &q), [CODE_WEIGHT, 1.0, 1.0]);
        // One file holds the named code, the other a plain word of the gap, alike: they
        // score the same without the weight.
        let files = [("src/spool.rs", content_counts("spool")), ("src/reel.rs", content_counts("reel"))];
        let index = Index::build(files.iter().map(|(p, c)| (*p, c.as_str())));
        let scored = score(&index, &q, &term_weights(gap, &q), None, &|_| true);
        let s = |path: &str| scored[index.doc(path).unwrap()].0;
        assert!(s("src/spool.rs") > s("src/reel.rs") && s("src/reel.rs") > 0.0, "{scored:?}");
        let plain = score(&index, &q, &[1.0; 3], None, &|_| true);
        assert_eq!(plain[index.doc("src/spool.rs").unwrap()].0, plain[index.doc("src/reel.rs").unwrap()].0);
    }

    #[test]
    fn files_changed_with_the_best_matches_rank_after_them() {
        // `tests/spool.rs` matches the gap; `src/engine.rs` holds none of its words but
        // changed with it, more often than `src/other.rs` did.
        let log = "\x1ea1 b1\tadd a test\0\ntests/spool.rs\0src/engine.rs\0\
                   \x1ea2 b2\tfix a bug\0\ntests/spool.rs\0src/engine.rs\0src/other.rs\0\
                   \x1ea3 b3\tunrelated\0\nsrc/unrelated.rs\0";
        let history = History::parse(log);
        let files = [
            ("tests/spool.rs", content_counts("fn spool_rotates() {}")),
            ("src/engine.rs", content_counts("pub fn run() {}")),
            ("src/other.rs", content_counts("pub fn other() {}")),
            ("src/unrelated.rs", content_counts("pub fn unrelated() {}")),
        ];
        let index = Index::build(files.iter().map(|(p, c)| (*p, c.as_str())));
        let q = query_terms("spool");
        let scored = score(&index, &q, &[1.0], Some(&history), &|_| true);
        let s = |path: &str| scored[index.doc(path).unwrap()];
        assert!(s("tests/spool.rs").0 > s("src/engine.rs").0, "{scored:?}");
        assert!(s("src/engine.rs").0 > s("src/other.rs").0 && s("src/other.rs").0 > 0.0, "{scored:?}");
        assert_eq!(s("src/engine.rs").1, "changed in earlier commits with the best matches");
        assert_eq!(s("src/unrelated.rs").0, 0.0, "{scored:?}");
        // Only files that take part are raised.
        let scored = score(&index, &q, &[1.0], Some(&history), &|d| index.path(d) != "src/engine.rs");
        assert_eq!(scored[index.doc("src/engine.rs").unwrap()].0, 0.0);
    }

    #[test]
    fn of_two_equal_matches_the_one_changed_lately_ranks_first() {
        // Both match the gap alike; `src/new.rs` changed in the newest commit, `src/old.rs`
        // thirty commits back; `src/busy.rs` changed in all the others but matches nothing.
        let mut log = String::from("\x1ea0 b0\tnewest\0\nsrc/new.rs\0");
        for i in 1..30 {
            log.push_str(&format!("\x1ea{i} b{i}\tother {i}\0\nsrc/busy.rs\0"));
        }
        log.push_str("\x1ea30 b30\tolder\0\nsrc/old.rs\0");
        let history = History::parse(&log);
        let files = [
            ("src/new.rs", content_counts("fn spool() {}")),
            ("src/old.rs", content_counts("fn spool() {}")),
            ("src/busy.rs", content_counts("fn other() {}")),
        ];
        let index = Index::build(files.iter().map(|(p, c)| (*p, c.as_str())));
        let scored = score(&index, &query_terms("spool"), &[1.0], Some(&history), &|_| true);
        let s = |path: &str| scored[index.doc(path).unwrap()];
        assert!(s("src/new.rs").0 > s("src/old.rs").0, "{scored:?}");
        assert_eq!(s("src/new.rs").1, "matches the gap");
        assert_eq!(s("src/busy.rs").0, 0.0, "{scored:?}");
        // Without history the two tie.
        let scored = score(&index, &query_terms("spool"), &[1.0], None, &|_| true);
        assert_eq!(scored[index.doc("src/new.rs").unwrap()].0, scored[index.doc("src/old.rs").unwrap()].0);
    }

    #[test]
    fn lock_files_licenses_ci_vendored_and_generated_files_are_excluded() {
        for p in [
            "Cargo.lock",
            "web/yarn.lock",
            "package-lock.json",
            "LICENSE-MIT",
            "COPYING",
            ".github/workflows/ci.yml",
            "Jenkinsfile",
            "vendor/x/lib.rs",
            "app.min.js",
            "api.pb.go",
        ] {
            assert!(kind_left_out(p).is_some(), "{p}");
        }
        for p in ["src/lib.rs", "docs/licensing.md", "src/lock.rs", "README.md"] {
            assert!(kind_left_out(p).is_none(), "{p}");
        }
    }

    #[test]
    fn a_kind_left_out_comes_back_when_the_gap_names_the_kind() {
        let cases = [
            (".github/workflows/ci.yml", "ci: cache the toolchain between jobs", "Cache the toolchain"),
            (".github/workflows/release.yml", "bump actions/checkout from 4 to 5", "Bump the version to 5"),
            ("Cargo.lock", "Refresh the lock file", "Fix the lock contention in the pool"),
            ("LICENSE-MIT", "Update the license year", "Update the year in the footer"),
            (".github/workflows/ci.yml", "Add aarch64 Windows to CI.", "Undo the last actions in the editor"),
            (
                ".github/workflows/ci.yml",
                "Fix syntax of github action",
                "Fix the syntax of the action on github",
            ),
            ("vendor/x/lib.rs", "Patch the vendored parser", "Patch the parser"),
            (".github/workflows/ci.yml", "Fix pipeline!", "Fix the pipe in the runner"),
            (".github/workflows/ci.yml", "Update macOS runners", "Update the macOS test runner"),
        ];
        for (path, naming, not_naming) in cases {
            assert!(!LeftOutFor::gap(&gap(naming)).leaves_out(path), "{path} stays out of {naming:?}");
            assert!(LeftOutFor::gap(&gap(not_naming)).leaves_out(path), "{path} comes into {not_naming:?}");
        }
        assert!(!LeftOutFor::gap(&gap("Cache the toolchain")).leaves_out("src/ci.rs"));
    }

    #[test]
    fn a_gap_naming_an_action_the_ci_uses_names_the_ci() {
        let workflow = "jobs:\n  release:\n    steps:\n      - uses: actions/checkout@v4\n      - name: Publish\n        uses: 'softprops/action-gh-release@v2'\n";
        let (dir, all) = repo(&[
            (".github/workflows/release.yml", workflow.into()),
            ("src/main.rs", "fn main() {}\n".into()),
        ]);
        let ci_named = |text: &str| {
            let mut left_out = LeftOutFor::gap(&gap(text));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            left_out.or_actions_the_ci_uses(&gap(text), &all, &mut Folder(dir.path()));
            !left_out.leaves_out(".github/workflows/release.yml")
        };
        assert!(ci_named("build(deps): bump softprops/action-gh-release from 2.0.1 to 2.0.2"));
        assert!(ci_named("Bump `SoftProps/action-gh-release` to v3."));
        // An owner/name the workflows do not use, or the same words apart, do not.
        assert!(!ci_named("build(deps): bump serde-rs/json from 1.0 to 1.1"));
        assert!(!ci_named("Release with softprops action-gh-release"));
        assert!(!ci_named("Move src/main.rs"));
    }

    #[test]
    fn a_gap_scoped_by_a_workflows_name_names_the_ci() {
        let ci_named = |text: &str, all: &[&str]| {
            let mut left_out = LeftOutFor::gap(&gap(text));
            left_out.or_a_workflow_by_scope(&gap(text), all);
            !left_out.leaves_out(".github/workflows/x.yml")
        };
        let tree =
            [".github/workflows/release.yml", ".github/workflows/test.yml", "src/main.rs", "tests/cli.rs"];
        assert!(ci_named("release: add binaries for riscv64", &tree));
        assert!(ci_named("fix(Release)!: drop the 32-bit build", &tree));
        // A scope other paths hold too, a scope no workflow is named by, or no scope.
        assert!(!ci_named("test: cover the empty name", &tree));
        assert!(!ci_named("printer: fix the release notes", &tree));
        assert!(!ci_named("Prepare the release: notes", &tree));
        assert!(!ci_named("release: bump", &[".github/workflows/release.yml", "release/notes.md"]));
        // A file named like the scope inside the CI folders, but no workflow so named.
        assert!(!ci_named("release: bump", &[".github/release/config.yml"]));
        // A short scope whose stem ends unlike the word (`fly` → `fli`).
        assert!(ci_named("fly: deploy to the new region", &[".github/workflows/fly.yml", "src/main.rs"]));
        // A CI entry point outside a folder.
        assert!(ci_named("azure-pipelines: add arm64", &["azure-pipelines.yml", "src/main.rs"]));
    }

    #[test]
    fn a_gap_whose_best_match_is_a_workflow_names_the_ci() {
        let workflow = "jobs:\n  test:\n    strategy:\n      matrix:\n        os: [ubuntu-22.04, macos-13]\n    runs-on: ${{ matrix.os }}\n";
        let (dir, all) = repo(&[
            (".github/workflows/ci.yml", workflow.into()),
            ("src/main.rs", "fn main() { println!(\"hello\"); }\n".into()),
            ("src/grid.rs", "pub struct Grid { cells: Vec<u8> }\n".into()),
        ]);
        let shown = |text: &str| -> Vec<String> {
            choose_in(dir.path(), &all, &gap(text), &[], &[], 24_000)
                .files
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        assert!(shown("chore: test on macos-14 in the os matrix")
            .contains(&".github/workflows/ci.yml".to_string()));
        // A gap that a source file answers better leaves the workflow out, though they share a word.
        let grid = shown("Grid cells: make the os matrix a grid of cells");
        assert_eq!(grid.first().map(String::as_str), Some("src/grid.rs"), "{grid:?}");
        assert!(!grid.contains(&".github/workflows/ci.yml".to_string()), "{grid:?}");
        assert!(!shown("Print hello to the world").contains(&".github/workflows/ci.yml".to_string()));
    }

    fn choose_in(
        dir: &Path,
        all: &[String],
        gap: &Gap,
        touched: &[String],
        exclude: &[String],
        budget: usize,
    ) -> Context {
        let index = index_of(all, &mut Folder(dir));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        choose(
            Tree { source: &mut Folder(dir), files: &all, index: &index, history: None },
            gap,
            touched,
            exclude,
            budget,
        )
    }

    fn repo(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        for (p, t) in files {
            std::fs::create_dir_all(dir.path().join(p).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(p), t).unwrap();
        }
        let mut all: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
        all.sort();
        (dir, all)
    }

    fn gap(text: &str) -> Gap {
        Gap { id: "g".into(), text: text.into(), line: 1 }
    }

    #[test]
    fn ranks_by_relevance_and_is_deterministic() {
        let (dir, all) = repo(&[
            ("a_first.rs", "fn unrelated() {}\n".repeat(50)),
            ("src/heading.rs", "fn escape_heading(s: &str) -> String { s.replace('\\n', \" \") }\n".into()),
            ("src/man.rs", "fn man_page() { escape_heading(\"x\"); }\n".into()),
            ("Cargo.lock", "heading heading heading escape\n".into()),
        ]);
        let g = gap("Escape list heading default newline in man page");
        let run = || choose_in(dir.path(), &all, &g, &[], &[], 2_000);
        let a = run();
        let mut names: Vec<&str> = a.files.iter().map(|f| f.path.as_str()).collect();
        assert!(a.files.iter().all(|f| f.pick.score <= a.files[0].pick.score), "the best is not first");
        names.sort();
        assert_eq!(names, ["src/heading.rs", "src/man.rs"], "the lock file or an unrelated file got in");
        assert!(a.files.iter().all(|f| f.pick.whole && f.pick.why == "matches the gap"));
        let b = run();
        assert_eq!(
            a.files.iter().map(|f| (&f.path, &f.text)).collect::<Vec<_>>(),
            b.files.iter().map(|f| (&f.path, &f.text)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_large_file_is_shown_in_part_with_the_match_verbatim_and_an_outline() {
        let mut big = String::new();
        for i in 0..400 {
            big.push_str(&format!("pub fn filler_{i}() -> u32 {{\n    {i}\n}}\n\n"));
        }
        big.push_str("pub fn pool_capacity() -> usize {\n    let capacity = 16;\n    capacity\n}\n");
        let (dir, all) = repo(&[("src/pool.rs", big)]);
        let c = choose_in(dir.path(), &all, &gap("Increase the pool capacity"), &[], &[], 1_500);
        assert_eq!(c.files.len(), 1);
        let f = &c.files[0];
        assert!(!f.pick.whole);
        assert!(
            f.text.contains("pub fn pool_capacity() -> usize {\n    let capacity = 16;\n    capacity\n}\n"),
            "{}",
            f.text
        );
        assert!(f.text.contains("@@ outline (line: item) @@\n1: pub fn filler_0() -> u32 {"), "{}", f.text);
        assert!(estimate_tokens(&f.text) as usize <= 1_500);
    }

    #[test]
    fn the_files_shown_and_the_list_stay_within_the_budget() {
        // Many large files that all match, with short lines: a part's own estimate of its
        // lines runs under the final text's (headers, line numbers), which once let the
        // remaining budget wrap around and every later file in whole.
        let mut files = Vec::new();
        for n in 0..12 {
            let mut text = String::new();
            for i in 0..600 {
                text.push_str(if i % 12 == 0 { "pool xy\n" } else { "abc xyz\n" });
            }
            files.push((format!("src/pool_{n:02}.rs"), text));
        }
        files.push(("src/small_pool.rs".to_string(), "fn pool() {}\n".to_string()));
        let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
        let (dir, all) = repo(&refs);
        for budget in (300..1_500).step_by(7) {
            let c = choose_in(dir.path(), &all, &gap("pool"), &[], &[], budget);
            assert!(!c.files.is_empty());
            let shown: usize = c.files.iter().map(|f| estimate_tokens(&f.text) as usize + 20).sum();
            let listed: usize = c.listed.iter().map(|f| estimate_tokens(f) as usize + 1).sum();
            assert!(shown + listed <= budget, "budget {budget}: {shown} + {listed}");
        }
    }

    #[test]
    fn regions_a_few_lines_apart_are_shown_as_one() {
        // Matches at lines 500 and 515 (±6 lines: a 2-line gap), and at 600 and 620 (a
        // 7-line gap, left).
        let text: String = (1..=2_000)
            .map(|n| match n {
                500 | 515 | 600 | 620 => format!("let pool = grow({n});\n"),
                _ => format!("let filler = {n};\n"),
            })
            .collect();
        let part = partial("src/pool.rs", &text, &["pool".to_string()], 4_000).unwrap();
        assert!(part.contains("@@ lines 494-521 @@\n"), "{part}");
        assert!(part.contains("@@ lines 594-606 @@\n"), "{part}");
        assert!(part.contains("@@ lines 614-626 @@\n"), "{part}");
    }

    #[test]
    fn a_large_file_shows_its_head_and_tail_where_entries_are_added() {
        let mut tests = String::from("use std::fmt;\n\n");
        for i in 0..2_000 {
            tests.push_str(&format!("#[test]\nfn case_{i}() {{ assert!(true); }}\n"));
            if i == 1_000 {
                tests.push_str("#[test]\nfn pool_grows() { Pool::new().grow(); }\n");
            }
        }
        tests.push_str("// The newest test.\n");
        let (dir, all) = repo(&[("tests/pool.rs", tests)]);
        let c = choose_in(dir.path(), &all, &gap("cover the pool growth"), &[], &[], 12_000);
        let f = &c.files[0];
        assert!(!f.pick.whole);
        assert!(f.text.contains("@@ lines 1-20 @@\nuse std::fmt;\n"), "{}", f.text);
        assert!(f.text.contains("fn pool_grows() { Pool::new().grow(); }\n"), "{}", f.text);
        assert!(f.text.contains("// The newest test.\n"), "{}", f.text);
    }

    #[test]
    fn a_large_changelog_shows_its_newest_section_whole() {
        let mut log = String::from("# Changelog\n\n## Unreleased\n\n### Fixed\n");
        for i in 0..60 {
            log.push_str(&format!("- Entry {i}.\n"));
        }
        log.push_str("\n## 1.2.0 (2025-01-02)\n");
        for i in 0..3_000 {
            log.push_str(&format!("- Old entry {i}.\n"));
        }
        log.push_str("- The pool once leaked.\n");
        let (dir, all) = repo(&[("CHANGELOG.md", log.clone())]);
        let c = choose_in(dir.path(), &all, &gap("changelog: note the pool fix"), &[], &[], 8_000);
        let f = &c.files[0];
        assert!(!f.pick.whole);
        // The section and the heading that closes it: the next entry goes right before it.
        let newest: String = log.lines().take(67).map(|l| format!("{l}\n")).collect();
        assert!(newest.ends_with("\n## 1.2.0 (2025-01-02)\n"));
        assert!(f.text.contains(&format!("@@ lines 1-67 @@\n{newest}")), "{}", f.text);
    }

    #[test]
    fn a_large_documents_match_shows_its_section_through_the_next_heading() {
        let mut doc = String::from("# Guide\n\n");
        for i in 0..1_500 {
            doc.push_str(&format!("## Topic {i}\n\nFiller paragraph {i} about nothing much.\n\n"));
        }
        // A short section, its match on its heading.
        let short_from = doc.lines().count() + 1;
        doc.push_str("### Timestamps\n\nTimestamps print before each command.\n\n");
        // A code block whose `#` lines are comments, in a ```` block that holds a ``` line.
        doc.push_str("````md\n```\n# not a heading\n````\n\n```sh\n# nor this\n```\n\n");
        for i in 0..8 {
            doc.push_str(&format!("Line {i} of the section.\n"));
        }
        let short_to = doc.lines().count() + 1;
        doc.push_str("### Signals\n\n");
        // A long section: only the lines around its match.
        let long_from = doc.lines().count() + 1;
        doc.push_str("### Colours\n\n");
        for i in 0..200 {
            doc.push_str(&format!("Colour line {i}.\n"));
            if i == 100 {
                doc.push_str("The colours obey timestamps too.\n");
            }
        }
        let (dir, all) = repo(&[("README.md", doc.clone())]);
        let c = choose_in(dir.path(), &all, &gap("timestamps"), &[], &[], 8_000);
        let f = &c.files[0];
        assert!(!f.pick.whole);
        let lines: Vec<&str> = doc.lines().collect();
        // The match is the heading: the lines before it come too, where a new section goes.
        let from = short_from - AROUND;
        let section: String = lines[from - 1..short_to].iter().map(|l| format!("{l}\n")).collect();
        assert!(section.ends_with("### Signals\n"));
        assert!(f.text.contains(&format!("@@ lines {from}-{short_to} @@\n{section}")), "{}", f.text);
        let hit = lines.iter().position(|l| l.starts_with("The colours obey")).unwrap() + 1;
        assert!(f.text.contains(&format!("@@ lines {}-{} @@\n", hit - AROUND, hit + AROUND)), "{}", f.text);
        assert!(!f.text.contains(&format!("@@ lines {long_from}-")), "{}", f.text);
        // Code is not cut into sections, even where its comments look like headings.
        let mut code = String::new();
        for i in 0..3_000 {
            code.push_str(&format!("filler_{i} = {i}\n"));
        }
        code.push_str("# Settings\n");
        for i in 0..30 {
            code.push_str(&format!("setting_{i} = {i}\n"));
        }
        code.push_str("timestamps = True\n");
        for i in 0..30 {
            code.push_str(&format!("option_{i} = {i}\n"));
        }
        code.push_str("# Other\n");
        for i in 0..3_000 {
            code.push_str(&format!("other_{i} = {i}\n"));
        }
        let (dir, all) = repo(&[("app/settings.py", code.clone())]);
        let c = choose_in(dir.path(), &all, &gap("timestamps"), &[], &[], 8_000);
        let hit = code.lines().position(|l| l.starts_with("timestamps =")).unwrap() + 1;
        let around = format!("@@ lines {}-{} @@\n", hit - AROUND, hit + AROUND);
        assert!(c.files[0].text.contains(&around), "{}", c.files[0].text);
    }

    #[test]
    fn a_changelogs_newest_section_ends_at_its_second_version_heading() {
        let section = |text: &str| newest_section(&text.lines().collect::<Vec<_>>());
        // Setext headings, a section without a version first (`TBD` counts as one).
        assert_eq!(section("TBD\n===\nSoon.\n\n1.0.0 (2020)\n=====\n- a\n"), 5);
        assert_eq!(section("Changelog\n=====\n\n[1.58.0](u) - 2026\n-----\n- a\n\n[1.57.0](u)\n-----\n"), 8);
        // Headings without a version (`## Fixed`) do not end the section.
        assert_eq!(section("# Unreleased\n## Fixed\n- a\n# 1.0\n- b\n"), 4);
        assert_eq!(section("# Unreleased\n- a\n"), 2);
        assert_eq!(section("Notes without headings.\n"), 0);
        assert!(is_changelog("CHANGELOG.md") && is_changelog("docs/HISTORY.rst") && is_changelog("NEWS"));
        assert!(!is_changelog("src/changelog_parser.rs") && !is_changelog("README.md"));
        assert!(!is_changelog("src/history.rs") && !is_changelog("news.py"));
        // An attribute is no heading.
        assert_eq!(section("# Unreleased\n#[cfg(unix)] 2\n- a\n# 1.0\n"), 4);
    }

    #[test]
    fn partial_paths_find_their_file() {
        let (dir, all) = repo(&[
            ("crates/ignore/src/default_types.rs", "pub const TYPES: &[&str] = &[];\n".into()),
            ("crates/ignore/src/walk.rs", "fn walk() {}\n".into()),
            ("src/types.rs", "fn other() {}\n".into()),
        ]);
        let c = choose_in(dir.path(), &all, &gap("ignore/types: add zig"), &[], &[], 2_000);
        assert_eq!(c.files[0].path, "crates/ignore/src/default_types.rs");
        assert_eq!(c.files[0].pick.why, "named by the gap");
        // Case does not matter, on either side.
        let (dir, all) =
            repo(&[("Docs/Guide/Install.md", "Steps.\n".into()), ("docs/other.md", "Other.\n".into())]);
        let c = choose_in(dir.path(), &all, &gap("docs/INSTALL: mention zig"), &[], &[], 2_000);
        assert_eq!(
            (c.files[0].path.as_str(), c.files[0].pick.why.as_str()),
            ("Docs/Guide/Install.md", "named by the gap")
        );
    }

    #[test]
    fn a_listed_path_that_leaves_the_tree_is_never_read() {
        let (dir, mut all) = repo(&[("src/secret_words.rs", "fn hidden() {}\n".into())]);
        // A file outside the tree that a poisoned file list (or a gap) could name.
        let outside = dir.path().parent().unwrap().join("prbot-outside-secret_words.txt");
        std::fs::write(&outside, "secret words outside\n").unwrap();
        let escape = format!("../{}", outside.file_name().unwrap().to_string_lossy());
        all.push(escape.clone());
        all.push(outside.display().to_string());
        let c = choose_in(dir.path(), &all, &gap(&format!("secret words: see `{escape}`")), &[], &[], 2_000);
        let _ = std::fs::remove_file(&outside);
        assert!(c.files.iter().all(|f| !f.text.contains("outside")), "read outside the tree");
        assert!(c.files.iter().any(|f| f.path == "src/secret_words.rs"));
    }

    #[test]
    fn a_kept_index_ranks_the_same_without_reading_the_files() {
        let (dir, all) = repo(&[
            ("src/pool.rs", "pub struct Pool { capacity: usize }\n".into()),
            ("src/walk.rs", "pub fn walk() {}\n".into()),
        ]);
        let kept = dir.path().join("index");
        let g = gap("Increase the pool capacity");
        let built = index_of(&all, &mut Folder(dir.path()));
        built.save(&kept, "base-1").unwrap();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let ranked = |index: &Index| {
            let tree = Tree { source: &mut Folder(dir.path()), files: &all, index, history: None };
            choose(tree, &g, &[], &[], 2_000)
                .files
                .iter()
                .map(|f| (f.path.clone(), f.pick.score))
                .collect::<Vec<_>>()
        };
        let before = ranked(&built);
        // The ranking comes from the index, not from the files.
        std::fs::write(dir.path().join("src/walk.rs"), "capacity capacity pool pool pool\n").unwrap();
        assert_eq!(ranked(&Index::load(&kept, "base-1").expect("kept")), before);
        assert_eq!(before.len(), 1, "{before:?}");
        // Kept for another base, or cut short: not used.
        assert!(Index::load(&kept, "base-2").is_none());
        let bytes = std::fs::read(&kept).unwrap();
        std::fs::write(&kept, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Index::load(&kept, "base-1").is_none());
        std::fs::write(&kept, b"").unwrap();
        assert!(Index::load(&kept, "base-1").is_none());
    }
}
