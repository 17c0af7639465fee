//! Cycles over time: back to back, cancelled, killed, and learning from earlier ones.

use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_state_dir_inside_the_tree_never_makes_it_dirty() {
    let env = Env::new();
    let model = Model::good().await;
    let p = Pipeline::default().without_pr().settings("state:\n  dir: .prbot-state");
    env.run(&model, &p).expect("dry_run", 0);
    env.run(&model, &p).expect("dry_run", 0);
    assert_eq!(std::fs::read_dir(env.repo.join(".prbot-state/cycles")).unwrap().count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_cancels_like_sigterm() {
    let env = Env::new();
    let model = Model::good().await;
    let started = env.marker("started");
    let test = format!("touch {}; sleep 300", started.display());
    let before = env.snapshot();
    let child = env.spawn_until(&model, &Pipeline::default().tests(&[&test]), &started);
    signal(child.id(), libc::SIGINT);
    Run::from(child.wait_with_output().unwrap()).expect("cancelled", 130);
    assert_eq!(env.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_cycles_both_run_and_learn_from_each_other() {
    let env = Env::new();
    let model = Model::good().await;
    env.run(&model, &Pipeline::default().tests(&["echo 'FAIL: greets nobody'; exit 1"]))
        .expect("tests_failed", 0);
    let r = env.run(&model, &Pipeline::default()).expect("ok", 0);
    let prompts = model.prompts().await;
    assert_eq!(prompts.len(), 2);
    assert!(!prompts[0].contains("Prior attempts"), "the first prompt has history");
    let p = &prompts[1];
    assert!(p.contains("Prior attempts on this gap (1 most recent):"), "{p}");
    assert!(p.contains("tests_failed") && p.contains("files: greet.sh"), "{p}");
    assert!(p.contains("Learn from these: build on what worked, avoid paths that failed."), "{p}");
    assert!(p.contains("--- greet.sh ---"), "the named file's contents are missing:\n{p}");
    let pr_url = r["pr"]["url"].as_str().unwrap();
    let pr: Value =
        serde_json::from_slice(&std::fs::read(pr_url.trim_start_matches("file://")).unwrap()).unwrap();
    assert!(pr["body"].as_str().unwrap().contains("Prior attempts on this gap (1 most recent):"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_pr_waits_for_review_and_a_comment_gets_a_revision() {
    let env = Env::new();
    let model = Model::good().await;
    let a = env.run(&model, &Pipeline::default()).expect("ok", 0);
    // Nobody said anything: the gap waits, and the model is not asked.
    let waiting = env.run(&model, &Pipeline::default()).expect("skipped_no_gap", 0);
    let reason = waiting["reason"].as_str().unwrap();
    assert!(
        reason.contains("waits for review") && reason.contains(&format!("PR #{}", a["pr"]["number"])),
        "{reason}"
    );
    assert_eq!(model.requests().await.len(), 1, "a waiting gap cost a model call");
    // A maintainer asks for a change: the next cycle revises the same PR with it in the prompt.
    env.review("Please also greet the moon.");
    let b = env.run(&model, &Pipeline::default()).expect("ok", 0);
    assert_eq!(a["pr"]["number"], b["pr"]["number"]);
    assert_eq!(b["pr"]["created"], false);
    let prompt = model.prompts().await.pop().unwrap();
    assert!(prompt.contains("Review feedback") && prompt.contains("Please also greet the moon."), "{prompt}");
    let pr: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state().join(format!("pulls/{}.json", b["pr"]["number"]))).unwrap(),
    )
    .unwrap();
    let answer = pr["comments"].as_array().unwrap().last().unwrap().as_str().unwrap();
    assert!(answer.contains("This revision answers") && answer.contains("greet the moon"), "{answer}");
    assert!(!env.state().join("pulls/2.json").exists(), "a second PR was opened");
    // Answered: the gap waits again.
    env.run(&model, &Pipeline::default()).expect("skipped_no_gap", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_tests_cancels_cleanly() {
    let env = Env::new();
    let model = Model::good().await;
    let started = env.marker("started");
    let test = format!("sleep 3101 & touch {}; wait", started.display());
    let before = env.snapshot();
    let child = env.spawn_until(&model, &Pipeline::default().tests(&[&test]), &started);
    signal(child.id(), libc::SIGTERM);
    let run = Run::from(child.wait_with_output().unwrap());
    let r = run.expect("cancelled", 130);
    assert_eq!(env.snapshot(), before);
    assert!(procs_with("sleep 3101").is_empty(), "the test's child survived");
    assert_eq!(stage_status(&r, "test"), "ended");
    // The next cycle starts from a clean worktree (the same edit applies again rather than
    // being a no-op) and runs normally.
    env.run(&model, &Pipeline::default()).expect("ok", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_leaves_nothing_the_next_run_trips_on() {
    let env = Env::new();
    let model = Model::good().await;
    let started = env.marker("started");
    let test = format!("touch {}; sleep 3102", started.display());
    let mut child = env.spawn_until(&model, &Pipeline::default().tests(&[&test]), &started);
    child.kill().unwrap();
    child.wait().unwrap();
    // The model's edit is still in prbot's worktree, and the lock file is still there.
    assert_eq!(std::fs::read_to_string(env.work.join("worktree/greet.sh")).unwrap(), "echo hello world\n");
    // As if the kill had hit git half-way through writing the clone's index or HEAD.
    for lock in ["index.lock", "HEAD.lock"] {
        std::fs::write(env.work.join("clone.git").join(lock), "").unwrap();
    }
    // As if the kill had hit an atomic write half-way.
    let half = env.state().join("tmp").join(".prbot-tmp-half");
    std::fs::create_dir_all(half.parent().unwrap()).unwrap();
    std::fs::write(&half, "{\"cycle_").unwrap();
    // Written two hours ago: no write in flight can still be busy with it.
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&half).unwrap().set_modified(two_hours_ago).unwrap();
    let fresh = env.state().join("tmp").join(".prbot-tmp-in-flight");
    std::fs::write(&fresh, "{\"cycle_").unwrap();
    let before = env.snapshot();
    let r = env.run(&model, &Pipeline::default().without_pr()).expect("dry_run", 0);
    assert_eq!(env.snapshot(), before);
    assert_eq!(r["tests"][0]["passed"], true);
    assert!(!half.exists(), "the half-written file was left");
    assert!(fresh.exists(), "a write that may still be in flight was swept");
    assert!(procs_with("sleep 3102").is_empty(), "the killed cycle's test still runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_pr_that_conflicts_with_the_base_is_rebuilt_on_it() {
    let env = Env::new();
    let model = Model::good().await;
    let first = env.run(&model, &Pipeline::default()).expect("ok", 0);
    // main moves on and touches the same line: the PR's branch no longer merges.
    env.write("greet.sh", "echo hi there\n");
    env.commit("a maintainer's change to the greeting");
    let r = env.run(&model, &Pipeline::default()).expect("ok", 0);
    assert_eq!(r["pr"]["number"], first["pr"]["number"]);
    assert_eq!(r["pr"]["created"], false);
    assert_eq!(
        git(&env.repo, &["rev-parse", &format!("{}^", r["commit"].as_str().unwrap())]),
        git(&env.repo, &["rev-parse", "main"]),
        "not rebuilt on the new base"
    );
    // A change elsewhere does not conflict: the gap waits.
    env.write("notes.txt", "unrelated\n");
    env.commit("an unrelated change");
    env.run(&model, &Pipeline::default()).expect("skipped_no_gap", 0);
}
