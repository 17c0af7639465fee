//! A forge with no network: the branch lives in the user's repository as a ref, and the
//! pull request is a JSON file in prbot's state directory.

use super::{Forge, ForgeError, OpenedPr, PrRequest};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub struct LocalForge {
    dir: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LocalPr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub draft: bool,
    pub state: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl LocalForge {
    pub fn new(state_dir: &Path) -> Self {
        LocalForge {
            dir: state_dir.join("pulls"),
        }
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number}.json"))
    }

    fn existing(&self) -> Vec<LocalPr> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }

    fn url(&self, number: u64) -> String {
        format!("file://{}", self.path(number).display())
    }
}

#[async_trait::async_trait]
impl Forge for LocalForge {
    async fn push(&self, _branch: &str, _commit: &str) -> Result<(), ForgeError> {
        // The commit already sits on a branch of the user's repository.
        Ok(())
    }

    async fn open_draft(&self, pr: &PrRequest) -> Result<OpenedPr, ForgeError> {
        let now = chrono::Utc::now();
        let existing = self.existing();
        let open = existing
            .iter()
            .find(|p| p.head == pr.head && p.state == "open");
        let (number, created_at, created) = match open {
            Some(p) => (p.number, p.created_at, false),
            None => (
                existing.iter().map(|p| p.number).max().unwrap_or(0) + 1,
                now,
                true,
            ),
        };
        let record = LocalPr {
            number,
            title: pr.title.clone(),
            body: pr.body.clone(),
            head: pr.head.clone(),
            base: pr.base.clone(),
            draft: true,
            state: "open".into(),
            created_at,
            updated_at: now,
        };
        let path = self.path(number);
        let json = serde_json::to_vec_pretty(&record).expect("PR record serialises");
        fsutil::write_atomic(&path, &json).map_err(|source| ForgeError::LocalIo {
            path: path.display().to_string(),
            source,
        })?;
        Ok(OpenedPr {
            number,
            url: self.url(number),
            created,
        })
    }
}
