//! Webhook deliveries: signatures, delivery ids, and whether a push starts a cycle.

use crate::config::settings::OnPush;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Gitea and Forgejo.
    Gitea,
    Github,
}

fn header<'a>(h: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
}

/// Checks the body's HMAC-SHA256 in constant time: Gitea sends the bare hex in
/// `X-Gitea-Signature`, GitHub sends `sha256=<hex>` in `X-Hub-Signature-256`.
pub fn verify(source: Source, secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let given = match source {
        Source::Gitea => header(headers, &["x-gitea-signature", "x-forgejo-signature"]),
        Source::Github => header(headers, &["x-hub-signature-256"]).and_then(|v| v.strip_prefix("sha256=")),
    };
    let Some(given) = given.and_then(|g| hex::decode(g.trim()).ok()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

pub fn delivery_id(source: Source, headers: &HeaderMap) -> Option<String> {
    let names: &[&str] = match source {
        Source::Gitea => &["x-gitea-delivery", "x-forgejo-delivery"],
        Source::Github => &["x-github-delivery"],
    };
    header(headers, names).map(str::to_string)
}

pub fn event(source: Source, headers: &HeaderMap) -> String {
    let names: &[&str] = match source {
        Source::Gitea => &["x-gitea-event", "x-forgejo-event"],
        Source::Github => &["x-github-event"],
    };
    header(headers, names).unwrap_or("").to_string()
}

/// What a well-formed, authentic delivery asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Trigger,
    Ignore(String),
    /// The payload lists only some of the push's commits, and none of those touch the
    /// PRD: whether the whole range does is for git to say.
    Range {
        before: String,
        after: String,
    },
}

/// A push to the default branch that touches the PRD (or any push, with `on_push: any`)
/// starts a cycle; everything else is acknowledged and ignored, with the reason.
pub fn decide(
    event: &str,
    payload: &serde_json::Value,
    prd: &str,
    on_push: OnPush,
) -> Result<Verdict, String> {
    if event != "push" {
        return Ok(Verdict::Ignore(format!("`{event}` events do not start cycles; only pushes do")));
    }
    let reference = payload["ref"].as_str().ok_or("the push payload has no `ref`")?;
    let default = payload["repository"]["default_branch"]
        .as_str()
        .ok_or("the push payload has no `repository.default_branch`")?;
    if reference != format!("refs/heads/{default}") {
        return Ok(Verdict::Ignore(format!("a push to {reference}, not to the default branch {default}")));
    }
    if on_push == OnPush::Any {
        return Ok(Verdict::Trigger);
    }
    let prd = prd.trim_start_matches("./");
    let commits = payload["commits"].as_array().into_iter().flatten().chain(payload.get("head_commit"));
    let touched = commits
        .flat_map(|c| ["added", "modified", "removed"].map(|k| &c[k]))
        .any(|list| list.as_array().into_iter().flatten().any(|p| p.as_str() == Some(prd)));
    if touched {
        return Ok(Verdict::Trigger);
    }
    // Gitea keeps the newest commits only (FEED_MAX_COMMIT_NUM, 5 by default) and the count
    // in `total_commits`.
    let listed = payload["commits"].as_array().map_or(0, Vec::len) as u64;
    let total = payload["total_commits"].as_u64().unwrap_or(listed);
    if total > listed {
        let (before, after) = (payload["before"].as_str(), payload["after"].as_str());
        return Ok(match (before, after) {
            (Some(b), Some(a)) => Verdict::Range { before: b.to_string(), after: a.to_string() },
            _ => Verdict::Trigger,
        });
    }
    Ok(Verdict::Ignore(format!("the push does not change {prd}")))
}

/// Whether `before..after` changes the PRD, by the repository's git; a range that is not
/// all there (or a new branch) starts the cycle, to be safe.
pub fn range_touches(
    repo: &crate::infra::workspace::Repo,
    before: &str,
    after: &str,
    prd: &str,
) -> Result<Verdict, String> {
    let git = repo.git(&crate::infra::process::Cancel::new());
    let known = |c: &str| {
        c.len() >= 40
            && c.chars().all(|ch| ch.is_ascii_hexdigit())
            && !c.chars().all(|ch| ch == '0')
            && git.query(["cat-file", "-e", &format!("{c}^{{commit}}")]).ok().flatten().is_some()
    };
    if !known(before) || !known(after) {
        return Ok(Verdict::Trigger);
    }
    match git.query(["diff", "--quiet", before, after, "--", prd]) {
        // `--quiet` exits 0 when nothing changed.
        Ok(Some(_)) => {
            Ok(Verdict::Ignore(format!("the push does not change {prd} (checked {before:.12}..{after:.12})")))
        }
        _ => Ok(Verdict::Trigger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pushes_that_touch_the_prd_trigger() {
        let push = |r: &str, files: &[&str]| json!({"ref": r, "repository": {"default_branch": "main"}, "commits": [{"modified": files}]});
        assert_eq!(
            decide("push", &push("refs/heads/main", &["docs/PRD.md"]), "docs/PRD.md", OnPush::Prd),
            Ok(Verdict::Trigger)
        );
        assert!(matches!(
            decide("push", &push("refs/heads/main", &["src/a.rs"]), "docs/PRD.md", OnPush::Prd),
            Ok(Verdict::Ignore(_))
        ));
        assert_eq!(
            decide("push", &push("refs/heads/main", &["src/a.rs"]), "docs/PRD.md", OnPush::Any),
            Ok(Verdict::Trigger)
        );
        assert!(matches!(
            decide("push", &push("refs/heads/dev", &["docs/PRD.md"]), "docs/PRD.md", OnPush::Any),
            Ok(Verdict::Ignore(_))
        ));
        assert!(matches!(decide("issues", &json!({}), "docs/PRD.md", OnPush::Any), Ok(Verdict::Ignore(_))));
        assert!(decide("push", &json!({"ref": "refs/heads/main"}), "docs/PRD.md", OnPush::Any).is_err());
    }

    #[test]
    fn a_trimmed_commit_list_leaves_the_range_to_git() {
        let mut push = json!({"ref": "refs/heads/main", "before": "a", "after": "b", "repository": {"default_branch": "main"}, "commits": [{"modified": ["src/a.rs"]}], "total_commits": 6});
        assert_eq!(
            decide("push", &push, "docs/PRD.md", OnPush::Prd),
            Ok(Verdict::Range { before: "a".into(), after: "b".into() })
        );
        push["total_commits"] = json!(1);
        assert!(matches!(decide("push", &push, "docs/PRD.md", OnPush::Prd), Ok(Verdict::Ignore(_))));
    }
}
