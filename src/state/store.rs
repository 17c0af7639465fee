//! The records of a state directory. `cycles/<id>.json` is the source of truth; the rest
//! is derived from it and can be rebuilt (`prbot history --reindex`):
//!
//! - `cycles.jsonl`: a summary line per cycle, oldest first (history reads it from its end);
//! - `index/<gap>.jsonl`: the same lines per gap (pick-gap and `history --gap`);
//! - `stats.json`: the running totals `prbot stats` shows, with the last cycle counted.
//!
//! A write journals the cycle id first and clears it last, under `records.lock`; the next
//! writer to find a journal entry finishes what a killed write left. Temp files live in
//! `tmp/`, so sweeping them never lists the records.

use crate::domain::outcome::Outcome;
use crate::domain::records::{Record, Summary};
use crate::infra::fsutil;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    State(#[from] crate::state::remote::StateError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the record {path} is not a cycle record ({source}); move it out of the state folder")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    WeakSecret(#[from] crate::infra::secrets::WeakSecret),
}

/// The totals `prbot stats` shows, kept up to date with each record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub cycles: usize,
    pub prs_opened: usize,
    /// Share of cycles that opened a PR, 0.0 to 1.0.
    pub pr_share: f64,
    pub by_outcome: BTreeMap<String, usize>,
    pub by_gap: BTreeMap<String, GapStats>,
    /// The newest cycle counted, to tell whether the totals are behind `cycles.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cycle_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct GapStats {
    pub cycles: usize,
    pub prs_opened: usize,
    pub last_outcome: Option<Outcome>,
}

impl Stats {
    pub fn add(&mut self, s: &Summary) {
        self.cycles += 1;
        *self.by_outcome.entry(s.outcome.as_str().to_string()).or_insert(0) += 1;
        let opened = (s.outcome == Outcome::Ok) as usize;
        self.prs_opened += opened;
        if let Some(g) = &s.gap_id {
            let e = self.by_gap.entry(g.clone()).or_default();
            e.cycles += 1;
            e.prs_opened += opened;
            e.last_outcome = Some(s.outcome);
        }
        self.pr_share = self.prs_opened as f64 / self.cycles as f64;
        self.last_cycle_id = Some(s.cycle_id.clone());
    }
}

pub fn compute_stats(all: &[Summary]) -> Stats {
    let mut stats = Stats::default();
    for s in all {
        stats.add(s);
    }
    stats
}

/// The line a record adds to `cycles.jsonl` and its gap's index: its summary, as JSON with
/// sorted keys, so that a rebuilt index is byte for byte the one the writes made.
pub fn summary_line(record: &Record) -> String {
    serde_json::to_value(record.summary()).expect("a summary serialises").to_string()
}

