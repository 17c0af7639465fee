//! GitHub and GitHub Enterprise, through octocrab (`Authorization: Bearer <T>`).
//! Raw routes keep the status and headers in view, for retries and clear errors.

use super::http::{self, Reply, SendError};
use super::push::Pusher;
use super::{hint, Forge, ForgeError, PrRequest, PrState, RemotePr, RepoInfo};
use crate::git::Git;
use crate::pipeline::config::ForgeConfig;
use serde::Deserialize;
use serde_json::{json, Value};

pub struct GitHub {
    octo: octocrab::Octocrab,
    api: String,
    web: String,
    repo: String,
    owner: String,
    token_var: String,
    retries: usize,
    timeout: std::time::Duration,
    pusher: Pusher,
}

#[derive(Deserialize)]
struct ApiPr {
    number: u64,
    html_url: String,
    state: String,
    merged_at: Option<String>,
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
        let state = match (p.state.as_str(), p.merged_at.is_some()) {
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

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
    Patch,
}

impl GitHub {
    pub fn new(config: &ForgeConfig, token: String) -> Result<GitHub, ForgeError> {
        let web = config.web_url().expect("github has a url");
        let api = config.api_base().expect("github has an API");
        let repo = config.repo.clone().expect("validated: github has a repo");
        let octo = octocrab::Octocrab::builder()
            .base_uri(api.as_str())
            .map_err(|e| {
                ForgeError::Other(format!(
                    "forge.api_url `{api}` is not a usable address: {e}"
                ))
            })?
            .personal_token(token.clone())
            .set_connect_timeout(Some(config.timeout))
            .set_read_timeout(Some(config.timeout))
            .build()
            .map_err(|e| {
                ForgeError::Other(format!(
                    "cannot build the GitHub client: {}",
                    http::chain(&e)
                ))
            })?;
        Ok(GitHub {
            octo,
            pusher: Pusher::new(format!("{web}/{repo}.git"), &token),
            owner: repo.split('/').next().unwrap_or_default().to_string(),
            api,
            web,
            repo,
            token_var: config.token_var().expect("github has a token variable"),
            retries: config.retries,
            timeout: config.timeout,
        })
    }

    async fn call(
        &self,
        what: &str,
        verb: Verb,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        // A relative route: octocrab only sends the token to its own base address.
        let route = format!("/repos/{}{route}", self.repo);
        http::send(self.retries, what, &self.api, || async {
            let sent = async {
                match verb {
                    Verb::Get => self.octo._get(route.as_str()).await,
                    Verb::Post => self.octo._post(route.as_str(), body).await,
                    Verb::Patch => self.octo._patch(route.as_str(), body).await,
                }
            };
            let resp = match tokio::time::timeout(self.timeout, sent).await {
                Err(_) => return Err(SendError::Timeout),
                Ok(Err(e)) => return Err(SendError::Transport(http::chain(&e))),
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = self
                .octo
                .body_to_string(resp)
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

    /// Every page of a PR list, following `Link: rel="next"`.
    async fn pulls(&self, what: &str, query: &str) -> Result<Vec<RemotePr>, ForgeError> {
        let mut out = Vec::new();
        for page in 1..=100 {
            let r = self
                .call(
                    what,
                    Verb::Get,
                    &format!("/pulls?{query}&per_page=100&page={page}"),
                    None,
                )
                .await?;
            if !r.ok() {
                return Err(self.fail(what, &r));
            }
            let items: Vec<ApiPr> = r.json(what)?;
            let got = items.len();
            out.extend(items.into_iter().map(RemotePr::from));
            let next = r
                .headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|l| l.contains("rel=\"next\""));
            if got == 0 || !next {
                break;
            }
        }
        Ok(out)
    }
}

fn already_exists(r: &Reply) -> bool {
    r.status == 422 && r.body.contains("already exists")
}

#[async_trait::async_trait]
impl Forge for GitHub {
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError> {
        let what = "reading the repository";
        let r = self.call(what, Verb::Get, "", None).await?;
        if !r.ok() {
            return Err(self.fail(what, &r));
        }
        let v: Value = r.json(what)?;
        Ok(RepoInfo {
            default_branch: v["default_branch"].as_str().unwrap_or("main").to_string(),
            can_push: v["permissions"]["push"].as_bool().unwrap_or(false),
        })
    }

    async fn pr_for_branch(
        &self,
        branch: &str,
        base: &str,
    ) -> Result<Option<RemotePr>, ForgeError> {
        let prs = self
            .pulls(
                "looking up the PR of the branch",
                &format!("state=all&head={}:{branch}&base={base}", self.owner),
            )
            .await?;
        let open = prs.iter().find(|p| p.state == PrState::Open).cloned();
        // GitHub lists newest first.
        Ok(open.or_else(|| prs.into_iter().next()))
    }

    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError> {
        Ok(self
            .pulls("listing open PRs", "state=open")
            .await?
            .into_iter()
            .filter(|p| p.head.starts_with(prefix))
            .collect())
    }

    async fn create_draft(&self, pr: &PrRequest) -> Result<RemotePr, ForgeError> {
        let what = "opening the PR";
        let body = json!({"title": pr.title, "body": pr.body, "head": pr.head, "base": pr.base, "draft": true});
        let r = self.call(what, Verb::Post, "/pulls", Some(&body)).await?;
        if already_exists(&r) {
            return Err(ForgeError::AlreadyExists);
        }
        if !r.ok() {
            return Err(self.fail(what, &r));
        }
        Ok(r.json::<ApiPr>(what)?.into())
    }

    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError> {
        let what = "updating the PR";
        let r = self
            .call(
                what,
                Verb::Patch,
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
                Verb::Post,
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
        let what = "labelling the PR";
        let mut known = Vec::new();
        let mut missing = Vec::new();
        // GitHub would create unknown labels on the fly; prbot only uses the repository's own.
        for name in names {
            let r = self
                .call(what, Verb::Get, &format!("/labels/{}", encode(name)), None)
                .await?;
            match r.status {
                404 => missing.push(name.clone()),
                _ if r.ok() => known.push(name.clone()),
                _ => return Err(self.fail(what, &r)),
            }
        }
        if !known.is_empty() {
            let r = self
                .call(
                    what,
                    Verb::Post,
                    &format!("/issues/{number}/labels"),
                    Some(&json!({"labels": known})),
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

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
