//! The Gitea REST API as prbot uses it: routes and JSON shapes (checked against
//! Gitea's OpenAPI spec).

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
        "merged": p.merged,
        "merged_at": if p.merged { json!("2026-01-01T00:00:00Z") } else { Value::Null },
        "html_url": format!("{base}/{OWNER}/{NAME}/pulls/{}", p.number),
        "url": format!("{base}/api/v1/repos/{OWNER}/{NAME}/pulls/{}", p.number),
        "head": branch_json(&p.head, 1),
        "base": branch_json(&p.base, 1),
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
            let all: Vec<&FakePr> = s
                .prs
                .iter()
                .filter(|p| visible(s, p) && (state == "all" || (state == "open") == p.open))
                .collect();
            let all = all.iter().map(|p| pr_json(p, base)).collect();
            paged(all, q, "limit", s.page_cap, base, &format!("/api/v1/repos/{OWNER}/{NAME}/pulls"), true)
        }
        ("POST", "/pulls") => {
            if !s.fail_creates.is_empty() {
                let status = s.fail_creates.remove(0);
                return reply(
                    status,
                    json!({"message": "upstream is restarting", "url": format!("{base}/api/swagger")}),
                );
            }
            s.hide_until_create = false;
            let (head, basebr, title) = (
                body["head"].as_str().unwrap_or(""),
                body["base"].as_str().unwrap_or(""),
                body["title"].as_str().unwrap_or(""),
            );
            if head == basebr {
                return reply(
                    422,
                    json!({"message": "Invalid PullRequestOption: head and base are the same branch", "url": format!("{base}/api/swagger")}),
                );
            }
            if let Some(p) = s.prs.iter().find(|p| p.open && p.head == head && p.base == basebr) {
                let msg = format!("pull request already exists for these targets [id: {}, issue_id: {}, head_repo_id: 1, base_repo_id: 1, head_branch: {head}, base_branch: {basebr}]", p.number + 100, p.number);
                return reply(409, json!({"message": msg, "url": format!("{base}/api/swagger")}));
            }
            let ids: Vec<u64> = body["labels"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
                .unwrap_or_default();
            let labels = s.labels.iter().filter(|(id, _)| ids.contains(id)).map(|(_, n)| n.clone()).collect();
            let text = body["body"].as_str().unwrap_or("");
            let pr = s.open_pr(title, text, head, basebr, is_wip(title), labels);
            reply(201, pr_json(&pr, base))
        }
        ("GET", "/labels") => {
            let all = s
                .labels
                .iter()
                .map(|(id, n)| json!({"id": id, "name": n, "color": "00aabb", "description": "", "exclusive": false, "is_archived": false, "url": format!("{base}/api/v1/repos/{OWNER}/{NAME}/labels/{id}")}))
                .collect();
            paged(all, q, "limit", s.page_cap, base, &format!("/api/v1/repos/{OWNER}/{NAME}/labels"), true)
        }
        _ => {
            if method == Method::GET {
                if let Some(r) = review_routes(s, base, rest, Flavor::Gitea) {
                    return r;
                }
            }
            if let Some(bh) = rest.strip_prefix("/pulls/") {
                if method == Method::GET {
                    if let Some((b, h)) = bh.split_once('/') {
                        let found = s
                            .prs
                            .iter()
                            .rev()
                            .filter(|p| visible(s, p) && p.base == b && p.head == h)
                            .min_by_key(|p| p.number);
                        return match found {
                            Some(p) => reply(200, pr_json(p, base)),
                            None => not_found(Flavor::Gitea, base),
                        };
                    }
                }
                if method == Method::PATCH {
                    if let Some(p) = s.edit_pr(bh, body, true) {
                        return reply(201, pr_json(&p, base));
                    }
                }
                return not_found(Flavor::Gitea, base);
            }
            issue_subroutes(s, base, method, rest, body, Flavor::Gitea)
        }
    }
}
