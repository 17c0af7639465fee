//! What the stages hand each other. A stage reads the [`Progress`] so far and returns a
//! [`Step`]: what it produced and how the cycle goes on. Only the engine folds a step
//! into the progress, so no stage writes what another reads.

use super::End;
use crate::adapters::model::ChatMessage;
use crate::domain::outcome::Outcome;
use crate::domain::prd::Gap;
use crate::domain::proposal::Proposal;
use crate::domain::records::{AttemptKind, Pick, PrRef, StageStatus, Summary, TestRun, TouchedFile};

/// The gap pick-gap chose, with the history of earlier cycles on it.
#[derive(Debug, Clone)]
pub(crate) struct Picked {
    pub gap: Gap,
    /// Earlier cycles on this gap, newest first.
    pub prior: Vec<Summary>,
    /// Review feedback on the gap's open PR since prbot's last push, newest first: the
    /// reason the gap was picked again.
    pub feedback: Vec<crate::adapters::forge::Comment>,
    /// The newest comment ids on the gap's PR when it was picked (0s without a PR).
    pub comments_seen: crate::domain::records::SeenIds,
    /// Where the gap's branch may be when prbot pushes: the commit prbot last pushed (or
    /// one a maintainer handed back); `None` when the branch must not exist yet.
    pub branch_at: Option<String>,
}

/// What propose is asked for: set by the engine, which owns the attempts.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    /// The first proposal, from the gap and its context.
    First,
    /// A corrected proposal, in the same conversation.
    Repair {
        kind: AttemptKind,
        /// What to tell the model about the failure.
        feedback: String,
        /// The conversation so far, ending with the model's last answer.
        conversation: Vec<ChatMessage>,
        /// The failure this repair answers; the cycle keeps it if the repair cannot be asked.
        after: End,
    },
}

/// A proposal and the conversation that produced it.
#[derive(Debug, Clone)]
pub(crate) struct Proposed {
    pub proposal: Proposal,
    pub kind: AttemptKind,
    /// The model that answered.
    pub model: String,
    pub conversation: Vec<ChatMessage>,
    /// The files the first prompt showed, and why (empty for repairs).
    pub context: Vec<Pick>,
}

/// The change in the worktree: staged, checked by the guardrails and the policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Change {
    pub files: Vec<TouchedFile>,
    /// Bytes the change touches, for the policy.
    pub bytes_changed: usize,
}

/// The change committed on the gap's branch, and its PR when one was opened or updated.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub branch: String,
    pub commit: String,
    /// The change's files, with the modes they have in the commit.
    pub files: Vec<TouchedFile>,
    pub pr: Option<PrRef>,
}

/// Everything the stages produced so far in this cycle.
#[derive(Debug)]
pub(crate) struct Progress {
    pub picked: Option<Picked>,
    pub request: Request,
    pub proposed: Option<Proposed>,
    /// The first prompt's files, kept across repairs.
    pub context: Vec<Pick>,
    pub change: Option<Change>,
    pub tests: Vec<TestRun>,
    pub published: Option<Published>,
}

/// What one stage produced.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    pub picked: Option<Picked>,
    pub proposed: Option<Proposed>,
    /// Replaces the change so far.
    pub change: Option<Change>,
    /// Added to the runs so far.
    pub tests: Vec<TestRun>,
    pub published: Option<Published>,
}

/// How the cycle goes on after a stage.
#[derive(Debug)]
pub(crate) enum Flow {
    Next(StageStatus),
    /// A failure the model may fix: the engine decides whether to ask for a repair.
    Repair {
        failure: End,
        feedback: String,
    },
    Stop(End),
}

/// A stage's result.
#[derive(Debug)]
pub(crate) struct Step {
    pub produced: Produced,
    pub flow: Flow,
}

impl Step {
    pub fn next(produced: Produced, status: StageStatus) -> Step {
        Step { produced, flow: Flow::Next(status) }
    }

    /// What a stage produced, and how it came out.
    pub fn finish(produced: Produced, result: Result<StageStatus, End>) -> Step {
        match result {
            Ok(status) => Step::next(produced, status),
            Err(end) => Step::ended(produced, end),
        }
    }

    /// A stage that produced `produced` before it ended with `end`.
    pub fn ended(produced: Produced, end: End) -> Step {
        let flow = match end.feedback.clone() {
            Some(feedback) => Flow::Repair { failure: End { feedback: None, ..end }, feedback },
            None => Flow::Stop(end),
        };
        Step { produced, flow }
    }
}

impl From<Result<StageStatus, End>> for Step {
    fn from(r: Result<StageStatus, End>) -> Step {
        Step::finish(Produced::default(), r)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            picked: None,
            request: Request::First,
            proposed: None,
            context: Vec::new(),
            change: None,
            tests: Vec::new(),
            published: None,
        }
    }
}

impl Progress {
    /// Folds in what a stage produced.
    pub fn absorb(&mut self, p: Produced) {
        if let Some(picked) = p.picked {
            self.picked = Some(picked);
        }
        if let Some(proposed) = p.proposed {
            if self.context.is_empty() {
                self.context = proposed.context.clone();
            }
            self.proposed = Some(proposed);
        }
        if let Some(change) = p.change {
            self.change = Some(change);
        }
        self.tests.extend(p.tests);
        if let Some(published) = p.published {
            self.published = Some(published);
        }
    }

    /// Back to before propose, to ask for `request`: the proposal, the change and the
    /// runs of the failed attempt are dropped.
    pub fn rewind(&mut self, request: Request) {
        self.request = request;
        self.proposed = None;
        self.change = None;
        self.tests.clear();
    }

    /// The gap; pipeline validation puts pick-gap before every stage that needs one.
    pub fn gap(&self) -> Result<&Picked, End> {
        self.picked.as_ref().ok_or_else(|| order("a gap"))
    }

    /// The proposal; validation puts propose before apply.
    pub fn proposal(&self) -> Result<&Proposed, End> {
        self.proposed.as_ref().ok_or_else(|| order("a proposal"))
    }

    /// The applied change; validation puts apply before test and pr.
    pub fn change(&self) -> Result<&Change, End> {
        self.change.as_ref().ok_or_else(|| order("an applied change"))
    }

    /// The change's files, with their committed modes once published.
    pub fn files(&self) -> Vec<TouchedFile> {
        match (&self.published, &self.change) {
            (Some(p), _) => p.files.clone(),
            (None, Some(c)) => c.files.clone(),
            (None, None) => Vec::new(),
        }
    }
}

/// A stage ran without what validation promised it: a bug, reported as one.
fn order(what: &str) -> End {
    End::new(Outcome::InternalError, format!("prbot bug: a stage that needs {what} ran before one was made"))
}
