//! The records of a state directory: one JSON file per cycle as the source of truth, a
//! line per cycle in `cycles.jsonl` for history and stats.

use crate::domain::outcome::Outcome;
use crate::domain::records::{Record, Summary};
use crate::infra::fsutil;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    State(#[from] crate::state::remote::StateError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    WeakSecret(#[from] crate::infra::secrets::WeakSecret),
}

/// The records of one state directory.
pub struct Store {
    dir: PathBuf,
    /// With the git backend, records also go to the remote's state ref.
    git: Option<crate::state::remote::GitState>,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Store { dir: state_dir.to_path_buf(), git: None }
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

    /// Brings the local copy up to date with the state ref, for the git backend.
    pub fn pull(&self) -> Result<(), RecordError> {
        if let Some(git) = &self.git {
            git.pull(&self.dir)?;
        }
        Ok(())
    }

    /// Writes the record (atomically) and then the index lines that point at it, in the
    /// state directory.
    pub fn write_local(&self, record: &Record, json: &str, summary: &str) -> Result<PathBuf, RecordError> {
        let path = self.record_path(&record.cycle_id);
        fsutil::write_atomic(&path, json.as_bytes())
            .map_err(|source| RecordError::Write { path: path.clone(), source })?;
        let mut logs = vec!["cycles.jsonl".to_string()];
        if let Some(g) = &record.gap {
            logs.push(format!("index/{}.jsonl", g.id));
        }
        for log in &logs {
            let t = self.dir.join(log);
            fsutil::append_line(&t, summary)
                .map_err(|source| RecordError::Write { path: t.clone(), source })?;
        }
        Ok(path)
    }

    /// Adds the record and its index lines to the state ref, with the git backend.
    pub fn publish(&self, record: &Record, json: &str, summary: &str) -> Result<(), RecordError> {
        let mut logs = vec!["cycles.jsonl".to_string()];
        if let Some(g) = &record.gap {
            logs.push(format!("index/{}.jsonl", g.id));
        }
        if let Some(git) = &self.git {
            git.update(&format!("record {}", record.cycle_id), |read| {
                let mut writes = vec![(format!("cycles/{}.json", record.cycle_id), json.to_string())];
                for log in &logs {
                    let mut text = read(log)?.unwrap_or_default();
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(summary);
                    text.push('\n');
                    writes.push((log.clone(), text));
                }
                Ok::<_, RecordError>(writes)
            })?;
        }
        Ok(())
    }

    /// The most recent attempts at a gap, newest first.
    pub fn attempts(&self, gap_id: &str, limit: usize) -> Result<Vec<Summary>, RecordError> {
        let mut all: Vec<Summary> = read_jsonl(&self.gap_index_path(gap_id))?
            .into_iter()
            .filter(|s| s.outcome.is_attempt())
            .collect();
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// Every cycle, oldest first.
    pub fn all(&self) -> Result<Vec<Summary>, RecordError> {
        read_jsonl(&self.log_path())
    }
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

#[derive(Debug, Serialize)]
pub struct Stats {
    pub cycles: usize,
    pub prs_opened: usize,
    /// Share of cycles that opened a PR, 0.0 to 1.0.
    pub pr_share: f64,
    pub by_outcome: BTreeMap<String, usize>,
    pub by_gap: BTreeMap<String, GapStats>,
}

#[derive(Debug, Serialize, Default)]
pub struct GapStats {
    pub cycles: usize,
    pub prs_opened: usize,
    pub last_outcome: Option<Outcome>,
}

pub fn compute_stats(all: &[Summary]) -> Stats {
    let mut by_outcome = BTreeMap::new();
    let mut by_gap: BTreeMap<String, GapStats> = BTreeMap::new();
    for s in all {
        *by_outcome.entry(s.outcome.as_str().to_string()).or_insert(0) += 1;
        if let Some(g) = &s.gap_id {
            let e = by_gap.entry(g.clone()).or_default();
            e.cycles += 1;
            e.prs_opened += (s.outcome == Outcome::Ok) as usize;
            e.last_outcome = Some(s.outcome);
        }
    }
    let prs_opened = all.iter().filter(|s| s.outcome == Outcome::Ok).count();
    let pr_share = if all.is_empty() { 0.0 } else { prs_opened as f64 / all.len() as f64 };
    Stats { cycles: all.len(), prs_opened, pr_share, by_outcome, by_gap }
}
