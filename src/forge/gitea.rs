//! Gitea and Forgejo, over `/api/v1` with `Authorization: token <T>`.
//! Gitea has no draft flag: a draft is a PR whose title starts with a WIP prefix.

use super::http::{self, Reply, SendError};
use super::push::Pusher;
use super::{hint, Forge, ForgeError, PrRequest, PrState, RemotePr, RepoInfo};
use crate::git::Git;
use crate::pipeline::config::ForgeConfig;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

pub struct Gitea {
    http: reqwest::Client,
    api: String,
    web: String,
    repo: String,
    token_var: String,
    draft_prefix: String,
    retries: usize,
    pusher: Pusher,
}

#[derive(Deserialize)]
struct ApiPr {
    number: u64,
    html_url: String,
    state: String,
    #[serde(default)]
    merged: bool,
    title: String,
    head: ApiBranch,
}

#[derive(Deserialize)]
struct ApiBranch {
    #[serde(rename = "ref")]
    name: String,
}

impl From<ApiPr> for RemotePr {
    fn from(p: ApiPr) -> RemotePr {
        let state = match (p.state.as_str(), p.merged) {
            ("open", _) => PrState::Open,
            (_, true) => PrState::Merged,
            _ => PrState::Closed,
        };
        RemotePr {
            number: p.number,
            url: p.html_url,
            state,
            head: p.head.name,
            title: p.title,
        }
    }
}

