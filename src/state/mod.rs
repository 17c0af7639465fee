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
