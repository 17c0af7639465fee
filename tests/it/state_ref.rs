//! The git state backend: runners that start empty share one history and one budget
//! through the remote's state ref.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Three runners' clones of `remote`, each with its own pipeline and `settings`.
fn three_runners(env: &Env, model: &Model, remote: &Path, settings: &str) -> Vec<(PathBuf, PathBuf)> {
    ["a", "b", "c"]
        .iter()
        .map(|name| {
            (clone_of(env, remote, &format!("runner-{name}")), runner_pipeline(env, model, name, settings))
        })
        .collect()
}

/// Three cycles one after the other on each runner, the runners side by side.
fn three_cycles_each(runners: Vec<(PathBuf, PathBuf)>) -> Vec<Run> {
    let handles: Vec<_> = runners
        .into_iter()
        .map(|(repo, p)| {
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| Run::from(prbot(&["run", "--json"], &repo, &p).output().unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
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

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_runners_and_readers_lose_no_record() {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    let state = "state:\n  backend: git\n  remote: origin\nbudget:\n  calls_per_day: 100\npolicy:\n  gaps:\n    skip_after_failures: 0";
    let runners = three_runners(&env, &model, &remote, state);
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

#[tokio::test(flavor = "multi_thread")]
async fn three_runners_never_exceed_the_days_calls_together() {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    let state = "state:\n  backend: git\n  remote: origin\nbudget:\n  calls_per_day: 5\npolicy:\n  gaps:\n    skip_after_failures: 0";
    let runs = three_cycles_each(three_runners(&env, &model, &remote, state));
    let calls = model.requests().await.len();
    assert!(calls <= 5, "{calls} model calls against calls_per_day: 5");
    let ledger: Value = serde_json::from_str(&git(
        &remote,
        &["show", &format!("refs/prbot/state:cost-{}.json", chrono::Utc::now().format("%Y-%m-%d"))],
    ))
    .unwrap();
    assert_eq!(ledger["calls"].as_u64().unwrap() as usize, calls, "the ledger and the model disagree");
    for run in &runs {
        let r = run.record();
        assert!(
            matches!(r["outcome"].as_str().unwrap(), "dry_run" | "skipped_cost"),
            "{}\n{}",
            r["reason"],
            run.stderr
        );
    }
}

/// Three runners, three cycles each, against `budget` with calls of at most `max_tokens`
/// and `prices`; every cycle ends `dry_run` or `skipped_cost`. Returns what the records
/// say the calls were charged (tokens, dollars) and the day's ledger on the ref.
async fn three_runners_on_a_budget(budget: &str, prices: &str) -> ((u64, f64), Value) {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    let state = format!(
        "state:\n  backend: git\n  remote: origin\nbudget:\n  calls_per_day: 100\n{budget}policy:\n  gaps:\n    skip_after_failures: 0"
    );
    let runners = three_runners(&env, &model, &remote, &state);
    for (_, p) in &runners {
        let text = std::fs::read_to_string(p)
            .unwrap()
            .replace("      repair_attempts: 0\n", "      repair_attempts: 0\n      max_tokens: 4000\n")
            .replace(
                &format!("    api_key_env: {MODEL_KEY_ENV}\n"),
                &format!("    api_key_env: {MODEL_KEY_ENV}\n{prices}"),
            );
        std::fs::write(p, text).unwrap();
    }
    let (mut tokens, mut usd) = (0, 0.0);
    for run in three_cycles_each(runners) {
        let r = run.record();
        let outcome = r["outcome"].as_str().unwrap();
        assert!(matches!(outcome, "dry_run" | "skipped_cost"), "{}\n{}", r["reason"], run.stderr);
        for c in r["model_calls"].as_array().into_iter().flatten() {
            tokens += c["prompt_tokens"].as_u64().unwrap() + c["completion_tokens"].as_u64().unwrap();
            usd += c["usd"].as_f64().unwrap();
        }
    }
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let ledger =
        serde_json::from_str(&git(&remote, &["show", &format!("refs/prbot/state:cost-{day}.json")])).unwrap();
    ((tokens, usd), ledger)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runners_keep_the_token_ledger_exact_and_under_its_cap() {
    // Each call may take its prompt plus 4000 tokens: about two fit at once under the cap.
    let ((tokens, _), ledger) = three_runners_on_a_budget("  tokens_per_day: 12000\n", "").await;
    assert_eq!(ledger["tokens"].as_u64().unwrap(), tokens, "the ledger and the records disagree: {ledger}");
    assert!(tokens <= 12_000, "{tokens} tokens against tokens_per_day: 12000");
    assert!(tokens > 0, "no call was made at all");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runners_keep_the_dollar_ledger_exact_and_under_its_cap() {
    // $1 per million tokens: a call's worst case (prompt + 4000 tokens) is about half a
    // cent, so about two fit at once under a cent.
    let prices = "    prices:\n      qwen2.5-coder:7b: {price_per_mtok_in: 1, price_per_mtok_out: 1}\n";
    let ((_, usd), ledger) = three_runners_on_a_budget("  usd_per_day: 0.01\n", prices).await;
    let charged = ledger["usd"].as_f64().unwrap();
    assert!((charged - usd).abs() < 1e-9, "the ledger says ${charged}, the records ${usd}");
    assert!(charged <= 0.01 + 1e-12, "${charged} against usd_per_day: 0.01");
    assert!(usd > 0.0, "no call was made at all");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_remote_that_is_not_there_ends_the_cycle_before_any_call_and_says_what_to_check() {
    let env = Env::new();
    let model = Model::good().await;
    let r = env
        .run(&model, &Pipeline::default().settings("state:\n  backend: git\n  remote: nowhere"))
        .expect("internal_error", 1);
    assert_reason(&r, "check `state.remote`");
    assert_reason(&r, "nowhere");
    assert_eq!(r["reason"].as_str().unwrap().matches("check").count(), 1, "{r:#}");
    assert!(model.requests().await.is_empty(), "a model was asked without the ledger");
    // The record is kept where the runner is, for the next cycle to push.
    let id = r["cycle_id"].as_str().unwrap();
    assert!(env.state().join(format!("cycles/{id}.json")).exists());
    // Reading the history says what to check, too.
    let out = prbot(&["history"], &env.repo, &env.pipeline_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check `state.remote`") && err.contains("nowhere"), "{err}");
}
