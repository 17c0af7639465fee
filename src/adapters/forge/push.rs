//! `git push` to a forge over HTTPS. The token reaches git only through `GIT_CONFIG_*`
//! variables of that one command: never a remote URL, never a config file, never argv.

use super::ForgeError;
use crate::infra::git::{Git, GitError};

#[derive(Clone)]
pub struct Pusher {
    /// `{url}/{owner}/{name}.git`, without credentials.
    pub remote_url: String,
    /// The token, for `Authorization` on the remote only.
    token: String,
    /// Retries after a 429, a 5xx or a connection failure, like API calls.
    retries: usize,
}

/// A push that failed, and whether trying again can help.
struct Failed {
    error: ForgeError,
    transient: bool,
}

impl crate::infra::retry::Transient for Failed {
    fn retryable(&self) -> bool {
        self.transient
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What git says when the server or the network failed, not the push itself: a 429 or
/// 5xx answer, or no connection. A rejection (a hook, a failed lease, a permission) is
/// never retried.
pub(super) fn transient(reason: &str) -> bool {
    let lower = reason.to_lowercase();
    [
        "returned error: 5",
        "returned error: 429",
        "could not resolve host",
        "connection refused",
        "timed out",
        "connection reset",
        "unexpected disconnect",
    ]
    .iter()
    .any(|m| lower.contains(m))
        && !lower.contains("rejected")
}

impl Pusher {
    pub fn new(remote_url: String, token: &str, retries: usize) -> Self {
        Pusher { remote_url, token: token.to_string(), retries }
    }

    fn env(&self) -> Vec<(String, String)> {
        crate::infra::git::token_auth_env(&self.remote_url, &self.token)
    }

    /// [`Pusher::push`] on a blocking thread, so the async runtime keeps running, retried
    /// with backoff when the server or the network failed.
    pub async fn push_off_thread(
        &self,
        git: &Git,
        branch: &str,
        commit: &str,
        expected: Option<&str>,
    ) -> Result<(), ForgeError> {
        let attempt = || {
            let (me, git, branch, commit, expected) = (
                self.clone(),
                git.clone(),
                branch.to_string(),
                commit.to_string(),
                expected.map(str::to_string),
            );
            async move {
                let result =
                    tokio::task::spawn_blocking(move || me.push(&git, &branch, &commit, expected.as_deref()))
                        .await
                        .map_err(|e| ForgeError::Other(format!("the push thread failed: {e}")))
                        .and_then(|r| r);
                result.map_err(|error| {
                    let transient = matches!(&error, ForgeError::Push { reason, .. } if transient(reason));
                    Failed { error, transient }
                })
            }
        };
        crate::infra::retry::run(self.retries, attempt, |f: &Failed, wait| {
            tracing::warn!("push failed ({}); retrying in {wait:?}", f.error);
        })
        .await
        .map_err(|f| f.error)
    }

    /// Where `branch` is on the remote, if it exists.
    pub fn tip(&self, git: &Git, branch: &str) -> Result<Option<String>, ForgeError> {
        let refname = format!("refs/heads/{branch}");
        let listed = git.run_with_env(["ls-remote", "--", &self.remote_url, &refname], &self.env()).map_err(|e| {
            ForgeError::Other(format!(
                "cannot read branch {branch} of {} with git: {}; check the token in forge.token_env and forge.repo",
                self.remote_url,
                reason(e)
            ))
        })?;
        Ok(listed.split_whitespace().next().map(str::to_string))
    }

    /// [`Pusher::tip`] on a blocking thread.
    pub async fn tip_off_thread(&self, git: &Git, branch: &str) -> Result<Option<String>, ForgeError> {
        let (me, git, branch) = (self.clone(), git.clone(), branch.to_string());
        tokio::task::spawn_blocking(move || me.tip(&git, &branch))
            .await
            .map_err(|e| ForgeError::Other(format!("the ls-remote thread failed: {e}")))?
    }

    /// Pushes `commit` to `branch`, with a lease on what the remote had just before,
    /// which must be nothing or `expected`.
    pub fn push(
        &self,
        git: &Git,
        branch: &str,
        commit: &str,
        expected: Option<&str>,
    ) -> Result<(), ForgeError> {
        let refname = format!("refs/heads/{branch}");
        let failed = |e: GitError| ForgeError::Push { url: self.remote_url.clone(), reason: reason(e) };
        let current = self.tip(git, branch)?.unwrap_or_default();
        if !current.is_empty() && Some(current.as_str()) != expected && current != commit {
            return Err(ForgeError::NotOurs { branch: branch.to_string(), tip: current });
        }
        let lease = format!("--force-with-lease={refname}:{current}");
        let spec = format!("{commit}:{refname}");
        git.run_with_env(["push", "--no-verify", &lease, "--", &self.remote_url, &spec], &self.env())
            .map_err(failed)?;
        Ok(())
    }
}

/// git's own words, without the command line around them.
fn reason(e: GitError) -> String {
    match e {
        GitError::Failed { stderr, status, .. } => {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() {
                status
            } else {
                lines.join(" / ")
            }
        }
        other => other.to_string(),
    }
}
