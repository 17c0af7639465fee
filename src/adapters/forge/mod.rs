//! Where pull requests go: one trait, three forges (Gitea/Forgejo, GitHub, local).

pub mod gitea;
pub mod github;
mod http;
pub mod local;
#[cfg(test)]
pub(crate) mod mem;
mod push;

use crate::config::settings::{ForgeConfig, ForgeKind};
use crate::infra::git::Git;
use std::path::Path;
use std::sync::Arc;

/// A draft pull request to open.
#[derive(Debug, Clone)]
pub struct PrRequest {
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    Open,
    /// Closed without merging: a maintainer turned it down.
    Closed,
    Merged,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone)]
pub struct RemotePr {
    pub number: u64,
    pub url: String,
    pub state: PrState,
    pub head: String,
    /// The description, when the forge's answer carried it.
    pub body: String,
}

/// Where on a PR a comment was made; each kind has its own ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentKind {
    /// The PR's conversation.
    Conversation,
    /// A review's summary (or a bare "changes requested").
    Review,
    /// A review comment on a line of the change.
    Inline,
}

/// A comment on a PR: its conversation, a review, or a line of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    /// The forge's id: ids of a kind grow with time, so "newer than the last seen id of
    /// its kind" means new.
    pub id: u64,
    pub kind: CommentKind,
    pub author: String,
    pub body: String,
    pub created_at: String,
    /// `file:line` for an inline review comment.
    pub place: Option<String>,
}

/// A maintainer's comment that hands a branch someone else committed to back to prbot.
pub const TAKE_OVER: &str = "prbot: take over";

/// Ends every comment prbot writes, so that its own are never taken for review feedback.
pub const BOT_MARK: &str = "<!-- prbot -->";

impl Comment {
    pub fn by_prbot(&self) -> bool {
        self.body.contains(BOT_MARK)
    }

    /// A conversation kept as plain strings (the local and in-memory forges): ids by
    /// position, and the author told by prbot's mark.
    pub(crate) fn from_texts<'a>(
        texts: impl IntoIterator<Item = &'a String>,
        created_at: &str,
    ) -> Vec<Comment> {
        texts
            .into_iter()
            .enumerate()
            .map(|(i, body)| Comment {
                id: i as u64 + 1,
                kind: CommentKind::Conversation,
                author: if body.contains(BOT_MARK) { "prbot" } else { "maintainer" }.to_string(),
                body: body.clone(),
                created_at: created_at.to_string(),
                place: None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub default_branch: String,
    pub can_push: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{what}: HTTP {status}: {message}. {hint}")]
    Status { what: String, status: u16, message: String, hint: String },
    #[error("{what}: cannot reach the forge at {url}: {detail}")]
    Transport { what: String, url: String, detail: String },
    #[error("{what}: the forge's answer is not what its API documents: {detail}")]
    Shape { what: String, detail: String },
    /// The forge says an open PR for this head and base exists already.
    #[error("a pull request for this branch already exists")]
    AlreadyExists,
    #[error("git push to {url} was rejected: {reason}")]
    Push { url: String, reason: String },
    /// The branch holds commits prbot did not push: it is left to whoever made them.
    #[error("someone else committed to {branch} (it is at {tip}, not at the commit prbot last pushed); prbot leaves the branch to them. Comment `prbot: take over` on the PR to hand it back")]
    NotOurs { branch: String, tip: String },
    #[error("the forge token variable {0} is not set (or empty); export the token in it")]
    NoToken(String),
    #[error("cannot write the local PR record {path}: {source}")]
    LocalIo { path: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

impl ForgeError {
    /// Whether the forge, not the request, failed: no connection, a 5xx or a rate limit
    /// that outlasted the retries, or a push the server or the network broke off.
    pub fn is_outage(&self) -> bool {
        match self {
            ForgeError::Transport { .. } => true,
            ForgeError::Status { status, .. } => *status >= 500 || *status == 429,
            ForgeError::Push { reason, .. } => push::transient(reason),
            _ => false,
        }
    }
}

#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// The default branch, and whether the token may push.
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError>;
    /// The PR whose head is `branch` into `base`: the open one if any, else the latest.
    async fn pr_for_branch(&self, branch: &str, base: &str) -> Result<Option<RemotePr>, ForgeError>;
    /// Open PRs whose head branch starts with `prefix`.
    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError>;
    /// Opens a draft PR. `ForgeError::AlreadyExists` when one is open for the same head.
    async fn create_draft(&self, pr: &PrRequest) -> Result<RemotePr, ForgeError>;
    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError>;
    async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError>;
    /// The comments on PR `number`: its conversation, its reviews and their inline
    /// comments, each kind oldest first.
    async fn comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError>;
    /// Puts labels on a PR by name; returns the names the forge doesn't know.
    async fn add_labels(&self, number: u64, names: &[String]) -> Result<Vec<String>, ForgeError>;
    /// Where `branch` is on the forge, if it exists. `git` runs `ls-remote` when needed.
    async fn branch_tip(&self, git: &Git, branch: &str) -> Result<Option<String>, ForgeError>;
    /// Pushes `commit` to `branch`, only if the branch is missing or at `expected` (the
    /// commit prbot last pushed), and nobody moved it meanwhile: `NotOurs` otherwise.
    async fn push(
        &self,
        worktree: &Git,
        branch: &str,
        commit: &str,
        expected: Option<&str>,
    ) -> Result<(), ForgeError>;
}

/// Which of a branch's PRs speaks for it: an open one, else a merged one (the gap is done,
/// whatever older or newer closed PRs exist), else the newest.
pub(crate) fn speaking_pr(prs: Vec<RemotePr>) -> Option<RemotePr> {
    let newest_in =
        |state: PrState| prs.iter().filter(|p| p.state == state).max_by_key(|p| p.number).cloned();
    newest_in(PrState::Open).or_else(|| newest_in(PrState::Merged)).or_else(|| newest_in(PrState::Closed))
}

/// The forge a pipeline names. The token is read here and never leaves the forge.
pub fn from_config(
    config: &ForgeConfig,
    repo: &crate::infra::workspace::Repo,
    state_dir: &Path,
) -> Result<Arc<dyn Forge>, ForgeError> {
    let token = || {
        let var = config.token_var().expect("remote forges have a token variable");
        let token =
            std::env::var(&var).ok().filter(|t| !t.is_empty()).ok_or(ForgeError::NoToken(var.clone()))?;
        if token.chars().any(char::is_control) {
            return Err(ForgeError::Other(format!(
                "the token in ${var} holds characters that cannot go in an HTTP header (a trailing newline?); store it without them"
            )));
        }
        Ok(token)
    };
    Ok(match config.kind {
        ForgeKind::Local => Arc::new(local::LocalForge::new(repo, state_dir)),
        ForgeKind::Gitea => Arc::new(gitea::Gitea::new(config, token()?)?),
        ForgeKind::Github => Arc::new(github::GitHub::new(config, token()?)?),
    })
}
