//! The three ways prbot is started: workflows, the webhook server, and state that
//! survives ephemeral runners.

use crate::harness::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

// ---------------------------------------------------------------- the git state backend

/// A pipeline for one runner: its own worktree folder, state kept on the remote's ref.
fn runner_pipeline(env: &Env, model: &Model, name: &str, extra: &str) -> PathBuf {
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
fn bare_remote(env: &Env) -> PathBuf {
    let remote = env.tmp.path().join("remote.git");
    git(
        env.tmp.path(),
        &["clone", "--quiet", "--bare", &env.repo.display().to_string(), &remote.display().to_string()],
    );
    remote
}

/// A clone of `remote` named `name`: one runner's checkout.
fn clone_of(env: &Env, remote: &Path, name: &str) -> PathBuf {
    let dir = env.tmp.path().join(name);
    git(env.tmp.path(), &["clone", "--quiet", &remote.display().to_string(), &dir.display().to_string()]);
    dir
}

fn prbot(args: &[&str], repo: &Path, pipeline: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).arg("--repo").arg(repo).arg("--pipeline").arg(pipeline);
    c.env(MODEL_KEY_ENV, MODEL_KEY);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_share_one_budget_and_one_history_through_the_remote() {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    let clone = |name: &str| clone_of(&env, &remote, name);
    let state = "state:\n  backend: git\n  remote: origin\nbudget:\n  calls_per_day: 1";
    let (a, b) = (clone("runner-a"), clone("runner-b"));
    let (pa, pb) = (runner_pipeline(&env, &model, "a", state), runner_pipeline(&env, &model, "b", state));
    let run = |repo: &Path, p: &Path| {
        prbot(&["run", "--json"], repo, p).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (ca, cb) = (run(&a, &pa), run(&b, &pb));
    let (ra, rb) = (Run::from(ca.wait_with_output().unwrap()), Run::from(cb.wait_with_output().unwrap()));
    let mut outcomes = vec![ra.outcome(), rb.outcome()];
    outcomes.sort();
    assert_eq!(outcomes, ["dry_run", "skipped_cost"], "a: {}\nb: {}", ra.stderr, rb.stderr);
    assert_eq!(model.requests().await.len(), 1, "the two runners made more than one model call");

    let log = git(&remote, &["show", "refs/prbot/state:cycles.jsonl"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    for r in [&ra, &rb] {
        let id = r.record()["cycle_id"].as_str().unwrap().to_string();
        git(&remote, &["cat-file", "-e", &format!("refs/prbot/state:cycles/{id}.json")]);
    }
    let ledger: Value = serde_json::from_str(&git(
        &remote,
        &["show", &format!("refs/prbot/state:cost-{}.json", chrono::Utc::now().format("%Y-%m-%d"))],
    ))
    .unwrap();
    assert_eq!(ledger["calls"], 1);

    // A new runner starts empty and sees it all.
    let c = clone("runner-c");
    let pc = runner_pipeline(&env, &model, "c", state);
    let out = prbot(&["history"], &c, &pc).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("dry_run") && table.contains("skipped_cost"), "{table}");
    // And the next cycle learns from the first.
    assert!(c.join(".git").exists() && git(&c, &["status", "--porcelain"]).is_empty());
}

// ---------------------------------------------------------------- prbot serve

const SECRET: &str = "webhook-secret-4f1d";
const RUN_TOKEN: &str = "run-token-8c2e";

/// A running `prbot serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Serves `env`'s repository with a pipeline whose cycle is one `run:` step.
    async fn start(env: &Env, step: &str, settings: &str, args: &[&str]) -> Server {
        let model = Model::good().await;
        let stages = format!("  - run: {step}\n");
        let pipeline = env.write_pipeline(&model, &Pipeline::default().stages(&stages).settings(settings));
        let log = env.tmp.path().join(format!("serve-{}.log", rand_id()));
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
            .arg(&env.repo)
            .arg("--pipeline")
            .arg(&pipeline)
            .args(args)
            .env("PRBOT_WEBHOOK_SECRET", SECRET)
            .env("PRBOT_RUN_TOKEN", RUN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address in {line:?}: {}", std::fs::read_to_string(&log).unwrap()));
        Server { child, url: format!("http://{addr}"), log }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url)).await.unwrap().text().await.unwrap()
    }

    /// A counter's value for one label, 0 when absent.
    async fn metric(&self, name: &str, label: &str) -> u64 {
        let m = self.metrics().await;
        let key = format!("{name}{{{label}}} ");
        m.lines().find_map(|l| l.strip_prefix(key.as_str())).map_or(0, |v| v.trim().parse().unwrap())
    }

    async fn sum(&self, name: &str) -> u64 {
        let m = self.metrics().await;
        m.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    /// Waits until no cycle runs or waits.
    async fn settle(&self) {
        for _ in 0..600 {
            if self.metrics().await.contains("prbot_queue_depth 0\n") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the queue never emptied: {}", std::fs::read_to_string(&self.log).unwrap());
    }
}

fn rand_id() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn push_body(files: &[&str]) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111",
        "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        "commits": [{"id": "1111111111111111111111111111111111111111", "message": "edit", "added": [], "removed": [], "modified": files}],
        "head_commit": {"id": "1111111111111111111111111111111111111111", "added": [], "removed": [], "modified": files},
    })
    .to_string()
    .into_bytes()
}

