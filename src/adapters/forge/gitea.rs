//! Gitea and Forgejo, over `/api/v1` with `Authorization: token <T>`.
//! Gitea has no draft flag: a draft is a PR whose title starts with a WIP prefix.

use super::http::{self, ApiPr, Reply, Rest, SendError, Transport, Verb};
use super::push::Pusher;
use super::{Forge, ForgeError, PrRequest, PrState, RemotePr, RepoInfo};
use crate::config::settings::ForgeConfig;
use crate::infra::git::Git;
use serde_json::{json, Value};

pub struct Gitea {
    rest: Rest,
    draft_prefix: String,
    pusher: Pusher,
}

/// reqwest, with the token as a sensitive default header.
struct Client {
    http: reqwest::Client,
    /// `{api}/repos/{owner}/{name}`
    base: String,
}

#[async_trait::async_trait]
impl Transport for Client {
    async fn send(&self, verb: Verb, route: &str, body: Option<&Value>) -> Result<Reply, SendError> {
        let method = match verb {
            Verb::Get => reqwest::Method::GET,
            Verb::Post => reqwest::Method::POST,
            Verb::Patch => reqwest::Method::PATCH,
        };
        let mut req =
            self.http.request(method, format!("{}{route}", self.base)).header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                SendError::Timeout
            } else {
                SendError::Transport(crate::infra::retry::describe(&e))
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = resp.text().await.map_err(transport)?;
        Ok(Reply { status, headers, body })
    }

    fn base(&self) -> &str {
        &self.base
    }
}

impl Gitea {
    pub fn new(config: &ForgeConfig, token: String) -> Result<Gitea, ForgeError> {
        let web = config.web_url().expect("validated: gitea has a url");
        let repo = config.repo.clone().expect("validated: gitea has a repo");
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("token {token}"))
            .map_err(|_| ForgeError::Other("the forge token cannot go in an HTTP header".into()))?;
        auth.set_sensitive(true);
        let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("prbot/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .build()
            .map_err(|e| ForgeError::Other(format!("cannot build the HTTP client: {e}")))?;
        let base = format!("{}/repos/{repo}", config.api_base().expect("validated"));
        Ok(Gitea {
            pusher: Pusher::new(format!("{web}/{repo}.git"), &token, config.retries),
            rest: Rest::new(
                Box::new(Client { http, base }),
                http::Target::new(config, web, &repo),
                config.retries,
            ),
            draft_prefix: config.draft_prefix.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Forge for Gitea {
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError> {
        self.rest.repo_info().await
    }

    async fn pr_for_branch(&self, branch: &str, base: &str) -> Result<Option<RemotePr>, ForgeError> {
        let what = "looking up the PR of the branch";
        // The list endpoint has no head filter; this one finds the PR of a base and head.
        let r = self.rest.call(what, Verb::Get, &format!("/pulls/{base}/{branch}"), None).await?;
        let found: RemotePr = match r.status {
            404 => return Ok(None),
            _ if r.ok() => r.json::<ApiPr>(what)?.into(),
            _ => return Err(self.rest.fail(what, &r)),
        };
        if found.state == PrState::Open {
            return Ok(Some(found));
        }
        // That route answers with the oldest PR of the pair; a newer one, open or merged,
        // speaks for the branch.
        let all = self.rest.pulls(what, "/pulls?state=all", "limit=50").await?;
        Ok(super::speaking_pr(all.into_iter().filter(|p| p.head == branch).chain([found]).collect()))
    }

    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError> {
        let all = self.rest.pulls("listing open PRs", "/pulls?state=open", "limit=50").await?;
        Ok(all.into_iter().filter(|p| p.head.starts_with(prefix)).collect())
    }

    async fn create_draft(&self, pr: &PrRequest) -> Result<RemotePr, ForgeError> {
        let what = "opening the PR";
        let title = format!("{}{}", self.draft_prefix, pr.title);
        let body = json!({"title": title, "body": pr.body, "head": pr.head, "base": pr.base});
        let r = self.rest.call(what, Verb::Post, "/pulls", Some(&body)).await?;
        match r.status {
            409 => Err(ForgeError::AlreadyExists),
            _ if r.ok() => Ok(r.json::<ApiPr>(what)?.into()),
            _ => Err(self.rest.fail(what, &r)),
        }
    }

    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError> {
        let what = "updating the PR";
        let edit = json!({"title": format!("{}{title}", self.draft_prefix), "body": body});
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
            .comment_list(what, &format!("/issues/{number}/comments"), "limit=50", Conversation)
            .await?;
        let reviews = self.rest.all_pages(what, &format!("/pulls/{number}/reviews"), "limit=50").await?;
        for r in &reviews {
            all.extend(http::comment(what, r, Review)?);
        }
        // Gitea serves a review's line comments under the review.
        for id in reviews.iter().filter_map(|r| r["id"].as_u64()) {
            let route = format!("/pulls/{number}/reviews/{id}/comments");
            all.extend(self.rest.comment_list(what, &route, "limit=50", Inline).await?);
        }
        Ok(all)
    }

    async fn add_labels(&self, number: u64, names: &[String]) -> Result<Vec<String>, ForgeError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let what = "labelling the PR";
        // Gitea labels by id; resolve the names first.
        let known = self.rest.all_pages(what, "/labels", "limit=50").await?;
        let id_of = |name: &str| {
            known.iter().find(|l| l["name"].as_str() == Some(name)).and_then(|l| l["id"].as_u64())
        };
        let ids: Vec<u64> = names.iter().filter_map(|n| id_of(n)).collect();
        let missing = names.iter().filter(|n| id_of(n).is_none()).cloned().collect();
        if !ids.is_empty() {
            let route = format!("/issues/{number}/labels");
            self.rest.call_ok(what, Verb::Post, &route, Some(&json!({"labels": ids}))).await?;
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
