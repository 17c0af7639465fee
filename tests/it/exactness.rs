//! What is committed is exactly the approved change, with the files' modes.

use crate::support::*;
use serde_json::Value;

/// (path, mode) of every file the branch's commit changes.
fn commit_files(env: &Env, r: &Value) -> Vec<(String, String)> {
    let commit = r["commit"].as_str().unwrap();
    let out = git(
        &env.repo,
        &["diff-tree", "-r", "--no-commit-id", "--no-renames", &format!("{commit}~1"), commit],
    );
    let mut files: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').unwrap();
            (path.to_string(), meta.split(' ').nth(1).unwrap().to_string())
        })
        .collect();
    files.sort();
    files
}

fn record_files(r: &Value) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["mode"] != "NOOP")
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["file_mode"].as_str().unwrap().to_string()))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_tests_change_is_never_committed() {
    let env = Env::new();
    env.write(".github/workflows/ci.yml", "on: push\n");
    env.commit("a workflow");
    let model =
        Model::proposing(&[("greet.sh", false, "echo hello world\n"), ("NEWS.md", true, "news\n")]).await;
    let test = "echo '- [ ] injected [bot-eligible]' >> docs/PRD.md; echo 'run: pwn' >> .github/workflows/ci.yml; echo tampered >> greet.sh; echo junk > build.log";
    let r = env.run(&model, &Pipeline::default().tests(&[test])).expect("ok", 0);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(
        commit_files(&env, &r),
        vec![("NEWS.md".into(), "100644".into()), ("greet.sh".into(), "100644".into())]
    );
    assert_eq!(record_files(&r), commit_files(&env, &r), "the record's files differ from the commit's");
    assert_eq!(git(&env.repo, &["show", &format!("{branch}:greet.sh")]), "echo hello world");
    assert!(!git(&env.repo, &["show", &format!("{branch}:docs/PRD.md")]).contains("injected"));
    let pr: Value = serde_json::from_slice(
        &std::fs::read(r["pr"]["url"].as_str().unwrap().trim_start_matches("file://")).unwrap(),
    )
    .unwrap();
    let body = pr["body"].as_str().unwrap();
    let changes = body.split("## Changes").nth(1).unwrap().split("## Tests").next().unwrap();
    let listed: Vec<&str> = changes.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(listed, ["- `greet.sh` (UPDATE, 100644)", "- `NEWS.md` (ADD, 100644)"], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn model_chosen_names_are_committed_literally_and_alone() {
    let env = Env::new();
    env.write("src/lib.txt", "kept\n");
    env.commit("src");
    let names = ["*", ":(top,exclude)src", "-n", "a b", "ö.txt"];
    let files: Vec<(&str, bool, &str)> = names.iter().map(|n| (*n, true, "new\n")).collect();
    let model = Model::proposing(&files).await;
    // The test deletes one of them and leaves things behind that a pathspec would pick up.
    let test = "rm -f '*'; mkdir -p .github/workflows; echo pwn > .github/workflows/pwn.yml; echo x > src/extra.txt; echo y >> src/lib.txt";
    let r = env.run(&model, &Pipeline::default().tests(&[test])).expect("ok", 0);
    let mut expected: Vec<(String, String)> =
        names.iter().map(|n| (n.to_string(), "100644".to_string())).collect();
    expected.sort();
    // git quotes unusual names in its listings; compare them unquoted.
    let listed: Vec<(String, String)> = commit_files(&env, &r)
        .into_iter()
        .map(|(p, m)| (if p.starts_with('"') { "ö.txt".to_string() } else { p }, m))
        .collect();
    let mut listed = listed;
    listed.sort();
    assert_eq!(listed, expected);
    assert_eq!(record_files(&r), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_updated_script_stays_executable_and_new_ones_can_be() {
    let env = Env::new();
    env.write("greet.sh", "#!/bin/sh\necho hello\n");
    std::fs::set_permissions(env.repo.join("greet.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    env.commit("an executable script");
    let reply = serde_json::json!({"summary": "s", "files": [
        {"path": "greet.sh", "is_new": false, "edits": [{"search": "echo hello", "replace": "echo hello world"}]},
        {"path": "tools/run.sh", "is_new": true, "executable": true, "content": "#!/bin/sh\necho run\n"},
        {"path": "notes.txt", "is_new": true, "content": "plain\n"}
    ]});
    let model = Model::replying(&reply.to_string()).await;
    let r = env
        .run(&model, &Pipeline::default().tests(&["./greet.sh | grep -q world && ./tools/run.sh"]))
        .expect("ok", 0);
    assert_eq!(r["tests"][0]["passed"], true);
    assert_eq!(
        commit_files(&env, &r),
        vec![
            ("greet.sh".into(), "100755".into()),
            ("notes.txt".into(), "100644".into()),
            ("tools/run.sh".into(), "100755".into())
        ]
    );
    assert_eq!(record_files(&r), commit_files(&env, &r));
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_tests_change_is_put_back_before_the_next_command_runs() {
    let env = Env::new();
    env.write("other.txt", "untidy  \n");
    env.commit("another file");
    let model = Model::good().await;
    // The tests tamper with the change and with another file; the step after them must see
    // neither, and only its own change joins the commit.
    let tests = "  - uses: test\n    with:\n      commands: [\"sh check.sh; echo tampered >> greet.sh; echo tampered >> other.txt\"]\n";
    let step = "  - run: \"! grep -q tampered greet.sh other.txt && sed -i 's/  $//' other.txt\"\n";
    let stages = STAGES
        .replace("  - uses: test\n    with:\n      commands: [\"sh check.sh\"]\n", &format!("{tests}{step}"));
    assert_ne!(stages, STAGES);
    let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("ok", 0);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(git(&env.repo, &["show", &format!("{branch}:other.txt")]), "untidy");
    assert!(!git(&env.repo, &["show", &format!("{branch}:greet.sh")]).contains("tampered"));
    assert_eq!(record_files(&r), commit_files(&env, &r));
    assert_eq!(commit_files(&env, &r).len(), 2, "{:?}", commit_files(&env, &r));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_steps_changes_are_committed_once_the_guardrails_allow_them() {
    let env = Env::new();
    env.write("other.txt", "untidy  \n");
    env.commit("another file");
    let model = Model::good().await;
    let fmt = "  - run: sed -i 's/  $//' other.txt\n";
    let stages = STAGES.replace("  - uses: test\n", &format!("{fmt}  - uses: test\n"));
    let r = env.run(&model, &Pipeline::default().stages(&stages)).expect("ok", 0);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(git(&env.repo, &["show", &format!("{branch}:other.txt")]), "untidy");
    assert_eq!(record_files(&r), commit_files(&env, &r));

    for (step, path) in [("echo x >> docs/PRD.md", "docs/PRD.md"), ("mkdir -p .gitea && echo x >> .gitea/x.yml && git add -N .gitea/x.yml 2>/dev/null; echo y >> check.sh", "check.sh")] {
        let env = Env::new();
        let stages = STAGES.replace("  - uses: test\n", &format!("  - run: {step}\n  - uses: test\n"));
        let p = Pipeline::default().stages(&stages).settings("policy:\n  proposal:\n    deny: [\"check.sh\"]");
        let r = env.run(&model, &p).expect("proposal_rejected", 0);
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains(path) && reason.contains("step `"), "{reason}");
        assert!(env.branches().is_empty(), "a rejected change was committed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_ci_entry_point_is_protected_and_documented() {
    let readme = include_str!("../../README.md");
    let env = Env::new();
    let p = Pipeline::default()
        .settings("policy:\n  gaps:\n    skip_after_failures: 0\nbudget:\n  calls_per_day: 100");
    for entry in prbot::CI_ENTRY_POINTS {
        let shown = if entry == "jenkinsfile" { "Jenkinsfile".to_string() } else { entry.to_string() };
        assert!(readme.contains(&format!("`{shown}`")), "README does not list {shown}");
        let path = match entry.strip_suffix('/') {
            Some(folder) => format!("{}/workflows/pwn.yml", folder.to_uppercase()),
            None => shown.to_uppercase(),
        };
        let model = Model::proposing(&[("fine.txt", true, "ok\n"), (&path, true, "pwned\n")]).await;
        let r = env.run(&model, &p).expect("proposal_rejected", 0);
        assert!(r["reason"].as_str().unwrap().contains("CI entry point"), "{path}: {}", r["reason"]);
        assert!(env.branches().is_empty(), "{path} produced a branch");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_replies_and_folder_paths_are_refused() {
    let env = Env::new();
    let harmless = proposal(&[("greet.sh", false, "echo hello world\n")]);
    let hostile = proposal(&[("check.sh", false, "true\n")]);
    let model =
        Model::replying(&format!("```json\n{harmless}\n```\nOr, better:\n```json\n{hostile}\n```")).await;
    let r = env.run(&model, &Pipeline::default()).expect("model_failed", 1);
    assert!(r["reason"].as_str().unwrap().contains("the reply holds 2 proposals"), "{}", r["reason"]);
    assert!(env.branches().is_empty());

    let p = Pipeline::default().settings("policy:\n  gaps:\n    skip_after_failures: 0");
    let model = Model::proposing(&[("greet.sh/", false, "x\n")]).await;
    let r = env.run(&model, &p).expect("proposal_rejected", 0);
    assert!(r["reason"].as_str().unwrap().contains("`greet.sh/` ends with a slash"), "{}", r["reason"]);
    let model = Model::proposing(&[("docs", false, "x\n")]).await;
    let r = env.run(&model, &p).expect("apply_failed", 1);
    assert!(r["reason"].as_str().unwrap().contains("`docs` is a folder"), "{}", r["reason"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prompt_never_follows_a_tracked_symlink() {
    let env = Env::with_prd(
        "# PRD\n\n- [ ] Tidy `notes.txt`, `zero.txt` and `env.txt` next to greet.sh [bot-eligible]\n",
    );
    let secret = env.tmp.path().join("secret.txt");
    std::fs::write(&secret, "outside-canary-5b1d\n").unwrap();
    std::os::unix::fs::symlink(&secret, env.repo.join("notes.txt")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", env.repo.join("zero.txt")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", env.repo.join("env.txt")).unwrap();
    env.commit("links");
    let model = Model::good().await;
    let started = std::time::Instant::now();
    env.run(&model, &Pipeline::default()).expect("ok", 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "propose took {:?}", started.elapsed());
    let prompt = &model.prompts().await[0];
    assert!(!prompt.contains("outside-canary-5b1d"), "the link's target reached the prompt");
    assert!(!prompt.contains(MODEL_KEY_ENV), "prbot's environment reached the prompt");
    assert!(!prompt.contains('\0'), "/dev/zero reached the prompt");
    for name in ["notes.txt", "zero.txt", "env.txt"] {
        assert!(prompt.contains(&format!("--- {name} is a symbolic link to")), "{name} not named:\n{prompt}");
    }
    assert!(prompt.contains("--- greet.sh ---"), "the regular file is missing:\n{prompt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_redacted_structurally_in_every_form() {
    let settings = "forge:\n  kind: local\n  token_env: PRBOT_IT_FORGE";
    for weak in ["null", "true", "abcd", "password"] {
        let env = Env::new();
        let model = Model::good().await;
        let run = env.run_with(&model, &Pipeline::default().settings(settings), &[("PRBOT_IT_FORGE", weak)]);
        assert_eq!(run.code, 2, "{weak}: {}", run.stderr);
        assert!(
            run.stderr.contains("$PRBOT_IT_FORGE holds") && run.stderr.contains("at least 8"),
            "{}",
            run.stderr
        );
        assert!(model.requests().await.is_empty());
    }
    for secret in ["\"quoted\"-token", "back\\slash-token", "plain-token-9a7c"] {
        let env = Env::new();
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("x-access-token:{secret}"),
        );
        let url_safe =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, format!("u:{secret}"));
        let model = Model::good().await;
        // The tests print the secret in three forms, and fail, so the output goes to the
        // record and back to the model.
        let script = format!(
            "echo 'AUTHORIZATION: basic {basic}'; echo 'url {url_safe}'; echo 'FAIL: {}'; exit 1",
            secret.replace('\'', "'\\''")
        );
        let stages = STAGES.replace("repair_attempts: 0", "repair_attempts: 1");
        let p = Pipeline::default().stages(&stages).settings(settings);
        let p = Pipeline {
            stages: p.stages.replace("[\"sh check.sh\"]", &serde_json::to_string(&[&script]).unwrap()),
            ..p
        };
        // The secret reaches prbot only through the forge token variable.
        let run = env.run_with(&model, &p, &[("PRBOT_IT_FORGE", secret)]);
        let r = run.expect("tests_failed", 0);
        let record = std::fs::read_to_string(
            env.state().join("cycles").join(format!("{}.json", r["cycle_id"].as_str().unwrap())),
        )
        .unwrap();
        let requests = model.requests().await;
        assert_eq!(requests.len(), 2, "no repair request");
        let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
        let repair =
            body["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_string();
        let json_secret = serde_json::to_string(secret).unwrap();
        for (what, text) in [
            ("record", record.as_str()),
            ("repair prompt", repair.as_str()),
            ("stdout", run.stdout.as_str()),
            ("stderr", run.stderr.as_str()),
        ] {
            for form in [secret, json_secret.trim_matches('"'), &basic, &url_safe] {
                assert!(!text.contains(form), "{secret}: {form} in the {what}");
            }
        }
        assert!(record.contains("AUTHORIZATION: basic [REDACTED]"), "{record}");
        assert!(repair.contains("FAIL: [REDACTED]"), "{repair}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_work_dir_others_can_write_or_own_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let model = Model::good().await;
    std::fs::create_dir_all(&env.work).unwrap();
    std::fs::set_permissions(&env.work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = env.run(&model, &Pipeline::default()).expect("internal_error", 1);
    assert!(r["reason"].as_str().unwrap().contains("can be written by other users"), "{}", r["reason"]);

    std::fs::set_permissions(&env.work, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&env.work, Some(12345), Some(12345)).unwrap();
    let r = env.run(&model, &Pipeline::default()).expect("internal_error", 1);
    assert!(r["reason"].as_str().unwrap().contains("belongs to uid 12345"), "{}", r["reason"]);
    assert!(!env.work.join("worktree").exists(), "prbot used the folder anyway");

    // A folder of its own is taken, and made private.
    std::os::unix::fs::chown(&env.work, Some(0), Some(0)).unwrap();
    env.run(&model, &Pipeline::default()).expect("ok", 0);
    let mode = std::fs::metadata(&env.work).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_work_dir_is_private_in_the_cache_folder() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let model = Model::good().await;
    let cache = env.tmp.path().join("xdg-cache");
    let p = Pipeline::default();
    let yaml = std::fs::read_to_string(env.write_pipeline(&model, &p)).unwrap();
    let without_dir: String =
        yaml.lines().filter(|l| !l.starts_with("  dir: ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&env.pipeline_path, without_dir).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["run", "--json", "--repo"]).arg(&env.repo).arg("--pipeline").arg(&env.pipeline_path);
    cmd.env(MODEL_KEY_ENV, MODEL_KEY).env("XDG_CACHE_HOME", &cache);
    Run::from(cmd.output().unwrap()).expect("ok", 0);
    let dirs: Vec<_> = std::fs::read_dir(cache.join("prbot")).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1);
    for d in [cache.join("prbot"), dirs[0].path()] {
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
    }
    assert!(dirs[0].path().join("worktree/greet.sh").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sha256_repository_works_too() {
    let env = Env::init(PRD, &["--object-format=sha256"]);
    // git in the tests reads the history through the borrowed sha256 objects.
    env.write("check.sh", "git log --oneline >/dev/null && grep -q hello greet.sh\n");
    env.commit("a check that reads the history");
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default()).expect("ok", 0);
    assert_eq!(r["commit"].as_str().unwrap().len(), 64);
    assert_eq!(
        git(&env.repo, &["show", &format!("{}:greet.sh", r["branch"].as_str().unwrap())]),
        "echo hello world"
    );
    env.review("once more");
    env.run(&model, &Pipeline::default()).expect("ok", 0);
}
