//! The model's reply: a JSON proposal. Tolerant of its framing (a markdown fence, prose
//! around it), strict about the object itself, with errors that name the field.

pub use crate::domain::proposal::Proposal;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("{reason}; the reply began: {start:?}")]
pub struct ParseError {
    pub reason: String,
    pub start: String,
}

impl Proposal {
    /// Finds the proposal in a reply and checks its shape.
    pub fn parse(reply: &str) -> Result<Proposal, ParseError> {
        let fail = |reason: String| ParseError { reason, start: reply.trim().chars().take(160).collect() };
        let value = find_object(reply).map_err(fail)?;
        let p: Proposal = serde_path_to_error::deserialize(value).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." { String::new() } else { format!("{at}: ") };
            fail(format!("the JSON is not a proposal: {at}{}", e.inner()))
        })?;
        p.check().map_err(fail)?;
        Ok(p)
    }

    fn check(&self) -> Result<(), String> {
        if self.summary.trim().is_empty() {
            return Err("`summary` is empty".into());
        }
        if self.files.is_empty() {
            return Err("`files` is empty".into());
        }
        for (i, f) in self.files.iter().enumerate() {
            match (&f.content, &f.edits, f.is_new) {
                (Some(_), Some(_), _) => {
                    return Err(format!("files[{i}]: give `content` or `edits`, not both"))
                }
                (None, None, _) => {
                    return Err(format!("files[{i}]: missing `content` (or `edits` for an existing file)"))
                }
                (None, Some(_), true) => {
                    return Err(format!("files[{i}]: a new file needs `content`, not `edits`"))
                }
                (None, Some(edits), false) => {
                    if edits.is_empty() {
                        return Err(format!("files[{i}].edits is empty"));
                    }
                    if let Some(j) = edits.iter().position(|e| e.search.is_empty()) {
                        return Err(format!("files[{i}].edits[{j}].search is empty"));
                    }
                }
                (Some(_), None, _) => {}
            }
        }
        Ok(())
    }
}

/// The one JSON object in the reply that looks like a proposal (it has `files` or
/// `summary`), fenced or bare, with prose around it ignored. Objects inside a proposal are
/// part of it; two different proposals are refused rather than guessed between. Without
/// any, the first object, so that the error can say what is wrong with it.
fn find_object(reply: &str) -> Result<Value, String> {
    let mut proposals: Vec<Value> = Vec::new();
    let mut first = None;
    let mut from = 0;
    while let Some(offset) = reply[from..].find('{') {
        let i = from + offset;
        let mut stream = serde_json::Deserializer::from_str(&reply[i..]).into_iter::<Value>();
        if let Some(Ok(v @ Value::Object(_))) = stream.next() {
            if v.get("files").is_some() || v.get("summary").is_some() {
                if !proposals.contains(&v) {
                    proposals.push(v);
                }
                from = i + stream.byte_offset();
                continue;
            }
            first.get_or_insert(v);
        }
        from = i + 1;
    }
    match proposals.len() {
        0 => first.ok_or_else(|| "the reply holds no JSON object".to_string()),
        1 => Ok(proposals.remove(0)),
        n => Err(format!("the reply holds {n} proposals; send exactly one")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"summary":"s","files":[{"path":"a","is_new":true,"content":"x"}]}"#;

    #[test]
    fn accepts_bare_fenced_and_prose_wrapped() {
        assert_eq!(Proposal::parse(JSON).unwrap().files[0].path, "a");
        let fenced = format!("```json\n{JSON}\n```");
        assert_eq!(Proposal::parse(&fenced).unwrap().summary, "s");
        let prose = format!("Here is my change {{as asked}}:\n{JSON}\nHope it helps!");
        assert_eq!(Proposal::parse(&prose).unwrap().summary, "s");
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let e = Proposal::parse("Sure! I will do that.").unwrap_err();
        assert!(e.to_string().contains("Sure! I will"), "{e}");
        let e = Proposal::parse(r#"{"summary":"s","files":[{"path":"a","is_new":"yes","content":"x"}]}"#)
            .unwrap_err();
        assert!(e.reason.contains("files[0].is_new: invalid type"), "{e}");
        let e = Proposal::parse(r#"{"summary":"s","files":[{"path":"a","content":"x"}]}"#).unwrap_err();
        assert!(e.reason.contains("files[0]: missing field `is_new`"), "{e}");
        let e = Proposal::parse(r#"{"summary":"s","files":[{"path":"a","is_new":false}]}"#).unwrap_err();
        assert!(e.reason.contains("files[0]: missing `content`"), "{e}");
        let e = Proposal::parse(
            r#"{"summary":"s","files":[{"path":"a","is_new":true,"edits":[{"search":"a","replace":"b"}]}]}"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("a new file needs `content`"), "{e}");
        assert!(Proposal::parse(r#"{"summary":"s","files":[]}"#).is_err());
    }

    #[test]
    fn two_proposals_are_refused_one_repeated_is_not() {
        let other = JSON.replace("\"a\"", "\".github/x\"");
        for reply in [
            format!("{JSON}\n{other}"),
            format!("```json\n{JSON}\n```\nor\n```json\n{other}\n```"),
            format!("Plan: {JSON}\n```json\n{other}\n```"),
        ] {
            let e = Proposal::parse(&reply).unwrap_err();
            assert!(e.reason.contains("the reply holds 2 proposals"), "{e}");
        }
        let repeated = format!("```json\n{JSON}\n```\nSo, once more: {JSON}");
        assert_eq!(Proposal::parse(&repeated).unwrap().files[0].path, "a");
        // A proposal's own objects are part of it, not more proposals.
        let nested = r#"{"summary":"s","files":[{"path":"x.json","is_new":true,"content":"{}"},{"path":"b","is_new":false,"edits":[{"search":"a","replace":"b"}]}]}"#;
        assert_eq!(Proposal::parse(nested).unwrap().files.len(), 2);
    }
}
