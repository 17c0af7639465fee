use super::{End, Produced, Progress, Services, Stage, Step};
use crate::config::settings::TestSettings;
use crate::domain::outcome::Outcome;
use crate::domain::records::StageStatus;

/// Runs the project's tests in the worktree.
pub struct Test<'a>(pub &'a TestSettings);

impl Stage for Test<'_> {
    fn run(&self, sv: &mut Services, progress: &Progress) -> Step {
        let mut produced = Produced::default();
        let result = self.test(sv, progress, &mut produced);
        Step::finish(produced, result)
    }
}

impl Test<'_> {
    /// Runs the commands, each run kept in `produced` whatever happens next.
    fn test(
        &self,
        cx: &mut Services,
        progress: &Progress,
        produced: &mut Produced,
    ) -> Result<StageStatus, End> {
        let root = cx.workspace()?.path.clone();
        let commands = if self.0.commands.is_empty() { detect(&root) } else { self.0.commands.clone() };
        if commands.is_empty() {
            return Err(End::new(
                Outcome::TestsFailed,
                "no test command: found neither Cargo.toml nor package.json with bun; set `with: commands:` on the test stage",
            ));
        }
        let timeout = cx.stage_timeout;
        for command in &commands {
            tracing::info!("running `{command}`");
            let (out, used) = super::shell(cx, command, timeout, &self.0.env_allow, self.0.network)?;
            let run = super::test_run(command, &out, used);
            produced.tests.push(run.clone());
            if !run.passed {
                let reason = format!("`{command}` failed: {}", out.status_text());
                return Err(super::failed_run(cx, progress.change.as_ref(), reason, &run, &out));
            }
        }
        cx.tests_ran();
        Ok(StageStatus::Passed)
    }
}

fn detect(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if root.join("Cargo.toml").is_file() {
        out.push("cargo test".to_string());
    }
    if root.join("package.json").is_file() && on_path("bun") {
        out.push("bun test".to_string());
    }
    out
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
