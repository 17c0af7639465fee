//! The user's repository, and prbot's own worktree of it.
//!
//! prbot keeps one worktree per repository outside the user's tree and resets it to the
//! base commit before and after every cycle. A stable path keeps build caches warm; the
//! reset keeps every cycle as clean as a fresh checkout.

use crate::git::{Git, GitError};
use crate::process::Cancel;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The user's repository. prbot only reads it, and writes refs and files under `.git/`.
#[derive(Clone, Debug)]
pub struct Repo {
    pub root: PathBuf,
    pub git_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{0} is not inside a git repository (run prbot from a clone, or pass --repo)")]
    NotARepo(PathBuf),
    #[error("{0} is a bare repository; prbot needs a clone with a working tree")]
    Bare(PathBuf),
    #[error(transparent)]
    Git(#[from] GitError),
}

impl Repo {
    pub fn discover(dir: &Path) -> Result<Repo, RepoError> {
        let git = Git::new(dir, Cancel::new());
        if !dir.is_dir() {
            return Err(RepoError::NotARepo(dir.to_path_buf()));
        }
        if git.query(["rev-parse", "--is-bare-repository"])?.as_deref() == Some("true") {
            return Err(RepoError::Bare(dir.to_path_buf()));
        }
        let Some(root) = git.query(["rev-parse", "--show-toplevel"])? else {
            return Err(RepoError::NotARepo(dir.to_path_buf()));
        };
        let git_dir = git.run(["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
        Ok(Repo { root: PathBuf::from(root), git_dir: PathBuf::from(git_dir) })
    }

    pub fn git(&self, cancel: &Cancel) -> Git {
        Git::new(&self.root, cancel.clone())
    }

    /// Where prbot's records and ledgers live unless the pipeline says otherwise.
    pub fn default_state_dir(&self) -> PathBuf {
        self.git_dir.join("prbot")
    }

    /// A folder of prbot's own for this repository, outside its tree.
    pub fn default_work_dir(&self) -> PathBuf {
        let hash = Sha256::digest(self.git_dir.to_string_lossy().as_bytes());
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let name: String = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect())
            .unwrap_or_default();
        std::env::temp_dir().join("prbot").join(format!("{name}-{short}"))
    }

    /// Tracked files with uncommitted changes, staged or not. Untracked files don't count:
    /// the cycle starts from a commit, so they cannot leak into it.
    pub fn dirty_files(&self, cancel: &Cancel, exclude: &[PathBuf]) -> Result<Vec<String>, GitError> {
        let mut args: Vec<String> = ["status", "--porcelain", "-uno", "--", "."].map(String::from).to_vec();
        for e in exclude {
            if let Ok(rel) = e.strip_prefix(&self.root) {
                if !rel.as_os_str().is_empty() {
                    args.push(format!(":(exclude){}", rel.display()));
                }
            }
        }
        let out = self.git(cancel).run(args)?;
        Ok(out.lines().map(|l| l.get(3..).unwrap_or(l).to_string()).collect())
    }
}

/// prbot's worktree for one cycle.
pub struct Workspace {
    pub path: PathBuf,
    /// Shared across cycles, for build caches such as `CARGO_TARGET_DIR`.
    pub cache_dir: PathBuf,
    pub base_commit: String,
    git: Git,
    repo_git: Git,
}

impl Workspace {
    /// Makes the worktree at `work_dir/worktree` a clean checkout of `base`, creating it if needed.
    pub fn prepare(repo: &Repo, work_dir: &Path, base: &str, cancel: &Cancel) -> Result<Workspace, GitError> {
        let repo_git = repo.git(cancel);
        let base_commit =
            repo_git.run(["rev-parse", "--verify", "--end-of-options", &format!("{base}^{{commit}}")])?;
        let path = work_dir.join("worktree");
        let cache_dir = work_dir.join("cache");
        std::fs::create_dir_all(&cache_dir).map_err(|e| io_failed("create the cache folder", e))?;
        // Registrations whose folders vanished (a killed run, a cleaned /tmp) go first.
        repo_git.run(["worktree", "prune"])?;
        let git = Git::new(&path, cancel.clone());
        let reusable = path.join(".git").is_file() && Self::belongs_to(&git, repo)?;
        if reusable {
            let ws = Workspace { path, cache_dir, base_commit, git, repo_git };
            ws.reset()?;
            return Ok(ws);
        }
        if path.exists() {
            let _ = repo_git.run(["worktree", "remove", "--force", &path.to_string_lossy()]);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| io_failed("remove a stale worktree", e))?;
            }
            repo_git.run(["worktree", "prune"])?;
        }
        std::fs::create_dir_all(work_dir).map_err(|e| io_failed("create the work folder", e))?;
        repo_git.run(["worktree", "add", "--force", "--detach", &path.to_string_lossy(), &base_commit])?;
        Ok(Workspace { path, cache_dir, base_commit, git, repo_git })
    }

