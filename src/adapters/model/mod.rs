//! The language model: an OpenAI-compatible chat client, the prompt, the proposal.

pub mod client;
pub mod context;
pub mod ladder;
pub mod prompt;
pub mod proposal;

pub use client::{ChatMessage, ModelClient};
