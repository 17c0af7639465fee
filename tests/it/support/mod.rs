//! A small harness: a temp repository, a scripted model on loopback, and the binary.
//!
//! ```ignore
//! let model = Model::proposing(&[("greet.sh", false, "new")]).await;
//! let env = Env::new();
//! let run = env.run(&model, &Pipeline::default());
//! run.expect(Outcome::Ok);
//! ```

#![allow(dead_code)]

pub mod forge;
mod gitea;
mod github;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const BIN: &str = env!("CARGO_BIN_EXE_prbot");
pub const MODEL_KEY_ENV: &str = "PRBOT_IT_MODEL_KEY";
pub const MODEL_KEY: &str = "sk-canary-7f3a9e51d2c4";

pub const PRD: &str = "# PRD\n\n- [ ] Make `greet.sh` say hello to the world [bot-eligible]\n- [x] Done already [bot-eligible]\n";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// A user's repository in a temp folder, plus a folder for prbot's worktree.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub work: PathBuf,
    pub pipeline_path: PathBuf,
}

impl Env {
    /// A repository with a PRD holding one gap, `greet.sh`, and a test script `check.sh`.
    pub fn new() -> Env {
        Env::with_prd(PRD)
    }

    pub fn with_prd(prd: &str) -> Env {
        Env::init(prd, &[])
    }

    /// [`Env::with_prd`], with more `git init` options (e.g. `--object-format=sha256`).
    pub fn init(prd: &str, init_args: &[&str]) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let mut args = vec!["init", "--quiet"];
        args.extend(init_args);
        git(&repo, &args);
        let env =
            Env { work: tmp.path().join("work"), pipeline_path: tmp.path().join("pipeline.yml"), tmp, repo };
        env.write("docs/PRD.md", prd);
        env.write("greet.sh", "echo hello\n");
        env.write("check.sh", "grep -q hello greet.sh\n");
        env.commit("initial");
        env
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.repo.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn commit(&self, msg: &str) {
        git(&self.repo, &["add", "--all"]);
        git(&self.repo, &["commit", "--quiet", "--allow-empty", "-m", msg]);
    }

    pub fn state(&self) -> PathBuf {
        self.repo.join(".git/prbot")
    }

    /// A maintainer's comment on every open local PR, as review feedback: the next cycle
    /// on the gap revises its change instead of waiting.
    pub fn review(&self, text: &str) {
        let Ok(entries) = std::fs::read_dir(self.state().join("pulls")) else { return };
        for e in entries.flatten() {
            let mut pr: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            if pr["state"] == "open" {
                pr["comments"].as_array_mut().unwrap().push(text.into());
                std::fs::write(e.path(), serde_json::to_vec_pretty(&pr).unwrap()).unwrap();
            }
        }
    }

    pub fn write_pipeline(&self, model: &Model, p: &Pipeline) -> PathBuf {
        let yaml = format!(
            "providers:\n  local:\n    base_url: {}/v1\n    api_key_env: {MODEL_KEY_ENV}\nworkspace:\n  dir: {}\n  base: {}\n{}\nstages:\n{}",
            model.uri(),
            self.work.display(),
            p.base.as_deref().unwrap_or("HEAD"),
            p.settings,
            p.stages
        );
        std::fs::write(&self.pipeline_path, yaml).unwrap();
        self.pipeline_path.clone()
    }

    pub fn command(&self, model: &Model, p: &Pipeline) -> Command {
        let pipeline = self.write_pipeline(model, p);
        self.command_at(&pipeline)
    }

    /// Writes the pipeline to `file` (inside the repository, committed) and runs with it.
    pub fn run_with_pipeline_at(&self, model: &Model, p: &Pipeline, file: &Path) -> Run {
        let written = self.write_pipeline(model, p);
        std::fs::copy(written, file).unwrap();
        self.commit("pipeline");
        Run::from(self.command_at(file).output().expect("prbot runs"))
    }

