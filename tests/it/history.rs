//! `prbot history`, `prbot stats` and `prbot demo`.

use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn history_and_stats_read_the_records() {
    let env = Env::new();
    let model = Model::good().await;
    env.run(&model, &Pipeline::default().tests(&["exit 1"])).expect("tests_failed", 0);
    let ok = env.run(&model, &Pipeline::default()).expect("ok", 0);
    let cli = |args: &[&str]| cli(&env, args);
    let h = cli(&["history"]);
    let lines: Vec<&str> = h.lines().collect();
    assert_eq!(lines.len(), 3, "{h}");
    assert!(lines[1].contains(" ok ") && lines[1].contains(ok["pr"]["url"].as_str().unwrap()), "{h}");
    assert!(lines[2].contains("tests_failed"), "{h}");
    assert_eq!(cli(&["history", "--limit", "1"]).lines().count(), 2);
    // No limit of 0 that would read as "no cycles recorded".
    let zero = prbot(&["history", "--limit", "0"], &env.repo, &env.pipeline_path).output().unwrap();
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("it must be 1 or more"));
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

fn cli(env: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--repo")
        .arg(&env.repo)
        .arg("--pipeline")
        .arg(&env.pipeline_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `cycles.jsonl`, each `index/*.jsonl` and `stats.json`, by name.
fn derived(env: &Env) -> Vec<(String, Vec<u8>)> {
    let state = env.state();
    let mut out = vec![
        ("cycles.jsonl".to_string(), std::fs::read(state.join("cycles.jsonl")).unwrap()),
        ("stats.json".to_string(), std::fs::read(state.join("stats.json")).unwrap()),
    ];
    let mut index: Vec<_> =
        std::fs::read_dir(state.join("index")).unwrap().flatten().map(|e| e.path()).collect();
    index.sort();
    for p in index {
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn reindex_rebuilds_the_derived_files_byte_for_byte() {
    let env = Env::new();
    let model = Model::good().await;
    env.run(&model, &Pipeline::default().tests(&["exit 1"])).expect("tests_failed", 0);
    env.run(&model, &Pipeline::default().without_pr()).expect("dry_run", 0);
    env.run(&model, &Pipeline::default()).expect("ok", 0);
    let written = derived(&env);
    assert_eq!(written[0].1.iter().filter(|b| **b == b'\n').count(), 3);
    // Lost or mangled: all rebuilt from cycles/.
    std::fs::remove_file(env.state().join("cycles.jsonl")).unwrap();
    std::fs::write(env.state().join("stats.json"), "{}").unwrap();
    std::fs::remove_dir_all(env.state().join("index")).unwrap();
    cli(&env, &["history", "--reindex"]);
    assert_eq!(derived(&env), written);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_line_and_a_killed_write_lose_no_record() {
    let env = Env::new();
    let model = Model::good().await;
    let first = env.run(&model, &Pipeline::default().without_pr()).expect("dry_run", 0);
    let state = env.state();
    // A write killed after the record file but before its index lines: its journal entry
    // and record are there, nothing else.
    let killed_id = "20200101T000000000Z-dead";
    let mut killed = first.clone();
    killed["cycle_id"] = killed_id.into();
    std::fs::write(state.join(format!("cycles/{killed_id}.json")), killed.to_string()).unwrap();
    std::fs::create_dir_all(state.join("journal")).unwrap();
    std::fs::write(state.join("journal").join(killed_id), killed_id).unwrap();
    // And an append cut short by a crash.
    let mut log = std::fs::OpenOptions::new().append(true).open(state.join("cycles.jsonl")).unwrap();
    std::io::Write::write_all(&mut log, b"{\"cycle_id\":\"2020").unwrap();
    let last = env.run(&model, &Pipeline::default().without_pr()).expect("dry_run", 0);
    let ids: Vec<String> = cli(&env, &["history", "--json", "--limit", "10"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["cycle_id"].as_str().unwrap().to_string())
        .collect();
    for id in [first["cycle_id"].as_str().unwrap(), killed_id, last["cycle_id"].as_str().unwrap()] {
        assert!(ids.iter().any(|i| i == id), "{id} is missing from history: {ids:?}");
    }
    assert!(!state.join("journal").join(killed_id).exists(), "the journal entry was left");
    let s: Value = serde_json::from_str(&cli(&env, &["stats", "--json"])).unwrap();
    assert_eq!(s["cycles"], 3, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_killed_between_any_two_steps_loses_no_record() {
    for point in ["record", "log", "index", "stats"] {
        let env = Env::new();
        let model = Model::good().await;
        let p = Pipeline::default().without_pr();
        // Killed (abort, as by SIGKILL) at `point` of writing its record.
        let mut c = std::process::Command::new(BIN);
        c.args(["run", "--json", "--repo"])
            .arg(&env.repo)
            .arg("--pipeline")
            .arg(env.write_pipeline(&model, &p));
        c.env(MODEL_KEY_ENV, MODEL_KEY).env("PRBOT_TEST_CRASH_AT", point);
        let out = c.output().unwrap();
        // Crashes are injected in test (debug) builds only; a release build ignores the
        // variable and finishes its write.
        assert_eq!(
            out.status.success(),
            !cfg!(debug_assertions),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The next cycle finishes the write; both cycles are in history and the totals.
        env.run(&model, &p).expect("dry_run", 0);
        let lines = cli(&env, &["history", "--json"]);
        assert_eq!(lines.lines().count(), 2, "{point}: {lines}");
        let s: Value = serde_json::from_str(&cli(&env, &["stats", "--json"])).unwrap();
        assert_eq!(s["cycles"], 2, "{point}: {s}");
        let gap = env.state().join("index").read_dir().unwrap().next().unwrap().unwrap().path();
        assert_eq!(std::fs::read_to_string(gap).unwrap().lines().count(), 2, "{point}: the gap's index");
    }
}