    fn belongs_to(git: &Git, repo: &Repo) -> Result<bool, GitError> {
        let common = git.query(["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
        Ok(common.map(PathBuf::from).as_deref() == Some(repo.git_dir.as_path()))
    }

    /// Back to a pristine checkout of the base commit, detached, with nothing untracked.
    pub fn reset(&self) -> Result<(), GitError> {
        self.git.run(["checkout", "--quiet", "--force", "--detach", &self.base_commit])?;
        self.git.run(["clean", "-ffdxq"])?;
        Ok(())
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    /// Tracked files at the base commit.
    pub fn files(&self) -> Result<Vec<String>, GitError> {
        let out = self.git.run(["ls-files", "-z"])?;
        Ok(out.split('\0').filter(|s| !s.is_empty()).map(str::to_string).collect())
    }

    /// Commits the change and points `refs/heads/<branch>` at the commit. The change is
    /// every tracked file that changed (the proposal's updates, and what `run:` steps such
    /// as formatters did to them) plus the files the proposal added; anything else the
    /// tests left behind stays out.
    pub fn commit_to_branch(
        &self,
        branch: &str,
        message: &str,
        (name, email): (&str, &str),
        added: &[String],
    ) -> Result<String, GitError> {
        let reference = format!("refs/heads/{branch}");
        if self.repo_git.query(["symbolic-ref", "-q", "HEAD"])?.as_deref() == Some(reference.as_str()) {
            return Err(GitError::Failed {
                args: format!("update-ref {reference}"),
                status: "refused".into(),
                stderr: format!("`{branch}` is checked out in your working tree; prbot will not move it under you. Switch to another branch first"),
            });
        }
        self.git.run(["add", "--update"])?;
        if !added.is_empty() {
            let mut args = vec!["add".to_string(), "--".to_string()];
            args.extend(added.iter().cloned());
            self.git.run(args)?;
        }
        let ident = [
            "-c".to_string(),
            format!("user.name={name}"),
            "-c".to_string(),
            format!("user.email={email}"),
            "-c".to_string(),
            "core.hooksPath=/dev/null".to_string(),
            "-c".to_string(),
            "commit.gpgsign=false".to_string(),
        ];
        let mut args: Vec<String> = ident.to_vec();
        args.extend(["commit", "--quiet", "--no-verify", "--allow-empty", "-F", "-"].map(String::from));
        self.git.run_with_stdin(args, Some(message.as_bytes().to_vec()))?;
        let sha = self.git.run(["rev-parse", "HEAD"])?;
        self.repo_git.run(["update-ref", "-m", "prbot: cycle commit", &reference, &sha])?;
        Ok(sha)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // Nothing the model wrote outlives the cycle, even after an error or a cancellation.
        // The reset must run even after a cancellation killed other children.
        let git = Git::new(&self.path, Cancel::new());
        let _ = git.run(["checkout", "--quiet", "--force", "--detach", &self.base_commit]);
        let _ = git.run(["clean", "-ffdxq"]);
    }
}

fn io_failed(what: &str, e: std::io::Error) -> GitError {
    GitError::Failed { args: what.to_string(), status: "I/O error".into(), stderr: e.to_string() }
}