#[derive(Clone, Copy)]
enum Style {
    Gitea,
    Github,
}

/// A delivery as the forge sends it, signed with `secret`.
fn delivery(
    server: &Server,
    style: Style,
    id: &str,
    event: &str,
    body: Vec<u8>,
    secret: &str,
) -> reqwest::RequestBuilder {
    let client = reqwest::Client::new();
    let sig = sign(secret, &body);
    match style {
        Style::Gitea => client
            .post(format!("{}/hooks/gitea", server.url))
            .header("x-gitea-event", event)
            .header("x-gitea-delivery", id)
            .header("x-gitea-signature", sig),
        Style::Github => client
            .post(format!("{}/hooks/github", server.url))
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", format!("sha256={sig}")),
    }
    .header("content-type", "application/json")
    .body(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_verified_deduplicated_and_sized() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    for (i, style) in [Style::Gitea, Style::Github].into_iter().enumerate() {
        let id = format!("d-{i}");
        let body = push_body(&["docs/PRD.md"]);
        let r = delivery(&server, style, &id, "push", body.clone(), SECRET).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let reply: Value = r.json().await.unwrap();
        assert_eq!(reply["result"], "queued", "{reply}");
        server.settle().await;

        let again = delivery(&server, style, &id, "push", body.clone(), SECRET).send().await.unwrap();
        assert_eq!(again.status(), 200, "a redelivery");

        let mut tampered = body.clone();
        tampered[5] ^= 1;
        let t = delivery(&server, style, "t", "push", body.clone(), SECRET);
        let t = t.body(tampered);
        assert_eq!(t.send().await.unwrap().status(), 401, "a tampered body");
        assert_eq!(
            delivery(&server, style, "w", "push", body.clone(), "wrong-secret")
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let bare = reqwest::Client::new()
            .post(format!("{}/hooks/{}", server.url, if i == 0 { "gitea" } else { "github" }))
            .header("x-gitea-event", "push")
            .header("x-github-event", "push")
            .body(body.clone());
        assert_eq!(bare.send().await.unwrap().status(), 401, "no signature");

        let big = vec![b' '; 2 * 1024 * 1024];
        assert_eq!(delivery(&server, style, "big", "push", big, SECRET).send().await.unwrap().status(), 413);
        let bad = delivery(&server, style, &format!("bad-{i}"), "push", b"{not json".to_vec(), SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let other = delivery(&server, style, &format!("o-{i}"), "issues", b"{}".to_vec(), SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 202);
        let reply: Value = other.json().await.unwrap();
        assert_eq!(reply["result"], "ignored");
        assert!(reply["message"].as_str().unwrap().contains("`issues` events"), "{reply}");
    }
    server.settle().await;
    assert_eq!(
        server.sum("prbot_cycles_total").await,
        2,
        "one cycle per first delivery, none for the redeliveries"
    );
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"duplicate\"").await, 2);
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"unauthorized\"").await, 6);
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"too_large\"").await, 2);
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"bad_request\"").await, 2);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains(SECRET), "the secret reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_deliveries_runs_at_most_two_cycles() {
    let env = Env::new();
    // The first cycle holds on until every delivery was answered, however slow the machine.
    // In prbot's clone: readable from the sandbox and kept between cycles, unlike the tree.
    let release = env.work.join("clone.git/release");
    let step = format!("while [ ! -f {} ]; do sleep 0.05; done", release.display());
    let server = Server::start(&env, &step, "", &[]).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let req = delivery(
            &server,
            Style::Gitea,
            &format!("burst-{i}"),
            "push",
            push_body(&["docs/PRD.md"]),
            SECRET,
        );
        set.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(r) = set.join_next().await {
        *statuses.entry(r.unwrap().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&202), Some(&1000), "{statuses:?}");
    std::fs::write(&release, "").unwrap();
    server.settle().await;
    let cycles = server.sum("prbot_cycles_total").await;
    assert!((1..=2).contains(&cycles), "{cycles} cycles");
    assert_eq!(server.sum("prbot_deliveries_total").await, 1000, "{}", server.metrics().await);
    let queued = server.metric("prbot_deliveries_total", "result=\"queued\"").await;
    assert_eq!(queued, cycles, "every queued trigger ran, once");
    assert!(
        server.metrics().await.contains("prbot_last_cycle_timestamp_seconds 1"),
        "no time of the last cycle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_that_do_not_touch_the_prd_start_nothing_unless_configured() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    let r = delivery(&server, Style::Github, "p1", "push", push_body(&["src/lib.rs"]), SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["result"], "ignored");
    assert!(reply["message"].as_str().unwrap().contains("does not change docs/PRD.md"));
    assert!(server.metrics().await.contains("prbot_queue_depth 0\n"));
    assert_eq!(server.sum("prbot_cycles_total").await, 0);
    drop(server);

    let server = Server::start(&env, "true", "serve:\n  on_push: any", &[]).await;
    let r = delivery(&server, Style::Github, "p2", "push", push_body(&["src/lib.rs"]), SECRET)
        .send()
        .await
        .unwrap();
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["result"], "queued", "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_runs_health_and_stats() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/healthz", server.url)).send().await.unwrap().status(), 200);
    let denied = client.post(format!("{}/run", server.url)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let ok = client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 202);
    server.settle().await;
    let stats: Value =
        client.get(format!("{}/stats", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["cycles"], 1, "{stats}");
    assert_eq!(server.metric("prbot_cycles_total", "outcome=\"dry_run\"").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_cycle_finish() {
    let env = Env::new();
    let marker = env.marker("started");
    let step = format!("touch {}; sleep 1", marker.display());
    let mut server = Server::start(&env, &step, "", &[]).await;
    let client = reqwest::Client::new();
    client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
    while !marker.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(env.state().join("cycles.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "the running cycle did not finish");
    assert!(log.contains("dry_run"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_built_in_schedule_feeds_the_queue() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &["--schedule", "* * * * * *"]).await;
    for _ in 0..100 {
        if server.sum("prbot_cycles_total").await >= 2 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no scheduled cycles: {}", std::fs::read_to_string(&server.log).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_schedule_is_a_usage_error() {
    let env = Env::new();
    let pipeline = env.write_pipeline(&Model::good().await, &Pipeline::default());
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--schedule", "every hour", "--repo"])
        .arg(&env.repo)
        .arg("--pipeline")
        .arg(pipeline)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`every hour` is not a cron expression"));
}

// ---------------------------------------------------------------- workflows and init

#[test]
fn the_workflows_are_valid_and_call_flags_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    for wf in [".gitea/workflows/prbot.yml", ".github/workflows/prbot.yml"] {
        let text = std::fs::read_to_string(format!("{root}/{wf}")).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{wf}: {e}"));
        assert!(doc["on"]["schedule"][0]["cron"].is_string(), "{wf}: no schedule");
        assert!(doc["on"]["workflow_dispatch"]["inputs"]["dry_run"].is_object(), "{wf}: no dry-run input");
        let steps = doc["jobs"]["cycle"]["steps"].as_array().unwrap();
        let runs: Vec<&str> =
            steps.iter().filter_map(|s| s["run"].as_str()).filter(|r| r.contains("prbot\" run")).collect();
        assert_eq!(runs.len(), 1, "{wf}: no step runs prbot");
        let line = runs[0].lines().find(|l| l.contains("prbot\" run")).unwrap();
        let help =
            String::from_utf8(Command::new(BIN).args(["run", "--help"]).output().unwrap().stdout).unwrap();
        let flags: Vec<&str> = line.split_whitespace().filter(|w| w.starts_with("--")).collect();
        assert!(flags.len() >= 3, "{line}");
        for f in flags {
            assert!(help.contains(f), "{wf} calls `prbot run {f}`, which does not exist");
        }
        let env_dry = text.contains("'--dry-run'");
        assert!(env_dry && help.contains("--dry-run"), "{wf}: the dry-run input must map to --dry-run");
    }
}

#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite() {
    for forge in ["gitea", "github"] {
        let dir = tempfile::tempdir().unwrap();
        let init = |force: bool| {
            let mut c = Command::new(BIN);
            c.args(["init", "--forge", forge, "--repo"]).arg(dir.path());
            if force {
                c.arg("--force");
            }
            c.output().unwrap()
        };
        let out = init(false);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let wf = dir.path().join(format!(".{forge}/workflows/prbot.yml"));
        assert!(wf.exists());
        let pipeline = dir.path().join("pipelines/default.yml");
        let v = Command::new(BIN).arg("validate").arg(&pipeline).output().unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
        std::fs::write(&pipeline, "# mine\n").unwrap();
        let again = init(false);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
        assert_eq!(std::fs::read_to_string(&pipeline).unwrap(), "# mine\n", "init overwrote a file");
        assert!(init(true).status.success());
        assert_ne!(std::fs::read_to_string(&pipeline).unwrap(), "# mine\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_runners_and_readers_lose_no_record() {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    let state = "state:\n  backend: git\n  remote: origin\nbudget:\n  calls_per_day: 100\npolicy:\n  gaps:\n    skip_after_failures: 0";
    let runners: Vec<(PathBuf, PathBuf)> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let dir = clone_of(&env, &remote, &format!("runner-{name}"));
            (dir, runner_pipeline(&env, &model, name, state))
        })
        .collect();
    // Readers loop on runner a's clone, whose state dir its cycles write to.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = ["stats", "history"]
        .into_iter()
        .map(|cmd| {
            let (repo, pipeline, stop) = (runners[0].0.clone(), runners[0].1.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = prbot(&[cmd, "--json"], &repo, &pipeline).output();
                }
            })
        })
        .collect();
    let cycles: Vec<_> =
        runners.iter().flat_map(|(repo, p)| (0..2).map(move |_| (repo.clone(), p.clone()))).collect();
    let handles: Vec<_> = cycles
        .into_iter()
        .map(|(repo, p)| {
            std::thread::spawn(move || Run::from(prbot(&["run", "--json"], &repo, &p).output().unwrap()))
        })
        .collect();
    let runs: Vec<Run> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let mut ids = Vec::new();
    for run in &runs {
        // One runner's cycles may meet each other's lock; nothing may fail for a state reason.
        let r = run.record();
        assert!(
            matches!(r["outcome"].as_str().unwrap(), "dry_run" | "skipped_locked"),
            "{}\n{}",
            r["reason"],
            run.stderr
        );
        ids.push(r["cycle_id"].as_str().unwrap().to_string());
    }
    let log = git(&remote, &["show", "refs/prbot/state:cycles.jsonl"]);
    let on_ref: Vec<String> = git(&remote, &["ls-tree", "--name-only", "refs/prbot/state:cycles"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(log.lines().count(), runs.len(), "cycles.jsonl:\n{log}");
    for id in ids {
        assert!(on_ref.contains(&format!("{id}.json")), "the record of {id} is missing from the ref");
        assert!(log.contains(&id), "{id} is missing from cycles.jsonl");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_pushed_into_the_state_ref_is_refused() {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    let runner = clone_of(&env, &remote, "runner");
    let p = runner_pipeline(&env, &model, "a", "state:\n  backend: git\n  remote: origin");
    Run::from(prbot(&["run", "--json"], &runner, &p).output().unwrap()).expect("dry_run", 0);
    // Someone with push access makes cycles.jsonl a link to a file of the runner's user.
    let target = env.tmp.path().join("profile");
    std::fs::write(&target, "# the user's\n").unwrap();
    let evil = clone_of(&env, &remote, "evil");
    git(&evil, &["fetch", "--quiet", "origin", "refs/prbot/state:refs/heads/state"]);
    git(&evil, &["checkout", "--quiet", "state"]);
    std::fs::remove_file(evil.join("cycles.jsonl")).unwrap();
    std::os::unix::fs::symlink(&target, evil.join("cycles.jsonl")).unwrap();
    git(&evil, &["add", "-A"]);
    git(&evil, &["commit", "--quiet", "-m", "link"]);
    git(&evil, &["push", "--quiet", "origin", "state:refs/prbot/state"]);
    let state_dir = runner.join(".git/prbot");
    std::fs::remove_dir_all(&state_dir).unwrap();
    let run = Run::from(prbot(&["run", "--json"], &runner, &p).output().unwrap());
    let r = run.expect("internal_error", 1);
    assert!(
        r["reason"].as_str().unwrap().contains("cycles.jsonl")
            && r["reason"].as_str().unwrap().contains("not a regular file"),
        "{}",
        r["reason"]
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "# the user's\n", "the link was followed");
    assert!(std::fs::symlink_metadata(state_dir.join("cycles.jsonl"))
        .map(|m| !m.file_type().is_symlink())
        .unwrap_or(true));
}
