use super::Stage;
use crate::adapters::model::ladder::{self, LadderError};
use crate::adapters::model::{context, prompt, ChatMessage};
use crate::config::settings::ProposeSettings;
use crate::domain::outcome::Outcome;
use crate::domain::records::{AttemptKind, ModelUse, StageStatus};
use crate::stages::cycle::{Cycle, End};
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Asks the ladder of models for a proposal: first with the gap and its context, then,
/// after a failure, in the same conversation with what went wrong.
pub struct Propose<'a>(pub &'a ProposeSettings);

impl Stage for Propose<'_> {
    fn run(&self, cx: &mut Cycle) -> Result<StageStatus, End> {
        let s = self.0;
        let models = match cx.repair.take() {
            None => {
                self.first_prompt(cx)?;
                cx.attempt_kind = AttemptKind::First;
                s.models.clone()
            }
            Some(repair) => {
                let last = cx.conversation.last().map(|m| m.role.clone());
                debug_assert_eq!(last.as_deref(), Some("assistant"));
                cx.conversation
                    .push(ChatMessage::user(prompt::repair_message(&cx.secrets.redact(&repair.feedback))));
                if repair.escalate {
                    cx.attempt_kind = AttemptKind::Escalation;
                    vec![s.escalate_to.clone().expect("escalation needs escalate_to")]
                } else {
                    cx.attempt_kind = AttemptKind::Repair;
                    s.models.clone()
                }
            }
        };
        let opts = ladder::Options {
            retries: s.retries,
            timeout: cx.stage_timeout.unwrap_or(DEFAULT_TIMEOUT),
            temperature: s.temperature,
        };
        let mut calls = std::mem::take(&mut cx.model_calls);
        let before = calls.len();
        let conversation = cx.conversation.clone();
        let result = cx.block_on(ladder::ask(&cx.model, &models, &conversation, &opts, &mut calls));
        let new_calls = calls[before..].to_vec();
        cx.model_calls = calls;
        let usage = cx.model_use.get_or_insert_with(ModelUse::default);
        for c in &new_calls {
            usage.calls += 1;
            usage.prompt_tokens += c.prompt_tokens;
            usage.completion_tokens += c.completion_tokens;
            usage.usd += c.usd;
        }
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        let Some(result) = result else {
            return Err(End::new(Outcome::Cancelled, "cancelled while waiting for the model"));
        };
        let answer = match result {
            Ok(a) => a,
            Err(e) => return Err(self.failed(cx, e)),
        };
        let usage = cx.model_use.get_or_insert_with(ModelUse::default);
        usage.name = answer.model.clone();
        usage.estimated |= answer.completion.estimated;
        tracing::info!(
            "{} proposes: {} ({} file(s))",
            answer.model,
            crate::infra::text::one_line(&answer.proposal.summary, 100),
            answer.proposal.files.len()
        );
        cx.conversation.push(ChatMessage::assistant(answer.completion.content));
        cx.proposal = Some(answer.proposal);
        cx.attempt_open = true;
        Ok(StageStatus::Passed)
    }
}

impl Propose<'_> {
    fn first_prompt(&self, cx: &mut Cycle) -> Result<(), End> {
        let s = self.0;
        let gap = cx.gap.clone().expect("validation puts pick-gap before propose");
        let ws = cx.workspace()?;
        let root = ws.path.clone();
        let cache_path = ws.cache_dir.join("context-terms");
        let with_blobs = ws.files_with_blobs()?;
        let all: Vec<String> = with_blobs.iter().map(|(p, _)| p.clone()).collect();
        let blobs: std::collections::HashMap<String, String> = with_blobs.into_iter().collect();
        let prior: Vec<_> = cx.prior.iter().take(s.prior_attempts).cloned().collect();
        let touched: Vec<String> = prior.iter().flat_map(|a| a.files.clone()).collect();
        let prior_block = crate::domain::records::prior_attempts_block(&prior);
        let reserved = crate::adapters::model::client::estimate_tokens(prompt::SYSTEM) as usize
            + prior_block
                .as_deref()
                .map_or(0, |b| crate::adapters::model::client::estimate_tokens(b) as usize)
            + 200;
        let prd_path = cx.pipeline.prd.path.to_string_lossy().into_owned();
        let budget = s.context_tokens.saturating_sub(reserved);
        let mut cache = context::TermCache::load(&cache_path);
        let tree = context::Tree { root: &root, files: &all, blobs: Some(&blobs) };
        let ctx =
            context::choose(&tree, Some(&mut cache), &gap, &touched, std::slice::from_ref(&prd_path), budget);
        let keep: std::collections::HashSet<&str> = blobs.values().map(String::as_str).collect();
        if let Err(e) = cache.save(&keep) {
            tracing::warn!("cannot keep the context cache {}: {e}", cache_path.display());
        }
        cx.context = ctx.files.iter().map(|f| f.pick.clone()).collect();
        let user = prompt::user_message(&gap, &prd_path, &ctx, prior_block.as_deref());
        cx.conversation = vec![ChatMessage::system(prompt::SYSTEM), ChatMessage::user(user)];
        let size: u64 =
            cx.conversation.iter().map(|m| crate::adapters::model::client::estimate_tokens(&m.content)).sum();
        cx.model_use.get_or_insert_with(ModelUse::default).prompt_size_tokens = size;
        let whole = ctx.files.iter().filter(|f| f.pick.whole).count();
        tracing::info!(
            "prompt: about {size} tokens, {whole} file(s) in full, {} in part",
            ctx.files.len() - whole
        );
        Ok(())
    }

    /// No usable proposal. During a repair, the cycle keeps the outcome of the attempt
    /// the repair was for.
    fn failed(&self, cx: &mut Cycle, e: LadderError) -> End {
        let (outcome, reason) = match e {
            LadderError::Budget(m) => (Outcome::SkippedCost, format!("budget exhausted: {m}")),
            LadderError::Ledger(e) => return End::internal("budget", e),
            LadderError::Failed(m) => (Outcome::ModelFailed, format!("no model gave a usable proposal: {m}")),
        };
        match cx.last_failure.clone() {
            Some(prev) => {
                End::new(prev.outcome, format!("{}; then the repair request failed: {reason}", prev.reason))
            }
            None if outcome == Outcome::SkippedCost => {
                End::new(outcome, reason.trim_start_matches("budget exhausted: ").to_string())
            }
            None => End::new(outcome, reason),
        }
    }
}
