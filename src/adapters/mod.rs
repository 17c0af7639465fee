//! The outside services a cycle talks to: forges, the model API, the sandbox.

pub(crate) mod forge;
pub mod model;
pub(crate) mod sandbox;
