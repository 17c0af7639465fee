//! The configurable policy: four decisions, declared in the pipeline file, optionally
//! refined by an external command.

use crate::config::settings::PolicyConfig;
use crate::domain::records::Summary;
use crate::infra::process::{self, Cancel, Command};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub reason: String,
}

impl Decision {
    fn allow() -> Self {
        Decision { allow: true, reason: String::new() }
    }
    fn deny(reason: impl Into<String>) -> Self {
        Decision { allow: false, reason: reason.into() }
    }
}

/// What a proposal would change, for `score_proposal`.
#[derive(Debug, Serialize)]
pub struct ProposalScore<'a> {
    pub paths: Vec<&'a str>,
    pub bytes_changed: usize,
}

pub struct Policy<'a> {
    config: &'a PolicyConfig,
    dir: &'a Path,
    env: HashMap<OsString, OsString>,
    cancel: Cancel,
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl<'a> Policy<'a> {
    pub fn new(
        config: &'a PolicyConfig,
        dir: &'a Path,
        env: HashMap<OsString, OsString>,
        cancel: Cancel,
    ) -> Self {
        Policy { config, dir, env, cancel }
    }

    pub fn should_run_cycle(&self, now: DateTime<Utc>) -> Decision {
        let run = &self.config.run;
        if !run.enabled {
            return Decision::deny("policy.run.enabled is false");
        }
        if let Some([first, last]) = run.utc_hours {
            let h = now.hour();
            let inside = if first <= last { h >= first && h <= last } else { h >= first || h <= last };
            if !inside {
                return Decision::deny(format!(
                    "{h}:00 UTC is outside policy.run.utc_hours [{first}, {last}]"
                ));
            }
        }
        if let Some(days) = &run.weekdays {
            let today = now.weekday();
            if !days.iter().filter_map(|d| crate::config::parse_weekday(d)).any(|d| d == today) {
                return Decision::deny(format!("{today} is not in policy.run.weekdays"));
            }
        }
        self.ask("should_run_cycle", serde_json::json!({ "now": now }))
    }

    /// Why a gap is passed over, or `None` to take it.
    pub fn skip_gap(&self, gap: &crate::domain::prd::Gap, recent: &[Summary]) -> Option<String> {
        if let Some(why) = self.skip_gap_by_settings(gap, recent) {
            return Some(why);
        }
        let d = self.ask("skip_gap", serde_json::json!({ "gap": gap, "recent": recent }));
        // For this decision, "allow" means "take the gap".
        (!d.allow).then(|| format!("policy command: {}", d.reason))
    }

    /// Why the settings alone pass a gap over, without asking the policy command.
    pub fn skip_gap_by_settings(&self, gap: &crate::domain::prd::Gap, recent: &[Summary]) -> Option<String> {
        if self.config.gaps.exclude.iter().any(|e| gap.id == *e || gap.id.starts_with(e.as_str())) {
            return Some("excluded by policy.gaps.exclude".into());
        }
        let n = self.config.gaps.skip_after_failures;
        // An outage is no attempt at the gap: it neither counts nor breaks the run.
        let attempts: Vec<&Summary> = recent.iter().filter(|s| !s.outage).take(n).collect();
        if n > 0 && attempts.len() >= n && attempts.iter().all(|s| s.is_failed_attempt()) {
            let outcomes: Vec<&str> = attempts.iter().map(|s| s.outcome.as_str()).collect();
            return Some(format!("its last {n} attempts all failed ({})", outcomes.join(", ")));
        }
        None
    }

    pub fn score_proposal(&self, score: &ProposalScore<'_>) -> Decision {
        let p = &self.config.proposal;
        if score.paths.len() > p.max_files {
            return Decision::deny(format!(
                "{} files exceed policy.proposal.max_files ({})",
                score.paths.len(),
                p.max_files
            ));
        }
        if score.bytes_changed > p.max_bytes_changed {
            return Decision::deny(format!(
                "{} bytes changed exceed policy.proposal.max_bytes_changed ({})",
                score.bytes_changed, p.max_bytes_changed
            ));
        }
        let set = |globs: &[String]| {
            let mut b = globset::GlobSetBuilder::new();
            for g in globs {
                // Validated when the pipeline was loaded.
                b.add(globset::Glob::new(g).expect("validated glob"));
            }
            b.build().expect("validated globs")
        };
        let deny = set(&p.deny);
        let allow = set(&p.allow);
        for path in &score.paths {
            if deny.is_match(path) {
                return Decision::deny(format!("`{path}` matches policy.proposal.deny"));
            }
            if !p.allow.is_empty() && !allow.is_match(path) {
                return Decision::deny(format!("`{path}` matches no glob in policy.proposal.allow"));
            }
        }
        self.ask("score_proposal", serde_json::to_value(score).expect("score serialises"))
    }

    pub fn should_open_pr(&self, context: serde_json::Value) -> Decision {
        if !self.config.pr.open {
            return Decision::deny("policy.pr.open is false");
        }
        self.ask("should_open_pr", context)
    }

    /// Asks `policy.command`, if any. A command that fails or answers badly says no.
    fn ask(&self, decision: &str, context: serde_json::Value) -> Decision {
        let Some(command) = &self.config.command else {
            return Decision::allow();
        };
        let input = serde_json::json!({ "decision": decision, "context": context });
        let mut cmd = Command::new("sh", self.dir, COMMAND_TIMEOUT).arg("-c").arg(command);
        cmd.env = Some(self.env.clone());
        cmd.stdin = Some(serde_json::to_vec(&input).expect("input serialises"));
        let out = match process::run(cmd, &self.cancel) {
            Ok(o) => o,
            Err(e) => return Decision::deny(format!("policy command could not start: {e}")),
        };
        if !out.success() {
            return Decision::deny(format!(
                "policy command `{command}` failed ({}): {}",
                out.status_text(),
                crate::infra::text::one_line(&out.stderr, 200)
            ));
        }
        match serde_json::from_str::<Decision>(out.stdout.trim()) {
            Ok(d) if d.allow => d,
            Ok(d) => Decision::deny(if d.reason.is_empty() { "policy command said no".to_string() } else { d.reason }),
            Err(e) => Decision::deny(format!(
                "policy command `{command}` must print {{\"allow\": bool, \"reason\": str}}, but printed {:?} ({e})",
                crate::infra::text::one_line(&out.stdout, 120)
            )),
        }
    }
}
