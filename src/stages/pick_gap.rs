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
    let Some(text) = cx.repo.git(&cx.cancel).query(["show", &spec])? else {
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
        let why = match cx.policy().skip_gap(&gap, &recent) {
            Some(why) => Some(why),
            None => turned_down(cx, &gap)?,
        };
        match why {
            Some(why) => passed_over.push(format!("{} (line {}): {why}", gap.id, gap.line)),
            None => {
                tracing::info!("picked gap {} (line {}): {}", gap.id, gap.line, gap.text);
                return Ok(Picked { gap, prior: recent });
            }
        }
    }
    Err(End::new(
        Outcome::SkippedNoGap,
        format!("every tagged gap was passed over: {}", passed_over.join("; ")),
    ))
}

/// A gap whose PR was merged, or closed by a maintainer (unless the pr stage says
/// `recreate_closed`), is not tried again. Asked only when a pr stage will run.
fn turned_down(cx: &mut Services, gap: &crate::domain::prd::Gap) -> Result<Option<String>, End> {
    let Some(recreate_closed) = cx.pipeline.pr_settings().map(|s| s.recreate_closed) else {
        return Ok(None);
    };
    let forge = cx.forge()?;
    let base = cx.pr_base()?;
    let branch = gap.branch();
    let pr = cx.forge_call(async move { forge.pr_for_branch(&branch, &base).await })?;
    Ok(match super::pr::existing_pr(pr, recreate_closed) {
        super::pr::Existing::Done(why) => Some(why),
        _ => None,
    })
}
