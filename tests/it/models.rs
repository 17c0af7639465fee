//! The model layer through the binary: the ladder, retries, repairs, escalation, edits.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{body_partial_json, body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ok(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(completion(content))
}

/// A model on the mock server: `name` answers with `t`, for at most `times` requests when
/// given, and only to requests whose body contains `when` when given.
async fn answer(
    server: &MockServer,
    name: &str,
    t: ResponseTemplate,
    times: Option<u64>,
    when: Option<&str>,
) {
    let mut m = Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": name})));
    if let Some(w) = when {
        m = m.and(body_string_contains(w));
    }
    let mut m = m.respond_with(t).with_priority(if times.is_some() || when.is_some() { 1 } else { 5 });
    if let Some(n) = times {
        m = m.up_to_n_times(n);
    }
    m.mount(server).await;
}

async fn mock() -> Model {
    Model { server: MockServer::start().await }
}

fn propose(with: &str) -> Pipeline {
    let stages = STAGES.replace(
        "  - uses: propose\n    timeout: 10s\n    with:\n      repair_attempts: 0\n",
        &format!("  - uses: propose\n    timeout: 10s\n    with:\n{with}"),
    );
    Pipeline::default().stages(&stages)
}

const GOOD: &str = "echo hello world\n";

fn good() -> String {
    proposal(&[("greet.sh", false, GOOD)])
}

fn wrong() -> String {
    proposal(&[("greet.sh", false, "echo hello there\n")])
}

/// Requests the mock got for one model.
async fn requests_for(model: &Model, name: &str) -> Vec<Value> {
    model
        .requests()
        .await
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["model"] == name)
        .collect()
}

