//! What both HTTP forges share: a reply, retries with backoff that honour
//! `Retry-After`, and the mapping of failures to errors.

use super::ForgeError;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// A pull request as Gitea and GitHub both describe it, in the fields prbot reads.
#[derive(serde::Deserialize)]
pub struct ApiPr {
    number: u64,
    html_url: String,
    state: String,
    /// Gitea's; GitHub sends it only for single PRs.
    #[serde(default)]
    merged: bool,
    merged_at: Option<String>,
    head: ApiBranch,
    #[serde(default)]
    body: Option<String>,
}

#[derive(serde::Deserialize)]
struct ApiBranch {
    #[serde(rename = "ref")]
    name: String,
}

impl From<ApiPr> for super::RemotePr {
    fn from(p: ApiPr) -> super::RemotePr {
        use super::PrState;
        let state = match (p.state.as_str(), p.merged || p.merged_at.is_some()) {
            ("open", _) => PrState::Open,
            (_, true) => PrState::Merged,
            _ => PrState::Closed,
        };
        super::RemotePr {
            number: p.number,
            url: p.html_url,
            state,
            head: p.head.name,
            body: p.body.unwrap_or_default(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Get,
    Post,
    Patch,
}

/// One HTTP exchange with a forge's API, without retries: reqwest for Gitea, octocrab
/// for GitHub. `route` is relative to the repository's API path.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, verb: Verb, route: &str, body: Option<&Value>) -> Result<Reply, SendError>;
    /// The API's address, for error messages.
    fn base(&self) -> &str;
}

/// A repository's REST API: a transport, retries, and errors that say what to check.
pub struct Rest {
    transport: Box<dyn Transport>,
    target: Target,
    retries: usize,
}

impl Rest {
    pub fn new(transport: Box<dyn Transport>, target: Target, retries: usize) -> Rest {
        Rest { transport, target, retries }
    }

    /// Any final answer, after retries on 429, 5xx and transport failures.
    pub async fn call(
        &self,
        what: &str,
        verb: Verb,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        send(self.retries, what, self.transport.base(), || self.transport.send(verb, route, body)).await
    }

    /// Like `call`, but any answer other than 2xx is an error.
    pub async fn call_ok(
        &self,
        what: &str,
        verb: Verb,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        let r = self.call(what, verb, route, body).await?;
        if r.ok() {
            Ok(r)
        } else {
            Err(self.target.fail(what, &r))
        }
    }

    pub fn fail(&self, what: &str, r: &Reply) -> ForgeError {
        self.target.fail(what, r)
    }

    /// Every page of a list endpoint. `size` is the page-size parameter, e.g. `limit=50`.
    /// Stops at `X-Total-Count` (Gitea) or when `Link` has no `rel="next"` (both).
    pub async fn all_pages(&self, what: &str, route: &str, size: &str) -> Result<Vec<Value>, ForgeError> {
        let mut out = Vec::new();
        let sep = if route.contains('?') { '&' } else { '?' };
        for page in 1..=100 {
            let r = self.call_ok(what, Verb::Get, &format!("{route}{sep}{size}&page={page}"), None).await?;
            let items: Vec<Value> = r.json(what)?;
            let got = items.len();
            out.extend(items);
            let total = r.headers.get("x-total-count").and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            if got == 0 || total.map_or(!r.has_next_page(), |t| out.len() >= t) {
                break;
            }
        }
        Ok(out)
    }

    /// Every pull request a list route returns, over all its pages.
    pub async fn pulls(
        &self,
        what: &str,
        route: &str,
        size: &str,
    ) -> Result<Vec<super::RemotePr>, ForgeError> {
        let items = self.all_pages(what, route, size).await?;
        items
            .into_iter()
            .map(|v| {
                let pr: ApiPr = serde_json::from_value(v)
                    .map_err(|e| ForgeError::Shape { what: what.into(), detail: e.to_string() })?;
                Ok(pr.into())
            })
            .collect()
    }

    /// Gitea and GitHub describe a repository alike.
    pub async fn repo_info(&self) -> Result<super::RepoInfo, ForgeError> {
        let what = "reading the repository";
        let v: Value = self.call_ok(what, Verb::Get, "", None).await?.json(what)?;
        Ok(super::RepoInfo {
            default_branch: v["default_branch"].as_str().unwrap_or("main").to_string(),
            can_push: v["permissions"]["push"].as_bool().unwrap_or(false),
        })
    }

    /// Both forges comment on a PR through its issue.
    pub async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let route = format!("/issues/{number}/comments");
        let comment = serde_json::json!({ "body": format!("{body}\n\n{}", super::BOT_MARK) });
        self.call_ok("commenting on the PR", Verb::Post, &route, Some(&comment)).await?;
        Ok(())
    }
}

impl Rest {
    /// A list of comments at `route`, over all its pages, as `kind`.
    pub async fn comment_list(
        &self,
        what: &str,
        route: &str,
        size: &str,
        kind: super::CommentKind,
    ) -> Result<Vec<super::Comment>, ForgeError> {
        let items = self.all_pages(what, route, size).await?;
        items.into_iter().filter_map(|v| comment(what, &v, kind).transpose()).collect()
    }
}

/// One comment of a forge's JSON; `None` for a review that says nothing.
pub fn comment(
    what: &str,
    v: &Value,
    kind: super::CommentKind,
) -> Result<Option<super::Comment>, ForgeError> {
    use super::CommentKind;
    let id = v["id"].as_u64().ok_or_else(|| ForgeError::Shape {
        what: what.into(),
        detail: format!(
            "a comment without a numeric `id`: {}",
            crate::infra::text::one_line(&v.to_string(), 120)
        ),
    })?;
    let mut body = v["body"].as_str().unwrap_or_default().trim().to_string();
    if kind == CommentKind::Review {
        // GitHub says CHANGES_REQUESTED, Gitea REQUEST_CHANGES.
        let requested = matches!(v["state"].as_str(), Some("CHANGES_REQUESTED" | "REQUEST_CHANGES"));
        if body.is_empty() && !requested {
            return Ok(None);
        }
        if requested {
            body = format!("(requested changes) {body}").trim_end().to_string();
        }
    }
    let line = v["line"].as_u64().or(v["original_line"].as_u64()).or(v["position"].as_u64());
    let place = match (kind, v["path"].as_str()) {
        (CommentKind::Inline, Some(path)) => Some(match line {
            Some(l) => format!("{path}:{l}"),
            None => path.to_string(),
        }),
        _ => None,
    };
    Ok(Some(super::Comment {
        id,
        kind,
        author: v["user"]["login"].as_str().unwrap_or("someone").to_string(),
        body,
        created_at: v["created_at"].as_str().or(v["submitted_at"].as_str()).unwrap_or_default().to_string(),
        place,
    }))
}

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
        serde_json::from_str(&self.body)
            .map_err(|e| ForgeError::Shape { what: what.to_string(), detail: e.to_string() })
    }

    /// The `message` of a JSON error body (Gitea and GitHub both use it), else the raw body.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| crate::infra::text::one_line(&self.body, 200))
    }

    /// Whether a `Link` header points at a next page.
    pub fn has_next_page(&self) -> bool {
        let link = self.headers.get("link").and_then(|v| v.to_str().ok());
        link.is_some_and(|l| l.contains("rel=\"next\""))
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

impl Reply {
    /// How long a rate-limited answer asks to wait: `retry-after`, or until
    /// `x-ratelimit-reset` when `x-ratelimit-remaining` is 0 (GitHub's primary limit, sent
    /// as 403 or 429). `None` for an answer that is not a rate limit.
    pub fn rate_limit_wait(&self) -> Option<Duration> {
        if self.status != 403 && self.status != 429 {
            return None;
        }
        if let Some(d) = crate::infra::retry::retry_after(&self.headers) {
            return Some(d);
        }
        let header = |k: &str| self.headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
        if header("x-ratelimit-remaining") == Some("0") {
            let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
        }
        (self.status == 429).then_some(Duration::ZERO)
    }
}

impl crate::infra::retry::Transient for Attempt {
    fn retryable(&self) -> bool {
        match self {
            // A rate limit that asks for more than prbot waits is not retried: the reason
            // says how long it asked.
            Attempt::Answer(r) => {
                r.status >= 500 || r.rate_limit_wait().is_some_and(|d| d <= crate::infra::retry::MAX_WAIT)
            }
            Attempt::Failed(_) => true,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Attempt::Answer(r) => r.rate_limit_wait().filter(|d| !d.is_zero()),
            Attempt::Failed(_) => None,
        }
    }
}

/// Sends with retries; the final answer (any status) or the final transport failure.
pub async fn send<F, Fut>(retries: usize, what: &str, url: &str, f: F) -> Result<Reply, ForgeError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Reply, SendError>>,
{
    use crate::infra::retry::Transient;
    let op = || async {
        match f().await {
            Ok(r) => {
                let a = Attempt::Answer(r);
                if a.retryable() {
                    Err(a)
                } else {
                    Ok(a)
                }
            }
            Err(e) => Err(Attempt::Failed(e)),
        }
    };
    let result = crate::infra::retry::run(retries, op, |e: &Attempt, delay| {
        let why = match e {
            Attempt::Answer(r) => format!("HTTP {}", r.status),
            Attempt::Failed(SendError::Timeout) => "timeout".into(),
            Attempt::Failed(SendError::Transport(d)) => d.clone(),
        };
        tracing::warn!("{what}: {why}; retrying in {:.1} s", delay.as_secs_f64());
    })
    .await;
    match result {
        Ok(Attempt::Answer(r)) | Err(Attempt::Answer(r)) => Ok(r),
        Ok(Attempt::Failed(e)) | Err(Attempt::Failed(e)) => Err(ForgeError::Transport {
            what: what.to_string(),
            url: url.to_string(),
            detail: match e {
                SendError::Timeout => "timed out; check forge.url and forge.timeout".into(),
                SendError::Transport(d) => format!("{d}; check forge.url"),
            },
        }),
    }
}

/// What error messages name: the token's variable, the server and the repository.
pub struct Target {
    token_var: String,
    web: String,
    repo: String,
    github: bool,
}

impl Target {
    pub fn new(config: &crate::config::settings::ForgeConfig, web: String, repo: &str) -> Target {
        let token_var = config.token_var().expect("remote forges have a token variable");
        let github = config.kind == crate::config::settings::ForgeKind::Github;
        Target { token_var, web, repo: repo.to_string(), github }
    }

    /// An answer that is not 2xx, as an error that says what to check.
    pub fn fail(&self, what: &str, r: &Reply) -> ForgeError {
        let hint = match (r.rate_limit_wait(), r.status) {
            (Some(wait), _) => format!(
                "Rate limited: the forge asks to wait {} s, more than prbot waits ({} s) or still after the retries; try again later",
                wait.as_secs(),
                crate::infra::retry::MAX_WAIT.as_secs()
            ),
            (None, 301 | 302 | 307 | 308) => {
                let to = r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("elsewhere");
                format!("The repository moved: the forge redirects to {to}; update forge.repo (and forge.url) to its new place")
            }
            (None, status) => self.hint(status),
        };
        // A forge's message often ends with a period of its own.
        let message = r.message().trim_end_matches('.').to_string();
        ForgeError::Status { what: what.to_string(), status: r.status, message, hint }
    }

    /// What the user should check for an HTTP status, without ever quoting the token.
    fn hint(&self, status: u16) -> String {
        let (var, web, repo) = (&self.token_var, &self.web, &self.repo);
        match status {
            401 => format!("The forge refused the token in ${var}: check that it is set, valid and not expired"),
            403 if self.github => format!("The token in ${var} lacks permission: it needs write access to {repo}'s code and pull requests. With the workflow's job token (GITHUB_TOKEN), the repository must also allow it: Settings > Actions > General > Workflow permissions > \"Allow GitHub Actions to create and approve pull requests\""),
            403 => format!("The token in ${var} lacks permission: it needs write access to {repo}'s code and pull requests"),
            404 => format!("Not found: check forge.url ({web}) and forge.repo ({repo}), and that the token can see the repository"),
            409 | 422 => "The forge refused the request as it stands".into(),
            s if s >= 500 => "The forge had an internal error, and still after the retries; check its status".into(),
            _ => String::new(),
        }
    }
}
