use super::{End, Produced, Progress, Published, Services, Stage, Step};
use crate::adapters::forge::{ForgeError, PrRequest, PrState, RemotePr};
use crate::config::settings::PrSettings;
use crate::domain::outcome::Outcome;
use crate::domain::prd::BRANCH_PREFIX;
use crate::domain::records::{FileMode, PrRef, StageStatus};
use crate::state::budget::BudgetError;

/// Commits the change on `prbot/<gap-id>`, pushes it and opens a draft PR, or updates
/// the gap's open PR: never a second one.
pub struct Pr<'a>(pub &'a PrSettings);

impl Stage for Pr<'_> {
    fn run(&self, sv: &mut Services, progress: &Progress) -> Step {
        let mut produced = Produced::default();
        let result = self.publish(sv, progress, &mut produced);
        Step::finish(produced, result)
    }
}

impl Pr<'_> {
    /// Commits, pushes and opens or updates the PR; once committed, the commit is in
    /// `produced` whatever happens after.
    fn publish(
        &self,
        cx: &mut Services,
        progress: &Progress,
        produced: &mut Produced,
    ) -> Result<StageStatus, End> {
        let settings = self.0;
        let picked = progress.gap()?;
        let gap = &picked.gap;
        let change = progress.change()?;
        let proposal = progress.proposed.as_ref().map(|p| &p.proposal);
        let context = serde_json::json!({
            "gap": gap,
            "files": change.files,
            "tests": progress.tests,
            "summary": proposal.map(|p| p.summary.clone()),
        });
        let d = cx.policy().should_open_pr(context);
        if !d.allow {
            return Err(End::new(Outcome::PrSkippedByPolicy, d.reason));
        }
        let branch = gap.branch();
        let forge = cx.forge()?;
        if !cx.repo_info()?.can_push {
            let var = cx.pipeline.forge.token_var().unwrap_or_default();
            return Err(End::new(
                Outcome::PrFailed,
                format!(
                    "the forge says the token in ${var} cannot push to this repository; give it write access"
                ),
            ));
        }
        let base = cx.pr_base()?;
        let existing = {
            let (f, b, h) = (forge.clone(), base.clone(), branch.clone());
            cx.forge_call(async move { f.pr_for_branch(&h, &b).await })?
        };
        let open = match existing_pr(existing, settings.recreate_closed) {
            Existing::Open(p) => Some(p),
            Existing::Done(why) => return Err(End::new(Outcome::PrSkippedByPolicy, why)),
            Existing::None => None,
        };
        // A new PR's place in `max_per_day` is taken now and given back on any way out
        // but a new PR.
        let mut slot = match open {
            None => Some(self.check_limits(cx)?),
            Some(_) => None,
        };

        // Never over a human's commits: the branch must be where prbot left it.
        let tip = {
            let (f, git, b) = (forge.clone(), cx.repo.git(&cx.cancel), branch.clone());
            cx.forge_call(async move { f.branch_tip(&git, &b).await })?
        };
        if tip
            .as_ref()
            .is_some_and(|t| !made_by_prbot(&picked.prior, t) && Some(t) != picked.branch_at.as_ref())
        {
            let why = ForgeError::NotOurs { branch: branch.clone(), tip: tip.clone().unwrap_or_default() }
                .to_string();
            return Err(End::new(Outcome::PrSkippedByPolicy, why));
        }
        let published =
            super::commit(cx, picked, proposal, change).map_err(|why| End::new(Outcome::PrFailed, why))?;
        let (branch, sha) = (published.branch.clone(), published.commit.clone());
        produced.published = Some(published.clone());
        let worktree_git = cx.workspace()?.git().clone();
        {
            let (f, b, c) = (forge.clone(), branch.clone(), sha.clone());
            // The lease: the branch must still be where the check above found it.
            let at = tip.clone();
            match cx.block_on(async move { f.push(&worktree_git, &b, &c, at.as_deref()).await }) {
                None => return Err(End::new(Outcome::Cancelled, "cancelled while pushing")),
                Some(Err(e @ ForgeError::NotOurs { .. })) => {
                    return Err(End::new(Outcome::PrSkippedByPolicy, e.to_string()))
                }
                Some(Err(e)) => return Err(End::forge(e)),
                Some(Ok(())) => {}
            }
        }

        let request = PrRequest {
            title: cx.secrets.redact(&title(&gap.text)),
            body: cx.secrets.redact(&body(cx, progress, &published)),
            head: branch.clone(),
            base,
        };
        let mut note = format!("prbot pushed {} in cycle `{}`.", &sha[..12.min(sha.len())], cx.id);
        // What changed since the previous revision, when its commit is at hand.
        let previous = tip.as_deref().filter(|t| *t != sha.as_str());
        if let Some(prev) = previous {
            let ws_git = cx.workspace()?.git().clone();
            if let Ok(Some(stat)) = ws_git.query(["diff", "--no-color", "--stat", prev, sha.as_str()]) {
                if !stat.trim().is_empty() {
                    note.push_str(&format!(
                        "\n\nChanged since the previous revision:\n```\n{}\n```",
                        stat.trim_end()
                    ));
                }
            }
        }
        if !picked.feedback.is_empty() {
            note.push_str("\n\nThis revision answers:");
            for c in &picked.feedback {
                note.push_str(&format!(
                    "\n- @{} (comment {}): {}",
                    c.author,
                    c.id,
                    crate::infra::text::one_line(&c.body, 100)
                ));
            }
        }
        let note = cx.secrets.redact(&note);
        let f = forge.clone();
        let req = request.clone();
        let (pr, created) = cx.forge_call(async move {
            let refresh = |p: RemotePr| {
                let (f, req, note) = (f.clone(), req.clone(), note.clone());
                async move {
                    let updated = f.update(p.number, &req.title, &req.body).await?;
                    f.comment(p.number, &note).await?;
                    Ok::<_, ForgeError>((updated, false))
                }
            };
            if let Some(p) = open {
                return refresh(p).await;
            }
            match f.create_draft(&req).await {
                Ok(p) => Ok((p, true)),
                // Someone opened it between the lookup and now: use theirs.
                Err(ForgeError::AlreadyExists) => match f.pr_for_branch(&req.head, &req.base).await? {
                    // This cycle's own create, which timed out but went through: its body
                    // names this cycle. Created by prbot, and nothing to refresh.
                    Some(p) if p.state == PrState::Open && p.body == req.body => Ok((p, true)),
                    Some(p) if p.state == PrState::Open => refresh(p).await,
                    _ => Err(ForgeError::Other(
                        "the forge says a PR for this branch exists, but none is open".into(),
                    )),
                },
                Err(e) => Err(e),
            }
        })?;
        if created {
            if let Some(s) = slot.as_mut() {
                s.keep();
            }
            if !settings.labels.is_empty() {
                let (f, labels, n) = (forge.clone(), settings.labels.clone(), pr.number);
                match cx.block_on(async move { f.add_labels(n, &labels).await }) {
                    Some(Ok(missing)) if !missing.is_empty() => {
                        cx.warnings.push(format!("labels not found on the forge: {}", missing.join(", ")))
                    }
                    Some(Err(e)) => cx.warnings.push(format!("could not label the PR: {e}")),
                    _ => {}
                }
            }
        }
        tracing::info!("{} draft PR #{}: {}", if created { "opened" } else { "updated" }, pr.number, pr.url);
        let pr = PrRef {
            number: pr.number,
            url: pr.url,
            title: request.title,
            created,
            feedback_seen: Some(picked.comments_seen),
        };
        produced.published = Some(Published { pr: Some(pr), ..published });
        Ok(StageStatus::Passed)
    }

    /// `pr.max_open`, then a place in `pr.max_per_day`, for a PR that would be new.
    fn check_limits(&self, cx: &mut Services) -> Result<PrSlot, End> {
        let forge = cx.forge()?;
        let open = cx.forge_call(async move { forge.open_prs(BRANCH_PREFIX).await })?;
        if open.len() >= self.0.max_open {
            return Err(End::new(
                Outcome::PrSkippedByPolicy,
                format!("{} of prbot's PRs are open, and pr.max_open is {}", open.len(), self.0.max_open),
            ));
        }
        match cx.budget.reserve_pr(self.0.max_per_day as u64) {
            Ok(r) => Ok(PrSlot { budget: cx.budget.clone(), reservation: Some(r) }),
            Err(BudgetError::Exhausted(why)) => Err(End::new(Outcome::PrSkippedByPolicy, why)),
            Err(e) => Err(End::internal("budget", e)),
        }
    }
}

