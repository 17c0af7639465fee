//! The fallback ladder: models tried in order, each with a bounded number of retries,
//! until one gives a usable proposal.

use super::client::{ChatMessage, Completion, ModelClient, ModelError};
use super::proposal::Proposal;
use crate::domain::records::ModelCall;
use crate::state::budget::BudgetError;
use std::time::Duration;

pub struct Options {
    pub retries: usize,
    pub timeout: Duration,
    pub temperature: f32,
}

pub struct Answer {
    pub model: String,
    pub completion: Completion,
    pub proposal: Proposal,
}

#[derive(Debug)]
pub enum LadderError {
    /// The day's budget ran out; no further call was made.
    Budget(String),
    /// The ledger itself could not be used.
    Ledger(BudgetError),
    /// Every model failed; the reason sums up each one's last failure.
    Failed(String),
}

/// Asks each model in turn. Every request, failed or not, lands in `calls`.
pub async fn ask(
    client: &ModelClient,
    models: &[String],
    messages: &[ChatMessage],
    opts: &Options,
    calls: &mut Vec<ModelCall>,
) -> Result<Answer, LadderError> {
    let mut failures = Vec::new();
    for model in models {
        let failed = |calls: &mut Vec<ModelCall>, error: String, c: Option<&Completion>| {
            calls.push(ModelCall {
                model: model.clone(),
                ok: false,
                error: Some(error),
                prompt_tokens: c.map_or(0, |c| c.prompt_tokens),
                completion_tokens: c.map_or(0, |c| c.completion_tokens),
                usd: c.map_or(0.0, |c| c.usd),
            });
        };
        let mut retried = Vec::new();
        let result = crate::infra::retry::run(
            opts.retries,
            || client.complete(model, messages, opts.timeout, opts.temperature),
            |e: &ModelError, wait| {
                let why = if crate::infra::retry::Transient::retry_after(e).is_some() {
                    " (Retry-After)"
                } else {
                    ""
                };
                retried.push(format!("{e}; retried after {:.1} s{why}", wait.as_secs_f64()));
            },
        )
        .await;
        for r in retried {
            tracing::warn!("{model}: {r}");
            failed(calls, r, None);
        }
        let completion = match result {
            Ok(c) => c,
            Err(ModelError::Budget(BudgetError::Exhausted(m))) => return Err(LadderError::Budget(m)),
            Err(ModelError::Budget(e)) => return Err(LadderError::Ledger(e)),
            Err(e) => {
                tracing::warn!("{model}: {e}");
                failed(calls, e.to_string(), None);
                failures.push(format!("{model}: {e}"));
                continue;
            }
        };
        if completion.finish_reason.as_deref() == Some("length") {
            let why = "the reply was cut off at the length limit (finish_reason: length)".to_string();
            tracing::warn!("{model}: {why}");
            failed(calls, why.clone(), Some(&completion));
            failures.push(format!("{model}: {why}"));
            continue;
        }
        match Proposal::parse(&completion.content) {
            Ok(proposal) => {
                calls.push(ModelCall {
                    model: model.clone(),
                    ok: true,
                    error: None,
                    prompt_tokens: completion.prompt_tokens,
                    completion_tokens: completion.completion_tokens,
                    usd: completion.usd,
                });
                return Ok(Answer { model: model.clone(), completion, proposal });
            }
            Err(e) => {
                let why = format!("unusable reply: {e}");
                tracing::warn!("{model}: {why}");
                failed(calls, why.clone(), Some(&completion));
                failures.push(format!("{model}: {why}"));
            }
        }
    }
    Err(LadderError::Failed(failures.join("; ")))
}
