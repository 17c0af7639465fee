//! The `git` state backend: cycle records and daily ledgers on a ref of the remote
//! (`refs/prbot/state` by default), outside the branch history.
//!
//! Every change is a compare-and-swap: read the ref, build a commit on top of it, push.
//! A push that is not a fast-forward lost a race: fetch again, redo the change, retry
//! after a jittered, growing wait. Every commit is unique (it names the operation and a
//! nonce), so two runners never build the same commit and both believe they pushed it;
//! and a write counts only once the remote ref is read back and holds it. So two runners
//! at once never exceed the budget nor lose each other's records.

use crate::config::settings::StateConfig;
use crate::infra::git::{Git, GitError};
use std::path::Path;

const TRIES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state ref {reference} on `{remote}` (check `state.remote`, and that the token can fetch from and push to it): {source}")]
    Git { reference: String, remote: String, source: GitError },
    #[error("the state ref {0} kept moving; gave up after {TRIES} tries")]
    Contended(String),
    #[error("the remote refused the push to the state ref {reference}: {said}. Check the remote's hooks and branch protection for that ref")]
    Refused { reference: String, said: String },
    #[error("the push to the state ref {reference} reported success, but the remote does not hold commit {commit}")]
    Lost { reference: String, commit: String },
}

#[derive(Clone)]
pub struct GitState {
    git: Git,
    remote: String,
    reference: String,
    author: (String, String),
    /// `GIT_CONFIG_*` for the forge's token on the remote's https URL: the checkout may
    /// keep no credential of its own.
    auth: Vec<(String, String)>,
}

/// An index of one operation's own, so the user's index is never touched and two
/// processes never share one (a reader's checkout must not undo a writer's update-index).
struct PrivateIndex(tempfile::TempPath);

impl PrivateIndex {
    fn new() -> Result<PrivateIndex, GitError> {
        let file = tempfile::Builder::new().prefix("prbot-state-index-").tempfile().map_err(io)?;
        let path = file.into_temp_path();
        // git wants to create the index itself.
        let _ = std::fs::remove_file(&path);
        Ok(PrivateIndex(path))
    }
}

impl GitState {
    pub fn new(git: Git, config: &StateConfig, _state_dir: &Path, author: (String, String)) -> GitState {
        GitState {
            git,
            remote: config.remote.clone(),
            reference: config.reference.clone(),
            author,
            auth: Vec::new(),
        }
    }

    /// Authenticates to the remote with `token` when the remote is an https URL.
    pub fn with_token(mut self, token: Option<String>) -> GitState {
        let url =
            self.git.query(["remote", "get-url", "--", &self.remote]).ok().flatten().unwrap_or_default();
        if let (Some(token), true) = (token, url.starts_with("https://") || url.starts_with("http://")) {
            self.auth = crate::infra::git::token_auth_env(&url, &token);
        }
        self
    }

    fn fail(&self, source: GitError) -> StateError {
        StateError::Git { reference: self.reference.clone(), remote: self.remote.clone(), source }
    }

    fn env(&self, index: Option<&PrivateIndex>) -> Vec<(String, String)> {
        let (name, email) = &self.author;
        let mut env = vec![
            ("GIT_AUTHOR_NAME".into(), name.clone()),
            ("GIT_AUTHOR_EMAIL".into(), email.clone()),
            ("GIT_COMMITTER_NAME".into(), name.clone()),
            ("GIT_COMMITTER_EMAIL".into(), email.clone()),
        ];
        if let Some(i) = index {
            env.push(("GIT_INDEX_FILE".into(), i.0.display().to_string()));
        }
        env.extend(self.auth.iter().cloned());
        env
    }

    fn run(&self, args: &[&str]) -> Result<String, StateError> {
        self.git.run_with_env(args.iter().copied(), &self.env(None)).map_err(|e| self.fail(e))
    }

    fn run_indexed(&self, index: &PrivateIndex, args: &[&str]) -> Result<String, StateError> {
        self.git.run_with_env(args.iter().copied(), &self.env(Some(index))).map_err(|e| self.fail(e))
    }

