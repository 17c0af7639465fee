use super::Stage;
use crate::domain::guardrails::Guardrails;
use crate::domain::outcome::Outcome;
use crate::domain::policy::ProposalScore;
use crate::domain::records::{FileMode, StageStatus, TouchedFile};
use crate::stages::cycle::{Cycle, End};
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A `run:` step: a shell command in the worktree, like a GitHub Actions step.
pub struct RunStep<'a> {
    pub command: &'a str,
    pub continue_on_error: bool,
    pub network: bool,
}

impl Stage for RunStep<'_> {
    fn run(&self, cx: &mut Cycle) -> Result<StageStatus, End> {
        let timeout = cx.stage_timeout.unwrap_or(DEFAULT_TIMEOUT);
        let (out, used) = super::shell(cx, self.command, timeout, &[], self.network)?;
        let run = super::test_run(self.command, &out, used);
        cx.tests.push(run.clone());
        if out.success() || self.continue_on_error {
            self.take_changes(cx)?;
        }
        if out.success() {
            return Ok(StageStatus::Passed);
        }
        if self.continue_on_error {
            cx.warnings.push(format!("`{}` failed ({}), continued", self.command, out.status_text()));
            return Ok(StageStatus::FailedContinued);
        }
        let reason = format!("step `{}` failed: {}", self.command, out.status_text());
        Err(End::repairable(Outcome::TestsFailed, reason, super::test_feedback(&run, &out)))
    }
}

impl RunStep<'_> {
    /// What the step changed in tracked files becomes part of the change, once the same
    /// guardrails and policy as the proposal's files have allowed it.
    fn take_changes(&self, cx: &mut Cycle) -> Result<(), End> {
        let changed = cx.workspace()?.unstaged()?;
        if changed.is_empty() {
            return Ok(());
        }
        let root = cx.workspace()?.path.clone();
        let guard = Guardrails::new(cx.protected_paths());
        let rejected = |why: String| {
            End::new(
                Outcome::ProposalRejected,
                format!("step `{}` changed a file it may not: {why}", self.command),
            )
        };
        let mut bytes = 0;
        for path in &changed {
            guard.check(&root, path).map_err(rejected)?;
            let before = cx.workspace()?.staged_text(path).unwrap_or_default();
            let after = std::fs::read(root.join(path)).unwrap_or_default();
            bytes += crate::stages::changed_bytes(before.as_bytes(), &after);
        }
        let mut paths: Vec<String> = cx
            .applied
            .iter()
            .flatten()
            .filter(|f| f.mode != FileMode::Noop)
            .map(|f| f.path.clone())
            .collect();
        for p in &changed {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
        let score = ProposalScore {
            paths: paths.iter().map(String::as_str).collect(),
            bytes_changed: cx.bytes_changed + bytes,
        };
        let d = cx.policy().score_proposal(&score);
        if !d.allow {
            return Err(rejected(format!("policy: {}", d.reason)));
        }
        cx.workspace()?.stage(&changed)?;
        cx.bytes_changed += bytes;
        let applied = cx.applied.get_or_insert_with(Vec::new);
        for path in changed {
            match applied.iter_mut().find(|f| f.path == path) {
                Some(f) if f.mode == FileMode::Noop => f.mode = FileMode::Update,
                Some(_) => {}
                None => applied.push(TouchedFile { path, mode: FileMode::Update, file_mode: None }),
            }
        }
        Ok(())
    }
}
