//! What the model proposes: files with their full contents or search/replace edits.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub summary: String,
    pub files: Vec<ProposedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProposedFile {
    pub path: String,
    pub is_new: bool,
    /// The whole new content: for new files, or a full rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Search/replace edits of an existing file, applied in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<Vec<Edit>>,
    /// Whether the file is executable: a new file is 0644 unless this says so; an
    /// existing file keeps its mode unless this is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub search: String,
    pub replace: String,
}
