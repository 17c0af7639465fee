//! Chat completions from OpenAI-compatible endpoints, routed by `provider/model`, inside
//! the daily budget.

use crate::config::settings::{Price, ProviderConfig};
use crate::state::budget::{Budget, BudgetError, Charge};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(c: impl Into<String>) -> Self {
        ChatMessage { role: "system".into(), content: c.into() }
    }
    pub fn user(c: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: c.into() }
    }
    pub fn assistant(c: impl Into<String>) -> Self {
        ChatMessage { role: "assistant".into(), content: c.into() }
    }
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the server sent no `usage`.
    pub estimated: bool,
    pub finish_reason: Option<String>,
    pub usd: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error("cannot reach {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String, retry_after: Option<Duration> },
    #[error("the answer is not a chat completion: {0}")]
    Shape(String),
    /// The provider names a key variable that is not set: nothing is sent, since the
    /// server would only refuse the request.
    #[error("${var} (providers.{provider}.api_key_env) is not set")]
    NoKey { var: String, provider: String },
}

impl ModelError {
    /// Whether the server read the request and turned it down for what it holds (a 400
    /// for a prompt over the model's context, a 413, a 422): unlike an outage, a wrong key
    /// or an unknown model, that may be the gap's doing.
    pub fn refused_the_request(&self) -> bool {
        matches!(self, ModelError::Status { status, .. }
            if (400..500).contains(status) && !matches!(status, 401 | 403 | 404 | 408 | 429))
    }
}

