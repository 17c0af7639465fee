//! The model's reply: a JSON proposal, tolerated in a markdown fence, strict inside.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub summary: String,
    pub files: Vec<ProposedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProposedFile {
    pub path: String,
    pub is_new: bool,
    pub content: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{reason}; the reply began: {start:?}")]
pub struct ParseError {
    pub reason: String,
    pub start: String,
}

impl Proposal {
    /// Finds the proposal in a reply: bare JSON, or JSON inside one markdown fence.
    pub fn parse(reply: &str) -> Result<Proposal, ParseError> {
        let fail = |reason: String| ParseError {
            reason,
            start: reply.trim().chars().take(160).collect(),
        };
        let body =
            unfence(reply.trim()).ok_or_else(|| fail("the reply holds no JSON object".into()))?;
        let p: Proposal = serde_json::from_str(body)
            .map_err(|e| fail(format!("the JSON is not a proposal: {e}")))?;
        if p.files.is_empty() {
            return Err(fail("the proposal lists no files".into()));
        }
        if p.summary.trim().is_empty() {
            return Err(fail("the proposal's `summary` is empty".into()));
        }
        Ok(p)
    }
}

fn unfence(reply: &str) -> Option<&str> {
    if reply.starts_with('{') {
        return Some(reply);
    }
    let start = reply.find("```")?;
    let after = &reply[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.rfind("```")?;
    let inner = body[..end].trim();
    inner.starts_with('{').then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"summary":"s","files":[{"path":"a","is_new":true,"content":"x"}]}"#;

    #[test]
    fn accepts_bare_and_fenced() {
        assert_eq!(Proposal::parse(JSON).unwrap().files[0].path, "a");
        let fenced = format!("```json\n{JSON}\n```");
        assert_eq!(Proposal::parse(&fenced).unwrap().summary, "s");
    }

    #[test]
    fn refuses_prose_and_wrong_shapes() {
        let e = Proposal::parse("Sure! I will do that.").unwrap_err();
        assert!(e.to_string().contains("Sure! I will"), "{e}");
        let e = Proposal::parse(
            r#"{"summary":"s","files":[{"path":"a","is_new":"yes","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("invalid type"), "{e}");
        assert!(Proposal::parse(r#"{"summary":"s","files":[]}"#).is_err());
    }
}
