//! The services of one cycle: configuration, the repository, the run lock, and what is
//! made on first use (worktree, sandbox, forge). Stages use them; they hand their results
//! to each other through `Progress`, never through here.

use super::End;
use crate::adapters::forge::Forge;
use crate::adapters::model::ModelClient;
use crate::adapters::sandbox::{Place, Sandbox};
use crate::config::Pipeline;
use crate::domain::outcome::Outcome;
use crate::domain::policy::Policy;
use crate::domain::records::{ModelCall, ModelUse};
use crate::infra::process::Cancel;
use crate::infra::secrets::Secrets;
use crate::infra::workspace::{Repo, Workspace};
use crate::state::budget::Budget;
use crate::state::store::Store;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A temp file this old was left by a killed write.
const STALE_TEMP_SECS: u64 = 3600;

/// Command logs are kept for this many cycles, this one included.
pub const LOGS_KEPT: usize = 50;

/// In the state folder while a cycle's project commands may run: it names their work
/// folder. A cycle that ends removes it; a killed one leaves it, and the next cycle ends
/// what those commands left running before it uses the work folder.
const COMMANDS_MARK: &str = "commands-running";

pub struct Services {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub pipeline: Arc<Pipeline>,
    pub repo: Repo,
    pub state_dir: PathBuf,
    pub work_dir: PathBuf,
    pub cancel: Cancel,
    pub secrets: Secrets,
    pub rt: tokio::runtime::Handle,
    pub store: Store,
    pub budget: Budget,
    pub model: ModelClient,
    /// The running stage's time limit: its `timeout`, else its kind's default.
    pub stage_timeout: Duration,

    lock: Option<crate::state::RunLock>,
    base_commit: Option<String>,
    workspace: Option<Workspace>,
    worktree: Worktree,
    objects: Option<crate::infra::git::Objects>,
    /// The backend chosen at the start of the cycle, when the pipeline runs project code.
    pub sandbox_backend: Option<crate::adapters::sandbox::Backend>,
    sandbox: Option<Sandbox>,
    /// Dependencies were fetched for the change in the worktree (see `stages::shell`).
    pub deps_fetched: bool,
    /// Why fetching them could not reach the registry, when it could not: a command that
    /// then fails may have failed for want of them (see `stages::failed_run`).
    pub deps_unreachable: Option<String>,
    /// How many project commands ran, for their log files' names.
    pub commands_run: usize,
    /// [`COMMANDS_MARK`] is written.
    commands_marked: bool,
    forge: Option<Arc<dyn Forge>>,
    repo_info: Option<crate::adapters::forge::RepoInfo>,
    pr_base: Option<String>,

    /// Every call to the model, and their sum.
    pub model_calls: Vec<ModelCall>,
    pub model_use: Option<ModelUse>,
    pub warnings: Vec<String>,
}

/// What the cycle's worktree holds, so that it is put right when next used, and only then.
enum Worktree {
    /// Whatever the last cycle, or a killed one, left: reset before use.
    Unknown,
    /// Being reset, from when the prompt was built: the reset runs while the model
    /// answers, and is waited for when the worktree is first used.
    Resetting(std::thread::JoinHandle<Result<(), crate::infra::git::GitError>>),
    /// The base and what this cycle wrote.
    Ready,
    /// As `Ready`, after tests that may have changed tracked files.
    Tested,
}

