//! A forge with no network: the branch lives in the user's repository as a ref, and each
//! pull request is a JSON file in prbot's state directory (`pulls/<number>.json`).
//! A maintainer can close one by setting its `state` to `closed`, and leave review
//! feedback by adding a string to its `comments`. `pulls/heads.json` indexes the PRs by
//! head, so a cycle reads only its gap's PR files, not every one.

use super::{Forge, ForgeError, PrRequest, PrState, RemotePr, RepoInfo};
use crate::infra::fsutil;
use crate::infra::git::Git;
use crate::infra::workspace::{Head, Repo};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `pulls/heads.json`: which PR numbers each head has, and the next number.
const INDEX: &str = "heads.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    heads: std::collections::BTreeMap<String, Vec<u64>>,
    next: u64,
    /// Each PR's state as its file said when last read, with the file's modification
    /// time: a file not touched since is not read again.
    #[serde(default)]
    states: std::collections::BTreeMap<u64, (PrState, u128)>,
}

/// A file's modification time in nanoseconds, if it can be read.
fn modified(path: &Path) -> Option<u128> {
    let t = std::fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos())
}

pub struct LocalForge {
    repo_root: PathBuf,
    /// The user's HEAD when the cycle started: the default branch, and its tip.
    head: Option<Head>,
    dir: PathBuf,
    /// Serialises read-modify-write of the PR files within this process.
    lock: Mutex<()>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalPr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub draft: bool,
    pub state: PrState,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub comments: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl LocalForge {
    pub fn new(repo: &Repo, state_dir: &Path) -> Self {
        LocalForge {
            repo_root: repo.root.clone(),
            head: repo.head.clone(),
            dir: state_dir.join("pulls"),
            lock: Mutex::new(()),
        }
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number}.json"))
    }

    /// Every PR, by reading every file: only to rebuild the index.
    fn all(&self) -> Vec<LocalPr> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut prs: Vec<LocalPr> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json") && e.file_name() != INDEX)
            .filter_map(|e| serde_json::from_slice(&fsutil::read_regular(&e.path()).ok()?).ok())
            .collect();
        prs.sort_by_key(|p| p.number);
        prs
    }

    /// One PR, by its number.
    fn one(&self, number: u64) -> Option<LocalPr> {
        serde_json::from_slice(&fsutil::read_regular(&self.path(number)).ok()?).ok()
    }

    /// The heads' PR numbers, from `pulls/heads.json`; rebuilt from the files when missing.
    /// Only prbot creates PR files, so a head's numbers never change once written;
    /// state and comments, which a maintainer edits, are always read from the PR's file.
    fn index(&self) -> Index {
        let path = self.dir.join(INDEX);
        if let Some(index) = fsutil::read_regular(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            return index;
        }
        let mut index = Index::default();
        for pr in self.all() {
            index.heads.entry(pr.head.clone()).or_default().push(pr.number);
            index.next = index.next.max(pr.number + 1);
        }
        index
    }

    fn save_index(&self, index: &Index) -> Result<(), ForgeError> {
        let path = self.dir.join(INDEX);
        let json = serde_json::to_vec_pretty(index).expect("the index serialises");
        fsutil::write_atomic(&path, &json)
            .map_err(|source| ForgeError::LocalIo { path: path.display().to_string(), source })
    }

    /// The PRs of heads that `pick` keeps.
    fn of_heads(&self, pick: impl Fn(&str) -> bool) -> Vec<LocalPr> {
        let index = self.index();
        let mut prs: Vec<LocalPr> = index
            .heads
            .iter()
            .filter(|(head, _)| pick(head))
            .flat_map(|(_, numbers)| numbers.iter().filter_map(|n| self.one(*n)))
            .collect();
        prs.sort_by_key(|p| p.number);
        prs
    }

    /// Writes a PR's file and notes it in the index. Called with `self.lock` held.
    fn save(&self, pr: &LocalPr) -> Result<(), ForgeError> {
        let path = self.path(pr.number);
        let json = serde_json::to_vec_pretty(pr).expect("PR record serialises");
        fsutil::write_atomic(&path, &json)
            .map_err(|source| ForgeError::LocalIo { path: path.display().to_string(), source })?;
        let mut index = self.index();
        let numbers = index.heads.entry(pr.head.clone()).or_default();
        if !numbers.contains(&pr.number) {
            numbers.push(pr.number);
        }
        index.next = index.next.max(pr.number + 1);
        if let Some(m) = modified(&path) {
            index.states.insert(pr.number, (pr.state, m));
        }
        self.save_index(&index)
    }

    fn remote(&self, p: &LocalPr) -> RemotePr {
        RemotePr {
            number: p.number,
            url: format!("file://{}", self.path(p.number).display()),
            state: p.state,
            head: p.head.clone(),
            body: p.body.clone(),
        }
    }

    fn edit(&self, number: u64, f: impl FnOnce(&mut LocalPr)) -> Result<RemotePr, ForgeError> {
        let _guard = self.lock.lock().unwrap();
        let mut pr = self
            .one(number)
            .ok_or_else(|| ForgeError::Other(format!("local PR #{number} does not exist")))?;
        f(&mut pr);
        pr.updated_at = chrono::Utc::now();
        self.save(&pr)?;
        Ok(self.remote(&pr))
    }
}