/// The records of one state directory.
pub struct Store {
    dir: PathBuf,
    /// With the git backend, records also go to the remote's state ref.
    git: Option<crate::state::remote::GitState>,
    /// For readers of the git backend: the state commit they read, file by file, instead
    /// of the local copy (`None` before the first write).
    snapshot: Option<Option<String>>,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Store { dir: state_dir.to_path_buf(), git: None, snapshot: None }
    }

    /// A store for reading only: with the git backend it reads the remote's state commit
    /// with `git cat-file`, writes nothing in the state directory and takes no lock.
    pub fn for_reading(mut self) -> Result<Self, RecordError> {
        if let Some(git) = &self.git {
            self.snapshot = Some(git.fetch()?);
        }
        Ok(self)
    }

    /// A file of the snapshot being read, when reading the git backend's ref.
    fn snapshot_text(&self, rel: &str) -> Result<Option<Option<String>>, RecordError> {
        match (&self.snapshot, &self.git) {
            (Some(Some(commit)), Some(git)) => Ok(Some(git.read(commit, rel)?)),
            (Some(None), _) => Ok(Some(None)),
            _ => Ok(None),
        }
    }

    pub fn with_git(mut self, git: Option<crate::state::remote::GitState>) -> Self {
        self.git = git;
        self
    }

    pub fn record_path(&self, cycle_id: &str) -> PathBuf {
        self.dir.join("cycles").join(format!("{cycle_id}.json"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("cycles.jsonl")
    }

    fn gap_index_path(&self, gap_id: &str) -> PathBuf {
        self.dir.join("index").join(format!("{gap_id}.jsonl"))
    }

    fn stats_path(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn journal_path(&self, cycle_id: &str) -> PathBuf {
        self.dir.join("journal").join(cycle_id)
    }

    fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
        move |source| RecordError::Write { path: path.to_path_buf(), source }
    }

    /// Held by every writer of the derived files; readers never take it.
    fn lock(&self) -> Result<File, RecordError> {
        let path = self.dir.join("records.lock");
        std::fs::create_dir_all(&self.dir).map_err(Self::write_err(&self.dir))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::write_err(&path))?;
        file.lock().map_err(Self::write_err(&path))?;
        Ok(file)
    }

    fn put(&self, path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
        fsutil::write_atomic_in(&self.tmp_dir(), path, bytes).map_err(Self::write_err(path))
    }

    /// Brings the local copy up to date with the state ref, for the git backend.
    pub fn pull(&self) -> Result<(), RecordError> {
        if let Some(git) = &self.git {
            let _lock = self.lock()?;
            git.pull(&self.dir)?;
        }
        Ok(())
    }

    /// Writes the record and then what is derived from it, in the state directory. `json`
    /// is the record as it should appear on disk, already redacted, like `record`.
    pub fn write_local(&self, record: &Record, json: &str) -> Result<PathBuf, RecordError> {
        let _lock = self.lock()?;
        let id = &record.cycle_id;
        let journal = self.journal_path(id);
        self.put(&journal, id.as_bytes())?;
        crash_point("journal");
        let path = self.record_path(id);
        self.put(&path, json.as_bytes())?;
        crash_point("record");
        self.derive(record)?;
        crash_point("stats");
        std::fs::remove_file(&journal).map_err(Self::write_err(&journal))?;
        Ok(path)
    }

    /// Adds a record's lines to the indexes and its summary to the totals.
    fn derive(&self, record: &Record) -> Result<(), RecordError> {
        let line = summary_line(record);
        let mut logs = vec![self.log_path()];
        if let Some(g) = &record.gap {
            logs.push(self.gap_index_path(&g.id));
        }
        for (log, point) in logs.iter().zip(["log", "index"]) {
            fsutil::append_line(log, &line).map_err(Self::write_err(log))?;
            crash_point(point);
        }
        let mut stats = self.stats_local()?;
        stats.add(&record.summary());
        let json = serde_json::to_vec_pretty(&stats).expect("stats serialise");
        self.put(&self.stats_path(), &json)
    }

    /// Finishes the writes a killed process left: for each journal entry whose record was
    /// written, the index lines that are missing, then the totals counted again. Returns
    /// how many records it finished.
    pub fn recover(&self) -> Result<usize, RecordError> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("journal")) else { return Ok(0) };
        let _lock = self.lock()?;
        let mut done = 0;
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let path = self.record_path(&id);
            if path.is_file() {
                let record = read_record(&path)?;
                let line = summary_line(&record);
                let mut logs = vec![self.log_path()];
                if let Some(g) = &record.gap {
                    logs.push(self.gap_index_path(&g.id));
                }
                for log in logs {
                    if !holds(&log, &id)? {
                        fsutil::append_line(&log, &line).map_err(Self::write_err(&log))?;
                    }
                }
                done += 1;
            }
            let _ = std::fs::remove_file(e.path());
        }
        if done > 0 {
            // Whether the killed write counted the record is unknown: count them all again.
            let stats = compute_stats(&read_jsonl(&self.log_path())?);
            let json = serde_json::to_vec_pretty(&stats).expect("stats serialise");
            self.put(&self.stats_path(), &json)?;
        }
        Ok(done)
    }

    /// Rebuilds `cycles.jsonl`, `index/` and `stats.json` from the records, oldest first.
    /// Returns how many records there are.
    pub fn reindex(&self) -> Result<usize, RecordError> {
        let _lock = self.lock()?;
        let dir = self.dir.join("cycles");
        let mut ids: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(RecordError::Read { path: dir, source }),
        };
        // Cycle ids start with their time, so names sort oldest first.
        ids.sort();
        let mut log = String::new();
        let mut by_gap: BTreeMap<String, String> = BTreeMap::new();
        let mut stats = Stats::default();
        for id in &ids {
            let record = read_record(&self.record_path(id))?;
            let line = summary_line(&record);
            log.push_str(&line);
            log.push('\n');
            if let Some(g) = &record.gap {
                let index = by_gap.entry(g.id.clone()).or_default();
                index.push_str(&line);
                index.push('\n');
            }
            stats.add(&record.summary());
        }
        let index_dir = self.dir.join("index");
        fsutil::remove_tree(&index_dir).map_err(Self::write_err(&index_dir))?;
        for (gap, text) in &by_gap {
            self.put(&self.gap_index_path(gap), text.as_bytes())?;
        }
        self.put(&self.log_path(), log.as_bytes())?;
        let json = serde_json::to_vec_pretty(&stats).expect("stats serialise");
        self.put(&self.stats_path(), &json)?;
        Ok(ids.len())
    }

    /// Adds the record, its index lines and the totals to the state ref, with the git backend.
    pub fn publish(&self, record: &Record, json: &str) -> Result<(), RecordError> {
        let Some(git) = &self.git else { return Ok(()) };
        let line = summary_line(record);
        let mut logs = vec!["cycles.jsonl".to_string()];
        if let Some(g) = &record.gap {
            logs.push(format!("index/{}.jsonl", g.id));
        }
        git.update(&format!("record {}", record.cycle_id), |read| {
            let mut writes = vec![(format!("cycles/{}.json", record.cycle_id), json.to_string())];
            for log in &logs {
                let mut text = read(log)?.unwrap_or_default();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&line);
                text.push('\n');
                writes.push((log.clone(), text));
            }
            let mut stats = match read("stats.json")? {
                Some(t) => serde_json::from_str(&t).unwrap_or_default(),
                None => Stats::default(),
            };
            stats.add(&record.summary());
            writes
                .push(("stats.json".into(), serde_json::to_string_pretty(&stats).expect("stats serialise")));
            Ok::<_, RecordError>(writes)
        })?;
        Ok(())
    }

    /// The most recent attempts at a gap, newest first: read from the end of its index.
    pub fn attempts(&self, gap_id: &str, limit: usize) -> Result<Vec<Summary>, RecordError> {
        let mut out = Vec::new();
        fsutil::lines_from_end(&self.gap_index_path(gap_id), |line| {
            if let Ok(s) = serde_json::from_str::<Summary>(line) {
                if s.outcome.is_attempt() {
                    out.push(s);
                }
            }
            out.len() < limit
        })
        .map_err(|source| RecordError::Read { path: self.gap_index_path(gap_id), source })?;
        Ok(out)
    }

    /// The newest `limit` cycles, newest first, of one gap (an id or its start) if given:
    /// read from the end of `cycles.jsonl`, or from the gap's index.
    pub fn newest(&self, gap: Option<&str>, limit: usize) -> Result<Vec<Summary>, RecordError> {
        if let Some(text) = self.snapshot_text("cycles.jsonl")? {
            let mut all: Vec<Summary> = text
                .unwrap_or_default()
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Summary>(l).ok())
                .filter(|s| gap.is_none_or(|g| s.gap_id.as_deref().is_some_and(|id| id.starts_with(g))))
                .take(limit)
                .collect();
            all.truncate(limit);
            return Ok(all);
        }
        let Some(gap) = gap else { return last_summaries(&self.log_path(), limit) };
        let exact = self.gap_index_path(gap);
        if exact.is_file() {
            return last_summaries(&exact, limit);
        }
        // A prefix: the indexes whose names start with it.
        let mut all = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("index")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(gap) && name.ends_with(".jsonl") {
                    all.extend(last_summaries(&e.path(), limit)?);
                }
            }
        }
        all.sort_by(|a, b| b.cycle_id.cmp(&a.cycle_id));
        all.truncate(limit);
        Ok(all)
    }

    /// Every cycle that started at or after `since`, newest first: read from the end of
    /// `cycles.jsonl`, so the cost follows the window, not the history.
    pub fn since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Vec<Summary>, RecordError> {
        if let Some(text) = self.snapshot_text("cycles.jsonl")? {
            return Ok(text
                .unwrap_or_default()
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Summary>(l).ok())
                .take_while(|s| s.started_at >= since)
                .collect());
        }
        let path = self.log_path();
        let mut out = Vec::new();
        fsutil::lines_from_end(&path, |line| match serde_json::from_str::<Summary>(line) {
            Ok(s) if s.started_at < since => false,
            Ok(s) => {
                out.push(s);
                true
            }
            Err(_) => true,
        })
        .map_err(|source| RecordError::Read { path: path.clone(), source })?;
        Ok(out)
    }

    /// The totals: `stats.json` when it is as new as `cycles.jsonl`, else counted from it.
    pub fn stats(&self) -> Result<Stats, RecordError> {
        if let Some(log) = self.snapshot_text("cycles.jsonl")? {
            let all: Vec<Summary> =
                log.unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let kept: Option<Stats> =
                self.snapshot_text("stats.json")?.flatten().and_then(|t| serde_json::from_str(&t).ok());
            return Ok(match kept {
                Some(s) if s.last_cycle_id == all.last().map(|l| l.cycle_id.clone()) => s,
                _ => compute_stats(&all),
            });
        }
        let stats = self.stats_local()?;
        let last = last_summaries(&self.log_path(), 1)?.pop().map(|s| s.cycle_id);
        if stats.last_cycle_id == last {
            return Ok(stats);
        }
        Ok(compute_stats(&read_jsonl(&self.log_path())?))
    }

    fn stats_local(&self) -> Result<Stats, RecordError> {
        let path = self.stats_path();
        match fsutil::read_regular(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stats::default()),
            Err(source) => Err(RecordError::Read { path, source }),
        }
    }
}

