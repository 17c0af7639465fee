//! The fallback ladder: models tried in order, each with a bounded number of retries,
//! until one gives a usable proposal.

use super::client::{Charged, ChatMessage, Completion, ModelClient, ModelError};
use super::proposal::Proposal;
use crate::domain::records::ModelCall;
use crate::state::budget::BudgetError;
use std::time::Duration;

pub struct Options {
    pub retries: usize,
    pub timeout: Duration,
    pub temperature: f32,
    /// The reply's cap, sent to the server and reserved from the budget.
    pub max_tokens: u64,
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
    /// Every model failed; the reason sums up each one's last failure. `answered` says
    /// whether any model replied at all.
    Failed { reason: String, answered: bool },
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
    let first_call = calls.len();
    for model in models {
        // Each call is recorded with what the ledger charged for it.
        let record = |calls: &mut Vec<ModelCall>, error: Option<String>, answered: bool, c: Charged| {
            calls.push(ModelCall {
                model: model.clone(),
                ok: error.is_none(),
                answered,
                error,
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
                usd: c.usd,
                estimated: c.estimated,
                duration_ms: c.duration_ms,
            });
        };
        let mut retried = Vec::new();
        let result = crate::infra::retry::run(
            opts.retries,
            || client.complete(model, messages, opts.timeout, opts.temperature, opts.max_tokens),
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
        // One charge per request sent; a request the budget refused was never sent.
        let mut charged = client.take_charged().into_iter();
        for r in retried {
            tracing::warn!("{model}: {r}");
            record(calls, Some(r), false, charged.next().unwrap_or_default());
        }
        let last = charged.next().unwrap_or_default();
        let completion = match result {
            Ok(c) => c,
            Err(ModelError::Budget(BudgetError::Exhausted(m))) => return Err(LadderError::Budget(m)),
            Err(ModelError::Budget(e)) => return Err(LadderError::Ledger(e)),
            // Not sent, so not a call: the next model may need no key.
            Err(e @ ModelError::NoKey { .. }) => {
                tracing::warn!("{model}: {e}");
                failures.push(format!("{model}: {e}"));
                continue;
            }
            Err(e) => {
                tracing::warn!("{model}: {e}");
                record(calls, Some(e.to_string()), e.refused_the_request(), last);
                failures.push(format!("{model}: {e}"));
                continue;
            }
        };
        if completion.finish_reason.as_deref() == Some("length") {
            let why = "the reply was cut off at the length limit (finish_reason: length)".to_string();
            tracing::warn!("{model}: {why}");
            record(calls, Some(why.clone()), true, last);
            failures.push(format!("{model}: {why}"));
            continue;
        }
        match Proposal::parse(&completion.content) {
            Ok(proposal) => {
                record(calls, None, true, last);
                return Ok(Answer { model: model.clone(), completion, proposal });
            }
            Err(e) => {
                let why = format!("unusable reply: {e}");
                tracing::warn!("{model}: {why}");
                record(calls, Some(why.clone()), true, last);
                failures.push(format!("{model}: {why}"));
            }
        }
    }
    let answered = calls[first_call..].iter().any(|c| c.answered);
    Err(LadderError::Failed { reason: failures.join("; "), answered })
}
