//! In-process fakes of the Gitea and GitHub REST APIs, each with a real git remote behind
//! it: `git http-backend` over smart HTTP, requiring the token. The fakes keep to what
//! prbot relies on: paths, status codes and messages, paging headers, auth schemes,
//! draft conventions and JSON shapes (Gitea's checked against its OpenAPI spec).

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Gitea,
    Github,
}

pub const OWNER: &str = "acme";
pub const NAME: &str = "widgets";

#[derive(Clone, Debug)]
pub struct FakePr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub merged: bool,
    pub draft: bool,
    pub labels: Vec<String>,
    pub comments: Vec<String>,
    pub reviews: Vec<FakeReview>,
}

/// A review: its state, summary, and comments on lines (path, line, text).
#[derive(Clone, Debug)]
pub struct FakeReview {
    pub id: u64,
    pub state: String,
    pub body: String,
    pub inline: Vec<(u64, String, u64, String)>,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: String,
    pub body: String,
}

/// `GET .../pulls/{n}/reviews`, `.../pulls/{n}/reviews/{id}/comments` (Gitea) and
/// `.../pulls/{n}/comments` (GitHub): a PR's reviews and their line comments.
pub(super) fn review_routes(s: &State, base: &str, rest: &str, flavor: Flavor) -> Option<Response> {
    let tail = rest.strip_prefix("/pulls/")?;
    let (n, what) = tail.split_once('/')?;
    let pr = s.prs.iter().find(|p| p.number.to_string() == n)?;
    let user = json!({"login": "maintainer", "id": 7});
    let inline_json = |(id, path, line, text): &(u64, String, u64, String)| match flavor {
        Flavor::Github => {
            json!({"id": id, "body": text, "path": path, "line": line, "original_line": line, "user": user, "created_at": "2026-01-01T00:00:00Z", "html_url": format!("{base}/{OWNER}/{NAME}/pull/{n}#discussion_r{id}")})
        }
        Flavor::Gitea => {
            json!({"id": id, "body": text, "path": path, "position": line, "original_position": line, "user": user, "created_at": "2026-01-01T00:00:00Z", "html_url": format!("{base}/{OWNER}/{NAME}/pulls/{n}#issuecomment-{id}")})
        }
    };
    match what {
        "reviews" => Some(reply(
            200,
            Value::Array(pr.reviews.iter().map(|r| json!({"id": r.id, "body": r.body, "state": r.state, "user": user, "submitted_at": "2026-01-01T00:00:00Z"})).collect()),
        )),
        "comments" if flavor == Flavor::Github => Some(reply(
            200,
            Value::Array(pr.reviews.iter().flat_map(|r| r.inline.iter().map(inline_json)).collect()),
        )),
        _ => {
            let id = what.strip_prefix("reviews/")?.strip_suffix("/comments")?;
            let r = pr.reviews.iter().find(|r| r.id.to_string() == id)?;
            (flavor == Flavor::Gitea).then(|| reply(200, Value::Array(r.inline.iter().map(inline_json).collect())))
        }
    }
}

/// A canned answer: status, headers, message.
pub type Throttle = (u16, Vec<(String, String)>, String);

pub struct State {
    pub flavor: Flavor,
    pub token: String,
    pub prs: Vec<FakePr>,
    /// (id, name)
    pub labels: Vec<(u64, String)>,
    pub seen: Vec<Seen>,
    /// Statuses to answer the next `POST .../pulls` with, before serving it.
    pub fail_creates: Vec<u16>,
    /// Answers (status, headers, JSON message) for the next API requests, before serving
    /// any: rate limits and redirects as the real servers send them.
    pub throttle: Vec<Throttle>,
    /// Hide open PRs from lookups until a create arrives: a PR "opened meanwhile".
    pub hide_until_create: bool,
    /// When false, the git remote refuses pushes with 403.
    pub push_allowed: bool,
    /// Statuses to answer the next `POST .../git-receive-pack` requests with.
    pub fail_receive_pack: Vec<u16>,
    /// How many `POST .../git-receive-pack` requests arrived.
    pub receive_packs: usize,
    /// `permissions.push` in the repository's JSON.
    pub push_permission: bool,
    /// The server's page size cap (Gitea's MAX_RESPONSE_ITEMS, GitHub's per_page cap).
    pub page_cap: usize,
}

