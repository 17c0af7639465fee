//! prbot's integration tests: the built binary against real git repositories in temp
//! folders and a scripted model on loopback.

mod architecture;
mod context;
mod exactness;
mod fakeforge;
mod forges;
mod harness;
mod models;
mod sandbox;
mod triggers;

use harness::*;
use serde_json::Value;
use wiremock::ResponseTemplate;

fn stage_status(r: &Value, id: &str) -> String {
    r["stages"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------- outcomes

#[tokio::test(flavor = "multi_thread")]
async fn ok_opens_a_draft_pr_and_leaves_the_tree_alone() {
    let env = Env::new();
    let model = Model::good().await;
    let before = env.snapshot();
    let run = env.run(&model, &Pipeline::default());
    let r = run.expect("ok", 0);
    assert_eq!(env.snapshot(), before, "the user's tree, index or HEAD changed");

    let gap = &r["gap"];
    assert!(gap["id"].as_str().unwrap().starts_with("make-greet-sh-say-hello-to-"), "{gap}");
    let branch = format!("prbot/{}", gap["id"].as_str().unwrap());
    assert_eq!(r["branch"], branch.as_str());
    assert_eq!(env.branches(), vec![branch.clone()]);
    assert_eq!(git(&env.repo, &["show", &format!("{branch}:greet.sh")]), "echo hello world");
    assert_eq!(git(&env.repo, &["log", "-1", "--format=%an <%ae>", &branch]), "prbot <prbot@localhost>");
    assert_eq!(
        r["files"],
        serde_json::json!([{"path": "greet.sh", "mode": "UPDATE", "file_mode": "100644"}])
    );
    assert_eq!(r["model"]["total_tokens"], 120);
    assert_eq!(r["tests"][0]["passed"], true);

    let url = r["pr"]["url"].as_str().unwrap();
    let pr: Value =
        serde_json::from_slice(&std::fs::read(url.trim_start_matches("file://")).unwrap()).unwrap();
    assert_eq!(pr["draft"], true);
    assert_eq!(pr["head"], branch.as_str());
    assert_eq!(pr["base"], "main");
    let body = pr["body"].as_str().unwrap();
    for part in [
        "Make `greet.sh` say hello to the world",
        "Greet the world.",
        "ADD: 0 · UPDATE: 1 · NOOP: 0",
        "`greet.sh` (UPDATE, 100644)",
        "`sh check.sh`: passed",
        "Prior attempts",
    ] {
        assert!(body.contains(part), "PR body lacks {part:?}:\n{body}");
    }
    let record_file = env.state().join("cycles").join(format!("{}.json", r["cycle_id"].as_str().unwrap()));
    let on_disk: Value = serde_json::from_slice(&std::fs::read(record_file).unwrap()).unwrap();
    assert_eq!(on_disk, r);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commit_holds_the_change_and_not_what_the_tests_left_behind() {
    let env = Env::new();
    let model = Model::proposing(&[
        ("greet.sh", false, "echo hello world\n"),
        ("NEWS.md", true, "greets the world\n"),
    ])
    .await;
    let p = Pipeline::default().tests(&["sh check.sh && echo junk > build.log"]);
    let r = env.run(&model, &p).expect("ok", 0);
    let files = git(&env.repo, &["ls-tree", "-r", "--name-only", r["branch"].as_str().unwrap()]);
    assert!(files.lines().any(|f| f == "NEWS.md"), "{files}");
    assert!(!files.contains("build.log"), "test output was committed: {files}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_pr_makes_a_dry_run_on_a_local_branch() {
    let env = Env::new();
    let model = Model::good().await;
    let before = env.snapshot();
    let r = env.run(&model, &Pipeline::default().without_pr()).expect("dry_run", 0);
    assert_eq!(env.snapshot(), before);
    assert_eq!(stage_status(&r, "pr"), "disabled");
    assert_eq!(r["proposal"]["summary"], "Greet the world.");
    assert!(r["pr"].is_null());
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(git(&env.repo, &["show", &format!("{branch}:greet.sh")]), "echo hello world");
    assert!(!env.state().join("pulls").exists(), "a dry run opened a PR");
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_content_is_a_noop_without_tests() {
    let env = Env::new();
    let model = Model::proposing(&[("greet.sh", false, "echo hello\n")]).await;
    let r = env.run(&model, &Pipeline::default()).expect("cycle_noop", 0);
    assert_eq!(r["files"][0]["mode"], "NOOP");
    assert_eq!(stage_status(&r, "test"), "not_reached");
    assert!(r["tests"].as_array().unwrap().is_empty());
    assert!(env.branches().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_file_skips_before_anything_else() {
    let env = Env::new();
    env.write("bot.paused", "holiday\n");
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default()).expect("skipped_pause", 0);
    assert_reason(&r, "bot.paused");
    assert!(model.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_cycle_while_one_runs_is_skipped_locked() {
    let env = Env::new();
    let model = Model::good().await;
    let started = env.marker("started");
    let release = env.marker("release");
    let wait =
        format!("touch {}; while [ ! -f {} ]; do sleep 0.05; done", started.display(), release.display());
    let first = env.spawn_until(&model, &Pipeline::default().tests(&[&wait]), &started);
    let second = env.run(&model, &Pipeline::default());
    let r = second.expect("skipped_locked", 0);
    assert_reason(&r, "another prbot cycle");
    std::fs::write(&release, "").unwrap();
    let first = Run::from(first.wait_with_output().unwrap());
    first.expect("ok", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_budget_skips_the_cycle() {
    let env = Env::new();
    let model = Model::good().await;
    let p = Pipeline::default().without_pr().settings("budget:\n  calls_per_day: 1");
    env.run(&model, &p).expect("dry_run", 0);
    let r = env.run(&model, &p).expect("skipped_cost", 0);
    assert_reason(&r, "1 of 1 model calls");
    assert_eq!(model.requests().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_budget_holds_with_the_guard_stage_removed() {
    let env = Env::new();
    let model = Model::good().await;
    let stages = STAGES.replace("  - uses: guard\n", "").replace("  - uses: pr\n", "");
    let p = Pipeline::default()
        .stages(&stages)
        .settings("budget:\n  calls_per_day: 1\n  tokens_per_day: 1000000");
    env.run(&model, &p).expect("dry_run", 0);
    let r = env.run(&model, &p).expect("skipped_cost", 0);
    assert_eq!(stage_status(&r, "propose"), "ended");
    assert_eq!(model.requests().await.len(), 1, "the model was called past the cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_changes_skip_but_untracked_files_do_not() {
    let env = Env::new();
    let model = Model::good().await;
    env.write("notes.txt", "untracked scratch\n");
    let p = Pipeline::default().without_pr();
    env.run(&model, &p).expect("dry_run", 0);
    env.write("greet.sh", "echo edited by the user\n");
    let before = env.snapshot();
    let r = env.run(&model, &p).expect("skipped_dirty_tree", 0);
    assert_reason(&r, "greet.sh");
    assert_eq!(env.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_can_refuse_to_run() {
    let env = Env::new();
    let model = Model::good().await;
    let r = env
        .run(&model, &Pipeline::default().settings("policy:\n  run:\n    enabled: false"))
        .expect("skipped_policy", 0);
    assert_reason(&r, "policy.run.enabled");

    let cmd = r#"read input; case "$input" in *should_run_cycle*) echo '{"allow": false, "reason": "freeze week"}';; *) echo '{"allow": true, "reason": ""}';; esac"#;
    let p =
        Pipeline::default().settings(&format!("policy:\n  command: {}", serde_json::to_string(cmd).unwrap()));
    let r = env.run(&model, &p).expect("skipped_policy", 0);
    assert_eq!(r["reason"], "freeze week");
    assert!(model.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_eligible_gap_says_why() {
    let env = Env::with_prd(
        "# PRD\n- [x] done [bot-eligible]\n- [ ] untagged\n```\n- [ ] fenced [bot-eligible]\n```\n",
    );
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default()).expect("skipped_no_gap", 0);
    assert_reason(&r, "no unchecked");
    assert!(model.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_that_failed_three_times_is_passed_over() {
    let env = Env::new();
    let model = Model::good().await;
    let failing = Pipeline::default().tests(&["exit 1"]);
    for _ in 0..3 {
        env.run(&model, &failing).expect("tests_failed", 0);
    }
    let r = env.run(&model, &failing).expect("skipped_no_gap", 0);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("last 3 attempts all failed"), "{reason}");
    assert_eq!(model.requests().await.len(), 3);
    // Raising the threshold lets it be tried again.
    let p = Pipeline::default().settings("policy:\n  gaps:\n    skip_after_failures: 5");
    env.run(&model, &p).expect("ok", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_from_the_model_is_model_failed() {
    let env = Env::new();
    let model = Model::replying("Sure! Here is what I would change: everything.").await;
    let r = env.run(&model, &Pipeline::default()).expect("model_failed", 1);
    assert_reason(&r, "Sure! Here is what");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_model_failed_and_never_leaks_the_key() {
    let env = Env::new();
    let body = format!("{{\"error\": \"internal error for key {MODEL_KEY}\"}}");
    let model = Model::responding(ResponseTemplate::new(500).set_body_string(body)).await;
    let run = env.run(&model, &Pipeline::default());
    let r = run.expect("model_failed", 1);
    assert_reason(&r, "HTTP 500");
    let auth = model.requests().await[0].headers.get("authorization").unwrap().to_str().unwrap().to_string();
    assert_eq!(auth, format!("Bearer {MODEL_KEY}"));
    let on_disk = std::fs::read_to_string(env.state().join("cycles.jsonl")).unwrap();
    for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr), ("index", &on_disk)] {
        assert!(!text.contains(MODEL_KEY), "the key leaked into {what}");
    }
    assert!(run.stdout.contains("[REDACTED]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_guardrail_rejects_its_paths() {
    let env = Env::new();
    let outside = env.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.repo.join("escape")).unwrap();
    // The pipeline file is protected when it lives in the repository.
    let pipeline = "pipelines/prbot.yml";
    env.write(pipeline, "# replaced below\n");
    env.commit("a symlink and a pipeline");
    for path in [
        "/etc/passwd",
        "../outside/x.txt",
        "src/../../outside/x.txt",
        ".git/hooks/pre-commit",
        ".env",
        ".env.production",
        "config/server.pem",
        "deploy.key",
        "id_rsa",
        ".git-credentials",
        "docs/PRD.md",
        "docs//PRD.md",
        "docs/./prd.md",
        "docs/ADR-0007-storage.md",
        "docs/DECISIONS.md",
        "Cargo.lock",
        ".gitea/workflows/ci.yml",
        ".github/workflows/ci.yml",
        "escape/x.txt",
        pipeline,
        "PIPELINES/prbot.yml",
    ] {
        let model = Model::proposing(&[
            ("fine.txt", true, "ok\n"),
            (path, path.starts_with('/') || !env.repo.join(path).exists(), "pwned\n"),
        ])
        .await;
        let p = Pipeline::default()
            .settings("policy:\n  gaps:\n    skip_after_failures: 0\nbudget:\n  calls_per_day: 100");
        let run = env.run_with_pipeline_at(&model, &p, &env.repo.join(pipeline));
        let r = run.expect("proposal_rejected", 0);
        assert!(r["reason"].as_str().unwrap().contains('`'), "{path}: {}", r["reason"]);
        assert_eq!(stage_status(&r, "apply"), "ended", "{path}");
        assert!(env.branches().is_empty(), "{path} produced a branch");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "a write escaped the repository");
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_scores_the_proposal() {
    let env = Env::new();
    let model = Model::proposing(&[("a.txt", true, "a\n"), ("b.txt", true, "b\n")]).await;
    let r = env
        .run(&model, &Pipeline::default().settings("policy:\n  proposal:\n    max_files: 1"))
        .expect("proposal_rejected", 0);
    assert_reason(&r, "max_files");
    let r = env
        .run(&model, &Pipeline::default().settings("policy:\n  proposal:\n    deny: [\"b.*\"]"))
        .expect("proposal_rejected", 0);
    assert_reason(&r, "b.txt");
    env.run(&model, &Pipeline::default().settings("policy:\n  proposal:\n    allow: [\"*.txt\"]"))
        .expect("ok", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proposal_that_contradicts_the_tree_is_apply_failed() {
    let env = Env::new();
    let model = Model::proposing(&[("greet.sh", true, "echo hi\n")]).await;
    let r = env.run(&model, &Pipeline::default()).expect("apply_failed", 1);
    assert_reason(&r, "already exists");
    let model = Model::proposing(&[("missing.sh", false, "echo hi\n")]).await;
    let r = env.run(&model, &Pipeline::default()).expect("apply_failed", 1);
    assert_reason(&r, "no such file");
}

#[tokio::test(flavor = "multi_thread")]
async fn red_tests_keep_the_failure_and_leave_the_tree_alone() {
    let env = Env::new();
    let model = Model::good().await;
    let before = env.snapshot();
    let test = "echo 'running 2 tests'; echo 'assertion failed: greeting == \"hi\"' >&2; echo 'FAIL greet_test'; exit 3";
    let r = env.run(&model, &Pipeline::default().tests(&[test])).expect("tests_failed", 0);
    assert_eq!(env.snapshot(), before);
    assert_eq!(r["tests"][0]["exit_code"], 3);
    let excerpt = r["tests"][0]["excerpt"].as_str().unwrap();
    assert!(excerpt.contains("FAIL greet_test") && excerpt.contains("assertion failed"), "{excerpt}");
    assert!(env.branches().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_that_hangs_is_killed_with_its_children() {
    let env = Env::new();
    let model = Model::good().await;
    let test = "sleep 3103 & wait";
    let stages = STAGES.replace(
        "commands: [\"sh check.sh\"]",
        &format!("commands: [{}]\n    timeout: 2s", serde_json::to_string(test).unwrap()),
    );
    let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("tests_failed", 0);
    assert_eq!(r["tests"][0]["timed_out"], true);
    assert!(procs_with("sleep 3103").is_empty(), "the grandchild survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_can_refuse_the_pr() {
    let env = Env::new();
    let model = Model::good().await;
    let r = env
        .run(&model, &Pipeline::default().settings("policy:\n  pr:\n    open: false"))
        .expect("pr_skipped_by_policy", 0);
    assert_reason(&r, "policy.pr.open");
    assert!(!env.state().join("pulls").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_branch_that_cannot_be_made_is_pr_failed() {
    let env = Env::new();
    // A branch named `prbot` makes every `prbot/...` ref impossible.
    git(&env.repo, &["branch", "prbot"]);
    let model = Model::good().await;
    let before = env.snapshot();
    let r = env.run(&model, &Pipeline::default()).expect("pr_failed", 1);
    assert_reason(&r, "prbot/");
    assert_eq!(env.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_that_is_not_a_commit_is_an_internal_error_with_a_record() {
    let env = Env::new();
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default().base("no-such-branch")).expect("internal_error", 1);
    assert_reason(&r, "no-such-branch");
    assert!(env.state().join("cycles").join(format!("{}.json", r["cycle_id"].as_str().unwrap())).exists());
}

// ---------------------------------------------------------------- cycles over time

#[tokio::test(flavor = "multi_thread")]
async fn a_state_dir_inside_the_tree_never_makes_it_dirty() {
    let env = Env::new();
    let model = Model::good().await;
    let p = Pipeline::default().settings("state:\n  dir: .prbot-state");
    env.run(&model, &p).expect("ok", 0);
    env.run(&model, &p).expect("ok", 0);
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
async fn a_second_pr_cycle_on_a_gap_updates_the_same_pr() {
    let env = Env::new();
    let model = Model::good().await;
    let a = env.run(&model, &Pipeline::default()).expect("ok", 0);
    let b = env.run(&model, &Pipeline::default()).expect("ok", 0);
    assert_eq!(a["pr"]["number"], b["pr"]["number"]);
    assert_eq!(std::fs::read_dir(env.state().join("pulls")).unwrap().count(), 1);
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
    // The worktree was reset: nothing the model wrote is left in it.
    assert_eq!(std::fs::read_to_string(env.work.join("worktree/greet.sh")).unwrap(), "echo hello\n");
    assert_eq!(stage_status(&r, "test"), "ended");
    // And the next cycle runs normally.
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
    // As if the kill had hit an atomic write half-way.
    let half = env.state().join("cycles").join(".prbot-tmp-half");
    std::fs::create_dir_all(half.parent().unwrap()).unwrap();
    std::fs::write(&half, "{\"cycle_").unwrap();
    // Written two hours ago: no write in flight can still be busy with it.
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&half).unwrap().set_modified(two_hours_ago).unwrap();
    let fresh = env.state().join("cycles").join(".prbot-tmp-in-flight");
    std::fs::write(&fresh, "{\"cycle_").unwrap();
    let before = env.snapshot();
    let r = env.run(&model, &Pipeline::default().without_pr()).expect("dry_run", 0);
    assert_eq!(env.snapshot(), before);
    assert_eq!(r["tests"][0]["passed"], true);
    assert!(!half.exists(), "the half-written file was left");
    assert!(fresh.exists(), "a write that may still be in flight was swept");
    assert!(procs_with("sleep 3102").is_empty(), "the killed cycle's test still runs");
}

/// Asserts that the record's reason mentions `needle`.
fn assert_reason(r: &Value, needle: &str) {
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains(needle), "the reason {reason:?} does not mention {needle:?}");
}

/// Whether the process whose pid is in `pidfile` still runs (a zombie does not count).
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

// ---------------------------------------------------------------- steps, secrets, observer

#[tokio::test(flavor = "multi_thread")]
async fn run_steps_execute_in_the_worktree_and_can_fail_the_cycle() {
    let env = Env::new();
    let model = Model::good().await;
    let stages = STAGES.replace(
        "  - uses: test\n",
        "  - id: lint\n    run: grep -q world greet.sh\n  - run: exit 7\n    continue-on-error: true\n  - uses: test\n",
    );
    let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("ok", 0);
    assert_eq!(stage_status(&r, "lint"), "passed");
    assert_eq!(stage_status(&r, "run-6"), "failed_continued");
    assert!(r["warnings"][0].as_str().unwrap().contains("exit 7"));

    let stages = STAGES
        .replace("  - uses: test\n", "  - id: fmt\n    run: echo 'bad format' >&2; exit 2\n  - uses: test\n");
    let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("tests_failed", 0);
    assert_eq!(stage_status(&r, "fmt"), "ended");
    assert_eq!(stage_status(&r, "test"), "not_reached");
    assert!(r["tests"][0]["excerpt"].as_str().unwrap().contains("bad format"));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_commands_never_see_secrets() {
    let env = Env::new();
    let model = Model::good().await;
    let test = "env";
    let mut cmd = env.command(
        &model,
        &Pipeline::default().tests(&[test]).settings("forge:\n  kind: local\n  token_env: PRBOT_IT_FORGE"),
    );
    cmd.env("PRBOT_IT_FORGE", "forge-canary-91b2")
        .env("SOME_API_TOKEN", "t1")
        .env("DB_PASSWORD", "p1")
        .env("HARMLESS", "kept");
    let r = Run::from(cmd.output().unwrap()).expect("ok", 0);
    // The log keeps what the command printed.
    let seen = std::fs::read_to_string(r["tests"][0]["log"].as_str().unwrap()).unwrap();
    for leaked in [MODEL_KEY, "forge-canary-91b2", "SOME_API_TOKEN", "DB_PASSWORD", MODEL_KEY_ENV] {
        assert!(!seen.contains(leaked), "{leaked} reached the test command");
    }
    assert!(seen.contains("HARMLESS=kept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_observer_gets_the_record_and_its_absence_is_harmless() {
    let env = Env::new();
    let model = Model::good().await;
    let observer = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&observer)
        .await;
    let p = Pipeline::default().settings(&format!("observer:\n  url: {}/cycles", observer.uri()));
    let r = env.run(&model, &p).expect("ok", 0);
    let got = observer.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    let posted: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(posted["cycle_id"], r["cycle_id"]);

    let run = env.run(&model, &Pipeline::default().settings("observer:\n  url: http://127.0.0.1:9/cycles"));
    run.expect("ok", 0);
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);
}

// ---------------------------------------------------------------- the pipeline file

fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "p.yml");
    (out.status.code().unwrap(), stderr)
}

#[test]
fn yaml_errors_name_the_file_and_the_place() {
    let cases: &[(&str, &str)] = &[
        ("stages:\n  - uses: guard\n    colour: red\n", "p.yml:3:5: stages[0]: unknown field `colour`"),
        ("budget:\n  calls_per_dya: 3\nstages:\n  - uses: guard\n", "p.yml:2:3: budget: unknown field `calls_per_dya`"),
        ("stages:\n  - uses: guard\n  - uses: lint\n", "p.yml:3:11: stages[1].uses: unknown variant `lint`"),
        ("stages:\n  - uses: guard\n    timeout: 9 parsecs\n", "p.yml:2:5: stages[0]: bad duration `9 parsecs`"),
        ("stages:\n  - uses: pick-gap\n  - uses: apply\n  - uses: propose\n", "p.yml: stage #2 (id: apply): `apply` needs a proposal, but no enabled stage before it provides one; move it after the `propose` stage"),
        ("stages:\n  - uses: pick-gap\n    enabled: false\n  - uses: propose\n", "p.yml: stage #2 (id: propose): `propose` needs a gap"),
        ("stages:\n  - uses: test\n    with:\n      comands: [x]\n", "p.yml: stage #1 (id: test): with: unknown field `comands`"),
        ("stages:\n  - run: echo\n    uses: guard\n", "has both `uses:` and `run:`"),
        ("stages: [\n", "p.yml:2:1"),
    ];
    for (yaml, want) in cases {
        let (code, stderr) = validate(yaml);
        assert_eq!(code, 2, "{yaml}");
        assert!(stderr.contains(want), "for:\n{yaml}\nwanted {want:?}, got:\n{stderr}");
    }
}

#[test]
fn the_shipped_pipelines_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for f in ["pipelines/default.yml", "pipelines/dry-run.yml"] {
        let out =
            std::process::Command::new(BIN).arg("validate").arg(format!("{root}/{f}")).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{f}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dry = std::process::Command::new(BIN)
        .arg("validate")
        .arg(format!("{root}/pipelines/dry-run.yml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dry.stdout).contains("dry runs"));
}

#[test]
fn the_readmes_pipelines_are_valid() {
    let readme = include_str!("../../README.md");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let yaml = block.split("```").next().unwrap();
        if !yaml.contains("stages:") {
            continue;
        }
        let file = dir.path().join(format!("readme-{i}.yml"));
        std::fs::write(&file, yaml).unwrap();
        let out = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "README block {i}: {}", String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} pipelines found in README.md");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_pipeline_exits_2_and_runs_nothing() {
    let env = Env::new();
    let model = Model::good().await;
    let run = env.run(&model, &Pipeline::default().settings("bogus: 1"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("unknown field `bogus`"), "{}", run.stderr);
    assert!(!env.state().exists());
}

// ---------------------------------------------------------------- history and stats

#[tokio::test(flavor = "multi_thread")]
async fn history_and_stats_read_the_records() {
    let env = Env::new();
    let model = Model::good().await;
    env.run(&model, &Pipeline::default().tests(&["exit 1"])).expect("tests_failed", 0);
    let ok = env.run(&model, &Pipeline::default()).expect("ok", 0);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--repo")
            .arg(&env.repo)
            .arg("--pipeline")
            .arg(&env.pipeline_path)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let h = cli(&["history"]);
    let lines: Vec<&str> = h.lines().collect();
    assert_eq!(lines.len(), 3, "{h}");
    assert!(lines[1].contains(" ok ") && lines[1].contains(ok["pr"]["url"].as_str().unwrap()), "{h}");
    assert!(lines[2].contains("tests_failed"), "{h}");
    assert_eq!(cli(&["history", "--limit", "1"]).lines().count(), 2);
    assert_eq!(cli(&["history", "--gap", "no-such-gap"]).lines().count(), 1);

    let s: Value = serde_json::from_str(&cli(&["stats", "--json"])).unwrap();
    assert_eq!(s["cycles"], 2);
    assert_eq!(s["prs_opened"], 1);
    assert_eq!(s["pr_share"], 0.5);
    assert_eq!(s["by_outcome"]["tests_failed"], 1);
    let gap = ok["gap"]["id"].as_str().unwrap();
    assert_eq!(s["by_gap"][gap]["cycles"], 2);
    assert!(cli(&["stats"]).contains("PRs opened: 1 (50%)"));
}

#[test]
fn demo_runs_offline_to_ok() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN).arg("demo").arg("--dir").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("outcome: ok"), "{stdout}");
    let pr_line = stdout.lines().find(|l| l.contains("draft PR record:")).unwrap();
    let pr_path = pr_line.split_once(": ").unwrap().1.trim();
    let pr: Value = serde_json::from_slice(&std::fs::read(pr_path).unwrap()).unwrap();
    assert_eq!(pr["draft"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for stage in ["guard", "pick-gap", "propose", "apply", "test", "pr"] {
        assert!(stderr.contains(&format!("✓ {stage}")), "stage {stage} not shown:\n{stderr}");
    }
}

/// The id prbot gives the gap in [`harness::PRD`].
pub fn gap_id_of(_env: &Env) -> String {
    prbot::gaps(PRD, "[bot-eligible]")[0].id.clone()
}
