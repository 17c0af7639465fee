//! Runs a cycle: the pipeline's stages in order, then the record.

pub(crate) mod runner;