impl State {
    /// Opens a PR with the next number and returns it.
    pub(super) fn open_pr(
        &mut self,
        title: &str,
        body: &str,
        head: &str,
        base: &str,
        draft: bool,
        labels: Vec<String>,
    ) -> FakePr {
        let pr = FakePr {
            number: self.prs.len() as u64 + 1,
            title: title.into(),
            body: body.into(),
            head: head.into(),
            base: base.into(),
            open: true,
            merged: false,
            draft,
            labels,
            comments: Vec::new(),
            reviews: Vec::new(),
        };
        self.prs.push(pr.clone());
        pr
    }

    /// Applies a PATCH of `title` and `body`; `wip_drafts` re-derives Gitea's draft flag.
    pub(super) fn edit_pr(&mut self, number: &str, body: &Value, wip_drafts: bool) -> Option<FakePr> {
        let n = number.parse::<u64>().ok()?;
        let p = self.prs.iter_mut().find(|p| p.number == n)?;
        if let Some(t) = body["title"].as_str() {
            p.title = t.into();
            if wip_drafts {
                p.draft = is_wip(t);
            }
        }
        if let Some(b) = body["body"].as_str() {
            p.body = b.into();
        }
        Some(p.clone())
    }
}

pub(super) fn is_wip(title: &str) -> bool {
    title.starts_with("WIP:") || title.starts_with("[WIP]")
}

pub struct FakeForge {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    pub remote: PathBuf,
}