#[async_trait::async_trait]
impl Forge for LocalForge {
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError> {
        // The branch checked out when the cycle started, as discovery read it.
        let branch = self.head.as_ref().and_then(|h| h.branch.as_deref()?.strip_prefix("refs/heads/"));
        Ok(RepoInfo { default_branch: branch.unwrap_or("HEAD").to_string(), can_push: true })
    }

    async fn pr_for_branch(&self, branch: &str, base: &str) -> Result<Option<RemotePr>, ForgeError> {
        let mine = self.of_heads(|h| h == branch).into_iter().filter(|p| p.base == base);
        Ok(super::speaking_pr(mine.map(|p| self.remote(&p)).collect()))
    }

    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError> {
        // States from the index; only a PR file changed since (a maintainer closed it) is read.
        let index = self.index();
        let mut open = Vec::new();
        for (head, numbers) in index.heads.iter().filter(|(h, _)| h.starts_with(prefix)) {
            for n in numbers {
                let path = self.path(*n);
                let state = match (index.states.get(n), modified(&path)) {
                    (Some((state, at)), Some(now)) if *at == now => Some(*state),
                    (_, Some(_)) => self.one(*n).map(|p| p.state),
                    (_, None) => None,
                };
                if state == Some(PrState::Open) {
                    open.push(RemotePr {
                        number: *n,
                        url: format!("file://{}", path.display()),
                        state: PrState::Open,
                        head: head.clone(),
                        body: String::new(),
                    });
                }
            }
        }
        open.sort_by_key(|p| p.number);
        Ok(open)
    }

    async fn create_draft(&self, pr: &PrRequest) -> Result<RemotePr, ForgeError> {
        let _guard = self.lock.lock().unwrap();
        let index = self.index();
        let mine = self.of_heads(|h| h == pr.head);
        if mine.iter().any(|p| p.state == PrState::Open && p.base == pr.base) {
            return Err(ForgeError::AlreadyExists);
        }
        let now = chrono::Utc::now();
        let number = index.next.max(1);
        let record = LocalPr {
            number,
            title: pr.title.clone(),
            body: pr.body.clone(),
            head: pr.head.clone(),
            base: pr.base.clone(),
            draft: true,
            state: PrState::Open,
            labels: Vec::new(),
            comments: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.save(&record)?;
        Ok(self.remote(&record))
    }

    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError> {
        self.edit(number, |p| {
            p.title = title.to_string();
            p.body = body.to_string();
        })
    }

    async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        self.edit(number, |p| p.comments.push(format!("{body}\n\n{}", super::BOT_MARK))).map(|_| ())
    }

