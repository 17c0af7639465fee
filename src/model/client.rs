//! One chat-completion call to an OpenAI-compatible endpoint, inside the daily budget.

use crate::budget::{Budget, BudgetError};
use crate::pipeline::config::ModelConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(c: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: c.into(),
        }
    }
    pub fn user(c: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: c.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub estimated: bool,
    pub finish_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error("the model call to {url} failed: {detail}")]
    Transport { url: String, detail: String },
    #[error("the model call timed out after {0:?}")]
    Timeout(Duration),
    #[error("the model server answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the model server's answer is not a chat completion: {0}")]
    Shape(String),
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

/// The only way prbot reaches a model. It takes from the budget before every call,
/// so the cap holds even when no guard stage runs.
pub struct ModelClient {
    http: reqwest::Client,
    config: ModelConfig,
    api_key: Option<String>,
    budget: Budget,
}

/// A rough count for servers that send no `usage`: four bytes a token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

impl ModelClient {
    pub fn new(config: ModelConfig, budget: Budget) -> Self {
        let api_key = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        let http = reqwest::Client::builder()
            .user_agent(concat!("prbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        ModelClient {
            http,
            config,
            api_key,
            budget,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        timeout: Duration,
    ) -> Result<Completion, ModelError> {
        self.budget.reserve_call()?;
        let url = self.url();
        let body = serde_json::json!({
            "model": self.config.name,
            "messages": messages,
            "temperature": self.config.temperature,
            "stream": false,
        });
        let mut req = self.http.post(&url).json(&body).timeout(timeout);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let prompt_estimate: u64 = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
        let result = self.send(req, &url, timeout).await;
        // A failed call still cost the server its prompt; count what we can.
        let tokens = match &result {
            Ok(c) => c.prompt_tokens + c.completion_tokens,
            Err(_) => prompt_estimate,
        };
        self.budget.add_tokens(tokens)?;
        result.map(|mut c| {
            if c.estimated {
                c.prompt_tokens = prompt_estimate;
            }
            c
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<Completion, ModelError> {
        let resp = req.send().await.map_err(|e| classify(e, url, timeout))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| classify(e, url, timeout))?;
        if !status.is_success() {
            return Err(ModelError::Status {
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        let parsed: ChatResponse =
            serde_json::from_str(&text).map_err(|e| ModelError::Shape(e.to_string()))?;
        let choice = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Shape("`choices` is empty".into()))?;
        let content = choice.message.content.unwrap_or_default();
        let (prompt_tokens, completion_tokens, estimated) = match parsed.usage {
            Some(Usage {
                prompt_tokens: Some(p),
                completion_tokens: Some(c),
            }) => (p, c, false),
            _ => (0, estimate_tokens(&content), true),
        };
        Ok(Completion {
            content,
            prompt_tokens,
            completion_tokens,
            estimated,
            finish_reason: choice.finish_reason,
        })
    }
}

fn classify(e: reqwest::Error, url: &str, timeout: Duration) -> ModelError {
    if e.is_timeout() {
        ModelError::Timeout(timeout)
    } else {
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail.push_str(&format!(": {s}"));
            src = s.source();
        }
        ModelError::Transport {
            url: url.to_string(),
            detail,
        }
    }
}
