use super::Stage;
use crate::cycle::{Cycle, End};
use crate::outcome::Outcome;
use crate::records::StageStatus;
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
