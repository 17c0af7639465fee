//! The rules of prbot's world, free of I/O where they can be: outcomes, PRD gaps, edits,
//! guardrails, policy, and the shape of a cycle's record.

pub(crate) mod edits;
pub mod guardrails;
pub(crate) mod outcome;
pub(crate) mod policy;
pub mod prd;
pub(crate) mod proposal;
pub(crate) mod records;