    fn command_at(&self, pipeline: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.args(["run", "--json", "--repo"]).arg(&self.repo).arg("--pipeline").arg(pipeline);
        c.env(MODEL_KEY_ENV, MODEL_KEY).env("RUST_LOG", "prbot=info").env_remove("CARGO_TARGET_DIR");
        c
    }

    /// Starts a cycle in the background and returns once `marker` exists, which the
    /// pipeline's test command is expected to create.
    pub fn spawn_until(&self, model: &Model, p: &Pipeline, marker: &Path) -> std::process::Child {
        let child = self
            .command(model, p)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("prbot starts");
        while !marker.exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    /// Runs one cycle through the binary.
    pub fn run(&self, model: &Model, p: &Pipeline) -> Run {
        self.run_with(model, p, &[])
    }

    /// Runs one cycle with extra environment variables, such as a forge token.
    pub fn run_with(&self, model: &Model, p: &Pipeline, vars: &[(&str, &str)]) -> Run {
        let mut c = self.command(model, p);
        c.envs(vars.iter().copied());
        Run::from(c.output().expect("prbot runs"))
    }

    /// Every byte a user could see: files outside `.git`, the index, HEAD and the branch it names.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if rel == ".git" {
                    continue;
                }
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
        walk(&self.repo, &self.repo, &mut out);
        out.insert("<index>".into(), std::fs::read(self.repo.join(".git/index")).unwrap());
        out.insert("<HEAD>".into(), std::fs::read(self.repo.join(".git/HEAD")).unwrap());
        out.insert("<HEAD commit>".into(), git(&self.repo, &["rev-parse", "HEAD"]).into_bytes());
        out.insert("<status>".into(), git(&self.repo, &["status", "--porcelain", "--ignored"]).into_bytes());
        out
    }

    /// A file a test command can create and the test can see: project commands run in
    /// a sandbox that only lets them write prbot's worktree (and caches).
    pub fn marker(&self, name: &str) -> PathBuf {
        self.work.join("worktree").join(name)
    }

    pub fn branches(&self) -> Vec<String> {
        git(&self.repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/prbot/"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The stage list and top-level settings of a test pipeline.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: String,
    pub stages: String,
    pub base: Option<String>,
}

pub const STAGES: &str = "  - uses: guard\n  - uses: pick-gap\n  - uses: propose\n    timeout: 10s\n    with:\n      repair_attempts: 0\n  - uses: apply\n  - uses: test\n    with:\n      commands: [\"sh check.sh\"]\n  - uses: pr\n";

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline { settings: String::new(), stages: STAGES.to_string(), base: None }
    }
}

impl Pipeline {
    pub fn settings(mut self, yaml: &str) -> Self {
        self.settings.push_str(yaml);
        if !yaml.ends_with('\n') {
            self.settings.push('\n');
        }
        self
    }

    /// `workspace.base`.
    pub fn base(mut self, rev: &str) -> Self {
        self.base = Some(rev.to_string());
        self
    }

    pub fn stages(mut self, yaml: &str) -> Self {
        self.stages = yaml.to_string();
        self
    }

    /// The default stages with the test commands replaced.
    pub fn tests(self, commands: &[&str]) -> Self {
        let list = serde_json::to_string(commands).unwrap();
        let stages = STAGES.replace("[\"sh check.sh\"]", &list);
        self.stages(&stages)
    }

    pub fn without_pr(self) -> Self {
        let stages = self.stages.replace("  - uses: pr\n", "  - uses: pr\n    enabled: false\n");
        self.stages(&stages)
    }
}

/// What one `prbot run --json` did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn record(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not a record ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    pub fn outcome(&self) -> String {
        self.record()["outcome"].as_str().unwrap().to_string()
    }

    pub fn reason(&self) -> String {
        self.record()["reason"].as_str().unwrap().to_string()
    }

    /// Asserts the outcome and its exit code, and returns the record.
    pub fn expect(&self, outcome: &str, code: i32) -> Value {
        let r = self.record();
        assert_eq!(r["outcome"], outcome, "reason: {}\nstderr:\n{}", r["reason"], self.stderr);
        assert_eq!(self.code, code, "exit code for {outcome}; stderr:\n{}", self.stderr);
        r
    }
}

