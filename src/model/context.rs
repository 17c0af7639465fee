//! Choosing what of the repository goes into the prompt, within a token budget.

use super::client::estimate_tokens;
use crate::prd::Gap;
use std::path::Path;

/// The repository context of a prompt.
pub struct Context {
    /// `(path, contents)`, most relevant first.
    pub files: Vec<(String, String)>,
    /// `(path, link target)` of the chosen paths that are symbolic links: named, never read.
    pub links: Vec<(String, String)>,
    /// As much of the file list as fits.
    pub listed: Vec<String>,
    pub total_files: usize,
}

/// Words in the gap that may name code: backticked terms, snake_case, CamelCase and dotted
/// names, four characters or more.
pub fn identifiers(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        let words = part.split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')));
        for w in words {
            let w = w.trim_matches(|c: char| matches!(c, '.' | '-' | '/'));
            let codey = i % 2 == 1
                || w.contains('_')
                || w.contains('.')
                || w.chars().skip(1).any(|c| c.is_uppercase()) && w.chars().any(|c| c.is_lowercase());
            if codey && w.len() >= 4 && !out.iter().any(|o| o == w) {
                out.push(w.to_string());
            }
        }
    }
    out
}

/// Picks files by relevance (named by the gap, touched by earlier attempts, matching the
/// gap's identifiers) until `budget_tokens` is spent; the file list takes what is left.
pub fn choose(
    root: &Path,
    all: &[String],
    gap: &Gap,
    touched_before: &[String],
    budget_tokens: usize,
) -> Context {
    let mut picked: Vec<String> = Vec::new();
    let add = |f: &String, picked: &mut Vec<String>| {
        if !picked.contains(f) {
            picked.push(f.clone());
        }
    };
    for m in crate::prd::mentioned_paths(&gap.text) {
        for f in
            all.iter().filter(|f| **f == m || (!m.contains('/') && f.rsplit('/').next() == Some(m.as_str())))
        {
            add(f, &mut picked);
        }
    }
    for f in touched_before.iter().filter(|f| all.contains(f)) {
        add(f, &mut picked);
    }
    let ids = identifiers(&gap.text);
    if !ids.is_empty() {
        for f in all.iter().filter(|f| ids.iter().any(|id| f.contains(id.as_str()))) {
            add(f, &mut picked);
        }
        // Contents last, and only of reasonably small text files, up to a total.
        let mut scanned = 0usize;
        for f in all.iter().take(5_000) {
            if picked.contains(f) || scanned >= SCAN_TOTAL_BYTES {
                continue;
            }
            if let Ok(text) = read_regular(root, f, SCAN_BYTES) {
                scanned += text.len();
                if ids.iter().any(|id| text.contains(id.as_str())) {
                    add(f, &mut picked);
                }
            }
        }
    }

    // A quarter of the budget for the file list, the rest for contents.
    let mut left = budget_tokens.saturating_sub(budget_tokens / 4);
    let per_file = (budget_tokens / 2).max(1);
    let mut files = Vec::new();
    let mut links = Vec::new();
    for f in picked {
        let text = match read_regular(root, &f, per_file.min(left).saturating_mul(4)) {
            Ok(text) => text,
            Err(Unreadable::Link(target)) => {
                links.push((f, target));
                continue;
            }
            Err(Unreadable::Other) => continue,
        };
        let cost = estimate_tokens(&text) as usize + 20;
        if cost <= per_file.min(left) {
            left -= cost;
            files.push((f, text));
        }
    }
    let mut list_left = budget_tokens / 4 + left;
    let mut listed = Vec::new();
    for f in all {
        let cost = estimate_tokens(f) as usize + 1;
        if cost > list_left {
            break;
        }
        list_left -= cost;
        listed.push(f.clone());
    }
    Context { files, links, listed, total_files: all.len() }
}

/// Files larger than this are not searched for the gap's identifiers.
const SCAN_BYTES: usize = 200_000;
/// The search for the gap's identifiers reads at most this much in all.
const SCAN_TOTAL_BYTES: usize = 32 * 1024 * 1024;

enum Unreadable {
    /// A symbolic link on the way, or the file itself: its target, as the link says.
    Link(String),
    /// Not a regular UTF-8 file of at most the size asked for, or not there.
    Other,
}

/// Reads `rel` under `root` only if it is a regular file of at most `max` bytes reached
/// through no symbolic link; a link is never followed (a tracked link may point at
/// `/proc/self/environ` or `/dev/zero`).
fn read_regular(root: &Path, rel: &str, max: usize) -> Result<String, Unreadable> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut at = root.to_path_buf();
    for part in Path::new(rel).components() {
        at.push(part);
        let meta = std::fs::symlink_metadata(&at).map_err(|_| Unreadable::Other)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&at).map(|t| t.display().to_string()).unwrap_or_default();
            return Err(Unreadable::Link(target));
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&at)
        .map_err(|_| Unreadable::Other)?;
    let meta = file.metadata().map_err(|_| Unreadable::Other)?;
    if !meta.is_file() || meta.len() > max as u64 {
        return Err(Unreadable::Other);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|_| Unreadable::Other)?;
    if bytes.len() > max {
        return Err(Unreadable::Other);
    }
    String::from_utf8(bytes).map_err(|_| Unreadable::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_code_words() {
        let ids = identifiers("Make `greet` use parse_name and the GreetConfig in config.toml, please");
        assert_eq!(ids, ["greet", "parse_name", "GreetConfig", "config.toml"]);
    }

    #[test]
    fn fills_the_budget_by_relevance() {
        let dir = tempfile::tempdir().unwrap();
        let write = |p: &str, t: &str| {
            std::fs::create_dir_all(dir.path().join(p).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(p), t).unwrap();
        };
        write("src/greet.rs", "fn greet() {}\n");
        write("src/other.rs", "fn parse_name() {}\n");
        write("src/big.rs", &"x".repeat(40_000));
        write("README.md", "hello\n");
        let all: Vec<String> =
            ["README.md", "src/big.rs", "src/greet.rs", "src/other.rs"].map(String::from).to_vec();
        let gap = Gap { id: "g".into(), text: "Fix `greet.rs` so parse_name trims".into(), line: 1 };
        let c = choose(dir.path(), &all, &gap, &["src/big.rs".to_string()], 2_000);
        let names: Vec<&str> = c.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["src/greet.rs", "src/other.rs"], "big.rs does not fit");
        assert_eq!(c.listed.len(), 4);
    }
}
