//! The named end of a cycle.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every cycle ends in exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    DryRun,
    CycleNoop,
    SkippedPause,
    SkippedLocked,
    SkippedCost,
    SkippedDirtyTree,
    SkippedPolicy,
    SkippedNoGap,
    ModelFailed,
    ProposalRejected,
    ApplyFailed,
    TestsFailed,
    PrSkippedByPolicy,
    PrFailed,
    /// No sandbox can confine project commands here; nothing ran.
    SandboxUnavailable,
    /// prbot itself failed (git missing, disk full, a bug); never the bot's decision.
    InternalError,
    /// SIGINT or SIGTERM arrived; the cycle cleaned up and stopped.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::DryRun => "dry_run",
            Outcome::CycleNoop => "cycle_noop",
            Outcome::SkippedPause => "skipped_pause",
            Outcome::SkippedLocked => "skipped_locked",
            Outcome::SkippedCost => "skipped_cost",
            Outcome::SkippedDirtyTree => "skipped_dirty_tree",
            Outcome::SkippedPolicy => "skipped_policy",
            Outcome::SkippedNoGap => "skipped_no_gap",
            Outcome::ModelFailed => "model_failed",
            Outcome::ProposalRejected => "proposal_rejected",
            Outcome::ApplyFailed => "apply_failed",
            Outcome::TestsFailed => "tests_failed",
            Outcome::PrSkippedByPolicy => "pr_skipped_by_policy",
            Outcome::PrFailed => "pr_failed",
            Outcome::SandboxUnavailable => "sandbox_unavailable",
            Outcome::InternalError => "internal_error",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The process exit code of `prbot run` for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::ModelFailed
            | Outcome::ApplyFailed
            | Outcome::PrFailed
            | Outcome::SandboxUnavailable
            | Outcome::InternalError => 1,
            Outcome::Cancelled => 130,
            _ => 0,
        }
    }

    /// An attempt at a gap that went wrong; counts towards skipping the gap.
    pub fn is_failed_attempt(self) -> bool {
        matches!(
            self,
            Outcome::ModelFailed
                | Outcome::ProposalRejected
                | Outcome::ApplyFailed
                | Outcome::TestsFailed
                | Outcome::PrFailed
                | Outcome::CycleNoop
        )
    }

    /// Whether this cycle was a real attempt at a gap (not skipped before a gap was picked).
    pub fn is_attempt(self) -> bool {
        !matches!(
            self,
            Outcome::SkippedPause
                | Outcome::SkippedLocked
                | Outcome::SkippedCost
                | Outcome::SkippedDirtyTree
                | Outcome::SkippedPolicy
                | Outcome::SkippedNoGap
                | Outcome::SandboxUnavailable
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