impl crate::infra::retry::Transient for ModelError {
    fn retryable(&self) -> bool {
        match self {
            ModelError::Transport { .. } | ModelError::Timeout(_) => true,
            ModelError::Status { status, .. } => *status == 429 || *status >= 500,
            ModelError::Budget(_) | ModelError::Shape(_) | ModelError::NoKey { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

struct Provider {
    base_url: String,
    /// The variable `api_key_env` names, and its value when set and not empty.
    key_env: Option<String>,
    api_key: Option<String>,
    headers: BTreeMap<String, String>,
    prices: BTreeMap<String, Price>,
}

/// The only way prbot reaches a model. It takes from the budget before every request,
/// so the caps hold even when no guard stage runs.
pub struct ModelClient {
    http: reqwest::Client,
    providers: BTreeMap<String, Provider>,
    budget: Budget,
    /// What the ledger charged for each request sent, in order, until taken.
    charged: std::sync::Mutex<Vec<Charged>>,
}

/// What the ledger charged for one request: the server's usage, or an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charged {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usd: f64,
    /// True when any part is an estimate (no `usage`, or the call failed).
    pub estimated: bool,
    /// From sending the request to its answer (or its failure).
    pub duration_ms: u64,
}

/// An upper bound for a prompt's tokens: two bytes a token (prose and code run about
/// four), plus each message's framing.
fn worst_prompt_tokens(messages: &[ChatMessage]) -> u64 {
    messages.iter().map(|m| (m.content.len() as u64).div_ceil(2) + 8).sum()
}

/// A rough count for servers that send no `usage`: four bytes a token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

impl ModelClient {
    pub fn new(providers: &BTreeMap<String, ProviderConfig>, budget: Budget) -> Self {
        let providers = providers
            .iter()
            .map(|(name, p)| {
                let api_key =
                    p.api_key_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|k| !k.is_empty());
                let provider = Provider {
                    base_url: p.base_url.trim_end_matches('/').to_string(),
                    key_env: p.api_key_env.clone(),
                    api_key,
                    headers: p.headers.clone(),
                    prices: p.prices.clone(),
                };
                (name.clone(), provider)
            })
            .collect();
        let http = reqwest::Client::builder()
            .user_agent(concat!("prbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        ModelClient { http, providers, budget, charged: Default::default() }
    }

    /// The models a provider offers (`GET /models`): free, and never charged.
    pub async fn list_models(
        &self,
        provider_name: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, ModelError> {
        let provider = self
            .providers
            .get(provider_name)
            .ok_or_else(|| ModelError::Shape(format!("no provider `{provider_name}`")))?;
        let url = format!("{}/models", provider.base_url);
        let mut req = self.http.get(&url).timeout(timeout);
        if let Some(key) = &provider.api_key {
            req = req.bearer_auth(key);
        }
        for (k, v) in &provider.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ModelError::Timeout(timeout)
            } else {
                ModelError::Transport { url: url.clone(), detail: crate::infra::retry::describe(&e) }
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let body = crate::infra::text::one_line(&text, 300);
            return Err(ModelError::Status { status: status.as_u16(), body, retry_after: None });
        }
        #[derive(Deserialize)]
        struct Listed {
            data: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            id: String,
        }
        let listed: Listed = serde_json::from_str(&text).map_err(|e| ModelError::Shape(e.to_string()))?;
        Ok(listed.data.into_iter().map(|e| e.id).collect())
    }

    /// The charges of the requests sent since the last call, oldest first.
    pub fn take_charged(&self) -> Vec<Charged> {
        std::mem::take(&mut *self.charged.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// One request to the model a `provider/model` reference names. Its worst case
    /// (the prompt's bound plus `max_tokens`, priced) is reserved before it is sent, and
    /// replaced by what it really cost after.
    pub async fn complete(
        &self,
        model_ref: &str,
        messages: &[ChatMessage],
        timeout: Duration,
        temperature: f32,
        max_tokens: u64,
    ) -> Result<Completion, ModelError> {
        let (provider_name, model) = crate::config::split_model_ref(model_ref)
            .ok_or_else(|| ModelError::Shape(format!("`{model_ref}` is not provider/model")))?;
        // Validation makes sure every reference routes; this is a bug guard, not a user error.
        let provider = self
            .providers
            .get(provider_name)
            .ok_or_else(|| ModelError::Shape(format!("no provider `{provider_name}`")))?;
        if let (Some(var), None) = (&provider.key_env, &provider.api_key) {
            return Err(ModelError::NoKey { var: var.clone(), provider: provider_name.to_string() });
        }
        let price = provider.prices.get(model).copied().unwrap_or_default();
        let priced = |tokens_in: u64, tokens_out: u64| {
            (tokens_in as f64 * price.price_per_mtok_in + tokens_out as f64 * price.price_per_mtok_out) / 1e6
        };
        let worst_in = worst_prompt_tokens(messages);
        let reservation = self
            .budget
            .reserve(Charge { tokens: worst_in + max_tokens, usd: priced(worst_in, max_tokens) })?;
        let url = format!("{}/chat/completions", provider.base_url);
        // Nothing secret goes to a provider, whatever the prompt was built from.
        let redacted: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).expect("a message serialises");
                if let Some(serde_json::Value::String(c)) = v.get_mut("content") {
                    *c = crate::infra::secrets::redact_known(c);
                }
                v
            })
            .collect();
        let body = serde_json::json!({
            "model": model,
            "messages": redacted,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": false,
        });
        let mut req = self.http.post(&url).json(&body).timeout(timeout);
        if let Some(key) = &provider.api_key {
            req = req.bearer_auth(key);
        }
        for (k, v) in &provider.headers {
            req = req.header(k, v);
        }
        let prompt_estimate: u64 = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
        let sent = std::time::Instant::now();
        let result = send(req, &url, timeout).await;
        let duration_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (tokens_in, tokens_out, estimated) = match &result {
            Ok(c) if !c.estimated => (c.prompt_tokens, c.completion_tokens, false),
            Ok(c) => (prompt_estimate, c.completion_tokens, true),
            // A failed call may still have cost the server its prompt.
            Err(_) => (prompt_estimate, 0, true),
        };
        let usd = priced(tokens_in, tokens_out);
        self.charged.lock().unwrap_or_else(|e| e.into_inner()).push(Charged {
            prompt_tokens: tokens_in,
            completion_tokens: tokens_out,
            usd,
            estimated,
            duration_ms,
        });
        self.budget.settle(reservation, Charge { tokens: tokens_in + tokens_out, usd })?;
        result.map(|mut c| {
            c.prompt_tokens = tokens_in;
            c.usd = usd;
            c
        })
    }
}

async fn send(req: reqwest::RequestBuilder, url: &str, timeout: Duration) -> Result<Completion, ModelError> {
    let classify = |e: reqwest::Error| {
        if e.is_timeout() {
            ModelError::Timeout(timeout)
        } else {
            ModelError::Transport { url: url.to_string(), detail: crate::infra::retry::describe(&e) }
        }
    };
    let resp = req.send().await.map_err(classify)?;
    let status = resp.status();
    let retry_after = crate::infra::retry::retry_after(resp.headers());
    let text = resp.text().await.map_err(classify)?;
    if !status.is_success() {
        let body = crate::infra::text::one_line(&text, 300);
        return Err(ModelError::Status { status: status.as_u16(), body, retry_after });
    }
    let parsed: ChatResponse = serde_json::from_str(&text).map_err(|e| ModelError::Shape(e.to_string()))?;
    let choice =
        parsed.choices.into_iter().next().ok_or_else(|| ModelError::Shape("`choices` is empty".into()))?;
    let content = choice.message.content.unwrap_or_default();
    let (prompt_tokens, completion_tokens, estimated) = match parsed.usage {
        Some(Usage { prompt_tokens: Some(p), completion_tokens: Some(c) }) => (p, c, false),
        _ => (0, estimate_tokens(&content), true),
    };
    Ok(Completion {
        content,
        prompt_tokens,
        completion_tokens,
        estimated,
        finish_reason: choice.finish_reason,
        usd: 0.0,
    })
}
