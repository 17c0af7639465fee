//! `run:` steps, secrets kept from project commands, and the observer.

use crate::support::*;
use serde_json::Value;
use wiremock::ResponseTemplate;

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
    env.review("again");
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

    env.review("again");
    let run = env.run(&model, &Pipeline::default().settings("observer:\n  url: http://127.0.0.1:9/cycles"));
    run.expect("ok", 0);
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);
}
