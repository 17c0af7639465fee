use super::{Change, End, Produced, Progress, Services, Stage, Step};
use crate::domain::guardrails::Guardrails;
use crate::domain::outcome::Outcome;
use crate::domain::policy::ProposalScore;
use crate::domain::records::{FileMode, StageStatus, TouchedFile};

/// A `run:` step: a shell command in the worktree, like a GitHub Actions step.
pub struct RunStep<'a> {
    pub command: &'a str,
    pub continue_on_error: bool,
    pub network: bool,
}

impl Stage for RunStep<'_> {
    fn run(&self, sv: &mut Services, progress: &Progress) -> Step {
        let mut produced = Produced::default();
        let result = self.step(sv, progress, &mut produced);
        Step::finish(produced, result)
    }
}

impl RunStep<'_> {
    fn step(
        &self,
        cx: &mut Services,
        progress: &Progress,
        produced: &mut Produced,
    ) -> Result<StageStatus, End> {
        let timeout = cx.stage_timeout;
        let (out, used) = super::shell(cx, self.command, timeout, &[], self.network)?;
        let run = super::test_run(self.command, &out, used);
        produced.tests.push(run.clone());
        if out.success() || self.continue_on_error {
            produced.change = self.take_changes(cx, progress.change.as_ref())?;
        }
        if out.success() {
            return Ok(StageStatus::Passed);
        }
        if self.continue_on_error {
            cx.warnings.push(format!("`{}` failed ({}), continued", self.command, out.status_text()));
            return Ok(StageStatus::FailedContinued);
        }
        let reason = format!("step `{}` failed: {}", self.command, out.status_text());
        Err(super::failed_run(cx, progress.change.as_ref(), reason, &run, &out))
    }

    /// What the step changed in tracked files becomes part of the change, once the same
    /// guardrails and policy as the proposal's files have allowed it.
    /// The change with them, or `None` when the step changed no tracked file.
    fn take_changes(&self, cx: &mut Services, so_far: Option<&Change>) -> Result<Option<Change>, End> {
        let changed = cx.workspace()?.unstaged()?;
        if changed.is_empty() {
            return Ok(None);
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
        let mut change = so_far.cloned().unwrap_or_default();
        let mut paths: Vec<String> =
            change.files.iter().filter(|f| f.mode != FileMode::Noop).map(|f| f.path.clone()).collect();
        for p in &changed {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
        let score = ProposalScore {
            paths: paths.iter().map(String::as_str).collect(),
            bytes_changed: change.bytes_changed + bytes,
        };
        let d = cx.policy().score_proposal(&score);
        if !d.allow {
            return Err(rejected(format!("policy: {}", d.reason)));
        }
        cx.workspace()?.stage(&changed)?;
        change.bytes_changed += bytes;
        for path in changed {
            match change.files.iter_mut().find(|f| f.path == path) {
                Some(f) if f.mode == FileMode::Noop => f.mode = FileMode::Update,
                Some(_) => {}
                None => change.files.push(TouchedFile { path, mode: FileMode::Update, file_mode: None }),
            }
        }
        Ok(Some(change))
    }
}