impl Gitea {
    pub fn new(config: &ForgeConfig, token: String) -> Result<Gitea, ForgeError> {
        let web = config.web_url().expect("validated: gitea has a url");
        let repo = config.repo.clone().expect("validated: gitea has a repo");
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("token {token}")).map_err(|_| {
                ForgeError::Other(
                    "the forge token holds characters that cannot go in a header".into(),
                )
            })?;
        auth.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("prbot/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .build()
            .map_err(|e| ForgeError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Gitea {
            http,
            api: config.api_base().expect("validated"),
            pusher: Pusher::new(format!("{web}/{repo}.git"), &token),
            web,
            repo,
            token_var: config.token_var().expect("gitea has a token variable"),
            draft_prefix: config.draft_prefix.clone(),
            retries: config.retries,
        })
    }

    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        let url = format!("{}/repos/{}{path}", self.api, self.repo);
        http::send(self.retries, what, &self.api, || async {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    SendError::Timeout
                } else {
                    SendError::Transport(http::chain(&e))
                }
            })?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .text()
                .await
                .map_err(|e| SendError::Transport(http::chain(&e)))?;
            Ok(Reply {
                status,
                headers,
                body,
            })
        })
        .await
    }

    fn fail(&self, what: &str, r: &Reply) -> ForgeError {
        ForgeError::Status {
            what: what.to_string(),
            status: r.status,
            message: r.message(),
            hint: hint(r.status, &self.token_var, &self.web, &self.repo),
        }
    }

    /// Every page of a list endpoint, following `Link: rel="next"` and `X-Total-Count`.
    async fn all_pages(&self, what: &str, path: &str) -> Result<Vec<Value>, ForgeError> {
        let mut out = Vec::new();
        for page in 1..=100 {
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = self
                .call(
                    what,
                    Method::GET,
                    &format!("{path}{sep}page={page}&limit=50"),
                    None,
                )
                .await?;
            if !r.ok() {
                return Err(self.fail(what, &r));
            }
            let items: Vec<Value> = r.json(what)?;
            let got = items.len();
            out.extend(items);
            let total = r
                .headers
                .get("x-total-count")
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            let has_next = r
                .headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|l| l.contains("rel=\"next\""));
            if got == 0 || total.is_some_and(|t| out.len() >= t) || (total.is_none() && !has_next) {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Forge for Gitea {
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError> {
        let what = "reading the repository";
        let r = self.call(what, Method::GET, "", None).await?;
        if !r.ok() {
            return Err(self.fail(what, &r));
        }
        let v: Value = r.json(what)?;
        let default_branch = v["default_branch"].as_str().unwrap_or("main").to_string();
        let can_push = v["permissions"]["push"].as_bool().unwrap_or(false);
        Ok(RepoInfo {
            default_branch,
            can_push,
        })
    }

    async fn pr_for_branch(
        &self,
        branch: &str,
        base: &str,
    ) -> Result<Option<RemotePr>, ForgeError> {
        let what = "looking up the PR of the branch";
        // The list endpoint has no head filter; this one finds the PR of a base and head.
        let r = self
            .call(what, Method::GET, &format!("/pulls/{base}/{branch}"), None)
            .await?;
        let found: RemotePr = match r.status {
            404 => return Ok(None),
            _ if r.ok() => r.json::<ApiPr>(what)?.into(),
            _ => return Err(self.fail(what, &r)),
        };
        if found.state == PrState::Open {
            return Ok(Some(found));
        }
        // With a closed PR and a newer open one on the same branch, the open one counts.
        let open = self
            .open_prs(branch)
            .await?
            .into_iter()
            .find(|p| p.head == branch);
        Ok(Some(open.unwrap_or(found)))
    }

    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError> {
        let what = "listing open PRs";
        let items = self.all_pages(what, "/pulls?state=open").await?;
        let mut out = Vec::new();
        for v in items {
            let pr: RemotePr = serde_json::from_value::<ApiPr>(v)
                .map_err(|e| ForgeError::Shape {
                    what: what.into(),
                    detail: e.to_string(),
                })?
                .into();
            if pr.head.starts_with(prefix) {
                out.push(pr);
            }
        }
        Ok(out)
    }

    async fn create_draft(&self, pr: &PrRequest) -> Result<RemotePr, ForgeError> {
        let what = "opening the PR";
        let title = format!("{}{}", self.draft_prefix, pr.title);
        let body = json!({"title": title, "body": pr.body, "head": pr.head, "base": pr.base});
        let r = self.call(what, Method::POST, "/pulls", Some(&body)).await?;
        match r.status {
            409 => Err(ForgeError::AlreadyExists),
            _ if r.ok() => Ok(r.json::<ApiPr>(what)?.into()),
            _ => Err(self.fail(what, &r)),
        }
    }

    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError> {
        let what = "updating the PR";
        let title = format!("{}{title}", self.draft_prefix);
        let r = self
            .call(
                what,
                Method::PATCH,
                &format!("/pulls/{number}"),
                Some(&json!({"title": title, "body": body})),
            )
            .await?;
        if !r.ok() {
            return Err(self.fail(what, &r));
        }
        Ok(r.json::<ApiPr>(what)?.into())
    }

    async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let what = "commenting on the PR";
        let r = self
            .call(
                what,
                Method::POST,
                &format!("/issues/{number}/comments"),
                Some(&json!({"body": body})),
            )
            .await?;
        if !r.ok() {
            return Err(self.fail(what, &r));
        }
        Ok(())
    }

    async fn add_labels(&self, number: u64, names: &[String]) -> Result<Vec<String>, ForgeError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let what = "labelling the PR";
        // Gitea labels by id; resolve the names first.
        let known = self.all_pages(what, "/labels").await?;
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match known
                .iter()
                .find(|l| l["name"].as_str() == Some(name.as_str()))
                .and_then(|l| l["id"].as_u64())
            {
                Some(id) => ids.push(id),
                None => missing.push(name.clone()),
            }
        }
        if !ids.is_empty() {
            let r = self
                .call(
                    what,
                    Method::POST,
                    &format!("/issues/{number}/labels"),
                    Some(&json!({"labels": ids})),
                )
                .await?;
            if !r.ok() {
                return Err(self.fail(what, &r));
            }
        }
        Ok(missing)
    }

    async fn push(&self, worktree: &Git, branch: &str, commit: &str) -> Result<(), ForgeError> {
        self.pusher.push_off_thread(worktree, branch, commit).await
    }
}
