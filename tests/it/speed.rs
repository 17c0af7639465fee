//! What a cycle costs in processes: behaviour the speed benches rely on.

use crate::support::*;

/// Runs a dry-run cycle (which makes the clone), then `p` with a `git` on `PATH` that logs
/// each call, and returns the calls and the second cycle's outcome.
async fn git_calls(p: &Pipeline) -> (Vec<String>, String) {
    let env = Env::new();
    let model = Model::good().await;
    let real = String::from_utf8(
        std::process::Command::new("sh").args(["-c", "command -v git"]).output().unwrap().stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let bin = env.tmp.path().join("counting-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = env.tmp.path().join("git-calls.log");
    let wrapper = format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n", log.display());
    std::fs::write(bin.join("git"), wrapper).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(bin.join("git")).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(bin.join("git"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // The first cycle makes the clone; the second is the steady state.
    env.run(&model, &p.clone().without_pr()).expect("dry_run", 0);
    // The measured cycle makes its branch anew, as a cycle on a new gap does.
    let branch = git(&env.repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/prbot/"]);
    git(&env.repo, &["branch", "-D", branch.trim()]);
    let run = env.run_with(&model, p, &[("PATH", &path)]);
    let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
    (calls, run.outcome())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_cycle_runs_few_git_processes() {
    let (calls, outcome) = git_calls(&Pipeline::default().tests(&["true"])).await;
    assert_eq!(outcome, "ok", "a local-forge cycle that opens a PR");
    // Commands the tests run may call git too; those are the project's, not prbot's.
    let prbots: Vec<&String> = calls.iter().filter(|c| c.contains("core.hooksPath=/dev/null")).collect();
    eprintln!(
        "{} git processes:\n{}",
        prbots.len(),
        prbots.iter().map(|c| c.as_str()).collect::<Vec<_>>().join("\n")
    );
    // Discovery (with HEAD), the dirty check, one object reader (the PRD, the files the
    // prompt shows), the reset (checkout, clean), add, the commit from the index
    // (write-tree, commit-tree), the branch's tip, branch: 10.
    assert!(prbots.len() <= 10, "{} git processes in one cycle", prbots.len());
    let resets = prbots.iter().filter(|c| c.contains(" clean -ffdxq")).count();
    assert_eq!(resets, 1, "{resets} worktree resets in one cycle");
}