    /// The remote's state commit, with its objects fetched; `None` before the first write.
    /// Each fetch lands on a ref of its own, so runners and readers in one clone never
    /// contend for a ref lock.
    pub fn fetch(&self) -> Result<Option<String>, StateError> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let landing = format!("refs/prbot/fetch/{}-{nanos}", std::process::id());
        let spec = format!("+{}:{landing}", self.reference);
        match self.git.run_with_env(
            ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", &self.remote, &spec],
            &self.env(None),
        ) {
            Ok(_) => {}
            Err(GitError::Failed { stderr, .. }) if stderr.contains("couldn't find remote ref") => {
                return Ok(None)
            }
            Err(e) => return Err(self.fail(e)),
        }
        let sha = self.run(&["rev-parse", "--verify", &landing]);
        let _ = self.run(&["update-ref", "-d", &landing]);
        Ok(Some(sha?))
    }

    /// Whether the remote takes a push: a commit of an empty tree, holding nothing of the
    /// repository's, goes to a scratch ref beside the state ref, which is deleted again.
    /// The state ref is not touched.
    pub fn write_check(&self) -> Result<(), StateError> {
        let empty = self.git.run_full(["hash-object", "-t", "tree", "-w", "--stdin"], Some(Vec::new()), &[]);
        let empty = empty.map_err(|e| self.fail(e))?;
        let commit = self.git.run_full(
            ["commit-tree", &empty, "-m", "prbot doctor: a write check, deleted at once"],
            None,
            &self.env(None),
        );
        let commit = commit.map_err(|e| self.fail(e))?;
        let scratch = format!("{}-doctor-{}", self.reference, std::process::id());
        self.run(&["push", "--quiet", "--", &self.remote, &format!("{commit}:{scratch}")])?;
        self.run(&["push", "--quiet", "--", &self.remote, &format!(":{scratch}")])?;
        Ok(())
    }

    /// Reads a file of a state commit: `None` when the commit has no such path; any other
    /// failure is an error, never an empty file.
    pub fn read(&self, commit: &str, path: &str) -> Result<Option<String>, StateError> {
        let listed = self.run(&["ls-tree", "-z", "--full-tree", commit, "--", path])?;
        let Some(entry) = listed.split('\0').find(|e| !e.is_empty()) else { return Ok(None) };
        if !entry.starts_with("100644 blob ") {
            return Err(self.fail(GitError::Failed {
                args: format!("read {path} of state commit {commit}"),
                status: "refused".into(),
                stderr: format!(
                    "`{path}` in the state ref is not a regular file ({entry}); check who pushed {}",
                    self.reference
                ),
            }));
        }
        self.run(&["cat-file", "blob", &format!("{commit}:{path}")]).map(|text| Some(text + "\n"))
    }

    /// Copies the remote's state into `dir`, for the readers of local files. The ref's
    /// content is data: anything but regular files is refused, never put on disk.
    pub fn pull(&self, dir: &Path) -> Result<(), StateError> {
        let Some(commit) = self.fetch()? else { return Ok(()) };
        let listing = self.run(&["ls-tree", "-r", "-z", &commit])?;
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let (meta, path) = entry.split_once('\t').unwrap_or((entry, ""));
            if !expected_path(path) {
                return Err(self.fail(GitError::Failed {
                    args: format!("read state commit {commit}"),
                    status: "refused".into(),
                    stderr: format!("`{path}` in the state ref is not a file prbot keeps there (records, indexes, totals, ledgers); nothing was written. Check who pushed {}", self.reference),
                }));
            }
            if !meta.starts_with("100644 blob ") {
                return Err(self.fail(GitError::Failed {
                    args: format!("read state commit {commit}"),
                    status: "refused".into(),
                    stderr: format!("`{path}` in the state ref is not a regular file ({meta}); prbot reads only regular files from it. Check who pushed {}", self.reference),
                }));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| self.fail(io(e)))?;
        let index = PrivateIndex::new().map_err(|e| self.fail(e))?;
        let work_tree = format!("--work-tree={}", dir.display());
        self.run_indexed(&index, &[&work_tree, "checkout", "--quiet", "--force", &commit, "--", "."])?;
        Ok(())
    }

    /// Changes the state with a compare-and-swap push. `change` reads files of the current
    /// state and returns the files to write; it runs again whenever the race is lost.
    pub fn update<E: From<StateError>>(
        &self,
        what: &str,
        mut change: impl FnMut(
            &dyn Fn(&str) -> Result<Option<String>, StateError>,
        ) -> Result<Vec<(String, String)>, E>,
    ) -> Result<(), E> {
        for attempt in 0..TRIES {
            let index = PrivateIndex::new().map_err(|e| self.fail(e))?;
            let parent = self.fetch()?;
            let read = |path: &str| match &parent {
                Some(c) => self.read(c, path),
                None => Ok(None),
            };
            let writes = change(&read)?;
            match &parent {
                Some(c) => self.run_indexed(&index, &["read-tree", c])?,
                None => self.run_indexed(&index, &["read-tree", "--empty"])?,
            };
            for (path, content) in &writes {
                let blob = self
                    .git
                    .run_with_stdin(["hash-object", "-w", "--stdin"], Some(content.clone().into_bytes()))
                    .map_err(|e| self.fail(e))?;
                self.run_indexed(
                    &index,
                    &["update-index", "--add", "--cacheinfo", &format!("100644,{blob},{path}")],
                )?;
            }
            let tree = self.run_indexed(&index, &["write-tree"])?;
            let message = format!("prbot: {what}\n\nNonce: {}", nonce());
            let mut args = vec!["commit-tree", &tree, "-m", &message];
            if let Some(p) = &parent {
                args.extend(["-p", p]);
            }
            let commit = self.run(&args)?;
            let spec = format!("{commit}:{}", self.reference);
            match self.git.run_with_env(["push", "--", &self.remote, &spec], &self.env(None)) {
                Ok(_) => {
                    self.confirm(&commit)?;
                    let _ = self.run(&["update-ref", &self.reference, &commit]);
                    return Ok(());
                }
                Err(GitError::Failed { stderr, .. }) if lost_race(&stderr) => {
                    tracing::debug!("state ref moved under {what}; retrying ({})", attempt + 1);
                    std::thread::sleep(backoff(attempt));
                }
                Err(GitError::Failed { stderr, .. })
                    if stderr.contains("[remote rejected]") || stderr.contains("[rejected]") =>
                {
                    let said = stderr
                        .lines()
                        .find(|l| l.contains("[remote rejected]"))
                        .unwrap_or(&stderr)
                        .trim()
                        .to_string();
                    return Err(StateError::Refused { reference: self.reference.clone(), said }.into());
                }
                Err(e) => return Err(self.fail(e).into()),
            }
        }
        Err(StateError::Contended(self.reference.clone()).into())
    }
}

