use super::Stage;
use crate::cycle::{Cycle, End};
use crate::model::prompt::{self, PromptInput};
use crate::model::proposal::Proposal;
use crate::model::{ChatMessage, ModelError};
use crate::outcome::Outcome;
use crate::pipeline::config::ProposeSettings;
use crate::records::{ModelUse, StageStatus};

/// Asks the model for a proposal, telling it what earlier attempts did.
pub struct Propose<'a>(pub &'a ProposeSettings);

impl Stage for Propose<'_> {
    fn run(&self, cx: &mut Cycle) -> Result<StageStatus, End> {
        let s = self.0;
        let gap = cx
            .gap
            .clone()
            .expect("validation puts pick-gap before propose");
        let ws = cx.workspace()?;
        let root = ws.path.clone();
        let all = ws.files()?;

        // Files the gap names (exactly or by file name), then files earlier attempts touched.
        let mut named: Vec<String> = Vec::new();
        for m in crate::prd::mentioned_paths(&gap.text) {
            for f in &all {
                let hit = *f == m || (!m.contains('/') && f.rsplit('/').next() == Some(m.as_str()));
                if hit && !named.contains(f) {
                    named.push(f.clone());
                }
            }
        }
        for a in &cx.prior {
            for f in &a.files {
                if all.contains(f) && !named.contains(f) {
                    named.push(f.clone());
                }
            }
        }
        let mut contents = Vec::new();
        for path in named.iter().take(8) {
            let Ok(bytes) = std::fs::read(root.join(path)) else {
                continue;
            };
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if text.len() > s.max_file_bytes {
                let mut cut = s.max_file_bytes;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("\n[… file cut here for length …]\n");
            }
            contents.push((path.clone(), text));
        }
        let listed: Vec<String> = all.iter().take(s.max_listed_files).cloned().collect();
        let prior_block = crate::records::prior_attempts_block(
            &cx.prior
                .iter()
                .take(s.prior_attempts)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let prd_path = cx.pipeline.prd.path.to_string_lossy().into_owned();
        let user = prompt::user_message(&PromptInput {
            gap: &gap,
            prd_path: &prd_path,
            files: &listed,
            files_total: all.len(),
            contents: &contents,
            prior: prior_block.as_deref(),
        });
        let messages = [ChatMessage::system(prompt::SYSTEM), ChatMessage::user(user)];
        let prompt_bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        let timeout = cx.stage_timeout.unwrap_or(cx.pipeline.model.timeout);
        let mut usage = ModelUse {
            name: cx.pipeline.model.name.clone(),
            base_url: cx.pipeline.model.base_url.clone(),
            prompt_bytes,
            ..ModelUse::default()
        };
        tracing::info!("asking {} ({} bytes of prompt)", usage.name, prompt_bytes);
        let result = cx.block_on(cx.model.complete(&messages, timeout));
        let Some(result) = result else {
            return Err(End::new(
                Outcome::Cancelled,
                "cancelled while waiting for the model",
            ));
        };
        let completion = match result {
            Ok(c) => c,
            Err(ModelError::Budget(crate::budget::BudgetError::Exhausted(m))) => {
                return Err(End::new(Outcome::SkippedCost, m));
            }
            Err(ModelError::Budget(e)) => return Err(End::internal("budget", e)),
            Err(e) => {
                usage.calls = 1;
                cx.model_use = Some(usage);
                return Err(End::new(Outcome::ModelFailed, e.to_string()));
            }
        };
        usage.calls = 1;
        usage.prompt_tokens = completion.prompt_tokens;
        usage.completion_tokens = completion.completion_tokens;
        usage.total_tokens = completion.prompt_tokens + completion.completion_tokens;
        usage.estimated = completion.estimated;
        cx.model_use = Some(usage);
        if completion.finish_reason.as_deref() == Some("length") {
            return Err(End::new(
                Outcome::ModelFailed,
                "the reply was cut off at the model's length limit (finish_reason: length)",
            ));
        }
        let proposal = Proposal::parse(&completion.content).map_err(|e| {
            End::new(
                Outcome::ModelFailed,
                format!("the reply is not a usable proposal: {e}"),
            )
        })?;
        tracing::info!(
            "proposal: {} ({} file(s))",
            crate::records::one_line(&proposal.summary, 100),
            proposal.files.len()
        );
        cx.proposal = Some(proposal);
        Ok(StageStatus::Passed)
    }
}