impl Services {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        pipeline: Arc<Pipeline>,
        repo: Repo,
        state: crate::state::State,
        work_dir: PathBuf,
        cancel: Cancel,
        secrets: Secrets,
        rt: tokio::runtime::Handle,
    ) -> Services {
        let model = ModelClient::new(&pipeline.providers, state.budget.clone());
        Services {
            id,
            started_at: Utc::now(),
            store: state.store,
            budget: state.budget,
            model,
            pipeline,
            repo,
            state_dir: state.dir,
            work_dir,
            cancel,
            secrets,
            rt,
            stage_timeout: Duration::from_secs(10 * 60),
            lock: None,
            base_commit: None,
            workspace: None,
            worktree: Worktree::Unknown,
            objects: None,
            sandbox_backend: None,
            sandbox: None,
            deps_fetched: false,
            deps_unreachable: None,
            commands_run: 0,
            commands_marked: false,
            forge: None,
            repo_info: None,
            pr_base: None,
            model_calls: Vec::new(),
            model_use: None,
            warnings: Vec::new(),
        }
    }

    /// Takes the repository's run lock, once per cycle.
    pub fn lock(&mut self) -> Result<(), End> {
        if self.lock.is_none() {
            self.lock = Some(crate::state::RunLock::acquire(&self.state_dir).map_err(|e| match e {
                crate::state::LockError::Held(holder) => {
                    let who = holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
                    End::new(
                        Outcome::SkippedLocked,
                        format!("another prbot cycle{who} is running on this repository"),
                    )
                }
                crate::state::LockError::Io(e) => End::internal("cannot take the run lock", e),
            })?);
            let mark = self.state_dir.join(COMMANDS_MARK);
            if let Ok(work_dir) = std::fs::read(&mark) {
                use std::os::unix::ffi::OsStrExt;
                crate::infra::process::end_leftovers(std::path::Path::new(std::ffi::OsStr::from_bytes(
                    &work_dir,
                )));
                let _ = std::fs::remove_file(&mark);
            }
            self.sweep_leftovers();
        }
        Ok(())
    }

    /// Record writes and temp files a killed cycle left behind, and the command logs of all but
    /// the last [`LOGS_KEPT`] cycles. (A killed cycle's dirty worktree is reset by
    /// `Services::workspace` when the worktree is next used.) Only safe with the lock held.
    fn sweep_leftovers(&self) {
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("logs")) {
            let mut cycles: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            // Cycle ids start with their time, so names sort oldest first.
            cycles.sort();
            let excess = cycles.len().saturating_sub(LOGS_KEPT - 1);
            for old in &cycles[..excess] {
                let _ = std::fs::remove_dir_all(old);
            }
        }
        // What a killed record write left half done.
        match self.store.recover() {
            Ok(0) => {}
            Ok(n) => tracing::warn!("finished {n} record write(s) a killed cycle left"),
            Err(e) => tracing::warn!("cannot finish a killed cycle's record write: {e}"),
        }
        // Temp files are kept out of the folders of many files, so this lists few.
        for dir in [self.state_dir.clone(), self.state_dir.join("tmp"), self.state_dir.join("pulls")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                // Cycles that lost the lock, and readers, still write records and ledgers:
                // only a temp file no write can still be busy with is a leftover.
                let stale = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                    t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(STALE_TEMP_SECS))
                });
                if stale && e.file_name().to_string_lossy().starts_with(".prbot-tmp-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The commit this cycle starts from.
    pub fn base_commit(&mut self) -> Result<String, End> {
        if let Some(c) = &self.base_commit {
            return Ok(c.clone());
        }
        let base = &self.pipeline.workspace.base;
        let c = match &self.repo.head {
            // Discovery already read HEAD.
            Some(head) if base == "HEAD" => head.commit.clone(),
            _ => self
                .repo
                .git(&self.cancel)
                .run(["rev-parse", "--verify", "--end-of-options", &format!("{base}^{{commit}}")])
                .map_err(|e| End::internal(&format!("workspace.base `{base}` is not a commit"), e))?,
        };
        self.base_commit = Some(c.clone());
        Ok(c)
    }

    /// The cycle's clone, made on first use, for what it knows of the base (its files,
    /// its history); its worktree is not reset for this. Taking it also takes the run
    /// lock, even when no guard stage runs, so two cycles never share it.
    pub fn clone_of_base(&mut self) -> Result<&Workspace, End> {
        if self.workspace.is_none() {
            self.lock()?;
            let base = self.base_commit()?;
            let ws = Workspace::open(&self.repo, &self.work_dir, &base, &self.cancel)
                .map_err(|e| End::internal("cannot prepare the worktree", e))?;
            self.workspace = Some(ws);
        }
        Ok(self.workspace.as_ref().expect("just set"))
    }

    /// Starts the worktree's reset in the background, unless it is under way or done:
    /// propose starts it once the prompt is built, so the reset runs while the model
    /// answers rather than beside the ranking, and is waited for when the worktree is
    /// first used.
    pub fn start_reset(&mut self) -> Result<(), End> {
        self.clone_of_base()?;
        if matches!(self.worktree, Worktree::Unknown) {
            let resetting = self.workspace.as_ref().expect("just made").clone();
            self.worktree = Worktree::Resetting(std::thread::spawn(move || resetting.reset()));
        }
        Ok(())
    }

    /// The cycle's worktree, reset to the base by its first use: the one reset of a cycle,
    /// which also clears what the last cycle (or a killed one) left.
    pub fn workspace(&mut self) -> Result<&Workspace, End> {
        self.clone_of_base()?;
        let ws = self.workspace.as_ref().expect("just made");
        let reset = match std::mem::replace(&mut self.worktree, Worktree::Unknown) {
            Worktree::Resetting(pending) => pending.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Worktree::Unknown => ws.reset(),
            ready => {
                self.worktree = ready;
                return Ok(ws);
            }
        };
        reset.map_err(|e| End::internal("cannot prepare the worktree", e))?;
        self.worktree = Worktree::Ready;
        Ok(ws)
    }

    /// Waits for a reset under way, whatever its result: the worktree is about to be reset
    /// again or left.
    fn end_pending_reset(&mut self) {
        if let Worktree::Resetting(pending) = std::mem::replace(&mut self.worktree, Worktree::Unknown) {
            let _ = pending.join();
        }
    }

    /// The worktree for a command: as [`Self::workspace`], with what earlier tests changed
    /// in tracked files put back first, so the command sees the change and nothing else.
    pub fn workspace_for_command(&mut self) -> Result<&Workspace, End> {
        self.workspace()?;
        let ws = self.workspace.as_ref().expect("just made");
        if matches!(self.worktree, Worktree::Tested) {
            let touched = ws.unstaged()?;
            if !touched.is_empty() {
                tracing::info!("the tests changed {}; put back, not committed", touched.join(", "));
                ws.restore(&touched)?;
            }
            self.worktree = Worktree::Ready;
        }
        Ok(ws)
    }

    /// Tests ran in the worktree: what they changed is not part of the change. It stays
    /// out of the commit either way (the commit is the index), and is put back before the
    /// next command; a cycle that runs none pays nothing for it.
    pub fn tests_ran(&mut self) {
        if matches!(self.worktree, Worktree::Ready) {
            self.worktree = Worktree::Tested;
        }
    }

    /// The reader of the repository's objects, started on first use: one process serves
    /// every object a cycle reads.
    pub fn objects(&mut self) -> Result<&mut crate::infra::git::Objects, End> {
        if self.objects.is_none() {
            let objects = crate::infra::git::Objects::open(&self.repo.git(&self.cancel))
                .map_err(|e| End::internal("cannot read the repository's objects", e))?;
            self.objects = Some(objects);
        }
        Ok(self.objects.as_mut().expect("just set"))
    }

    /// The sandbox of the cycle's project commands, set up on first use.
    pub fn sandbox(&mut self) -> Result<&Sandbox, End> {
        if self.sandbox.is_none() {
            // Chosen by the runner before the first stage of a pipeline that runs project code.
            let Some(backend) = self.sandbox_backend else {
                return Err(End::internal(
                    "prbot bug",
                    "a project command ran before the sandbox was chosen",
                ));
            };
            self.workspace()?;
            let ws = self.workspace.as_ref().expect("just made");
            let place = Place {
                tree: &ws.path,
                clone_git_dir: &ws.git_dir,
                cache_dir: &ws.cache_dir,
                work_dir: &self.work_dir,
                repo_root: &self.repo.root,
                repo_git_dir: &self.repo.git_dir,
                state_dir: &self.state_dir,
                extra_read_only: &self.pipeline.sandbox.read_only,
            };
            self.sandbox = Some(Sandbox::new(backend, &place));
        }
        Ok(self.sandbox.as_ref().expect("just set"))
    }

    /// The forge the pipeline names, made on first use. A forge that cannot be used ends
    /// the cycle `pr_failed`.
    pub fn forge(&mut self) -> Result<Arc<dyn Forge>, End> {
        if self.forge.is_none() {
            let f = crate::adapters::forge::from_config(&self.pipeline.forge, &self.repo, &self.state_dir)
                .map_err(|e| End::new(Outcome::PrFailed, e.to_string()))?;
            self.forge = Some(f);
        }
        Ok(self.forge.clone().expect("just set"))
    }

    /// Uses `forge` instead of the one the pipeline names.
    #[cfg(test)]
    pub fn use_forge(&mut self, forge: Arc<dyn Forge>) {
        self.forge = Some(forge);
        self.repo_info = None;
        self.pr_base = None;
    }

    /// The branch PRs target: the pr stage's `base`, else the forge's default branch.
    pub fn pr_base(&mut self) -> Result<String, End> {
        if let Some(b) = &self.pr_base {
            return Ok(b.clone());
        }
        let base = match self.pipeline.pr_settings().and_then(|s| s.base.clone()) {
            Some(b) => b,
            None => self.repo_info()?.default_branch,
        };
        self.pr_base = Some(base.clone());
        Ok(base)
    }

    /// The forge's view of the repository, asked once per cycle.
    pub fn repo_info(&mut self) -> Result<crate::adapters::forge::RepoInfo, End> {
        if let Some(i) = &self.repo_info {
            return Ok(i.clone());
        }
        let forge = self.forge()?;
        let info = self.forge_call(async move { forge.repo_info().await })?;
        self.repo_info = Some(info.clone());
        Ok(info)
    }

    /// Runs a forge call from this thread; a failure ends the cycle `pr_failed`.
    pub fn forge_call<T, F>(&self, fut: F) -> Result<T, End>
    where
        F: std::future::Future<Output = Result<T, crate::adapters::forge::ForgeError>>,
    {
        match self.block_on(fut) {
            None => Err(End::new(Outcome::Cancelled, "cancelled while talking to the forge")),
            Some(Err(e)) => Err(End::forge(e)),
            Some(Ok(v)) => Ok(v),
        }
    }

    pub fn has_workspace(&self) -> bool {
        self.workspace.is_some()
    }

    /// Runs a future on the runtime from this (blocking) thread; a cancellation wins.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        let cancel = self.cancel.clone();
        self.rt.block_on(async move {
            tokio::select! {
                out = fut => Some(out),
                _ = cancel.cancelled() => None,
            }
        })
    }

    /// The environment for commands that run project code: no secrets in it.
    pub fn child_env(
        &self,
        allow: &[String],
    ) -> std::collections::HashMap<std::ffi::OsString, std::ffi::OsString> {
        self.secrets.child_env(allow)
    }

    pub fn policy(&self) -> Policy<'_> {
        Policy::new(&self.pipeline.policy, &self.repo.root, self.child_env(&[]), self.cancel.clone())
    }

    /// Paths relative to the repository that only maintainers write.
    pub fn protected_paths(&self) -> Vec<String> {
        let mut out = vec![self.pipeline.prd.path.to_string_lossy().into_owned()];
        let pipeline =
            std::fs::canonicalize(&self.pipeline.path).unwrap_or_else(|_| self.pipeline.path.clone());
        let root = std::fs::canonicalize(&self.repo.root).unwrap_or_else(|_| self.repo.root.clone());
        if let Ok(rel) = pipeline.strip_prefix(&root) {
            out.push(rel.to_string_lossy().into_owned());
        }
        out
    }

    /// Puts the worktree back to the base commit for another attempt.
    pub fn reset_worktree(&mut self) -> Result<(), End> {
        self.end_pending_reset();
        if let Some(ws) = &self.workspace {
            ws.reset().map_err(|e| End::internal("cannot reset the worktree", e))?;
            self.worktree = Worktree::Ready;
        }
        self.deps_fetched = false;
        self.deps_unreachable = None;
        Ok(())
    }

    /// Notes that project commands are about to run (see [`COMMANDS_MARK`]).
    pub fn commands_may_run(&mut self) -> Result<(), End> {
        if !self.commands_marked {
            let work_dir = std::fs::canonicalize(&self.work_dir).unwrap_or_else(|_| self.work_dir.clone());
            std::fs::write(self.state_dir.join(COMMANDS_MARK), work_dir.as_os_str().as_encoded_bytes())
                .map_err(|e| End::internal("cannot note the commands about to run", e))?;
            self.commands_marked = true;
        }
        Ok(())
    }

    /// Drops the worktree handle. The worktree is reset when next used, not now: one
    /// reset per cycle (a killed cycle's worktree is reset the same way).
    pub fn release_workspace(&mut self) {
        self.end_pending_reset();
        self.workspace = None;
        // Every command has ended: each is waited for, and its tree ended, before it returns.
        if std::mem::take(&mut self.commands_marked) {
            let _ = std::fs::remove_file(self.state_dir.join(COMMANDS_MARK));
        }
        self.objects = None;
    }
}