    async fn comments(&self, number: u64) -> Result<Vec<super::Comment>, ForgeError> {
        let Some(pr) = self.one(number) else {
            return Err(ForgeError::Other(format!(
                "there is no local PR #{number} in {}",
                self.dir.display()
            )));
        };
        Ok(super::Comment::from_texts(&pr.comments, &pr.updated_at.to_rfc3339()))
    }

    async fn add_labels(&self, number: u64, names: &[String]) -> Result<Vec<String>, ForgeError> {
        self.edit(number, |p| {
            for n in names {
                if !p.labels.contains(n) {
                    p.labels.push(n.clone());
                }
            }
        })?;
        Ok(Vec::new())
    }

    async fn branch_tip(&self, _: &Git, branch: &str) -> Result<Option<String>, ForgeError> {
        let reference = format!("refs/heads/{branch}");
        if let Some(head) = self.head.as_ref().filter(|h| h.branch.as_deref() == Some(reference.as_str())) {
            return Ok(Some(head.commit.clone()));
        }
        let git = Git::new(&self.repo_root, crate::infra::process::Cancel::new());
        git.query(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}^{{commit}}")])
            .map_err(|e| ForgeError::Other(e.to_string()))
    }

    async fn push(
        &self,
        _worktree: &Git,
        _branch: &str,
        _commit: &str,
        _: Option<&str>,
    ) -> Result<(), ForgeError> {
        // The commit already sits on a branch of the user's repository.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> PrRequest {
        PrRequest { title: "t".into(), body: "b".into(), head: head.into(), base: "main".into() }
    }

    #[tokio::test]
    async fn a_gaps_lookup_reads_its_own_pr_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo { root: dir.path().into(), git_dir: dir.path().join(".git"), head: None };
        let forge = LocalForge::new(&repo, dir.path());
        for i in 0..20 {
            forge.create_draft(&request(&format!("prbot/gap-{i}"))).await.unwrap();
        }
        // A file the lookup would choke on, were it read: only gap-3's files may be.
        std::fs::write(dir.path().join("pulls/7.json"), "not json").unwrap();
        let found = forge.pr_for_branch("prbot/gap-3", "main").await.unwrap().unwrap();
        assert_eq!(found.number, 4);
        assert!(matches!(forge.create_draft(&request("prbot/gap-3")).await, Err(ForgeError::AlreadyExists)));
        // A maintainer closes it in the file; the index still finds it, with its state.
        let path = dir.path().join("pulls/4.json");
        let text = std::fs::read_to_string(&path).unwrap().replace("\"open\"", "\"closed\"");
        std::fs::write(&path, text).unwrap();
        assert_eq!(forge.pr_for_branch("prbot/gap-3", "main").await.unwrap().unwrap().state, PrState::Closed);
        assert_eq!(forge.create_draft(&request("prbot/gap-3")).await.unwrap().number, 21);
        // open_prs reads no file the index has seen unchanged: garbage written under the
        // old modification time goes unread; a file changed since is read again.
        let p10 = dir.path().join("pulls/10.json");
        let when = std::fs::metadata(&p10).unwrap().modified().unwrap();
        std::fs::write(&p10, "not json either").unwrap();
        std::fs::File::options().write(true).open(&p10).unwrap().set_modified(when).unwrap();
        let open: Vec<u64> = forge.open_prs("prbot/").await.unwrap().iter().map(|p| p.number).collect();
        assert!(open.contains(&10), "an unchanged PR file was read again: {open:?}");
        assert!(!open.contains(&4), "a PR a maintainer closed is listed open: {open:?}");
        assert!(!open.contains(&7), "an unreadable, changed PR file is listed: {open:?}");
        // Without the index, it is rebuilt from the files.
        std::fs::remove_file(dir.path().join("pulls").join(INDEX)).unwrap();
        assert_eq!(forge.pr_for_branch("prbot/gap-3", "main").await.unwrap().unwrap().number, 21);
    }
}
