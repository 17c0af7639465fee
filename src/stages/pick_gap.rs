use super::{End, Picked, Produced, Progress, Services, Stage, Step};
use crate::domain::outcome::Outcome;
use crate::domain::records::StageStatus;

/// The first tagged gap in the PRD that policy doesn't pass over.
pub struct PickGap;

impl Stage for PickGap {
    fn run(&self, sv: &mut Services, _: &Progress) -> Step {
        match pick(sv) {
            Ok(picked) => {
                Step::next(Produced { picked: Some(picked), ..Produced::default() }, StageStatus::Passed)
            }
            Err(end) => Step::ended(Produced::default(), end),
        }
    }
}

fn pick(cx: &mut Services) -> Result<Picked, End> {
    let prd = cx.pipeline.prd.clone();
    let base = cx.base_commit()?;
    let spec = format!("{base}:{}", prd.path.to_string_lossy().trim_start_matches("./"));
    let prd_blob = cx.objects()?.read(&spec)?.filter(|o| o.kind == "blob");
    let Some(text) = prd_blob.map(|o| String::from_utf8_lossy(&o.bytes).into_owned()) else {
        return Err(End::new(
            Outcome::SkippedNoGap,
            format!(
                "there is no PRD at {} in the base commit; commit one, or set prd.path",
                prd.path.display()
            ),
        ));
    };
    let gaps = crate::domain::prd::gaps(&text, &prd.tag);
    if gaps.is_empty() {
        return Err(End::new(
            Outcome::SkippedNoGap,
            format!("{} has no unchecked `- [ ]` item tagged {}", prd.path.display(), prd.tag),
        ));
    }
    let keep = cx.pipeline.policy.gaps.skip_after_failures.max(5);
    let mut passed_over = Vec::new();
    for gap in gaps {
        let recent = cx.store.attempts(&gap.id, keep).map_err(|e| End::internal("cannot read history", e))?;
        let verdict = match cx.policy().skip_gap(&gap, &recent) {
            Some(why) => Verdict::Pass(why),
            None => on_the_forge(cx, &gap, &recent)?,
        };
        match verdict {
            Verdict::Pass(why) => passed_over.push(format!("{} (line {}): {why}", gap.id, gap.line)),
            Verdict::Go { feedback, comments_seen, branch_at } => {
                tracing::info!("picked gap {} (line {}): {}", gap.id, gap.line, gap.text);
                if !feedback.is_empty() {
                    tracing::info!("{} new review comment(s) on its PR", feedback.len());
                }
                return Ok(Picked { gap, prior: recent, feedback, comments_seen, branch_at });
            }
        }
    }
    Err(End::new(
        Outcome::SkippedNoGap,
        format!("every tagged gap was passed over: {}", passed_over.join("; ")),
    ))
}

enum Verdict {
    Pass(String),
    Go {
        feedback: Vec<crate::adapters::forge::Comment>,
        comments_seen: crate::domain::records::SeenIds,
        branch_at: Option<String>,
    },
}

