//! prbot: an autonomous pull-request bot that runs like a CI job.
//!
//! A cycle goes through the stages a YAML pipeline declares (guard, pick-gap, propose,
//! apply, test, pr, and `run:` steps), ends in one outcome and leaves a JSON record.
//!
//! The folders are the layers, each using only those below it:
//! `cli` and `serve` (entry points) and `report` (the HTML page both serve) → `engine` (runs a cycle) → `stages` → `adapters`
//! (forge, model, sandbox) → `state` (records, ledger, state ref) → `domain` (rules and
//! record shapes) → `config` (the pipeline file) → `infra` (processes, git, files, secrets).

pub(crate) mod adapters;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod domain;
pub(crate) mod engine;
pub(crate) mod infra;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod stages;
pub(crate) mod state;

/// The fuzz targets' properties, for `fuzz/` and the corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;

// The library's public surface: the binary's entry point, and what the benches and the
// integration tests measure directly.
pub use adapters::model::context::{choose as choose_context, index_of, tokens, Folder, History, Tree};
pub use cli::main;
pub use domain::guardrails::CI_ENTRY_POINTS;
pub use domain::prd::{gaps, Gap};