impl FakeForge {
    /// Starts the fake, with `source` (a repository) cloned as its bare remote.
    pub fn start(flavor: Flavor, token: &str, source: &Path, dir: &Path) -> FakeForge {
        let root = dir.join("forge-git");
        let remote = root.join(OWNER).join(format!("{NAME}.git"));
        std::fs::create_dir_all(remote.parent().unwrap()).unwrap();
        super::git(
            dir,
            &["clone", "--quiet", "--bare", &source.display().to_string(), &remote.display().to_string()],
        );
        let state = Arc::new(Mutex::new(State {
            flavor,
            token: token.to_string(),
            prs: Vec::new(),
            labels: vec![(1, "bot".into()), (2, "enhancement".into())],
            seen: Vec::new(),
            fail_creates: Vec::new(),
            throttle: Vec::new(),
            hide_until_create: false,
            push_allowed: true,
            fail_receive_pack: Vec::new(),
            receive_packs: 0,
            push_permission: true,
            page_cap: 2,
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (st, git_root, base) = (state.clone(), root.clone(), url.clone());
        // Its own thread and runtime: tests block while the binary runs.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let (st, git_root, base) = (st.clone(), git_root.clone(), base.clone());
                        async move { handle(st, &git_root, &base, method, uri, headers, body).await }
                    },
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeForge { url, state, remote }
    }

    /// The pipeline's `forge:` block for this fake.
    pub fn settings(&self, token_env: &str) -> String {
        match self.state.lock().unwrap().flavor {
            Flavor::Gitea => format!("forge:\n  kind: gitea\n  url: {}\n  repo: {OWNER}/{NAME}\n  token_env: {token_env}\n  retries: 2\n", self.url),
            Flavor::Github => format!(
                "forge:\n  kind: github\n  url: {url}\n  api_url: {url}\n  repo: {OWNER}/{NAME}\n  token_env: {token_env}\n  retries: 2\n",
                url = self.url
            ),
        }
    }

    pub fn prs(&self) -> Vec<FakePr> {
        self.state.lock().unwrap().prs.clone()
    }

    pub fn add_pr(&self, head: &str, open: bool, merged: bool) -> u64 {
        let mut s = self.state.lock().unwrap();
        let number = s.open_pr(&format!("earlier work on {head}"), "", head, "main", true, Vec::new()).number;
        let pr = s.prs.last_mut().expect("just opened");
        (pr.open, pr.merged) = (open, merged);
        number
    }

    /// A maintainer's review of PR `number`: `state` as the forge spells it, a summary,
    /// and comments on lines (path, line, text).
    pub fn review_with(&self, number: u64, state: &str, body: &str, inline: &[(&str, u64, &str)]) {
        let mut s = self.state.lock().unwrap();
        // Review ids and review-comment ids have their own sequences, as on the forges.
        let next_review = s.prs.iter().map(|p| p.reviews.len() as u64).sum::<u64>() + 1;
        let mut next_inline =
            s.prs.iter().flat_map(|p| &p.reviews).map(|r| r.inline.len() as u64).sum::<u64>() + 1;
        let pr = s.prs.iter_mut().find(|p| p.number == number).expect("the PR exists");
        let inline = inline
            .iter()
            .map(|(path, line, text)| {
                next_inline += 1;
                (next_inline - 1, path.to_string(), *line, text.to_string())
            })
            .collect();
        pr.reviews.push(FakeReview { id: next_review, state: state.into(), body: body.into(), inline });
    }

    /// A maintainer's comment on PR `number`: review feedback.
    pub fn review(&self, number: u64, text: &str) {
        let mut s = self.state.lock().unwrap();
        let pr = s.prs.iter_mut().find(|p| p.number == number).expect("the PR exists");
        pr.comments.push(text.to_string());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The commit a branch points at on the remote, if it exists.
    /// A maintainer's commit on top of `branch` on the remote; returns its id.
    pub fn commit_as_maintainer(&self, branch: &str, dir: &Path) -> String {
        let work = dir.join("maintainer");
        let _ = std::fs::remove_dir_all(&work);
        super::git(
            dir,
            &[
                "clone",
                "--quiet",
                "--branch",
                branch,
                &self.remote.display().to_string(),
                &work.display().to_string(),
            ],
        );
        std::fs::write(work.join("REVIEW.md"), "a maintainer's fix-up\n").unwrap();
        super::git(&work, &["add", "REVIEW.md"]);
        super::git(
            &work,
            &[
                "-c",
                "user.name=Maintainer",
                "-c",
                "user.email=m@example.org",
                "commit",
                "--quiet",
                "-m",
                "fix-up",
            ],
        );
        super::git(&work, &["push", "--quiet", "origin", branch]);
        self.remote_branch(branch).expect("pushed")
    }

    pub fn remote_branch(&self, branch: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")])
            .current_dir(&self.remote)
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

pub(super) fn reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body.to_string())
        .into_response()
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    st: Arc<Mutex<State>>,
    git_root: &Path,
    base: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    st.lock().unwrap().seen.push(Seen {
        method: method.to_string(),
        path: uri.to_string(),
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if path.starts_with(&format!("/{OWNER}/{NAME}.git/")) {
        // As GitHub does: two Authorization headers are a bad request.
        if headers.get_all("authorization").iter().count() > 1 {
            return (StatusCode::BAD_REQUEST, "Duplicate header: \"Authorization\"\n").into_response();
        }
        return git_http(st, git_root, method, uri, headers, body, &authorization).await;
    }
    let flavor = st.lock().unwrap().flavor;
    let prefix = match flavor {
        Flavor::Gitea => format!("/api/v1/repos/{OWNER}/{NAME}"),
        Flavor::Github => format!("/repos/{OWNER}/{NAME}"),
    };
    let token = st.lock().unwrap().token.clone();
    let expected = match flavor {
        Flavor::Gitea => format!("token {token}"),
        Flavor::Github => format!("Bearer {token}"),
    };
    if authorization != expected {
        return match flavor {
            Flavor::Gitea => reply(
                401,
                json!({"message": "invalid username, password or token", "url": format!("{base}/api/swagger")}),
            ),
            Flavor::Github => reply(
                401,
                json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
            ),
        };
    }
    let throttled = {
        let mut s = st.lock().unwrap();
        (!s.throttle.is_empty()).then(|| s.throttle.remove(0))
    };
    if let Some((status, headers, message)) = throttled {
        let mut r =
            reply(status, json!({"message": message, "documentation_url": "https://docs.github.com/rest"}));
        for (k, v) in headers {
            r.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(&v).unwrap(),
            );
        }
        return r;
    }
    let Some(rest) = path.strip_prefix(&prefix) else {
        return not_found(flavor, base);
    };
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2F", "/").replace("%3A", ":")))
        .collect();
    let q = |k: &str| query.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = st.lock().unwrap();
    match flavor {
        Flavor::Gitea => super::gitea::routes(&mut s, base, &method, rest, &q, &body),
        Flavor::Github => super::github::routes(&mut s, base, &method, rest, &q, &body),
    }
}

pub(super) fn not_found(flavor: Flavor, base: &str) -> Response {
    match flavor {
        Flavor::Gitea => reply(
            404,
            json!({"errors": null, "message": "The target couldn't be found.", "url": format!("{base}/api/swagger")}),
        ),
        Flavor::Github => reply(
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}),
        ),
    }
}

pub(super) fn page<T>(items: &[T], page: usize, wanted: usize, cap: usize) -> (&[T], bool) {
    let size = wanted.clamp(1, cap);
    let start = ((page.max(1) - 1) * size).min(items.len());
    let end = (start + size).min(items.len());
    (&items[start..end], end < items.len())
}

pub(super) fn link(base: &str, path: &str, page: usize, more: bool, last: usize) -> String {
    let mut parts = Vec::new();
    if more {
        parts.push(format!("<{base}{path}?page={}>; rel=\"next\"", page + 1));
        parts.push(format!("<{base}{path}?page={last}>; rel=\"last\""));
    }
    if page > 1 {
        parts.push(format!("<{base}{path}?page=1>; rel=\"first\""));
        parts.push(format!("<{base}{path}?page={}>; rel=\"prev\"", page - 1));
    }
    parts.join(",")
}

/// One page of a list, with the paging headers the real server sends.
pub(super) fn paged(
    all: Vec<Value>,
    q: &dyn Fn(&str) -> Option<String>,
    size_param: &str,
    cap: usize,
    base: &str,
    path: &str,
    gitea: bool,
) -> Response {
    let pg = q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let wanted = q(size_param).and_then(|l| l.parse().ok()).unwrap_or(30);
    let (items, more) = page(&all, pg, wanted, cap);
    let last = all.len().div_ceil(wanted.clamp(1, cap)).max(1);
    list_response(items.to_vec(), all.len(), link(base, path, pg, more, last), gitea)
}

pub(super) fn list_response(items: Vec<Value>, total: usize, link: String, gitea: bool) -> Response {
    let mut r = reply(200, Value::Array(items));
    if gitea {
        r.headers_mut().insert("x-total-count", total.to_string().parse().unwrap());
        r.headers_mut().insert("access-control-expose-headers", "X-Total-Count, Link".parse().unwrap());
    }
    if !link.is_empty() {
        r.headers_mut().insert("link", link.parse().unwrap());
    }
    r
}

pub(super) fn branch_json(name: &str, repo_id: u64) -> Value {
    json!({"label": name, "ref": name, "sha": "0000000000000000000000000000000000000000", "repo_id": repo_id})
}

pub(super) fn repo_json(base: &str, push: bool) -> Value {
    json!({
        "id": 1, "name": NAME, "full_name": format!("{OWNER}/{NAME}"), "default_branch": "main",
        "permissions": {"admin": false, "push": push, "pull": true},
        "html_url": format!("{base}/{OWNER}/{NAME}"), "clone_url": format!("{base}/{OWNER}/{NAME}.git"),
        "private": false, "fork": false, "empty": false, "archived": false,
    })
}

pub(super) fn visible(s: &State, p: &FakePr) -> bool {
    !(s.hide_until_create && p.open)
}

pub(super) fn issue_subroutes(
    s: &mut State,
    base: &str,
    method: &Method,
    rest: &str,
    body: &Value,
    flavor: Flavor,
) -> Response {
    let Some(tail) = rest.strip_prefix("/issues/") else {
        return not_found(flavor, base);
    };
    let Some((n, what)) = tail.split_once('/') else {
        return not_found(flavor, base);
    };
    let Some(number) = n.parse::<u64>().ok() else {
        return not_found(flavor, base);
    };
    let known: Vec<(u64, String)> = s.labels.clone();
    let Some(pr) = s.prs.iter_mut().find(|p| p.number == number) else {
        return not_found(flavor, base);
    };
    match (method.as_str(), what) {
        ("POST", "comments") => {
            let text = body["body"].as_str().unwrap_or("").to_string();
            pr.comments.push(text.clone());
            reply(
                201,
                json!({"id": pr.comments.len(), "body": text, "html_url": format!("{base}/{OWNER}/{NAME}/pulls/{number}#comment"), "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "user": {"login": "prbot"}}),
            )
        }
        ("GET", "comments") => {
            let all: Vec<Value> = pr
                .comments
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let login = if text.contains("<!-- prbot -->") { "prbot" } else { "maintainer" };
                    json!({"id": i + 1, "body": text, "html_url": format!("{base}/{OWNER}/{NAME}/pulls/{number}#issuecomment-{}", i + 1), "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "user": {"login": login, "id": 7}})
                })
                .collect();
            reply(200, Value::Array(all))
        }
        ("POST", "labels") => {
            for v in body["labels"].as_array().cloned().unwrap_or_default() {
                let name = match (flavor, &v) {
                    (Flavor::Gitea, Value::Number(id)) => {
                        known.iter().find(|(k, _)| Some(*k) == id.as_u64()).map(|(_, n)| n.clone())
                    }
                    (Flavor::Github, Value::String(n)) => Some(n.clone()),
                    _ => None,
                };
                match name {
                    Some(n) if !pr.labels.contains(&n) => pr.labels.push(n),
                    Some(_) => {}
                    None => return reply(422, json!({"message": format!("label {v} is not valid here")})),
                }
            }
            let all: Vec<Value> = pr.labels.iter().map(|l| json!({"name": l})).collect();
            reply(200, Value::Array(all))
        }
        _ => not_found(flavor, base),
    }
}

/// Smart HTTP through `git http-backend`, with basic auth whose password is the token.
#[allow(clippy::too_many_arguments)]
async fn git_http(
    st: Arc<Mutex<State>>,
    git_root: &Path,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    authorization: &str,
) -> Response {
    let (token, push_allowed) = {
        let s = st.lock().unwrap();
        (s.token.clone(), s.push_allowed)
    };
    let password = authorization
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, p)| p.to_string()));
    if password.as_deref() != Some(token.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"fake forge\"")],
            "Unauthorized\n",
        )
            .into_response();
    }
    let query = uri.query().unwrap_or("").to_string();
    let pushing = uri.path().ends_with("/git-receive-pack") || query.contains("service=git-receive-pack");
    if pushing && !push_allowed {
        return (StatusCode::FORBIDDEN, "User permission denied for writing.\n").into_response();
    }
    if method == Method::POST && uri.path().ends_with("/git-receive-pack") {
        let mut s = st.lock().unwrap();
        s.receive_packs += 1;
        if !s.fail_receive_pack.is_empty() {
            let status = s.fail_receive_pack.remove(0);
            return (StatusCode::from_u16(status).unwrap(), "Service Unavailable\n").into_response();
        }
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (root, path) = (git_root.to_path_buf(), uri.path().to_string());
    let (ctype, cenc, proto) = (header("content-type"), header("content-encoding"), header("git-protocol"));
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = std::process::Command::new("git");
        cmd.arg("http-backend")
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method.as_str())
            .env("PATH_INFO", &path)
            .env("QUERY_STRING", &query)
            .env("REMOTE_USER", "prbot")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_LENGTH", body.len().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(c) = ctype {
            cmd.env("CONTENT_TYPE", c);
        }
        if let Some(c) = cenc {
            cmd.env("HTTP_CONTENT_ENCODING", c);
        }
        if let Some(p) = proto {
            cmd.env("GIT_PROTOCOL", p);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out.stdout
    })
    .await
    .unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad CGI output").into_response();
    };
    let head = String::from_utf8_lossy(&out[..at]).into_owned();
    let mut status = StatusCode::OK;
    let mut builder = axum::http::Response::builder();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse().ok())
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::OK);
            } else {
                builder = builder.header(k.trim(), v);
            }
        }
    }
    builder.status(status).body(axum::body::Body::from(out[at + gap..].to_vec())).unwrap()
}
