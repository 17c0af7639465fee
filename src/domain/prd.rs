//! Reading gaps out of the PRD: unchecked task items that carry the tag.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One tagged PRD line the bot may work on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Gap {
    /// A readable slug plus a short hash of the normalised text; stable when lines move.
    pub id: String,
    /// The item's text, without the checkbox and the tag.
    pub text: String,
    /// 1-based line in the PRD where it was found.
    pub line: usize,
}

/// Every branch prbot pushes starts with this.
pub const BRANCH_PREFIX: &str = "prbot/";

impl Gap {
    /// The branch this gap's change lives on: one rule for every stage.
    pub fn branch(&self) -> String {
        format!("{BRANCH_PREFIX}{}", self.id)
    }
}

/// Every unchecked, tagged task item in file order, outside code fences.
pub fn gaps(prd: &str, tag: &str) -> Vec<Gap> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in prd.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            Some("```")
        } else if trimmed.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        if let Some(m) = marker {
            match fence {
                None => fence = Some(m),
                Some(open) if open == m => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_some() {
            continue;
        }
        let Some(rest) = ["- [ ] ", "* [ ] ", "+ [ ] "].iter().find_map(|p| trimmed.strip_prefix(p)) else {
            continue;
        };
        if !rest.contains(tag) {
            continue;
        }
        let text = collapse(&rest.replace(tag, " "));
        if text.is_empty() {
            continue;
        }
        out.push(Gap { id: gap_id(&text), text, line: i + 1 });
    }
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `slug-of-the-first-words-1a2b3c4d`.
pub fn gap_id(text: &str) -> String {
    let normal = collapse(text).to_lowercase();
    let hash = Sha256::digest(normal.as_bytes());
    let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut slug = String::new();
    for word in normal.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).take(6) {
        if slug.len() + word.len() + 1 > 40 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(word);
    }
    if slug.is_empty() {
        short
    } else {
        format!("{slug}-{short}")
    }
}

/// Words in the gap that look like paths, for matching against the repository's files.
pub fn mentioned_paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '(' | ')' | ',' | ';'))
        .map(|w| w.trim_end_matches(['.', ':', '!', '?']))
        .map(|w| w.trim_start_matches("./"))
        .filter(|w| !w.is_empty() && (w.contains('/') || w.contains('.')))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_tagged_unchecked_items_outside_fences() {
        let prd = "# PRD\n- [ ] one [bot-eligible]\n- [x] done [bot-eligible]\n- [ ] untagged\n```\n- [ ] fenced [bot-eligible]\n```\n* [ ]   two  words [bot-eligible]\n";
        let g = gaps(prd, "[bot-eligible]");
        assert_eq!(g.iter().map(|g| g.text.as_str()).collect::<Vec<_>>(), ["one", "two words"]);
        assert_eq!(g[0].line, 2);
        assert_eq!(g[1].line, 8);
    }

    #[test]
    fn ids_survive_moves_and_whitespace() {
        let a = gaps("- [ ] Add a `--shout` flag [bot-eligible]\n", "[bot-eligible]");
        let b = gaps("intro\n\n  - [ ]  Add a  `--shout` flag   [bot-eligible]\n", "[bot-eligible]");
        assert_eq!(a[0].id, b[0].id);
        assert!(a[0].id.starts_with("add-a-shout-flag-"), "{}", a[0].id);
        assert_ne!(a[0].id, gap_id("Add a --whisper flag"));
    }

    #[test]
    fn finds_mentioned_paths() {
        assert_eq!(mentioned_paths("Fix `src/lib.rs` and README.md."), ["src/lib.rs", "README.md"]);
    }
}
