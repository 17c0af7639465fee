//! An in-process forge for unit tests of stage rules: PRs in a vector, pushes recorded,
//! and the forge's rules kept (one open PR per head, `AlreadyExists` like a 409/422).

use super::{Forge, ForgeError, PrRequest, PrState, RemotePr, RepoInfo};
use crate::infra::git::Git;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub(crate) struct MemPr {
    pub pr: RemotePr,
    pub base: String,
    pub title: String,
    pub body: String,
    pub comments: Vec<String>,
}

#[derive(Default)]
pub(crate) struct MemForge {
    pub prs: Mutex<Vec<MemPr>>,
    /// `(branch, commit)` of each push.
    pub pushes: Mutex<Vec<(String, String)>>,
    /// The next `create_draft` says the PR exists and, like a racing runner, opens it.
    pub race_on_create: Mutex<bool>,
    /// The racing PR is this runner's own create, which timed out but went through.
    pub race_is_own: Mutex<bool>,
    pub can_push: bool,
}

impl MemForge {
    pub fn new() -> MemForge {
        MemForge { can_push: true, ..MemForge::default() }
    }

    /// Adds a PR as if someone had opened it before the cycle.
    pub fn with_pr(self, head: &str, state: PrState) -> MemForge {
        self.add(head, "main", state);
        self
    }

    fn add(&self, head: &str, base: &str, state: PrState) -> RemotePr {
        let mut prs = self.prs.lock().unwrap();
        let number = prs.len() as u64 + 1;
        let pr = RemotePr {
            number,
            url: format!("mem://pulls/{number}"),
            state,
            head: head.to_string(),
            body: String::new(),
        };
        prs.push(MemPr {
            pr: pr.clone(),
            base: base.to_string(),
            title: String::new(),
            body: String::new(),
            comments: Vec::new(),
        });
        pr
    }
}

#[async_trait::async_trait]
impl Forge for MemForge {
    async fn repo_info(&self) -> Result<RepoInfo, ForgeError> {
        Ok(RepoInfo { default_branch: "main".into(), can_push: self.can_push })
    }

    async fn pr_for_branch(&self, branch: &str, base: &str) -> Result<Option<RemotePr>, ForgeError> {
        let prs = self.prs.lock().unwrap();
        let mine = prs.iter().filter(|p| p.pr.head == branch && p.base == base).map(|p| p.pr.clone());
        Ok(super::speaking_pr(mine.collect()))
    }

    async fn open_prs(&self, prefix: &str) -> Result<Vec<RemotePr>, ForgeError> {
        let prs = self.prs.lock().unwrap();
        Ok(prs
            .iter()
            .filter(|p| p.pr.state == PrState::Open && p.pr.head.starts_with(prefix))
            .map(|p| p.pr.clone())
            .collect())
    }

    async fn create_draft(&self, req: &PrRequest) -> Result<RemotePr, ForgeError> {
        let race = std::mem::take(&mut *self.race_on_create.lock().unwrap());
        let exists =
            self.prs.lock().unwrap().iter().any(|p| p.pr.head == req.head && p.pr.state == PrState::Open);
        if race || exists {
            if race {
                self.add(&req.head, &req.base, PrState::Open);
                // A create that timed out but went through carries this request's body.
                if std::mem::take(&mut *self.race_is_own.lock().unwrap()) {
                    let mut prs = self.prs.lock().unwrap();
                    let last = prs.last_mut().expect("just added");
                    last.body = req.body.clone();
                    last.pr.body = req.body.clone();
                }
            }
            return Err(ForgeError::AlreadyExists);
        }
        let pr = self.add(&req.head, &req.base, PrState::Open);
        let mut prs = self.prs.lock().unwrap();
        let p = prs.iter_mut().find(|p| p.pr.number == pr.number).expect("just added");
        p.title = req.title.clone();
        p.body = req.body.clone();
        Ok(pr)
    }

    async fn update(&self, number: u64, title: &str, body: &str) -> Result<RemotePr, ForgeError> {
        let mut prs = self.prs.lock().unwrap();
        let p = prs
            .iter_mut()
            .find(|p| p.pr.number == number)
            .ok_or_else(|| ForgeError::Other("no PR".into()))?;
        p.title = title.to_string();
        p.body = body.to_string();
        Ok(p.pr.clone())
    }

    async fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let mut prs = self.prs.lock().unwrap();
        let p = prs
            .iter_mut()
            .find(|p| p.pr.number == number)
            .ok_or_else(|| ForgeError::Other("no PR".into()))?;
        p.comments.push(format!("{body}\n\n{}", super::BOT_MARK));
        Ok(())
    }

    async fn comments(&self, number: u64) -> Result<Vec<super::Comment>, ForgeError> {
        let prs = self.prs.lock().unwrap();
        let p =
            prs.iter().find(|p| p.pr.number == number).ok_or_else(|| ForgeError::Other("no PR".into()))?;
        Ok(super::Comment::from_texts(&p.comments, ""))
    }

    async fn add_labels(&self, _: u64, names: &[String]) -> Result<Vec<String>, ForgeError> {
        Ok(names.to_vec())
    }

    async fn branch_tip(&self, _: &Git, branch: &str) -> Result<Option<String>, ForgeError> {
        let pushed =
            self.pushes.lock().unwrap().iter().rev().find(|(b, _)| b == branch).map(|(_, c)| c.clone());
        // The default branch is always there.
        Ok(pushed.or_else(|| (branch == "main").then(|| "0".repeat(40))))
    }

    async fn push(&self, _: &Git, branch: &str, commit: &str, _: Option<&str>) -> Result<(), ForgeError> {
        self.pushes.lock().unwrap().push((branch.to_string(), commit.to_string()));
        Ok(())
    }
}
