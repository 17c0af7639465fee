//! The machinery every layer stands on: subprocesses, git, files, secrets, the worktree.

pub(crate) mod fsutil;
pub(crate) mod git;
pub(crate) mod process;
pub(crate) mod retry;
pub(crate) mod runtime;
pub mod secrets;
pub(crate) mod text;
pub(crate) mod workspace;