/// Test builds stop dead at the named point of a record write when `PRBOT_TEST_CRASH_AT`
/// names it, as a kill would; release builds never do.
fn crash_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("PRBOT_TEST_CRASH_AT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}

/// Whether a JSONL index has a line for cycle `id`.
fn holds(path: &Path, id: &str) -> Result<bool, RecordError> {
    let mut found = false;
    fsutil::lines_from_end(path, |line| {
        found = serde_json::from_str::<Summary>(line).is_ok_and(|s| s.cycle_id == id);
        !found
    })
    .map_err(|source| RecordError::Read { path: path.to_path_buf(), source })?;
    Ok(found)
}

fn read_record(path: &Path) -> Result<Record, RecordError> {
    let bytes = fsutil::read_regular(path)
        .map_err(|source| RecordError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| RecordError::Corrupt { path: path.to_path_buf(), source })
}

/// The last `limit` readable summaries of a JSONL file, newest first.
fn last_summaries(path: &Path, limit: usize) -> Result<Vec<Summary>, RecordError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    fsutil::lines_from_end(path, |line| {
        if let Ok(s) = serde_json::from_str::<Summary>(line) {
            out.push(s);
        }
        out.len() < limit
    })
    .map_err(|source| RecordError::Read { path: path.to_path_buf(), source })?;
    Ok(out)
}

fn read_jsonl(path: &Path) -> Result<Vec<Summary>, RecordError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RecordError::Read { path: path.to_path_buf(), source }),
    };
    // A line cut short by a crash is skipped; the record files still hold the truth.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_files_are_never_read_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.json");
        std::fs::write(&outside, r#"{"cycles": 99}"#).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("stats.json")).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("cycles.jsonl")).unwrap();
        let store = Store::new(&state);
        assert!(store.stats().is_err(), "stats.json was read through a link");
        assert!(store.newest(None, 5).is_err(), "cycles.jsonl was read through a link");
    }
}
