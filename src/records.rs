//! Cycle records: one JSON file per cycle as the source of truth, plus indexes that keep
//! history lookups independent of how many cycles there have been.

use crate::fsutil;
use crate::outcome::Outcome;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything one cycle did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub cycle_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub reason: String,
    pub pipeline: String,
    pub base_commit: Option<String>,
    pub gap: Option<crate::prd::Gap>,
    pub model: Option<ModelUse>,
    /// Every request to a model, in order, with why it failed when it did.
    #[serde(default)]
    pub model_calls: Vec<ModelCall>,
    /// The files the prompt showed, whole or in part, with their score and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<crate::model::context::Pick>,
    /// Each proposal tried: the first, its repairs, the escalation.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    pub proposal: Option<crate::model::proposal::Proposal>,
    #[serde(default)]
    pub files: Vec<TouchedFile>,
    #[serde(default)]
    pub tests: Vec<TestRun>,
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pr: Option<PrRef>,
    /// The sandbox backend of the cycle's project commands, when any ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::Backend>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The cycle's model use, all calls together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelUse {
    /// The `provider/model` whose proposal the cycle went on with.
    pub name: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub usd: f64,
    /// True when a server sent no `usage` and tokens were estimated.
    pub estimated: bool,
    /// The size of the first prompt, in estimated tokens.
    pub prompt_size_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCall {
    pub model: String,
    pub ok: bool,
    /// Why the call failed, or why its reply was unusable.
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usd: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    First,
    Repair,
    Escalation,
}

/// One proposal and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub kind: AttemptKind,
    pub model: String,
    pub tokens: u64,
    pub outcome: Outcome,
    pub reason: String,
    /// The failure output that went back to the model, if any.
    #[serde(default)]
    pub excerpt: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum FileMode {
    Add,
    Update,
    Noop,
}

impl FileMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FileMode::Add => "ADD",
            FileMode::Update => "UPDATE",
            FileMode::Noop => "NOOP",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TouchedFile {
    pub path: String,
    pub mode: FileMode,
    /// The file's mode in the commit (`100644`, `100755`), once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestRun {
    pub command: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub passed: bool,
    /// The part of the output that shows the failure; empty when the command passed.
    pub excerpt: String,
    /// How the command was confined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::SandboxUse>,
    /// The file that holds the command's whole output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Passed,
    /// This stage ended the cycle with its outcome.
    Ended,
    /// A `run:` step failed, but `continue-on-error` let the cycle go on.
    FailedContinued,
    Disabled,
    NotReached,
    /// This stage failed, and the cycle went back to propose for a repair.
    Repaired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub id: String,
    pub kind: String,
    pub status: StageStatus,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrRef {
    pub number: u64,
    pub url: String,
    pub title: String,
    /// False when the cycle updated a PR that was already open.
    #[serde(default)]
    pub created: bool,
}

/// The short form kept in the indexes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub cycle_id: String,
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub reason: String,
    pub gap_id: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    pub pr_url: Option<String>,
    #[serde(default)]
    pub pr_number: Option<u64>,
    /// True when this cycle opened a new PR (not updated one).
    #[serde(default)]
    pub pr_created: bool,
}

impl Record {
    pub fn summary(&self) -> Summary {
        Summary {
            cycle_id: self.cycle_id.clone(),
            started_at: self.started_at,
            outcome: self.outcome,
            reason: self.reason.clone(),
            gap_id: self.gap.as_ref().map(|g| g.id.clone()),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            pr_url: self.pr.as_ref().map(|p| p.url.clone()),
            pr_number: self.pr.as_ref().map(|p| p.number),
            pr_created: self.pr.as_ref().is_some_and(|p| p.created),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    WeakSecret(#[from] crate::secrets::WeakSecret),
}

/// The records of one state directory.
pub struct Store {
    dir: PathBuf,
    /// With the git backend, records also go to the remote's state ref.
    git: Option<crate::state::GitState>,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Store { dir: state_dir.to_path_buf(), git: None }
    }

    pub fn with_git(mut self, git: Option<crate::state::GitState>) -> Self {
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

    /// Writes the record (atomically) and then the index lines that point at it.
    /// `json` is the record as it should appear on disk, already redacted.
    /// Writes a record: `json` is the whole record and `summary` its index line, both
    /// already redacted.
    pub fn write(&self, record: &Record, json: &str, summary: &str) -> Result<PathBuf, RecordError> {
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
        Ok(path)
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

/// A cycle id that sorts by time: `20261126T190626123Z-3f9a`.
pub fn new_cycle_id(now: DateTime<Utc>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{salt:04x}", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// The block that tells the model (and the PR reader) what earlier attempts did.
pub fn prior_attempts_block(attempts: &[Summary]) -> Option<String> {
    if attempts.is_empty() {
        return None;
    }
    let mut s = format!("Prior attempts on this gap ({} most recent):\n", attempts.len());
    for a in attempts {
        let what = match (&a.pr_url, a.files.is_empty()) {
            (Some(url), _) => format!("PR: {url}"),
            (None, false) => format!("files: {}", a.files.join(", ")),
            (None, true) => "no files touched".to_string(),
        };
        s.push_str(&format!(
            "- {} · {} · {} · {}\n",
            a.started_at.format("%Y-%m-%d %H:%M UTC"),
            a.outcome,
            one_line(&a.reason, 300),
            what
        ));
    }
    s.push_str("Learn from these: build on what worked, avoid paths that failed.");
    Some(s)
}

pub fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}
