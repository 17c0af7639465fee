//! The workflows prbot ships and `prbot init` writes.

use crate::support::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn the_workflows_are_valid_and_call_flags_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    for wf in [".gitea/workflows/prbot.yml", ".github/workflows/prbot.yml"] {
        let text = std::fs::read_to_string(format!("{root}/{wf}")).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{wf}: {e}"));
        assert!(doc["on"]["schedule"][0]["cron"].is_string(), "{wf}: no schedule");
        assert!(doc["on"]["workflow_dispatch"]["inputs"]["dry_run"].is_object(), "{wf}: no dry-run input");
        let steps = doc["jobs"]["cycle"]["steps"].as_array().unwrap();
        let runs: Vec<&str> =
            steps.iter().filter_map(|s| s["run"].as_str()).filter(|r| r.contains("prbot\" run")).collect();
        assert_eq!(runs.len(), 1, "{wf}: no step runs prbot");
        let line = runs[0].lines().find(|l| l.contains("prbot\" run")).unwrap();
        let help =
            String::from_utf8(Command::new(BIN).args(["run", "--help"]).output().unwrap().stdout).unwrap();
        let flags: Vec<&str> = line.split_whitespace().filter(|w| w.starts_with("--")).collect();
        assert!(flags.len() >= 3, "{line}");
        for f in flags {
            assert!(help.contains(f), "{wf} calls `prbot run {f}`, which does not exist");
        }
        let env_dry = text.contains("'--dry-run'");
        assert!(env_dry && help.contains("--dry-run"), "{wf}: the dry-run input must map to --dry-run");
    }
}

#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite() {
    for forge in ["gitea", "github"] {
        let dir = tempfile::tempdir().unwrap();
        let init = |force: bool| {
            let mut c = Command::new(BIN);
            c.args(["init", "--forge", forge, "--repo"]).arg(dir.path());
            if force {
                c.arg("--force");
            }
            c.output().unwrap()
        };
        let out = init(false);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let wf = dir.path().join(format!(".{forge}/workflows/prbot.yml"));
        assert!(wf.exists());
        let pipeline = dir.path().join("pipelines/default.yml");
        let v = Command::new(BIN).arg("validate").arg(&pipeline).output().unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
        std::fs::write(&pipeline, "# mine\n").unwrap();
        let again = init(false);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
        assert_eq!(std::fs::read_to_string(&pipeline).unwrap(), "# mine\n", "init overwrote a file");
        assert!(init(true).status.success());
        assert_ne!(std::fs::read_to_string(&pipeline).unwrap(), "# mine\n");
    }
}

/// The workflows prbot ships, and the ones `prbot init` writes, by name and text.
fn workflows() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![
        root.join(".github/workflows/prbot.yml"),
        root.join(".gitea/workflows/prbot.yml"),
        root.join(".gitea/workflows/ci.yml"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for forge in ["gitea", "github"] {
        let repo = dir.path().join(forge);
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "--quiet"]);
        let done = Command::new(BIN).args(["init", "--forge", forge, "--repo"]).arg(&repo).output().unwrap();
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
        out.push(repo.join(format!(".{forge}/workflows/prbot.yml")));
    }
    (dir, out)
}

#[test]
fn workflows_keep_no_credential_pin_actions_and_keep_expressions_out_of_shell() {
    let (_dir, files) = workflows();
    for wf in files {
        let text = std::fs::read_to_string(&wf).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["permissions"], serde_json::json!({}), "{wf:?}: no top-level `permissions: {{}}`");
        for (name, job) in doc["jobs"].as_object().unwrap() {
            assert!(job["permissions"].is_object(), "{wf:?}: job {name} states no permissions");
            for step in job["steps"].as_array().unwrap() {
                if let Some(uses) = step["uses"].as_str() {
                    let (_, rev) = uses.split_once('@').unwrap_or((uses, ""));
                    assert!(
                        rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()),
                        "{wf:?}: `{uses}` is not pinned by a commit SHA"
                    );
                    if uses.starts_with("actions/checkout@") {
                        assert_eq!(
                            step["with"]["persist-credentials"], false,
                            "{wf:?}: checkout keeps a credential"
                        );
                    }
                }
                if let Some(run) = step["run"].as_str() {
                    assert!(!run.contains("${{"), "{wf:?}: an expression in a shell line: {run}");
                }
            }
        }
    }
}

#[test]
fn workflows_pass_zizmor() {
    let (_dir, files) = workflows();
    let out = Command::new("zizmor")
        .arg("--offline")
        .args(&files)
        .output()
        .expect("zizmor runs: install it (`pip install zizmor`), as .ci/run does");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.contains("No findings"), "zizmor:\n{report}");
}

#[test]
fn completions_for_every_shell_and_a_man_page() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for sub in ["run", "history", "serve", "completions"] {
            assert!(text.contains(sub), "{shell} completion does not know `{sub}`");
        }
        if shell == "bash" {
            let check = Command::new("bash").arg("-n").arg("-c").arg(&text).output().unwrap();
            assert!(check.status.success(), "the bash completion does not parse");
        }
    }
    let out = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    let man = String::from_utf8(Command::new(BIN).arg("man").output().unwrap().stdout).unwrap();
    assert!(man.contains(".TH prbot 1"), "{man}");
    for sub in ["run", "validate", "history", "stats", "serve", "init", "demo"] {
        assert!(man.contains(sub), "the man page does not list `{sub}`");
    }
}

#[test]
fn printing_commands_end_quietly_when_the_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["man"][..], &["completions", "fish"], &["schema"]] {
        // A reader that is already gone, as `| head` is once it has its lines.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN).args(args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?}", out.status);
    }
}
