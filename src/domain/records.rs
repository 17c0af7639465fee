//! Cycle records: one JSON file per cycle as the source of truth, plus indexes that keep
//! history lookups independent of how many cycles there have been.

use crate::domain::outcome::Outcome;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything one cycle did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub cycle_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub reason: String,
    /// The cycle ended because a service could not be reached: no model answered, or the
    /// forge failed with a 5xx, a rate limit or no connection after its retries. It says
    /// nothing of the gap: it is no attempt at it, and never counts towards passing it over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outage: bool,
    pub pipeline: String,
    pub base_commit: Option<String>,
    pub gap: Option<crate::domain::prd::Gap>,
    pub model: Option<ModelUse>,
    /// Every request to a model, in order, with why it failed when it did.
    #[serde(default)]
    pub model_calls: Vec<ModelCall>,
    /// The files the prompt showed, whole or in part, with their score and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<Pick>,
    /// Each proposal tried: the first, its repairs, the escalation.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    pub proposal: Option<crate::domain::proposal::Proposal>,
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
    pub sandbox: Option<Backend>,
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
    /// What the ledger charged for the call: the server's usage, or (when `estimated`)
    /// the prompt's estimate for a call that failed or a server that sent no usage.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usd: f64,
    #[serde(default)]
    pub estimated: bool,
    /// How long the request took, from sending it to its answer or failure.
    #[serde(default)]
    pub duration_ms: u64,
    /// Whether the server answered the request itself: a reply, usable or not, or a
    /// refusal of what it holds (a 400 for a prompt over the context, a 413, a 422).
    /// False for a 5xx, a rate limit, a refused key or an unknown model, a timeout, no
    /// connection, an answer that is no chat completion, or a request never sent (no
    /// key). Records written before this was kept count as answered.
    #[serde(default = "replied")]
    pub answered: bool,
}

fn replied() -> bool {
    true
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
    pub sandbox: Option<SandboxUse>,
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
    /// The newest PR comment ids prbot had seen when it pushed: comments by others with a
    /// greater id of their kind are new review feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_seen: Option<SeenIds>,
}

/// The newest id seen of each kind of PR comment (each kind has its own ids).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeenIds {
    pub comments: u64,
    pub reviews: u64,
    pub inline: u64,
}

/// The short form kept in the indexes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub cycle_id: String,
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub reason: String,
    /// See [`Record::outage`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outage: bool,
    pub gap_id: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    pub pr_url: Option<String>,
    #[serde(default)]
    pub pr_number: Option<u64>,
    /// True when this cycle opened a new PR (not updated one).
    #[serde(default)]
    pub pr_created: bool,
    /// See [`PrRef::feedback_seen`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_seen: Option<SeenIds>,
    /// The commit this cycle put on the gap's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// How long each stage that ran took, for `prbot report`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_ms: Vec<StageTime>,
}

impl Summary {
    /// An attempt at the gap that went wrong, which counts towards passing it over; an
    /// outage says nothing of the gap.
    pub fn is_failed_attempt(&self) -> bool {
        self.outcome.is_failed_attempt() && !self.outage
    }
}

/// One stage's time in a [`Summary`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageTime {
    pub id: String,
    pub ms: u64,
}

impl Record {
    pub fn summary(&self) -> Summary {
        Summary {
            cycle_id: self.cycle_id.clone(),
            started_at: self.started_at,
            outcome: self.outcome,
            reason: self.reason.clone(),
            outage: self.outage,
            gap_id: self.gap.as_ref().map(|g| g.id.clone()),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            pr_url: self.pr.as_ref().map(|p| p.url.clone()),
            pr_number: self.pr.as_ref().map(|p| p.number),
            pr_created: self.pr.as_ref().is_some_and(|p| p.created),
            feedback_seen: self.pr.as_ref().and_then(|p| p.feedback_seen),
            commit: self.commit.clone(),
            stage_ms: self
                .stages
                .iter()
                .filter(|s| !matches!(s.status, StageStatus::Disabled | StageStatus::NotReached))
                .map(|s| StageTime { id: s.id.clone(), ms: s.duration_ms })
                .collect(),
        }
    }
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
    // An outage tells the model nothing about the gap.
    let attempts: Vec<&Summary> = attempts.iter().filter(|a| !a.outage).collect();
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
            crate::infra::text::one_line(&a.reason, 300),
            what
        ));
    }
    s.push_str("Learn from these: build on what worked, avoid paths that failed.");
    Some(s)
}

/// Why a file is in the prompt, for the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pick {
    pub path: String,
    /// False when only the matching regions and an outline are shown.
    pub whole: bool,
    /// The BM25 score against the gap (0 for files picked by name alone).
    pub score: f64,
    /// `named by the gap`, `touched by an earlier attempt`, or `matches the gap`.
    pub why: String,
}

/// The backend that confines commands, as chosen for a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Bwrap,
    Landlock,
    Off,
}

/// How one command was confined, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxUse {
    pub backend: Backend,
    /// Whether the command could reach the network beyond its own loopback.
    pub network: bool,
}
