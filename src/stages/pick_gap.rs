use super::Stage;
use crate::cycle::{Cycle, End};
use crate::outcome::Outcome;
use crate::records::StageStatus;

/// The first tagged gap in the PRD that policy doesn't pass over.
pub struct PickGap;

impl Stage for PickGap {
    fn run(&self, cx: &mut Cycle) -> Result<StageStatus, End> {
        let prd = cx.pipeline.prd.clone();
        let base = cx.base_commit()?;
        let spec = format!(
            "{base}:{}",
            prd.path.to_string_lossy().trim_start_matches("./")
        );
        let Some(text) = cx.repo.git(&cx.cancel).query(["show", &spec])? else {
            return Err(End::new(
                Outcome::SkippedNoGap,
                format!(
                    "there is no PRD at {} in the base commit; commit one, or set prd.path",
                    prd.path.display()
                ),
            ));
        };
        let gaps = crate::prd::gaps(&text, &prd.tag);
        if gaps.is_empty() {
            return Err(End::new(
                Outcome::SkippedNoGap,
                format!(
                    "{} has no unchecked `- [ ]` item tagged {}",
                    prd.path.display(),
                    prd.tag
                ),
            ));
        }
        let keep = cx.pipeline.policy.gaps.skip_after_failures.max(5);
        let mut passed_over = Vec::new();
        for gap in gaps {
            let recent = cx
                .store
                .attempts(&gap.id, keep)
                .map_err(|e| End::internal("cannot read history", e))?;
            match cx.policy().skip_gap(&gap, &recent) {
                Some(why) => passed_over.push(format!("{} (line {}): {why}", gap.id, gap.line)),
                None => {
                    tracing::info!("picked gap {} (line {}): {}", gap.id, gap.line, gap.text);
                    cx.prior = recent;
                    cx.gap = Some(gap);
                    return Ok(StageStatus::Passed);
                }
            }
        }
        Err(End::new(
            Outcome::SkippedNoGap,
            format!(
                "every tagged gap was passed over: {}",
                passed_over.join("; ")
            ),
        ))
    }
}