impl GitState {
    /// The remote ref holds `commit`, or a descendant of it another runner built on top.
    fn confirm(&self, commit: &str) -> Result<(), StateError> {
        let listed = self.run(&["ls-remote", "--", &self.remote, &self.reference])?;
        let now = listed.split_whitespace().next().unwrap_or_default().to_string();
        if now == commit {
            return Ok(());
        }
        let holds = match self.fetch()? {
            Some(tip) => self
                .git
                .query(["merge-base", "--is-ancestor", commit, &tip])
                .map_err(|e| self.fail(e))?
                .is_some(),
            None => false,
        };
        if holds {
            Ok(())
        } else {
            Err(StateError::Lost { reference: self.reference.clone(), commit: commit.to_string() })
        }
    }
}

/// The files prbot keeps on the state ref: anything else in it is refused, not copied.
fn expected_path(path: &str) -> bool {
    let plain = |name: &str, ext: &str| {
        name.strip_suffix(ext).is_some_and(|stem| {
            !stem.is_empty()
                && stem.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !stem.starts_with('.')
        })
    };
    match path.split_once('/') {
        None => {
            path == "cycles.jsonl"
                || path == "stats.json"
                || path.strip_prefix("cost-").is_some_and(|rest| plain(rest, ".json"))
        }
        Some(("cycles", name)) => !name.contains('/') && plain(name, ".json"),
        Some(("index", name)) => !name.contains('/') && plain(name, ".jsonl"),
        _ => false,
    }
}

/// A push lost to another writer: not a fast-forward, or the remote's ref was locked by
/// a push landing at the same moment. A hook's or a protection rule's refusal is not.
fn lost_race(stderr: &str) -> bool {
    ["non-fast-forward", "(fetch first)", "cannot lock ref", "(failed to update ref)", "stale info"]
        .iter()
        .any(|s| stderr.contains(s))
}

/// 25 ms doubling to about 1.6 s, each wait between half and all of that, so runners
/// that collided once do not collide again in step.
fn backoff(attempt: usize) -> std::time::Duration {
    let ceiling = 25u64 << attempt.min(6);
    let jitter = nonce_u64() % (ceiling / 2 + 1);
    std::time::Duration::from_millis(ceiling / 2 + jitter)
}

/// Unique per call in this process and across processes.
fn nonce() -> String {
    format!("{}-{:016x}", std::process::id(), nonce_u64())
}

fn nonce_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the time, the pid and a counter.
    let mut z = (nanos as u64) ^ ((std::process::id() as u64) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn io(e: std::io::Error) -> GitError {
    GitError::Failed {
        args: "prepare the state folder or its index".into(),
        status: "I/O error".into(),
        stderr: e.to_string(),
    }
}

/// The git state of a pipeline, when its backend is `git`.
pub fn for_pipeline(
    pipeline: &crate::config::Pipeline,
    repo: &crate::infra::workspace::Repo,
    state_dir: &Path,
) -> Option<GitState> {
    (pipeline.state.backend == crate::config::settings::StateBackend::Git).then(|| {
        let git = Git::new(&repo.root, crate::infra::process::Cancel::new());
        let author = (pipeline.bot.name.clone(), pipeline.bot.email.clone());
        let token = pipeline.forge.token_var().and_then(|v| std::env::var(v).ok()).filter(|t| !t.is_empty());
        GitState::new(git, &pipeline.state, state_dir, author).with_token(token)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_files_prbot_keeps_are_expected_on_the_ref() {
        for ok in [
            "cycles.jsonl",
            "stats.json",
            "cost-2026-11-28.json",
            "cycles/20261128T000000000Z-ab12.json",
            "index/fix-the-greeting-1a2b3c4d.jsonl",
        ] {
            assert!(super::expected_path(ok), "{ok}");
        }
        for bad in [
            ".bashrc",
            "cycles/x/y.json",
            "index/../x.jsonl",
            "cycles/.json",
            "hooks/post-checkout",
            "cost-.json",
            "README.md",
            "index/.hidden.jsonl",
        ] {
            assert!(!super::expected_path(bad), "{bad}");
        }
    }
}
