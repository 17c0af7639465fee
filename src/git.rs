//! A thin driver for the git CLI.

use crate::process::{self, Cancel, Command};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const GIT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error("`git {args}` failed ({status}): {stderr}")]
    Failed { args: String, status: String, stderr: String },
}

/// git, run in one directory.
#[derive(Clone)]
pub struct Git {
    dir: PathBuf,
    cancel: Cancel,
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>, cancel: Cancel) -> Self {
        Git { dir: dir.into(), cancel }
    }

    /// Runs git and returns its trimmed stdout.
    pub fn run<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin<I, S>(&self, args: I, stdin: Option<Vec<u8>>) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.exec(args, stdin, &[])
    }

    /// Runs git with extra variables, such as `GIT_CONFIG_*` settings for one command only.
    pub fn run_with_env<I, S>(&self, args: I, extra_env: &[(String, String)]) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.exec(args, None, extra_env)
    }

    fn exec<I, S>(
        &self,
        args: I,
        stdin: Option<Vec<u8>>,
        extra_env: &[(String, String)],
    ) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = Command::new("git", &self.dir, GIT_TIMEOUT).args(args.clone());
        let mut env = git_env();
        env.extend(extra_env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        cmd.env = Some(env);
        cmd.stdin = stdin;
        let out = process::run(cmd, &self.cancel)?;
        if out.success() {
            Ok(out.stdout.trim_end().to_string())
        } else {
            Err(GitError::Failed {
                args: args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                status: out.status_text(),
                stderr: out.stderr.trim().to_string(),
            })
        }
    }

    /// Like `run`, but a non-zero exit is `Ok(None)`: for queries such as `rev-parse --verify`.
    pub fn query<I, S>(&self, args: I) -> Result<Option<String>, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        match self.run(args) {
            Ok(s) => Ok(Some(s)),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// prbot's environment, minus what would point git at another repository or prompt a human.
fn git_env() -> std::collections::HashMap<OsString, OsString> {
    let mut env: std::collections::HashMap<OsString, OsString> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !matches!(
                k.as_ref(),
                "GIT_DIR" | "GIT_WORK_TREE" | "GIT_INDEX_FILE" | "GIT_OBJECT_DIRECTORY" | "GIT_COMMON_DIR"
            )
        })
        .collect();
    env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
    env.insert("LC_ALL".into(), "C".into());
    env
}
