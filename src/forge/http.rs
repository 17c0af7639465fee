//! What both HTTP forges share: a reply, retries with backoff that honour
//! `Retry-After`, and the mapping of failures to errors.

use super::ForgeError;
use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, ForgeError> {
        serde_json::from_str(&self.body).map_err(|e| ForgeError::Shape {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    /// The `message` of a JSON error body (Gitea and GitHub both use it), else the raw body.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| crate::records::one_line(&self.body, 200))
    }

    fn retry_after(&self) -> Option<Duration> {
        let v = self
            .headers
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?;
        v.trim().parse::<u64>().ok().map(Duration::from_secs)
    }
}

/// A failure to get any answer.
#[derive(Debug)]
pub enum SendError {
    Timeout,
    Transport(String),
}

enum Attempt {
    Answer(Reply),
    Failed(SendError),
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Answer(r) => r.status == 429 || r.status >= 500,
            Attempt::Failed(_) => true,
        }
    }
}

/// The longest `Retry-After` prbot will sit through.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Sends with retries; the final answer (any status) or the final transport failure.
pub async fn send<F, Fut>(retries: usize, what: &str, url: &str, f: F) -> Result<Reply, ForgeError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Reply, SendError>>,
{
    let op = || async {
        match f().await {
            Ok(r) if !(r.status == 429 || r.status >= 500) => Ok(r),
            Ok(r) => Err(Attempt::Answer(r)),
            Err(e) => Err(Attempt::Failed(e)),
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(20))
        .with_max_times(retries)
        .with_jitter();
    let result = op
        .retry(backoff)
        .when(Attempt::retryable)
        // `None` means the retries are used up; a `Retry-After` only changes the wait.
        .adjust(|e: &Attempt, delay| match e {
            Attempt::Answer(r) => delay.map(|d| r.retry_after().map_or(d, |ra| ra.min(MAX_WAIT))),
            Attempt::Failed(_) => delay,
        })
        .notify(|e: &Attempt, delay| {
            let why = match e {
                Attempt::Answer(r) => format!("HTTP {}", r.status),
                Attempt::Failed(SendError::Timeout) => "timeout".into(),
                Attempt::Failed(SendError::Transport(d)) => d.clone(),
            };
            tracing::warn!("{what}: {why}; retrying in {:.1} s", delay.as_secs_f64());
        })
        .await;
    match result {
        Ok(r) => Ok(r),
        Err(Attempt::Answer(r)) => Ok(r),
        Err(Attempt::Failed(e)) => Err(ForgeError::Transport {
            what: what.to_string(),
            url: url.to_string(),
            detail: match e {
                SendError::Timeout => "timed out".into(),
                SendError::Transport(d) => d,
            },
        }),
    }
}

/// The full chain of an error's causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}
