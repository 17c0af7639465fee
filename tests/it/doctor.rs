//! prbot doctor: a ready repository passes, and each broken setting is named with what to do.

use crate::support::forge::{FakeForge, Flavor};
use crate::support::*;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const TOKEN_ENV: &str = "PRBOT_IT_DOCTOR_TOKEN";
/// The test pipelines' one model.
const MODEL_CHECK: &str = "model local/qwen2.5-coder:7b";

struct Doctor {
    code: i32,
    text: String,
    checks: Vec<Value>,
}

impl Doctor {
    fn check(&self, name: &str) -> &Value {
        self.checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name} in:\n{}", self.text))
    }

    /// Asserts that `name` failed with a detail and a hint that mention what is given.
    fn failed(&self, name: &str, detail: &str, hint: &str) {
        let c = self.check(name);
        assert_eq!(c["status"], "fail", "{name}:\n{}", self.text);
        assert!(c["detail"].as_str().unwrap().contains(detail), "{name} detail:\n{}", self.text);
        assert!(c["hint"].as_str().unwrap_or_default().contains(hint), "{name} hint:\n{}", self.text);
        assert_eq!(self.code, 1, "{}", self.text);
    }
}

/// Runs `prbot doctor` twice (text and `--json`) with the pipeline `p` written for `env`.
fn doctor(env: &Env, model: &Model, p: &Pipeline, args: &[&str], vars: &[(&str, &str)]) -> Doctor {
    let file = env.write_pipeline(model, p);
    let run = |json: bool| {
        let mut c = prbot(&["doctor"], &env.repo, &file);
        c.args(args).envs(vars.iter().copied());
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let text = run(false);
    let json = run(true);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!("doctor --json prints JSON ({e}):\n{}", String::from_utf8_lossy(&json.stderr))
    });
    assert_eq!(text.status.code(), json.status.code());
    assert_eq!(report["ok"], json.status.code() == Some(0));
    Doctor {
        code: text.status.code().unwrap(),
        text: String::from_utf8_lossy(&text.stdout).into_owned(),
        checks: report["checks"].as_array().unwrap().clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ready_repository_passes_every_check() {
    let env = Env::new();
    let model = Model::good().await;
    let d = doctor(&env, &model, &Pipeline::default(), &[], &[]);
    assert_eq!(d.code, 0, "{}", d.text);
    for c in &d.checks {
        assert!(matches!(c["status"].as_str(), Some("pass" | "skip")), "{c}\n{}", d.text);
    }
    for name in ["git", "repository", "pipeline", "prd", "sandbox", "forge", "state", "budget", "pause file"]
    {
        assert_eq!(d.check(name)["status"], "pass", "{name}:\n{}", d.text);
    }
    assert!(d.check("prd")["detail"].as_str().unwrap().contains("1 eligible gap"), "{}", d.text);
    // Models are not asked without --probe-models: nothing is spent.
    assert!(model.server.received_requests().await.unwrap().is_empty());
    assert!(
        d.text.contains("✓ sandbox") && d.text.ends_with("ready: every required check passed\n"),
        "{}",
        d.text
    );
    assert!(!d.text.contains(MODEL_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_setting_is_named_with_what_to_do() {
    let env = Env::new();
    let model = Model::good().await;
    let base = Pipeline::default();

    let d = doctor(&env, &model, &base.clone().settings("budget: {calls_per_dya: 3}"), &[], &[]);
    d.failed("pipeline", "unknown field `calls_per_dya`", "prbot validate");
    assert_eq!(d.check("prd")["status"], "skip");

    let d = doctor(&env, &model, &base.clone().settings("prd: {path: docs/NOPE.md}"), &[], &[]);
    d.failed("prd", "docs/NOPE.md", "commit the PRD");

    let d = doctor(&env, &model, &base, &[], &[(MODEL_KEY_ENV, "")]);
    d.failed(MODEL_CHECK, MODEL_KEY_ENV, "export");

    // A PATH with git and sh but no bwrap.
    let bin = env.tmp.path().join("no-bwrap-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["git", "sh"] {
        let real =
            std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        let real = String::from_utf8(real.stdout).unwrap();
        std::os::unix::fs::symlink(real.trim(), bin.join(tool)).unwrap();
    }
    let d = doctor(
        &env,
        &model,
        &base.clone().settings("sandbox: bwrap"),
        &[],
        &[("PATH", bin.to_str().unwrap())],
    );
    d.failed("sandbox", "bwrap", "bubblewrap");

    let d = doctor(&env, &model, &base, &[], &[(MODEL_KEY_ENV, "abc")]);
    d.failed("secrets", MODEL_KEY_ENV, "long secrets");

    let d = doctor(&env, &model, &base.clone().settings("budget: {calls_per_day: 0}"), &[], &[]);
    assert_eq!(d.check("budget")["status"], "warn", "{}", d.text);
    assert!(
        d.check("budget")["detail"].as_str().unwrap().contains("0 of 0 calls used (0 left)"),
        "{}",
        d.text
    );

    env.write("bot.paused", "");
    let d = doctor(&env, &model, &base, &[], &[]);
    assert_eq!(d.check("pause file")["status"], "warn", "{}", d.text);
    assert_eq!(d.code, 0, "a pause is worth knowing, not a failure:\n{}", d.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_asked_only_with_probe_models() {
    let env = Env::new();
    let model = Model::good().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "list",
            "data": [{"id": "qwen2.5-coder:7b", "object": "model", "created": 0, "owned_by": "you"}]
        })))
        .mount(&model.server)
        .await;
    let p = Pipeline::default();
    let d = doctor(&env, &model, &p, &[], &[]);
    assert_eq!(d.check(MODEL_CHECK)["status"], "skip", "{}", d.text);
    let d = doctor(&env, &model, &p, &["--probe-models"], &[]);
    assert_eq!(d.check(MODEL_CHECK)["status"], "pass", "{}", d.text);
    let asked = model.server.received_requests().await.unwrap();
    assert!(asked.iter().all(|r| r.method.as_str() == "GET"), "a completion was requested");
    let auth = asked[0].headers.get("authorization").unwrap().to_str().unwrap();
    assert_eq!(auth, format!("Bearer {MODEL_KEY}"));

    let refused = Model::good().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": {"message": "bad key"}})),
        )
        .mount(&refused.server)
        .await;
    let d = doctor(&env, &refused, &p, &["--probe-models"], &[]);
    d.failed(MODEL_CHECK, "HTTP 401", "key");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forge_token_repository_push_and_base_are_checked() {
    for flavor in [Flavor::Gitea, Flavor::Github] {
        let env = Env::new();
        let model = Model::good().await;
        let token = format!("tok-doctor-{}-secret", std::process::id());
        let forge = FakeForge::start(flavor, &token, &env.repo, env.tmp.path());
        let p = Pipeline::default().settings(&forge.settings(TOKEN_ENV));

        let d = doctor(&env, &model, &p, &[], &[(TOKEN_ENV, &token)]);
        assert_eq!(d.code, 0, "{flavor:?}:\n{}", d.text);
        for name in ["forge token", "forge repository", "forge push", "forge base branch", "forge drafts"] {
            assert_eq!(d.check(name)["status"], "pass", "{flavor:?} {name}:\n{}", d.text);
        }
        assert!(!d.text.contains(&token), "the token was printed:\n{}", d.text);

        let d = doctor(&env, &model, &p, &[], &[]);
        d.failed("forge token", TOKEN_ENV, "export");

        let d = doctor(&env, &model, &p, &[], &[(TOKEN_ENV, "tok-wrong-but-long-enough")]);
        d.failed("forge repository", "", "token can read");

        forge.state.lock().unwrap().push_permission = false;
        let d = doctor(&env, &model, &p, &[], &[(TOKEN_ENV, &token)]);
        d.failed("forge push", "cannot push", "write access");
        forge.state.lock().unwrap().push_permission = true;

        let d = doctor(
            &env,
            &model,
            &p.clone()
                .stages(&p.stages.replace("  - uses: pr\n", "  - uses: pr\n    with: {base: nowhere}\n")),
            &[],
            &[(TOKEN_ENV, &token)],
        );
        d.failed("forge base branch", "nowhere", "base");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_git_state_ref_is_read_and_written_only_when_asked() {
    let env = Env::new();
    let model = Model::good().await;
    let remote = bare_remote(&env);
    git(&env.repo, &["remote", "add", "origin", remote.to_str().unwrap()]);
    let p = Pipeline::default().settings("state: {backend: git}");
    let d = doctor(&env, &model, &p, &[], &[]);
    assert_eq!(d.check("state ref")["status"], "pass", "{}", d.text);
    assert_eq!(d.check("state write")["status"], "skip", "{}", d.text);
    let d = doctor(&env, &model, &p, &["--write-check"], &[]);
    assert_eq!(d.check("state write")["status"], "pass", "{}", d.text);
    // The scratch ref is gone, the state ref was never made.
    assert_eq!(git(&remote, &["for-each-ref", "refs/prbot/"]), "");

    let p = Pipeline::default().settings("state: {backend: git, remote: nowhere}");
    let d = doctor(&env, &model, &p, &[], &[]);
    d.failed("state ref", "nowhere", "state.remote");
    assert_eq!(d.check("budget")["status"], "skip", "the ledger is on the unreadable ref:\n{}", d.text);
    assert!(d.text.lines().all(|l| !l.starts_with("fatal")), "a detail ran over lines:\n{}", d.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_starter_pipelines_placeholders_are_named_before_the_forge_is_asked() {
    use crate::support::forge::{NAME, OWNER};
    let env = Env::new();
    let init = std::process::Command::new(BIN).args(["init", "--repo"]).arg(&env.repo).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let file = env.repo.join("pipelines/default.yml");
    let starter = std::fs::read_to_string(&file).unwrap();
    let token = format!("tok-doctor-init-{}-secret", std::process::id());
    let forge = FakeForge::start(Flavor::Gitea, &token, &env.repo, env.tmp.path());
    let check = |pipeline: &str| {
        std::fs::write(&file, pipeline).unwrap();
        let out = prbot(&["doctor", "--json"], &env.repo, &file).env("GITEA_TOKEN", &token).output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let checks = report["checks"].as_array().unwrap().clone();
        let find = |name: &str| checks.iter().find(|c| c["name"] == name).cloned();
        (find("forge"), find("forge token"), find("forge repository"))
    };

    let (placeholder, token_check, asked) = check(&starter);
    let placeholder = placeholder.expect("a forge check");
    assert_eq!(placeholder["status"], "fail");
    let detail = placeholder["detail"].as_str().unwrap();
    assert!(
        detail.contains("forge.repo is `owner/name`")
            && detail.contains("forge.url is `https://gitea.example.com`"),
        "{detail}"
    );
    assert!(placeholder["hint"].as_str().unwrap().contains("forge.repo"));
    // The token is still checked; the placeholder's server is not asked.
    assert_eq!(token_check.unwrap()["status"], "pass");
    assert!(asked.is_none(), "{asked:?}");

    // Only the repository left as it was.
    let (placeholder, ..) = check(&starter.replace("https://gitea.example.com", &forge.url));
    let detail = placeholder.unwrap()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("forge.repo") && !detail.contains("forge.url"), "{detail}");

    // The control: with both set, the forge is asked and answers.
    let real = starter
        .replace("https://gitea.example.com", &forge.url)
        .replace("owner/name", &format!("{OWNER}/{NAME}"));
    let (placeholder, _, asked) = check(&real);
    assert!(placeholder.is_none(), "{placeholder:?}");
    assert_eq!(asked.expect("the forge is asked")["status"], "pass");
}
