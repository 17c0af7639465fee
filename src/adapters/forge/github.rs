//! GitHub and GitHub Enterprise, through octocrab (`Authorization: Bearer <T>`).
//! Raw routes keep the status and headers in view, for retries and clear errors.

use super::http::{self, ApiPr, Reply, Rest, SendError, Transport, Verb};
use super::push::Pusher;
use super::{Forge, ForgeError, PrRequest, RemotePr, RepoInfo};
use crate::config::settings::ForgeConfig;
use crate::infra::git::Git;
use serde_json::{json, Value};
use std::time::Duration;

pub struct GitHub {
    rest: Rest,
    owner: String,
    pusher: Pusher,
}

struct Client {
    octo: octocrab::Octocrab,
    /// `/repos/{owner}/{name}`: relative, since octocrab only sends the token to its base.
    prefix: String,
    api: String,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Transport for Client {
    async fn send(&self, verb: Verb, route: &str, body: Option<&Value>) -> Result<Reply, SendError> {
        let route = format!("{}{route}", self.prefix);
        let sent = async {
            match verb {
                Verb::Get => self.octo._get(route.as_str()).await,
                Verb::Post => self.octo._post(route.as_str(), body).await,
                Verb::Patch => self.octo._patch(route.as_str(), body).await,
            }
        };
        let resp = match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => return Err(SendError::Timeout),
            Ok(r) => r.map_err(|e| SendError::Transport(crate::infra::retry::describe(&e)))?,
        };
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = self
            .octo
            .body_to_string(resp)
            .await
            .map_err(|e| SendError::Transport(crate::infra::retry::describe(&e)))?;
        Ok(Reply { status, headers, body })
    }

    fn base(&self) -> &str {
        &self.api
    }
}

impl GitHub {
    pub fn new(config: &ForgeConfig, token: String) -> Result<GitHub, ForgeError> {
        let web = config.web_url().expect("github has a url");
        let api = config.api_base().expect("github has an API");
        let repo = config.repo.clone().expect("validated: github has a repo");
        let octo = octocrab::Octocrab::builder()
            .base_uri(api.as_str())
            .map_err(|e| ForgeError::Other(format!("forge.api_url `{api}` is not a usable address: {e}")))?
            .personal_token(token.clone())
            .set_connect_timeout(Some(config.timeout))
            .set_read_timeout(Some(config.timeout))
            .build()
            .map_err(|e| {
                ForgeError::Other(format!(
                    "cannot build the GitHub client: {}",
                    crate::infra::retry::describe(&e)
                ))
            })?;
        let client = Client { octo, prefix: format!("/repos/{repo}"), api, timeout: config.timeout };
        Ok(GitHub {
            pusher: Pusher::new(format!("{web}/{repo}.git"), &token, config.retries),
            owner: repo.split('/').next().unwrap_or_default().to_string(),
            rest: Rest::new(Box::new(client), http::Target::new(config, web, &repo), config.retries),
        })
    }

    /// Every page of a PR list.
    async fn pulls(&self, what: &str, query: &str) -> Result<Vec<RemotePr>, ForgeError> {
        self.rest.pulls(what, &format!("/pulls?{query}"), "per_page=100").await
    }
}

#[async_trait::async_trait]
impl Forge for GitHub {
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError> {
        self.rest.repo_info().await
    }

    async fn pr_for_branch(&self, branch: &str, base: &str) -> Result<Option<RemotePr>, ForgeError> {
        let query = format!("state=all&head={}:{branch}&base={base}", self.owner);
        let prs = self.pulls("looking up the PR of the branch", &query).await?;
        Ok(super::speaking_pr(prs))
    }

    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError> {
        let all = self.pulls("listing open PRs", "state=open").await?;
        Ok(all.into_iter().filter(|p| p.head.starts_with(prefix)).collect())
    }

    async fn create_draft(&self, pr: &PrRequest) -> Result<RemotePr, ForgeError> {
        let what = "opening the PR";
        let body =
            json!({"title": pr.title, "body": pr.body, "head": pr.head, "base": pr.base, "draft": true});
        let r = self.rest.call(what, Verb::Post, "/pulls", Some(&body)).await?;
        if r.status == 422 && r.body.contains("already exists") {
            return Err(ForgeError::AlreadyExists);
        }
        if !r.ok() {
            return Err(self.rest.fail(what, &r));
        }
        Ok(r.json::<ApiPr>(what)?.into())
    }

    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError> {
        let what = "updating the PR";
        let edit = json!({"title": title, "body": body});
        let r = self.rest.call_ok(what, Verb::Patch, &format!("/pulls/{number}"), Some(&edit)).await?;
        Ok(r.json::<ApiPr>(what)?.into())
    }

    async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        self.rest.comment(number, body).await
    }

    async fn comments(&self, number: u64) -> Result<Vec<super::Comment>, ForgeError> {
        use super::CommentKind::*;
        let what = "reading the PR's comments and reviews";
        let mut all = self
            .rest
            .comment_list(what, &format!("/issues/{number}/comments"), "per_page=100", Conversation)
            .await?;
        all.extend(
            self.rest.comment_list(what, &format!("/pulls/{number}/reviews"), "per_page=100", Review).await?,
        );
        all.extend(
            self.rest
                .comment_list(what, &format!("/pulls/{number}/comments"), "per_page=100", Inline)
                .await?,
        );
        Ok(all)
    }

    async fn add_labels(&self, number: u64, names: &[String]) -> Result<Vec<String>, ForgeError> {
        let what = "labelling the PR";
        let (mut known, mut missing) = (Vec::new(), Vec::new());
        // GitHub would create unknown labels on the fly; prbot only uses the repository's own.
        for name in names {
            let r = self.rest.call(what, Verb::Get, &format!("/labels/{}", encode(name)), None).await?;
            match r.status {
                404 => missing.push(name.clone()),
                _ if r.ok() => known.push(name.clone()),
                _ => return Err(self.rest.fail(what, &r)),
            }
        }
        if !known.is_empty() {
            let route = format!("/issues/{number}/labels");
            self.rest.call_ok(what, Verb::Post, &route, Some(&json!({"labels": known}))).await?;
        }
        Ok(missing)
    }

    async fn branch_tip(&self, git: &Git, branch: &str) -> Result<Option<String>, ForgeError> {
        self.pusher.tip_off_thread(git, branch).await
    }

    async fn push(
        &self,
        worktree: &Git,
        branch: &str,
        commit: &str,
        expected: Option<&str>,
    ) -> Result<(), ForgeError> {
        self.pusher.push_off_thread(worktree, branch, commit, expected).await
    }
}

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
