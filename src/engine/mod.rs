//! Runs a cycle: the pipeline's stages in order, then the record.

mod attempts;
pub(crate) mod runner;
