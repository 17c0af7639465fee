//! Where pull requests go.

pub mod local;

use crate::pipeline::config::{ForgeConfig, ForgeKind};
use std::path::Path;

/// A draft pull request to open (or refresh, when one is already open for the branch).
#[derive(Debug, Clone)]
pub struct PrRequest {
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
}

#[derive(Debug, Clone)]
pub struct OpenedPr {
    pub number: u64,
    pub url: String,
    /// False when an open PR for the branch existed and was updated instead.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("cannot write the local PR record {path}: {source}")]
    LocalIo {
        path: String,
        source: std::io::Error,
    },
}

#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// Makes the committed branch available to the forge.
    async fn push(&self, branch: &str, commit: &str) -> Result<(), ForgeError>;
    /// Opens a draft PR, or updates the open one for the same head branch.
    async fn open_draft(&self, pr: &PrRequest) -> Result<OpenedPr, ForgeError>;
}

pub fn from_config(config: &ForgeConfig, state_dir: &Path) -> Box<dyn Forge> {
    match config.kind {
        ForgeKind::Local => Box::new(local::LocalForge::new(state_dir)),
    }
}
