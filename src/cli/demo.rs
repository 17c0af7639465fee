//! `prbot demo`: a full cycle on a throwaway repository, offline, through the same code
//! as a real run: a real HTTP model call (to a scripted model on loopback), a real
//! worktree, a real test command and the local forge.

use crate::cli::CliError;
use crate::config::Pipeline;
use crate::domain::outcome::Outcome;
use crate::infra::workspace::Repo;
use axum::{routing::post, Json, Router};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const GREET: &str =
    "#!/bin/sh\n# Prints a greeting for the name given as the first argument.\necho \"Hello, $1!\"\n";

const TEST: &str = "#!/bin/sh\n# The project's tests: run from the repository root.\nset -e\nout=$(sh greet.sh Ada)\n[ \"$out\" = \"Hello, Ada!\" ] || { echo \"FAIL: expected 'Hello, Ada!', got '$out'\"; exit 1; }\necho \"greet: all checks passed\"\n";

const PRD: &str = "# Greeter: product requirements\n\n## Open gaps\n\n- [ ] Make `greet.sh` greet \"world\" when it is called without a name [bot-eligible]\n- [ ] Translate the greeting into French (needs a design decision first)\n- [x] Print a greeting for a given name [bot-eligible]\n";

const GREET_NEW: &str = "#!/bin/sh\n# Prints a greeting for the name given as the first argument, or for the world.\nname=${1:-world}\necho \"Hello, $name!\"\n";

const TEST_NEW: &str = "#!/bin/sh\n# The project's tests: run from the repository root.\nset -e\nout=$(sh greet.sh Ada)\n[ \"$out\" = \"Hello, Ada!\" ] || { echo \"FAIL: expected 'Hello, Ada!', got '$out'\"; exit 1; }\nout=$(sh greet.sh)\n[ \"$out\" = \"Hello, world!\" ] || { echo \"FAIL: expected 'Hello, world!', got '$out'\"; exit 1; }\necho \"greet: all checks passed\"\n";

fn pipeline_yaml(base_url: &str, work_dir: &Path) -> String {
    format!(
        r#"# The demo's pipeline: the six stages, a scripted model on loopback, the local forge.
providers:
  demo:
    base_url: {base_url}
workspace:
  dir: {work}
forge:
  kind: local
stages:
  - uses: guard
  - uses: pick-gap
  - uses: propose
    with:
      models: [demo/scripted-demo-model]
  - uses: apply
  - uses: test
    with:
      commands: ["sh tests/test_greet.sh"]
    timeout: 2m
  - uses: pr
"#,
        work = work_dir.display()
    )
}

/// The scripted model: it answers the greeter gap, and anything else with an error.
async fn chat(Json(req): Json<serde_json::Value>) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let asked = req.to_string();
    if !asked.contains("greet.sh") || !asked.contains("without a name") {
        let err = serde_json::json!({"error": {"message": "the scripted demo model only knows the greeter gap", "type": "invalid_request_error"}});
        return (axum::http::StatusCode::BAD_REQUEST, Json(err));
    }
    let proposal = serde_json::json!({
        "summary": "Default the name to \"world\" in greet.sh and test the new behaviour.",
        "files": [
            {"path": "greet.sh", "is_new": false, "content": GREET_NEW},
            {"path": "tests/test_greet.sh", "is_new": false, "content": TEST_NEW},
        ]
    });
    let content = format!("```json\n{}\n```", serde_json::to_string_pretty(&proposal).expect("json"));
    let reply = serde_json::json!({
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": "scripted-demo-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": crate::adapters::model::client::estimate_tokens(&asked), "completion_tokens": crate::adapters::model::client::estimate_tokens(&content), "total_tokens": 0}
    });
    (axum::http::StatusCode::OK, Json(reply))
}

fn sh_git(dir: &Path, args: &[&str]) -> Result<(), CliError> {
    let git = crate::infra::git::Git::new(dir, crate::infra::process::Cancel::new());
    git.run(args.iter().copied()).map(|_| ()).map_err(|e| CliError::Other(e.to_string()))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    crate::infra::fsutil::write_atomic(path, text.as_bytes())
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))
}

fn make_repo(dir: &Path) -> Result<PathBuf, CliError> {
    let repo = dir.join("greeter");
    std::fs::create_dir_all(&repo)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", repo.display())))?;
    sh_git(&repo, &["init", "--quiet", "--initial-branch=main"])?;
    write(&repo.join("greet.sh"), GREET)?;
    write(&repo.join("tests/test_greet.sh"), TEST)?;
    write(&repo.join("docs/PRD.md"), PRD)?;
    write(
        &repo.join("README.md"),
        "# greeter\n\n`sh greet.sh NAME` prints a greeting. `sh tests/test_greet.sh` tests it.\n",
    )?;
    sh_git(&repo, &["add", "--all"])?;
    sh_git(
        &repo,
        &[
            "-c",
            "user.name=Demo Maintainer",
            "-c",
            "user.email=maintainer@example.invalid",
            "commit",
            "--quiet",
            "-m",
            "greeter: first version",
        ],
    )?;
    Ok(repo)
}

pub fn run(dir: Option<PathBuf>) -> Result<i32, CliError> {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .map_err(|e| CliError::Other(format!("cannot create {}: {e}", d.display())))?;
            std::fs::canonicalize(&d).map_err(|e| CliError::Other(e.to_string()))?
        }
        None => tempfile::Builder::new()
            .prefix("prbot-demo-")
            .tempdir()
            .map_err(|e| CliError::Other(format!("cannot create a temporary folder: {e}")))?
            .keep(),
    };
    eprintln!(
        "prbot demo: a sample repository, a scripted model on loopback, the local forge\n  folder: {}\n",
        dir.display()
    );
    let repo_dir = make_repo(&dir)?;

    let rt = crate::infra::runtime::new().map_err(|e| CliError::Other(e.to_string()))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| CliError::Other(format!("cannot listen on loopback: {e}")))?;
    let addr = listener.local_addr().map_err(|e| CliError::Other(e.to_string()))?;
    let app = Router::new().route("/v1/chat/completions", post(chat));
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let pipeline_path = dir.join("pipeline.yml");
    write(&pipeline_path, &pipeline_yaml(&format!("http://{addr}/v1"), &dir.join("work")))?;
    let pipeline = Arc::new(Pipeline::load(&pipeline_path)?);
    let repo = Repo::discover(&repo_dir)?;
    let run = crate::cli::commands::run_one(&rt, pipeline, repo)?;
    let r = &run.record;

    println!("\noutcome: {}: {}", r.outcome, r.reason);
    if r.outcome == Outcome::Ok {
        let pr = r.pr.as_ref().expect("ok has a PR");
        let branch = r.branch.clone().unwrap_or_default();
        println!("\nWhere to look:");
        println!("  draft PR record: {}", pr.url.trim_start_matches("file://"));
        println!("  the change:      git -C {} show {branch}", repo_dir.display());
        println!("  cycle record:    {}", run.path.display());
        println!("  your tree:       git -C {} status   (untouched)", repo_dir.display());
        println!(
            "  history:         cargo run -- history --repo {} --pipeline {}",
            repo_dir.display(),
            pipeline_path.display()
        );
    }
    Ok(if r.outcome == Outcome::Ok { 0 } else { 1 })
}
