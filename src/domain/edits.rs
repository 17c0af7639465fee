//! Applying a proposal's search/replace edits, and spotting lazy whole-file rewrites.

use crate::domain::proposal::Edit;

/// Applies each edit in order: an exact match first, then one that tolerates differences
/// in leading whitespace. Nothing fuzzier. A search text that is missing, or found more
/// than once, fails with a message meant for the model.
pub fn apply(original: &str, edits: &[Edit]) -> Result<String, String> {
    let mut text = original.to_string();
    for (i, e) in edits.iter().enumerate() {
        let which = format!("edit {} of {}", i + 1, edits.len());
        text = match text.matches(e.search.as_str()).count() {
            1 => text.replacen(&e.search, &e.replace, 1),
            0 => apply_loose(&text, e).map_err(|why| format!("{which}: {why}"))?,
            n => {
                return Err(format!(
                    "{which}: its search text matches {n} places; include more surrounding lines so it matches exactly one"
                ))
            }
        };
    }
    Ok(text)
}

/// The same lines, compared without their leading whitespace.
fn apply_loose(text: &str, e: &Edit) -> Result<String, String> {
    let search: Vec<&str> = e.search.strip_suffix('\n').unwrap_or(&e.search).split('\n').collect();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let same = |a: &str, b: &str| {
        a.trim_end_matches(['\n', '\r']).trim_start() == b.trim_end_matches('\r').trim_start()
    };
    let starts: Vec<usize> = (0..lines.len().saturating_sub(search.len() - 1))
        .filter(|&at| search.iter().enumerate().all(|(k, s)| same(lines[at + k], s)))
        .collect();
    match starts.as_slice() {
        [at] => {
            let end = at + search.len();
            let mut replace = e.replace.clone();
            if lines[end - 1].ends_with('\n') && !replace.ends_with('\n') && !replace.is_empty() {
                replace.push('\n');
            }
            Ok(format!("{}{replace}{}", lines[..*at].concat(), lines[end..].concat()))
        }
        [] => Err("its search text is not in the file (not even ignoring indentation); copy the lines exactly as they are".into()),
        many => Err(format!(
            "its search text matches {} places when indentation is ignored; include more surrounding lines",
            many.len()
        )),
    }
}

const ELISIONS: [&str; 7] = [
    "... rest of",
    "// existing code",
    "# existing code",
    "... unchanged",
    "rest of file unchanged",
    "remains unchanged",
    "... existing",
];

/// Why a whole-file rewrite of `old` looks like it silently dropped code, if it does.
pub fn lazy_rewrite(old: &str, new: &str) -> Option<String> {
    let lower = new.to_lowercase();
    let old_lower = old.to_lowercase();
    if let Some(m) = ELISIONS.iter().find(|m| lower.contains(*m) && !old_lower.contains(*m)) {
        return Some(format!(
            "it contains the elision marker `{m}` instead of the code; send search/replace `edits` instead of a whole file"
        ));
    }
    if old.len() >= 200 && new.len() * 2 < old.len() {
        return Some(format!(
            "it shrinks the file from {} to {} bytes, which looks like code left out; send search/replace `edits` instead",
            old.len(),
            new.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(search: &str, replace: &str) -> Edit {
        Edit { search: search.into(), replace: replace.into() }
    }

    #[test]
    fn exact_then_indentation_tolerant() {
        let src = "fn a() {\n    let x = 1;\n    x\n}\n";
        assert_eq!(
            apply(src, &[edit("let x = 1;", "let x = 2;")]).unwrap(),
            "fn a() {\n    let x = 2;\n    x\n}\n"
        );
        let loose = apply(src, &[edit("let x = 1;\nx\n", "    let x = 3;\n    x + 1\n")]).unwrap();
        assert_eq!(loose, "fn a() {\n    let x = 3;\n    x + 1\n}\n");
    }

    #[test]
    fn missing_and_ambiguous_say_which_edit() {
        let src = "a\nb\na\n";
        let e = apply(src, &[edit("b", "B"), edit("zzz", "y")]).unwrap_err();
        assert!(e.starts_with("edit 2 of 2: its search text is not in the file"), "{e}");
        let e = apply(src, &[edit("a", "A")]).unwrap_err();
        assert!(e.contains("edit 1 of 1: its search text matches 2 places"), "{e}");
    }

    #[test]
    fn lazy_rewrites_are_spotted() {
        let old = "line\n".repeat(100);
        assert!(lazy_rewrite(&old, "line\n// ... rest of file unchanged\n").is_some());
        assert!(lazy_rewrite(&old, "line\n").unwrap().contains("shrinks"));
        assert!(lazy_rewrite(&old, &format!("{old}more\n")).is_none());
        assert!(lazy_rewrite("// existing code here\n", "// existing code here\nx\n").is_none());
    }
}
