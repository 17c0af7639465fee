use super::Stage;
use crate::cycle::{Cycle, End};
use crate::forge::PrRequest;
use crate::outcome::Outcome;
use crate::records::{FileMode, PrRef, StageStatus};

/// Commits the change on `prbot/<gap-id>` and opens a draft PR for it.
pub struct Pr;

impl Stage for Pr {
    fn run(&self, cx: &mut Cycle) -> Result<StageStatus, End> {
        let gap = cx.gap.clone().expect("validation puts pick-gap before pr");
        let files = cx.applied.clone().unwrap_or_default();
        let context = serde_json::json!({
            "gap": gap,
            "files": files,
            "tests": cx.tests,
            "summary": cx.proposal.as_ref().map(|p| p.summary.clone()),
        });
        let d = cx.policy().should_open_pr(context);
        if !d.allow {
            return Err(End::new(Outcome::PrSkippedByPolicy, d.reason));
        }
        let branch = Cycle::branch_for(&gap);
        let message = crate::cycle::commit_message(&gap, cx.proposal.as_ref());
        let bot = cx.pipeline.bot.clone();
        let sha = cx
            .workspace()?
            .commit_to_branch(&branch, &message, &bot.name, &bot.email)
            .map_err(|e| End::new(Outcome::PrFailed, format!("cannot commit to {branch}: {e}")))?;
        cx.branch = Some(branch.clone());
        cx.commit = Some(sha.clone());

        let base = base_branch(cx);
        let request = PrRequest {
            title: title(&gap.text),
            body: body(cx),
            head: branch.clone(),
            base,
        };
        let forge = crate::forge::from_config(&cx.pipeline.forge, &cx.state_dir);
        let opened = cx.block_on(async {
            forge.push(&branch, &sha).await?;
            forge.open_draft(&request).await
        });
        let opened = match opened {
            None => {
                return Err(End::new(
                    Outcome::Cancelled,
                    "cancelled while talking to the forge",
                ))
            }
            Some(Err(e)) => return Err(End::new(Outcome::PrFailed, e.to_string())),
            Some(Ok(o)) => o,
        };
        tracing::info!(
            "{} draft PR #{}: {}",
            if opened.created { "opened" } else { "updated" },
            opened.number,
            opened.url
        );
        cx.pr = Some(PrRef {
            number: opened.number,
            url: opened.url,
            title: request.title,
        });
        Ok(StageStatus::Passed)
    }
}

fn base_branch(cx: &Cycle) -> String {
    let base = &cx.pipeline.workspace.base;
    if base == "HEAD" {
        if let Ok(Some(b)) =
            cx.repo
                .git(&cx.cancel)
                .query(["symbolic-ref", "--short", "-q", "HEAD"])
        {
            return b;
        }
    }
    base.clone()
}

fn title(gap: &str) -> String {
    format!("prbot: {}", crate::records::one_line(gap, 72))
}

fn body(cx: &Cycle) -> String {
    let gap = cx.gap.as_ref().expect("a gap was picked");
    let files = cx.applied.as_deref().unwrap_or_default();
    let count = |m| files.iter().filter(|f| f.mode == m).count();
    let mut s = String::new();
    s.push_str(&format!(
        "## Gap\n> {}\n\n`{}`, line {} (gap id `{}`)\n\n",
        gap.text,
        cx.pipeline.prd.path.display(),
        gap.line,
        gap.id
    ));
    if let Some(p) = &cx.proposal {
        s.push_str(&format!("## Summary\n{}\n\n", p.summary.trim()));
    }
    s.push_str(&format!(
        "## Changes\nADD: {} · UPDATE: {} · NOOP: {}\n\n",
        count(FileMode::Add),
        count(FileMode::Update),
        count(FileMode::Noop)
    ));
    for f in files {
        s.push_str(&format!("- `{}` ({})\n", f.path, f.mode.as_str()));
    }
    s.push_str("\n## Tests\n");
    if cx.tests.is_empty() {
        s.push_str("No test stage ran before this PR.\n");
    }
    for t in &cx.tests {
        let status = if t.passed { "passed" } else { "failed" };
        s.push_str(&format!(
            "- `{}`: {status} ({:.1} s)\n",
            t.command,
            t.duration_ms as f64 / 1000.0
        ));
    }
    s.push_str("\n## Prior attempts\n");
    match crate::records::prior_attempts_block(&cx.prior) {
        Some(b) => s.push_str(&format!("```\n{b}\n```\n")),
        None => s.push_str("None: this is the first attempt at this gap.\n"),
    }
    s.push_str(&format!(
        "\n---\nDraft opened by prbot, cycle `{}`. A human reviews before anything merges.\n",
        cx.id
    ));
    s
}
