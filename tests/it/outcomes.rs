//! One cycle, one outcome: each way a cycle can end, through the binary.

use crate::support::*;
use serde_json::Value;
use wiremock::ResponseTemplate;

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
async fn cycles_no_model_answered_never_pass_a_gap_over() {
    let p = Pipeline::default();
    let p = p.clone().stages(
        &p.stages.replace("      repair_attempts: 0\n", "      repair_attempts: 0\n      retries: 0\n"),
    );
    let answered = |r: &serde_json::Value| -> Vec<bool> {
        r["model_calls"].as_array().unwrap().iter().map(|c| c["answered"].as_bool().unwrap()).collect()
    };

    // An outage: the provider answers every request with a 503.
    let env = Env::new();
    let down = Model::responding(ResponseTemplate::new(503).set_body_string("upstream unavailable")).await;
    for _ in 0..4 {
        let r = env.run(&down, &p).expect("model_failed", 1);
        assert_eq!(answered(&r), [false]);
        assert_eq!(r["outage"], true);
    }
    assert_eq!(down.requests().await.len(), 4, "the gap was passed over during the outage");
    // Back up: the gap is still there to take, and the outage is no prior attempt.
    let up = Model::good().await;
    env.run(&up, &p).expect("ok", 0);
    let prompt = String::from_utf8(up.requests().await[0].body.clone()).unwrap();
    assert!(!prompt.contains("Prior attempts") && !prompt.contains("503"), "{prompt}");

    // The control: a model that answers with nothing usable fails the gap itself.
    let env = Env::new();
    let talker = Model::replying("Sure! I would change everything.").await;
    for _ in 0..3 {
        let r = env.run(&talker, &p).expect("model_failed", 1);
        assert_eq!(answered(&r), [true]);
        assert!(r.get("outage").is_none(), "{}", r["outage"]);
    }
    let r = env.run(&talker, &p).expect("skipped_no_gap", 0);
    assert_reason(&r, "last 3 attempts all failed");
    let prompt = String::from_utf8(talker.requests().await[2].body.clone()).unwrap();
    assert!(prompt.contains("Prior attempts on this gap (2 most recent)"), "{prompt}");
    // Nor is a prompt the model refuses as too long an outage: that may be the gap's doing.
    let env = Env::new();
    let body = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
    let refuses = Model::responding(ResponseTemplate::new(400).set_body_string(body)).await;
    for _ in 0..3 {
        let r = env.run(&refuses, &p).expect("model_failed", 1);
        assert_eq!(answered(&r), [true]);
    }
    env.run(&refuses, &p).expect("skipped_no_gap", 0);
    // A refused key is the setup's, not the gap's.
    let env = Env::new();
    let locked =
        Model::responding(ResponseTemplate::new(401).set_body_string(r#"{"error":"bad key"}"#)).await;
    for _ in 0..4 {
        let r = env.run(&locked, &p).expect("model_failed", 1);
        assert_eq!(r["outage"], true);
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn a_branch_checked_out_in_a_worktree_of_the_user_is_not_moved() {
    let env = Env::new();
    let model = Model::good().await;
    let p = Pipeline::default().without_pr();
    env.run(&model, &p).expect("dry_run", 0);
    let branch = git(&env.repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/prbot/"]);
    let branch = branch.trim();
    let tip = git(&env.repo, &["rev-parse", branch]);
    // The user works on prbot's branch in a second worktree, with a change of their own.
    let wt = env.tmp.path().join("their-worktree");
    git(&env.repo, &["worktree", "add", "--quiet", wt.to_str().unwrap(), branch]);
    std::fs::write(wt.join("greet.sh"), "#!/bin/sh\necho mine\n").unwrap();
    std::fs::write(env.repo.join("greet.sh"), "#!/bin/sh\necho hello\n").unwrap();
    git(&env.repo, &["commit", "--quiet", "-am", "the base moves on"]);
    let r = env.run(&model, &p);
    assert_ne!(r.outcome(), "dry_run", "{}", r.stdout);
    assert!(r.stdout.contains("checked out in one of your worktrees"), "{}", r.stdout);
    assert_eq!(git(&env.repo, &["rev-parse", branch]), tip, "the branch moved under the user");
    assert_eq!(std::fs::read_to_string(wt.join("greet.sh")).unwrap(), "#!/bin/sh\necho mine\n");
}
