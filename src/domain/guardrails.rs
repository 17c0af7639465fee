//! The hard guardrails on what the model may write. No setting can loosen them.

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A repository-relative path that passed the guardrails. Only [`Guardrails::check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RepoPath(String);

impl RepoPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Paths that are protected in this repository, besides the fixed list.
pub struct Guardrails {
    /// Lower-cased, normalised, repository-relative.
    protected: Vec<String>,
}

impl Guardrails {
    /// `protected` holds the pipeline file and the PRD, when they live in the repository.
    pub fn new(protected: impl IntoIterator<Item = String>) -> Self {
        let protected = protected.into_iter().filter_map(|p| normalise(&p).ok()).map(|p| fold(&p)).collect();
        Guardrails { protected }
    }

    /// Checks a path the model proposed against the tree at `root`.
    pub fn check(&self, root: &Path, raw: &str) -> Result<RepoPath, String> {
        if raw.starts_with('/') || raw.starts_with('\\') || raw.get(1..2) == Some(":") {
            return Err(format!("`{raw}` is absolute; only paths inside the repository may be written"));
        }
        if raw.ends_with('/') || raw.ends_with('\\') {
            return Err(format!("`{raw}` ends with a slash: name a file, not a folder"));
        }
        let path = normalise(raw)?;
        if let Some(why) = self.forbidden(&fold(&path)) {
            return Err(format!("`{raw}` {why}"));
        }
        // Any symlink on the way could lead the write elsewhere, inside or outside the tree.
        let mut at = root.to_path_buf();
        for part in path.split('/') {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "`{raw}` goes through a symlink; prbot never writes through symlinks"
                    ));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(RepoPath(path))
    }

    /// `folded` is a path as [`fold`] gives it.
    fn forbidden(&self, folded: &str) -> Option<&'static str> {
        let parts: Vec<&str> = folded.split('/').collect();
        let name = *parts.last().unwrap_or(&"");
        // Windows drops a trailing dot or space: `.git.` is `.git` there.
        if parts.iter().any(|p| p.ends_with(['.', ' '])) {
            return Some("has a name ending in a dot or a space, which Windows would silently drop");
        }
        if parts.iter().any(|p| matches!(*p, ".git" | "git~1")) {
            return Some("is inside `.git/`");
        }
        if is_ci_entry_point(&parts) {
            return Some("is a CI entry point, which runs on push");
        }
        if name == "cargo.lock" {
            return Some("is `Cargo.lock`, which only the build tool may change");
        }
        if is_secret(name) {
            return Some("looks like a secret or credential file");
        }
        if parts.len() == 2 && parts[0] == "docs" && (name.starts_with("adr-") || name == "decisions.md") {
            return Some("is a decision record, which only maintainers write");
        }
        if self.protected.iter().any(|p| p == folded) {
            return Some("is the PRD or the pipeline file, which only maintainers write");
        }
        None
    }
}

/// What CI systems run when a branch is pushed, at the repository root, lower-case: a
/// trailing `/` marks a folder. The README's "Guardrails" lists the same.
pub const CI_ENTRY_POINTS: [&str; 16] = [
    ".github/",
    ".gitea/",
    ".forgejo/",
    ".woodpecker/",
    ".woodpecker.yml",
    ".woodpecker.yaml",
    ".drone.yml",
    ".drone.yaml",
    ".gitlab-ci.yml",
    ".gitlab-ci.yaml",
    ".circleci/",
    ".buildkite/",
    "azure-pipelines.yml",
    "azure-pipelines.yaml",
    "jenkinsfile",
    ".travis.yml",
];

fn is_ci_entry_point(parts: &[&str]) -> bool {
    CI_ENTRY_POINTS.iter().any(|entry| match entry.strip_suffix('/') {
        Some(folder) => parts.len() > 1 && parts[0] == folder,
        None => parts.len() == 1 && parts[0] == *entry,
    })
}

fn is_secret(name: &str) -> bool {
    name.starts_with(".env")
        || name.ends_with(".pem")
        || name.ends_with(".key")
        || name.ends_with(".p12")
        || name.ends_with(".pfx")
        || name.starts_with("id_rsa")
        || name.starts_with("id_dsa")
        || name.starts_with("id_ecdsa")
        || name.starts_with("id_ed25519")
        || matches!(
            name,
            ".netrc"
                | ".npmrc"
                | ".pypirc"
                | ".git-credentials"
                | "credentials"
                | "credentials.json"
                | ".htpasswd"
        )
}

/// The path as a case-insensitive file system could read it, for comparing with the
/// protected names: lower case (Unicode), without the code points HFS+ ignores (so
/// `.g\u{200c}it` is `.git` on a Mac). NTFS's short name `git~1` is matched by name.
pub(crate) fn fold(path: &str) -> String {
    path.chars().filter(|c| !hfs_ignores(*c)).collect::<String>().to_lowercase()
}

/// The code points HFS+ drops when it compares names (the list git's `is_hfs_dotgit` uses).
fn hfs_ignores(c: char) -> bool {
    matches!(c, '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}')
}

/// `a//b/./c` becomes `a/b/c`; `..`, empty paths and odd characters are refused.
fn normalise(raw: &str) -> Result<String, String> {
    if raw.contains('\0') || raw.contains('\\') {
        return Err(format!(
            "`{}` contains a backslash or NUL; use plain `/`-separated paths",
            raw.escape_default()
        ));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("`{raw}` contains `..`; paths may not leave their folder")),
            p if p.chars().any(char::is_control) => {
                return Err(format!("`{}` contains a control character", raw.escape_default()))
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{raw}` names no file"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Guardrails {
        Guardrails::new(["docs/PRD.md".to_string(), "pipelines/default.yml".to_string()])
    }

    #[test]
    fn refuses_every_forbidden_shape() {
        let root = tempfile::tempdir().unwrap();
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".git/config",
            "sub/.GIT/hooks/pre-commit",
            ".env",
            ".env.local",
            "certs/server.pem",
            "deploy.KEY",
            "id_rsa.pub",
            "docs//PRD.md",
            "docs/./prd.md",
            "pipelines/default.yml",
            "docs/ADR-0001-x.md",
            "docs/decisions.md",
            "Cargo.lock",
            "crates/a/Cargo.lock",
            ".gitea/workflows/x.yml",
            ".GitHub/workflows/ci.yml",
            "",
            "./",
            "a\\b",
            ".g\u{200c}it/config",
            "\u{feff}.GIT/hooks/x",
            "GIT~1/config",
            ".git./config",
            ".git /config",
            ".. /x",
            "docs/PRD.md.",
            ".gith\u{200d}ub/workflows/x.yml",
            "Docs/prd\u{200e}.md",
            "a\nb",
            // Found by fuzzing: a trailing space hidden behind a code point HFS+ ignores.
            " \u{200c}",
        ] {
            assert!(g().check(root.path(), bad).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn normalises_what_it_allows() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(g().check(root.path(), "src//./lib.rs").unwrap().as_str(), "src/lib.rs");
        assert_eq!(g().check(root.path(), "docs/guide.md").unwrap().as_str(), "docs/guide.md");
    }

    #[test]
    fn refuses_symlinks() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", root.path().join("out")).unwrap();
        std::os::unix::fs::symlink("src", root.path().join("alias")).unwrap();
        assert!(g().check(root.path(), "out/x").is_err());
        assert!(g().check(root.path(), "alias/lib.rs").is_err());
    }
}