fn calls(r: &Value) -> Vec<(String, bool, String)> {
    r["model_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["model"].as_str().unwrap().into(),
                c["ok"].as_bool().unwrap(),
                c["error"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ladder_falls_back_after_a_500_a_timeout_and_garbage() {
    let cases: [(ResponseTemplate, &str); 3] = [
        (ResponseTemplate::new(500).set_body_string("{\"error\":\"overloaded\"}"), "HTTP 500"),
        (ok(&good()).set_delay(Duration::from_secs(10)), "no answer within"),
        (ok("I think you should refactor everything."), "unusable reply"),
    ];
    for (bad, why) in cases {
        let env = Env::new();
        let model = mock().await;
        answer(&model.server, "m1", bad, None, None).await;
        answer(&model.server, "m2", ok(&good()), None, None).await;
        let stages = STAGES.replace(
            "timeout: 10s\n    with:\n      repair_attempts: 0\n",
            "timeout: 2s\n    with:\n      models: [local/m1, local/m2]\n      retries: 0\n",
        );
        let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("ok", 0);
        assert_eq!(r["model"]["name"], "local/m2", "{why}");
        let c = calls(&r);
        assert_eq!(c.len(), 2, "{why}: {c:?}");
        assert!(c[0].0 == "local/m1" && !c[0].1 && c[0].2.contains(why), "{why}: {c:?}");
        assert!(c[1].0 == "local/m2" && c[1].1, "{c:?}");
        assert_eq!(r["model"]["calls"], 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_is_retried_after_its_retry_after() {
    let env = Env::new();
    let model = mock().await;
    let limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_string("{\"error\":\"slow down\"}");
    answer(&model.server, "m1", limited, Some(1), None).await;
    answer(&model.server, "m1", ok(&good()), None, None).await;
    let r = env
        .run(&model, &propose("      models: [local/m1]\n      retries: 2\n      repair_attempts: 0\n"))
        .expect("ok", 0);
    let c = calls(&r);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c[0].2.contains("HTTP 429") && c[0].2.contains("retried after 1.0 s (Retry-After)"), "{c:?}");
    assert!(c[1].1);
    assert_eq!(requests_for(&model, "m1").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_reply_is_a_failed_call() {
    let env = Env::new();
    let model = mock().await;
    let mut cut = completion(&good()[..20]);
    cut["choices"][0]["finish_reason"] = json!("length");
    answer(&model.server, "m1", ResponseTemplate::new(200).set_body_json(cut), None, None).await;
    let r = env
        .run(&model, &propose("      models: [local/m1]\n      repair_attempts: 0\n"))
        .expect("model_failed", 1);
    assert!(r["reason"].as_str().unwrap().contains("finish_reason: length"), "{}", r["reason"]);
}

const CHECK: &str = "grep -q world greet.sh || { echo 'FAIL: greet.sh does not greet the world'; exit 1; }";

fn with_check(p: Pipeline) -> Pipeline {
    let stages = p.stages.replace(
        "commands: [\"sh check.sh\"]",
        &format!("commands: [{}]", serde_json::to_string(CHECK).unwrap()),
    );
    p.stages(&stages)
}

#[tokio::test(flavor = "multi_thread")]
async fn red_tests_go_back_to_the_model_and_the_repair_succeeds() {
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "m1", ok(&good()), None, Some("a check failed")).await;
    answer(&model.server, "m1", ok(&wrong()), None, None).await;
    let before = env.snapshot();
    let r = env
        .run(&model, &with_check(propose("      models: [local/m1]\n      repair_attempts: 2\n")))
        .expect("ok", 0);
    assert_eq!(env.snapshot(), before);
    let reqs = requests_for(&model, "m1").await;
    assert_eq!(reqs.len(), 2);
    let second = reqs[1]["messages"].as_array().unwrap();
    assert_eq!(second.len(), 4, "same conversation: system, task, answer, feedback");
    assert_eq!(second[2]["role"], "assistant");
    let feedback = second[3]["content"].as_str().unwrap();
    assert!(feedback.contains(CHECK) && feedback.contains("exit status 1"), "{feedback}");
    assert!(feedback.contains("FAIL: greet.sh does not greet the world"), "{feedback}");
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[0]["kind"].as_str(), attempts[0]["outcome"].as_str()),
        (Some("first"), Some("tests_failed"))
    );
    assert!(attempts[0]["excerpt"].as_str().unwrap().contains("FAIL: greet.sh"));
    assert_eq!((attempts[1]["kind"].as_str(), attempts[1]["outcome"].as_str()), (Some("repair"), Some("ok")));
    assert_eq!(
        git(&env.repo, &["show", &format!("{}:greet.sh", r["branch"].as_str().unwrap())]),
        GOOD.trim_end()
    );
    let test_stage: Vec<&Value> =
        r["stages"].as_array().unwrap().iter().filter(|s| s["id"] == "test").collect();
    assert_eq!(
        test_stage.iter().map(|s| s["status"].as_str().unwrap()).collect::<Vec<_>>(),
        ["repaired", "passed"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_repairs_the_cycle_escalates_once() {
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "small", ok(&wrong()), None, None).await;
    answer(&model.server, "big", ok(&good()), None, None).await;
    let with = "      models: [local/small]\n      repair_attempts: 1\n      escalate_to: local/big\n";
    let r = env.run(&model, &with_check(propose(with))).expect("ok", 0);
    assert_eq!(r["model"]["name"], "local/big");
    let kinds: Vec<&str> =
        r["attempts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["first", "repair", "escalation"]);
    assert_eq!(requests_for(&model, "small").await.len(), 2);
    let big = requests_for(&model, "big").await;
    assert_eq!(big.len(), 1);
    assert!(big[0].to_string().contains("FAIL: greet.sh"), "the escalation lost the conversation");

    // Without a good answer anywhere, the cycle ends with its last attempt's outcome.
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "small", ok(&wrong()), None, None).await;
    answer(&model.server, "big", ok(&wrong()), None, None).await;
    let r = env.run(&model, &with_check(propose(with))).expect("tests_failed", 0);
    assert_eq!(r["attempts"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_budget_ends_a_repair_loop_with_its_last_outcome() {
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "m1", ok(&wrong()), None, None).await;
    let p = with_check(propose("      models: [local/m1]\n      repair_attempts: 5\n"))
        .settings("budget:\n  calls_per_day: 2");
    let r = env.run(&model, &p).expect("tests_failed", 0);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("budget exhausted") && reason.contains("2 of 2 model calls"), "{reason}");
    assert_eq!(requests_for(&model, "m1").await.len(), 2);
    assert_eq!(r["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_replace_edits_exact_loose_missing_and_ambiguous() {
    let edit = |search: &str, replace: &str| {
        json!({"summary": "s", "files": [{"path": "greet.sh", "is_new": false, "edits": [{"search": search, "replace": replace}]}]}).to_string()
    };
    let env = Env::new();
    env.write("greet.sh", "if true; then\n    echo hello\nfi\necho bye\necho bye\n");
    env.commit("indented");
    let no_repair = propose("      repair_attempts: 0\n");
    let cases: [(String, &str, &str); 4] = [
        (
            edit("echo hello", "echo hello world"),
            "ok",
            "if true; then\n    echo hello world\nfi\necho bye\necho bye\n",
        ),
        (
            edit("if true; then\necho hello\n", "if true; then\n    echo hello world\n"),
            "ok",
            "if true; then\n    echo hello world\nfi\necho bye\necho bye\n",
        ),
        (edit("echo goodbye", "x"), "apply_failed", "edit 1 of 1: its search text is not in the file"),
        (edit("echo bye", "x"), "apply_failed", "edit 1 of 1: its search text matches 2 places"),
    ];
    for (reply, outcome, want) in cases {
        let model = Model::replying(&reply).await;
        let run = env.run(&model, &no_repair);
        let r = run.record();
        assert_eq!(r["outcome"], outcome, "{}", r["reason"]);
        if outcome == "ok" {
            assert_eq!(
                git(&env.repo, &["show", &format!("{}:greet.sh", r["branch"].as_str().unwrap())]) + "\n",
                want
            );
            git(&env.repo, &["branch", "-D", r["branch"].as_str().unwrap()]);
            std::fs::remove_dir_all(env.state().join("pulls")).unwrap();
        } else {
            assert!(r["reason"].as_str().unwrap().contains(want), "{}", r["reason"]);
            assert_eq!(run.code, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_that_does_not_apply_goes_back_to_the_model() {
    let env = Env::new();
    let model = mock().await;
    let bad = json!({"summary": "s", "files": [{"path": "greet.sh", "is_new": false, "edits": [{"search": "echo HELLO", "replace": "x"}]}]});
    answer(&model.server, "m1", ok(&good()), None, Some("could not be applied")).await;
    answer(&model.server, "m1", ok(&bad.to_string()), None, None).await;
    let r = env.run(&model, &propose("      models: [local/m1]\n      repair_attempts: 1\n")).expect("ok", 0);
    let reqs = requests_for(&model, "m1").await;
    assert!(reqs[1].to_string().contains("its search text is not in the file"));
    assert_eq!(r["attempts"][0]["outcome"], "apply_failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lazy_rewrite_is_rejected() {
    let env = Env::new();
    let long: String = (0..30).map(|i| format!("echo line {i}\n")).collect();
    env.write("greet.sh", &long);
    env.commit("longer");
    for lazy in ["echo line 0\n# ... rest of file unchanged\n", "echo line 0\necho hello world\n"] {
        let model = Model::proposing(&[("greet.sh", false, lazy)]).await;
        let r = env
            .run(
                &model,
                &propose("      repair_attempts: 0\n")
                    .settings("policy:\n  gaps:\n    skip_after_failures: 0"),
            )
            .expect("proposal_rejected", 0);
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("looks lazy")
                && (reason.contains("elision marker") || reason.contains("shrinks")),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dollar_cap_counts_prices_and_reserves_the_worst_case() {
    let env = Env::new();
    let model = Model::good().await;
    // 120 tokens at $1000 per million tokens is $0.12 a call. Before a call is sent, its
    // worst case (the prompt's bound plus max_tokens: thousands of tokens, dollars here)
    // is reserved; the real cost then replaces it.
    let p = Pipeline::default().without_pr().settings("budget:\n  usd_per_day: 20");
    let yaml_price =
        "    headers: {X-Title: prbot-test}\n    prices:\n      qwen2.5-coder:7b: {price_per_mtok_in: 1000, price_per_mtok_out: 1000}\n";
    let pipeline = env.write_pipeline(&model, &p);
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        &format!("    api_key_env: {MODEL_KEY_ENV}\n"),
        &format!("    api_key_env: {MODEL_KEY_ENV}\n{yaml_price}"),
    );
    let run_it = |text: &str| {
        std::fs::write(&pipeline, text).unwrap();
        Run::from(prbot(&["run", "--json"], &env.repo, &pipeline).output().unwrap())
    };
    let r = run_it(&text).expect("dry_run", 0);
    assert_eq!(model.requests().await[0].headers.get("x-title").unwrap(), "prbot-test");
    assert!((r["model"]["usd"].as_f64().unwrap() - 0.12).abs() < 1e-9, "{}", r["model"]);
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(env.repo.join(format!(".git/prbot/cost-{day}.json"))).unwrap())
            .unwrap();
    assert!(
        (ledger["usd"].as_f64().unwrap() - 0.12).abs() < 1e-9,
        "the reservation was not settled: {ledger}"
    );
    assert_eq!(ledger["tokens"], 120);
    // $19.88 left, but a call that may cost more than that is never sent.
    let r = run_it(
        &text.replace("      repair_attempts: 0\n", "      repair_attempts: 0\n      max_tokens: 30000\n"),
    )
    .expect("skipped_cost", 0);
    assert!(r["reason"].as_str().unwrap().contains("may cost up to"), "{}", r["reason"]);
    assert_eq!(model.requests().await.len(), 1, "a call over the cap was sent");
}

#[test]
fn an_unknown_provider_is_refused_when_the_pipeline_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yml");
    std::fs::write(&file, "providers:\n  local:\n    base_url: http://127.0.0.1:1/v1\nstages:\n  - uses: pick-gap\n  - uses: propose\n    with:\n      models: [local/a, openrouter/x-ai/grok-4.1-fast]\n").unwrap();
    let out = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stage #2 (id: propose): model `openrouter/x-ai/grok-4.1-fast` names provider `openrouter`, which `providers:` does not define (defined: local)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_record_and_the_ledger_agree_on_every_call_failed_or_not() {
    let env = Env::new();
    let model = mock().await;
    // One 500 (retried), then a reply with usage 1000/50.
    let reply = ResponseTemplate::new(200).set_body_json({
        let mut c = completion(&good());
        c["usage"] = json!({"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050});
        c
    });
    answer(&model.server, "m1", ResponseTemplate::new(500).set_body_string("{}"), Some(1), None).await;
    answer(&model.server, "m1", reply, None, None).await;
    let stages = STAGES.replace(
        "timeout: 10s\n    with:\n      repair_attempts: 0\n",
        "timeout: 10s\n    with:\n      models: [local/m1]\n      retries: 1\n      repair_attempts: 0\n",
    );
    let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("ok", 0);
    let calls = r["model_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(!calls[0]["ok"].as_bool().unwrap() && calls[0]["estimated"] == true, "{:?}", calls[0]);
    assert!(calls[0]["prompt_tokens"].as_u64().unwrap() > 0, "the failed call was charged nothing");
    assert_eq!(
        (calls[1]["prompt_tokens"].as_u64(), calls[1]["estimated"].as_bool()),
        (Some(1000), Some(false))
    );
    let sum: u64 = calls
        .iter()
        .map(|c| c["prompt_tokens"].as_u64().unwrap() + c["completion_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(r["model"]["total_tokens"].as_u64().unwrap(), sum, "the record's total is not its calls' sum");
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(env.repo.join(format!(".git/prbot/cost-{day}.json"))).unwrap())
            .unwrap();
    assert_eq!(
        ledger["tokens"].as_u64().unwrap(),
        sum,
        "the ledger charged {ledger} for calls summing to {sum}"
    );
    assert_eq!(ledger["calls"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_spent_by_failed_calls_says_so() {
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "m1", ResponseTemplate::new(503).set_body_string("{}"), None, None).await;
    let stages = STAGES.replace(
        "timeout: 10s\n    with:\n      repair_attempts: 0\n",
        "timeout: 10s\n    with:\n      models: [local/m1]\n      retries: 2\n      repair_attempts: 0\n",
    );
    let p = Pipeline::default().stages(&stages).settings("budget:\n  calls_per_day: 1");
    let r = env.run(&model, &p).expect("skipped_cost", 0);
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("1 of 1 model calls") && reason.contains("failed calls used some of it"),
        "{reason}"
    );
    assert!(reason.contains("local/m1") && reason.contains("503"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_call_records_how_long_the_model_took() {
    let env = Env::new();
    let slow = Model::responding(
        ok(&proposal(&[("greet.sh", false, "echo hello world\n")])).set_delay(Duration::from_millis(400)),
    )
    .await;
    let r = env.run(&slow, &Pipeline::default()).expect("ok", 0);
    let took = r["model_calls"][0]["duration_ms"].as_u64().unwrap();
    assert!((400..10_000).contains(&took), "{took} ms");
    let propose = r["stages"].as_array().unwrap().iter().find(|s| s["id"] == "propose").unwrap();
    assert!(propose["duration_ms"].as_u64().unwrap() >= took, "{propose}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_whose_key_is_not_set_is_never_asked() {
    const UNSET: &str = "PRBOT_IT_KEY_NOBODY_SET";
    let run_with = |env: &Env, model: &Model, models: &str| {
        let pipeline = env.write_pipeline(
            model,
            &propose(&format!("      models: [{models}]\n      retries: 0\n      repair_attempts: 0\n")),
        );
        let text = std::fs::read_to_string(&pipeline).unwrap().replace(
            "providers:\n",
            &format!(
                "providers:\n  keyed:\n    base_url: {}/v1\n    api_key_env: {UNSET}\n",
                model.server.uri()
            ),
        );
        std::fs::write(&pipeline, text).unwrap();
        Run::from(prbot(&["run", "--json"], &env.repo, &pipeline).env_remove(UNSET).output().unwrap())
    };

    // The next model of the ladder answers; the keyless one is not a call.
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "m1", ok(&good()), None, None).await;
    answer(&model.server, "m2", ok(&good()), None, None).await;
    let r = run_with(&env, &model, "keyed/m1, local/m2").expect("ok", 0);
    assert_eq!(r["model"]["name"], "local/m2");
    assert!(requests_for(&model, "m1").await.is_empty(), "a request without its key was sent");
    assert_eq!(calls(&r), vec![("local/m2".to_string(), true, String::new())]);

    // Alone, it fails the cycle before anything is sent or spent, and says what to set.
    let env = Env::new();
    let model = mock().await;
    answer(&model.server, "m1", ok(&good()), None, None).await;
    let r = run_with(&env, &model, "keyed/m1").expect("model_failed", 1);
    assert_reason(&r, &format!("${UNSET} (providers.keyed.api_key_env) is not set"));
    assert!(model.requests().await.is_empty());
    assert_eq!(r["model_calls"].as_array().map(Vec::len), Some(0), "{}", r["model_calls"]);
    assert_eq!(r["model"]["calls"], 0);
}
