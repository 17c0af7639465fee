//! The GitHub REST API as prbot uses it: routes and JSON shapes.

use super::forge::*;
use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

pub(super) fn pr_json(p: &FakePr, base: &str) -> Value {
    json!({
        "id": p.number + 100,
        "number": p.number,
        "title": p.title,
        "body": p.body,
        "state": if p.open { "open" } else { "closed" },
        "draft": p.draft,
        "merged_at": if p.merged { json!("2026-01-01T00:00:00Z") } else { Value::Null },
        "html_url": format!("{base}/{OWNER}/{NAME}/pull/{}", p.number),
        "url": format!("{base}/repos/{OWNER}/{NAME}/pulls/{}", p.number),
        "head": {"label": format!("{OWNER}:{}", p.head), "ref": p.head, "sha": "0000000000000000000000000000000000000000"},
        "base": {"label": format!("{OWNER}:{}", p.base), "ref": p.base, "sha": "0000000000000000000000000000000000000000"},
        "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

pub(super) fn routes(
    s: &mut State,
    base: &str,
    method: &Method,
    rest: &str,
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
) -> Response {
    match (method.as_str(), rest) {
        ("GET", "") => reply(200, repo_json(base, s.push_permission)),
        ("GET", "/pulls") => {
            let state = q("state").unwrap_or("open".into());
            let head = q("head");
            let basef = q("base");
            let mut all: Vec<&FakePr> = s
                .prs
                .iter()
                .filter(|p| visible(s, p) && (state == "all" || (state == "open") == p.open))
                .filter(|p| head.as_ref().is_none_or(|h| *h == format!("{OWNER}:{}", p.head)))
                .filter(|p| basef.as_ref().is_none_or(|b| *b == p.base))
                .collect();
            all.reverse();
            let all = all.iter().map(|p| pr_json(p, base)).collect();
            paged(all, q, "per_page", s.page_cap, base, &format!("/repos/{OWNER}/{NAME}/pulls"), false)
        }
        ("POST", "/pulls") => {
            if !s.fail_creates.is_empty() {
                let status = s.fail_creates.remove(0);
                let mut r = reply(status, json!({"message": "Server Error"}));
                r.headers_mut().insert("retry-after", "0".parse().unwrap());
                return r;
            }
            s.hide_until_create = false;
            let (head, basebr) = (body["head"].as_str().unwrap_or(""), body["base"].as_str().unwrap_or(""));
            let invalid = |m: String| {
                reply(
                    422,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": m}], "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"}),
                )
            };
            if head == basebr {
                return invalid(format!("No commits between {basebr} and {head}"));
            }
            if s.prs.iter().any(|p| p.open && p.head == head && p.base == basebr) {
                return invalid(format!("A pull request already exists for {OWNER}:{head}."));
            }
            let (title, text) = (body["title"].as_str().unwrap_or(""), body["body"].as_str().unwrap_or(""));
            let pr =
                s.open_pr(title, text, head, basebr, body["draft"].as_bool().unwrap_or(false), Vec::new());
            reply(201, pr_json(&pr, base))
        }
        _ => {
            if let Some(name) = rest.strip_prefix("/labels/") {
                let name = name.replace("%20", " ");
                return match s.labels.iter().find(|(_, n)| *n == name) {
                    Some((id, n)) => reply(
                        200,
                        json!({"id": id, "name": n, "color": "00aabb", "default": false, "description": null}),
                    ),
                    None => not_found(Flavor::Github, base),
                };
            }
            if method == Method::GET {
                if let Some(r) = review_routes(s, base, rest, Flavor::Github) {
                    return r;
                }
            }
            if let Some(n) = rest.strip_prefix("/pulls/") {
                if method == Method::PATCH {
                    if let Some(p) = s.edit_pr(n, body, false) {
                        return reply(200, pr_json(&p, base));
                    }
                }
                return not_found(Flavor::Github, base);
            }
            issue_subroutes(s, base, method, rest, body, Flavor::Github)
        }
    }
}
