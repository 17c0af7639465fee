//! `prbot history`, `prbot stats` and `prbot demo`.

use crate::support::*;
use serde_json::Value;

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
