//! The language model: an OpenAI-compatible chat client, the prompt, the proposal.

pub mod client;
pub mod prompt;
pub mod proposal;

pub use client::{ChatMessage, Completion, ModelClient, ModelError};