/// A scripted OpenAI-compatible model on loopback.
pub struct Model {
    pub server: MockServer,
}

pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

pub fn proposal(files: &[(&str, bool, &str)]) -> String {
    let files: Vec<Value> =
        files.iter().map(|(p, n, c)| json!({"path": p, "is_new": n, "content": c})).collect();
    json!({"summary": "Greet the world.", "files": files}).to_string()
}

impl Model {
    /// Answers every request with this reply content.
    pub async fn replying(content: &str) -> Model {
        Model::responding(ResponseTemplate::new(200).set_body_json(completion(content))).await
    }

    /// Answers every request with a proposal of these files: (path, is_new, content).
    pub async fn proposing(files: &[(&str, bool, &str)]) -> Model {
        Model::replying(&proposal(files)).await
    }

    /// The usual good change for [`Env::new`]'s repository.
    pub async fn good() -> Model {
        Model::proposing(&[("greet.sh", false, "echo hello world\n")]).await
    }

    pub async fn responding(t: ResponseTemplate) -> Model {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path("/v1/chat/completions")).respond_with(t).mount(&server).await;
        Model { server }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// The user messages of every request, in order.
    pub async fn prompts(&self) -> Vec<String> {
        self.requests()
            .await
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                body["messages"][1]["content"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

/// Live processes whose command line contains `needle` (zombies excluded).
pub fn procs_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if !zombie && cmdline.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Every small text file under `dir`: configs, records, ledgers, logs.
pub fn text_files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("objects") {
                stack.push(p);
            } else if p.is_file() {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    out.push((p.display().to_string(), text));
                }
            }
        }
    }
    out
}

/// The status the record gives stage `id`.
pub fn stage_status(r: &Value, id: &str) -> String {
    r["stages"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A pipeline for one runner: its own worktree folder, state kept on the remote's ref.
pub fn runner_pipeline(env: &Env, model: &Model, name: &str, extra: &str) -> PathBuf {
    let base = env.write_pipeline(model, &Pipeline::default().without_pr().settings(extra));
    let text = std::fs::read_to_string(base).unwrap().replace(
        &format!("  dir: {}\n", env.work.display()),
        &format!("  dir: {}\n", env.tmp.path().join(format!("work-{name}")).display()),
    );
    let path = env.tmp.path().join(format!("pipeline-{name}.yml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A bare remote of the user's repository, as a CI runner's origin.
pub fn bare_remote(env: &Env) -> PathBuf {
    let remote = env.tmp.path().join("remote.git");
    git(
        env.tmp.path(),
        &["clone", "--quiet", "--bare", &env.repo.display().to_string(), &remote.display().to_string()],
    );
    remote
}

/// A clone of `remote` named `name`: one runner's checkout.
pub fn clone_of(env: &Env, remote: &Path, name: &str) -> PathBuf {
    let dir = env.tmp.path().join(name);
    git(env.tmp.path(), &["clone", "--quiet", &remote.display().to_string(), &dir.display().to_string()]);
    dir
}

pub fn prbot(args: &[&str], repo: &Path, pipeline: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).arg("--repo").arg(repo).arg("--pipeline").arg(pipeline);
    c.env(MODEL_KEY_ENV, MODEL_KEY);
    c
}

/// Asserts that the record's reason mentions `needle`.
pub fn assert_reason(r: &Value, needle: &str) {
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains(needle), "the reason {reason:?} does not mention {needle:?}");
}

/// Whether the process whose pid is in `pidfile` still runs (a zombie does not count).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// The id prbot gives the gap in [`harness::PRD`].
pub fn gap_id_of(_env: &Env) -> String {
    prbot::gaps(PRD, "[bot-eligible]")[0].id.clone()
}
