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
        let protected =
            protected.into_iter().filter_map(|p| normalise(&p).ok()).map(|p| p.to_lowercase()).collect();
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
        let lower = path.to_lowercase();
        if let Some(why) = self.forbidden(&lower) {
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

    fn forbidden(&self, lower: &str) -> Option<&'static str> {
        let parts: Vec<&str> = lower.split('/').collect();
        let name = *parts.last().unwrap_or(&"");
        if parts.contains(&".git") {
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
        if self.protected.iter().any(|p| p == lower) {
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
