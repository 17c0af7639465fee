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
    let remote = env.tmp.path().join("remote.git");
    git(
        env.tmp.path(),
        &["clone", "--quiet", "--bare", &env.repo.display().to_string(), &remote.display().to_string()],
    );
    let clone = |name: &str| {
        let dir = env.tmp.path().join(name);
        git(env.tmp.path(), &["clone", "--quiet", &remote.display().to_string(), &dir.display().to_string()]);
        dir
    };
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
