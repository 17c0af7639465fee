use super::{End, Progress, Services, Stage, Step};
use crate::config::settings::GuardSettings;
use crate::domain::outcome::Outcome;
use crate::domain::records::StageStatus;

/// Pause file, run lock, budget, dirty tree, then policy, in that order.
pub struct Guard<'a>(pub &'a GuardSettings);

impl Stage for Guard<'_> {
    fn run(&self, sv: &mut Services, _: &Progress) -> Step {
        self.check(sv).into()
    }
}

impl Guard<'_> {
    fn check(&self, cx: &mut Services) -> Result<StageStatus, End> {
        let pause = cx.repo.root.join(&self.0.pause_file);
        if pause.exists() {
            return Err(End::new(
                Outcome::SkippedPause,
                format!("pause file {} is present; remove it to let prbot run", self.0.pause_file.display()),
            ));
        }
        cx.lock()?;
        if let Err(e) = cx.budget.check() {
            return Err(match e {
                crate::state::budget::BudgetError::Exhausted(m) => End::new(Outcome::SkippedCost, m),
                other => End::internal("budget", other),
            });
        }
        let exclude = [cx.state_dir.clone(), cx.work_dir.clone()];
        let dirty = cx.repo.dirty_files(&cx.cancel, &exclude)?;
        if !dirty.is_empty() {
            let shown: Vec<&str> = dirty.iter().take(5).map(String::as_str).collect();
            let more = if dirty.len() > 5 { format!(" and {} more", dirty.len() - 5) } else { String::new() };
            return Err(End::new(
                Outcome::SkippedDirtyTree,
                format!("uncommitted changes in {}{more}; commit or stash them first", shown.join(", ")),
            ));
        }
        let d = cx.policy().should_run_cycle(chrono::Utc::now());
        if !d.allow {
            return Err(End::new(Outcome::SkippedPolicy, d.reason));
        }
        Ok(StageStatus::Passed)
    }
}