/// A reserved place in `pr.max_per_day`, given back when dropped unless a PR was opened.
struct PrSlot {
    budget: crate::state::budget::Budget,
    reservation: Option<crate::state::budget::PrReservation>,
}

impl PrSlot {
    fn keep(&mut self) {
        self.reservation = None;
    }
}

impl Drop for PrSlot {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            if let Err(e) = self.budget.release_pr(r) {
                tracing::warn!("could not give back a PR reserved in today's ledger: {e}");
            }
        }
    }
}

/// Whether prbot may still write the gap's branch: `Ok(where it may be)` (the commit
/// prbot last pushed, or the tip a maintainer handed back with `prbot: take over`), or
/// `Err(why not)` when someone else committed to it. The first time, prbot says so on
/// the PR, once.
pub(crate) fn ownership(
    cx: &mut Services,
    forge: &std::sync::Arc<dyn crate::adapters::forge::Forge>,
    gap: &crate::domain::prd::Gap,
    recent: &[crate::domain::records::Summary],
    number: u64,
    comments: &[crate::adapters::forge::Comment],
) -> Result<Result<Option<String>, String>, End> {
    use crate::adapters::forge::TAKE_OVER;
    const STOPPED: &str = "prbot stopped updating this PR";
    let tip = {
        let (forge, git, branch) = (forge.clone(), cx.repo.git(&cx.cancel), gap.branch());
        cx.forge_call(async move { forge.branch_tip(&git, &branch).await })?
    };
    if tip.as_ref().is_none_or(|t| made_by_prbot(recent, t)) {
        return Ok(Ok(tip));
    }
    let stopped_at = comments.iter().filter(|c| c.by_prbot() && c.body.contains(STOPPED)).map(|c| c.id).max();
    let handed_back =
        comments.iter().any(|c| !c.by_prbot() && c.body.contains(TAKE_OVER) && Some(c.id) > stopped_at);
    if handed_back {
        return Ok(Ok(tip));
    }
    let why = format!(
        "someone else committed to {} (it is at {}); prbot leaves it to them until a comment says `{TAKE_OVER}`",
        gap.branch(),
        &tip.as_deref().unwrap_or_default()[..12.min(tip.as_deref().unwrap_or_default().len())]
    );
    if stopped_at.is_none() {
        let note = format!("{STOPPED}: someone else committed to `{}`, and prbot never overwrites a human's work. Comment `{TAKE_OVER}` to hand the branch back (prbot then rebuilds the change from the base).", gap.branch());
        let f = forge.clone();
        if let Some(Err(e)) = cx.block_on(async move { f.comment(number, &note).await }) {
            cx.warnings.push(format!("could not comment on PR #{number}: {e}"));
        }
    }
    Ok(Err(why))
}