/// What the gap's PR says, when a pr stage will run. A merged PR, or one a maintainer
/// closed (unless the pr stage says `recreate_closed`), means the gap is left alone; an
/// open one waits for review, unless someone commented since prbot's last push.
fn on_the_forge(
    cx: &mut Services,
    gap: &crate::domain::prd::Gap,
    recent: &[crate::domain::records::Summary],
) -> Result<Verdict, End> {
    let go = Verdict::Go { feedback: Vec::new(), comments_seen: Default::default(), branch_at: None };
    let Some(recreate_closed) = cx.pipeline.pr_settings().map(|s| s.recreate_closed) else {
        return Ok(go);
    };
    let forge = cx.forge()?;
    // The first forge requests prove the token, the repository and the base branch,
    // before any model call, whatever the pr stage's settings.
    cx.repo_info()?;
    let base = cx.pr_base()?;
    let base_tip = {
        let (forge, git, base) = (forge.clone(), cx.repo.git(&cx.cancel), base.clone());
        cx.forge_call(async move { forge.branch_tip(&git, &base).await })?
    };
    if base_tip.is_none() {
        return Err(End::new(
            Outcome::PrFailed,
            format!("the PR base `{base}` is not a branch of the forge's repository; check pr.base"),
        ));
    }
    let branch = gap.branch();
    let pr = {
        let forge = forge.clone();
        cx.forge_call(async move { forge.pr_for_branch(&branch, &base).await })?
    };
    let open = match super::pr::existing_pr(pr, recreate_closed) {
        super::pr::Existing::Done(why) => return Ok(Verdict::Pass(why)),
        super::pr::Existing::None => return Ok(go),
        super::pr::Existing::Open(p) => p,
    };
    let number = open.number;
    let comments = {
        let forge = forge.clone();
        cx.forge_call(async move { forge.comments(number).await })?
    };
    let comments_seen = seen_ids(&comments);
    let branch_at = match super::pr::ownership(cx, &forge, gap, recent, number, &comments)? {
        Ok(at) => at,
        Err(why) => return Ok(Verdict::Pass(format!("its PR #{number} ({}): {why}", open.url))),
    };
    // The newest cycle that pushed to this PR says which comments it had seen.
    let seen =
        recent.iter().find(|s| s.pr_number == Some(number)).and_then(|s| s.feedback_seen).unwrap_or_default();
    let mut feedback: Vec<_> =
        comments.into_iter().filter(|c| !c.by_prbot() && c.id > *id_of(&seen, c.kind)).collect();
    // Newest first, whatever their kind.
    feedback.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    if feedback.is_empty() {
        // A branch that no longer merges into the base is rebuilt on the new base.
        let conflicts = match (&branch_at, &base_tip) {
            (Some(tip), Some(base)) => conflicts_with(cx, tip, base),
            _ => false,
        };
        if conflicts {
            tracing::info!("its PR #{number} conflicts with the base: rebuilding the change on it");
            return Ok(Verdict::Go { feedback, comments_seen, branch_at });
        }
        return Ok(Verdict::Pass(format!(
            "its PR #{number} ({}) waits for review: nobody commented since prbot's last push",
            open.url
        )));
    }
    feedback.reverse();
    Ok(Verdict::Go { feedback, comments_seen, branch_at })
}

/// The newest id of each kind among `comments`.
fn seen_ids(comments: &[crate::adapters::forge::Comment]) -> crate::domain::records::SeenIds {
    let mut seen = crate::domain::records::SeenIds::default();
    for c in comments {
        let slot = id_of_mut(&mut seen, c.kind);
        *slot = (*slot).max(c.id);
    }
    seen
}

fn id_of(seen: &crate::domain::records::SeenIds, kind: crate::adapters::forge::CommentKind) -> &u64 {
    use crate::adapters::forge::CommentKind::*;
    match kind {
        Conversation => &seen.comments,
        Review => &seen.reviews,
        Inline => &seen.inline,
    }
}

fn id_of_mut(
    seen: &mut crate::domain::records::SeenIds,
    kind: crate::adapters::forge::CommentKind,
) -> &mut u64 {
    use crate::adapters::forge::CommentKind::*;
    match kind {
        Conversation => &mut seen.comments,
        Review => &mut seen.reviews,
        Inline => &mut seen.inline,
    }
}

/// Whether `tip` no longer merges cleanly into `base`, by git's own merge of the two (in
/// memory). `false` when git cannot tell, for instance when a commit is not here.
fn conflicts_with(cx: &Services, tip: &str, base: &str) -> bool {
    let git = cx.repo.git(&cx.cancel);
    let here = |c: &str| git.query(["cat-file", "-e", &format!("{c}^{{commit}}")]).ok().flatten().is_some();
    if !here(tip) || !here(base) {
        return false;
    }
    // `merge-tree --write-tree` exits 1 on conflicts, 0 on a clean merge. The trees it
    // writes go to a temp object folder, never into the repository's.
    let Ok(scratch) = tempfile::tempdir() else { return false };
    let env = [
        ("GIT_OBJECT_DIRECTORY".to_string(), scratch.path().display().to_string()),
        (
            "GIT_ALTERNATE_OBJECT_DIRECTORIES".to_string(),
            cx.repo.git_dir.join("objects").display().to_string(),
        ),
    ];
    matches!(
        git.run_with_env(["merge-tree", "--write-tree", "--name-only", base, tip], &env),
        Err(crate::infra::git::GitError::Failed { ref status, .. }) if status == "exit status 1"
    )
}
