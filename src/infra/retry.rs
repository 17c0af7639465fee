//! Retries with exponential backoff (backon) that honour a server's `Retry-After`.
//! Forge requests and model calls share it.

use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;

/// The longest `Retry-After` prbot sits through.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What the retry loop needs to know of an error.
pub trait Transient {
    fn retryable(&self) -> bool;
    /// The server's `Retry-After`, if it sent one.
    fn retry_after(&self) -> Option<Duration>;
}

/// Runs `f` until it succeeds, fails for good, or `retries` retries are used up.
/// `notify` hears of each failure that will be retried, and the wait before the retry.
pub async fn run<T, E, F, Fut>(retries: usize, f: F, notify: impl FnMut(&E, Duration)) -> Result<T, E>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(20))
        .with_max_times(retries)
        .with_jitter();
    f.retry(backoff)
        .when(E::retryable)
        // `None` means the retries are used up; a `Retry-After` only changes the wait.
        .adjust(|e: &E, delay| delay.map(|d| e.retry_after().map_or(d, |ra| ra.min(MAX_WAIT))))
        .notify(notify)
        .await
}

/// Reads `Retry-After` in seconds (the form APIs use; HTTP dates are ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error and its causes, on one line: what a transport failure log needs.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}