/// Whether `commit` is one prbot put on the gap's branch, by its records.
pub(crate) fn made_by_prbot(recent: &[crate::domain::records::Summary], commit: &str) -> bool {
    recent.iter().any(|s| s.commit.as_deref() == Some(commit))
}

/// What a gap's PR on the forge means for a cycle.
pub(crate) enum Existing {
    /// No PR, or a closed one the pipeline may recreate: a new PR may be opened.
    None,
    /// Updated in place, never a second one.
    Open(RemotePr),
    /// The gap is done or was turned down: the reason it is left alone.
    Done(String),
}

/// The one reading of a gap's PR state, for pick-gap and the pr stage alike.
pub(crate) fn existing_pr(pr: Option<RemotePr>, recreate_closed: bool) -> Existing {
    match pr {
        Some(p) if p.state == PrState::Open => Existing::Open(p),
        Some(p) if p.state == PrState::Merged => {
            Existing::Done(format!("its PR #{} was merged ({}); tick the item in the PRD", p.number, p.url))
        }
        Some(p) if !recreate_closed => Existing::Done(format!(
            "a maintainer closed PR #{} ({}) for this gap without merging it; set `recreate_closed: true` on the pr stage to try again",
            p.number, p.url
        )),
        _ => Existing::None,
    }
}

fn title(gap: &str) -> String {
    format!("prbot: {}", crate::infra::text::one_line(gap, 72))
}

fn body(cx: &Services, progress: &Progress, published: &Published) -> String {
    let Some(picked) = &progress.picked else { return String::new() };
    let gap = &picked.gap;
    let files = &published.files;
    let count = |m| files.iter().filter(|f| f.mode == m).count();
    let mut s = String::new();
    s.push_str(&format!(
        "## Gap\n> {}\n\n`{}`, line {} (gap id `{}`)\n\n",
        gap.text,
        cx.pipeline.prd.path.display(),
        gap.line,
        gap.id
    ));
    if let Some(p) = &progress.proposed {
        let p = &p.proposal;
        s.push_str(&format!("## Summary\n{}\n\n", p.summary.trim()));
    }
    s.push_str(&format!(
        "## Changes\nADD: {} · UPDATE: {} · NOOP: {}\n\n",
        count(FileMode::Add),
        count(FileMode::Update),
        count(FileMode::Noop)
    ));
    for f in files {
        match &f.file_mode {
            Some(m) => s.push_str(&format!("- `{}` ({}, {m})\n", f.path, f.mode.as_str())),
            None => s.push_str(&format!("- `{}` ({})\n", f.path, f.mode.as_str())),
        }
    }
    s.push_str("\n## Tests\n");
    if progress.tests.is_empty() {
        s.push_str("No test stage ran before this PR.\n");
    }
    for t in &progress.tests {
        let status = if t.passed { "passed" } else { "failed" };
        s.push_str(&format!("- `{}`: {status} ({:.1} s)\n", t.command, t.duration_ms as f64 / 1000.0));
    }
    s.push_str("\n## Prior attempts\n");
    match crate::domain::records::prior_attempts_block(&picked.prior) {
        Some(b) => s.push_str(&format!("```\n{b}\n```\n")),
        None => s.push_str("None: this is the first attempt at this gap.\n"),
    }
    s.push_str(&format!(
        "\n---\nDraft opened by prbot, cycle `{}`. A human reviews before anything merges.\n",
        cx.id
    ));
    s
}
