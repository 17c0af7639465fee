//! prbot: an autonomous pull-request bot that runs like a CI job.
//!
//! A cycle goes through the stages a YAML pipeline declares (guard, pick-gap, propose,
//! apply, test, pr, and `run:` steps), ends in one [`outcome::Outcome`] and leaves a
//! JSON record.

pub mod budget;
pub mod cli;
pub mod commands;
pub mod cycle;
pub mod demo;
pub mod edits;
pub mod forge;
pub mod fsutil;
pub mod git;
pub mod guardrails;
pub mod init;
pub mod model;
pub mod outcome;
pub mod pipeline;
pub mod policy;
pub mod prd;
pub mod process;
pub mod records;
pub mod retry;
pub mod sandbox;
pub mod secrets;
pub mod serve;
pub mod stages;
pub mod state;
pub mod workspace;
