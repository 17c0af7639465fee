//! What prbot keeps between cycles: records, the day's ledger, and their copy on the
//! remote's state ref.

pub(crate) mod budget;
pub(crate) mod remote;
pub(crate) mod store;

use crate::config::Pipeline;
use crate::infra::workspace::Repo;
use std::path::PathBuf;

/// A pipeline's state on a repository: where it lives, its records and its ledger, both
/// backed by the remote's state ref when the git backend is chosen.
pub(crate) struct State {
    pub dir: PathBuf,
    pub store: store::Store,
    pub budget: budget::Budget,
}

/// The one place a pipeline's state is opened, for cycles and for readers alike.
pub(crate) fn open(pipeline: &Pipeline, repo: &Repo) -> State {
    let dir = dir(pipeline, repo);
    let remote = remote::for_pipeline(pipeline, repo, &dir);
    let budget = budget::Budget::new(&dir, pipeline.budget.clone()).with_git(remote.clone());
    let store = store::Store::new(&dir).with_git(remote);
    State { dir, store, budget }
}

/// The state directory a pipeline uses for a repository.
pub(crate) fn dir(pipeline: &Pipeline, repo: &Repo) -> PathBuf {
    match &pipeline.state.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => repo.root.join(d),
        None => repo.default_state_dir(),
    }
}

/// Held for the whole cycle; the kernel drops it if the process dies, so a killed run's
/// lock is taken over by the next one.
pub(crate) struct RunLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another process holds it: its pid, when it wrote one.
    #[error("the run lock is held")]
    Held(Option<String>),
    #[error("cannot use the run lock: {0}")]
    Io(#[from] std::io::Error),
}

impl RunLock {
    /// Takes `state_dir/run.lock` without waiting.
    pub fn acquire(state_dir: &std::path::Path) -> Result<RunLock, LockError> {
        use std::io::Write;
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join("run.lock");
        let mut file =
            std::fs::File::options().read(true).write(true).create(true).truncate(false).open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = writeln!(file, "{}", std::process::id());
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default().trim().to_string();
                Err(LockError::Held((!holder.is_empty()).then_some(holder)))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }
}
