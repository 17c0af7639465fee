//! What the prompt shows of the repository.

use crate::support::*;
use serde_json::Value;

fn picks(r: &Value) -> Vec<(String, bool, String)> {
    r["context"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["path"].as_str().unwrap().to_string(),
                        p["whole"].as_bool().unwrap(),
                        p["why"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A repository whose files only ranking can tell apart, and a gap that names none.
fn repo_with(prd_item: &str, files: &[(&str, String)]) -> Env {
    let env = Env::with_prd(&format!("# PRD\n\n- [ ] {prd_item} [bot-eligible]\n"));
    for (p, t) in files {
        env.write(p, t);
    }
    env.commit("files");
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_without_identifiers_still_gets_the_relevant_file() {
    let mut files: Vec<(&str, String)> = vec![
        ("src/pool.rs", "pub struct Pool { capacity: usize }\nimpl Pool { pub fn new() -> Pool { Pool { capacity: 8 } } }\n".into()),
        ("src/walk.rs", "pub fn walk() {}\n".into()),
    ];
    let names: Vec<String> = (0..40).map(|i| format!("src/aaa_{i:02}.rs")).collect();
    for n in &names {
        files.push((n.as_str(), format!("// {}\n", "filler ".repeat(300))));
    }
    let env = repo_with("Increase the pool capacity", &files);
    let model = Model::good().await;
    let p = Pipeline::default()
        .stages(&STAGES.replace("repair_attempts: 0", "repair_attempts: 0\n      context_tokens: 4000"));
    let r = env.run(&model, &p).expect("ok", 0);
    let picks = picks(&r);
    assert_eq!(
        picks.first(),
        Some(&("src/pool.rs".to_string(), true, "matches the gap".to_string())),
        "{picks:?}"
    );
    assert!(model.prompts().await[0].contains("--- src/pool.rs ---\npub struct Pool"));
    assert!(r["context"][0]["score"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_path_in_the_gap_finds_its_file() {
    let env = repo_with(
        "ignore/types: add the zig file type",
        &[
            (
                "crates/ignore/src/default_types.rs",
                "pub const DEFAULT_TYPES: &[(&str, &[&str])] = &[(\"rust\", &[\"*.rs\"])];\n".into(),
            ),
            ("crates/ignore/src/walk.rs", "pub fn walk() {}\n".into()),
            ("crates/core/main.rs", "fn main() {}\n".into()),
        ],
    );
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default()).expect("ok", 0);
    let picks = picks(&r);
    assert_eq!(
        picks[0],
        ("crates/ignore/src/default_types.rs".to_string(), true, "named by the gap".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_is_shown_in_part_with_its_matching_function() {
    let mut big = String::new();
    for i in 0..2_000 {
        big.push_str(&format!("pub fn helper_{i}(x: u32) -> u32 {{\n    x + {i}\n}}\n\n"));
    }
    let target = "pub fn escape_heading(title: &str) -> String {\n    title.replace('\\n', \" \")\n}\n";
    big.push_str(target);
    let env = repo_with("Escape the newline in a man page heading", &[("src/man.rs", big)]);
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default()).expect("ok", 0);
    assert_eq!(picks(&r), vec![("src/man.rs".to_string(), false, "matches the gap".to_string())]);
    let prompt = &model.prompts().await[0];
    assert!(prompt.contains("--- src/man.rs (partial) ---"), "{prompt}");
    assert!(prompt.contains(target), "the matching function is not verbatim");
    assert!(prompt.contains("@@ lines 1-20 @@\npub fn helper_0(x: u32) -> u32 {"), "no head");
    assert!(
        prompt.contains("@@ outline (line: item) @@\n21: pub fn helper_5(x: u32) -> u32 {"),
        "no outline"
    );
}

/// The paths shown for `gap` in a repository where a lock file, a license and a CI
/// workflow match its words better than the source does.
async fn shown_among_kinds_left_out(gap: &str) -> Vec<String> {
    let noise = "parser parser parser tokenizer tokenizer\n".repeat(20);
    let files = [
        ("src/parser.rs", "pub fn parse() {}\n".to_string()),
        ("Cargo.lock", noise.clone()),
        ("LICENSE-MIT", noise.clone()),
        (".github/workflows/ci.yml", noise.clone()),
    ];
    let env = repo_with(gap, &files);
    let model = Model::good().await;
    let r = env.run(&model, &Pipeline::default()).expect("ok", 0);
    picks(&r).into_iter().map(|p| p.0).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_files_and_licenses_only_when_named() {
    let shown = shown_among_kinds_left_out("Make the parser tokenizer faster").await;
    assert_eq!(shown, ["src/parser.rs"], "{shown:?}");
    let shown = shown_among_kinds_left_out("Explain the parser entries of `Cargo.lock`").await;
    assert_eq!(shown[0], "Cargo.lock", "{shown:?}");
    assert!(!shown.contains(&"LICENSE-MIT".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ci_comes_in_when_the_gap_names_it() {
    let mut shown = shown_among_kinds_left_out("ci: run the parser tokenizer tests on aarch64").await;
    shown.sort();
    assert_eq!(shown, [".github/workflows/ci.yml", "src/parser.rs"], "{shown:?}");
}

/// Earlier commits whose subjects read like the gap bring the files they changed, though
/// nothing in those files matches the gap's words; a shallow clone goes by the commits
/// it has.
#[tokio::test(flavor = "multi_thread")]
async fn earlier_commits_worded_like_the_gap_bring_their_files() {
    let mut files: Vec<(String, String)> =
        (0..40).map(|i| (format!("src/aaa_{i:02}.rs"), format!("// {}\n", "filler ".repeat(300)))).collect();
    files.push(("src/walk.rs".into(), "pub fn walk() {}\n".into()));
    let files: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let mut env = repo_with("printer: trim trailing blanks", &files);
    for (i, subject) in ["printer: align the columns", "printer: fix the colours", "printer: drop a blank"]
        .into_iter()
        .enumerate()
    {
        env.write("src/out/render.rs", &format!("// version {i}\npub fn render() {{}}\n"));
        env.commit(subject);
    }
    env.write("src/walk.rs", "pub fn walk() { skip_hidden() }\n");
    env.commit("walk: skip hidden files");
    let model = Model::good().await;
    let p = Pipeline::default()
        .stages(&STAGES.replace("repair_attempts: 0", "repair_attempts: 0\n      context_tokens: 4000"));
    let r = env.run(&model, &p).expect("ok", 0);
    let shown = picks(&r);
    let render =
        ("src/out/render.rs".to_string(), true, "changed by earlier commits worded like the gap".to_string());
    assert_eq!(shown.first(), Some(&render), "{shown:?}");
    assert!(!shown.iter().any(|p| p.0 == "src/walk.rs"), "{shown:?}");
    assert!(model.prompts().await[0].contains("--- src/out/render.rs ---\n// version 2\n"));

    // A shallow clone, as `actions/checkout` makes, three commits deep: its oldest lists
    // every file (it has no parent to compare with) and does not count, the newest printer
    // commit does.
    let shallow = env.tmp.path().join("shallow");
    git(
        env.tmp.path(),
        &["clone", "--quiet", "--depth", "3", &format!("file://{}", env.repo.display()), "shallow"],
    );
    env.repo = shallow;
    env.work = env.tmp.path().join("work-shallow");
    let r = env.run(&model, &p).expect("ok", 0);
    assert_eq!(picks(&r).first(), Some(&render), "{:?}", picks(&r));
}

fn pool_and_walk() -> Env {
    repo_with(
        "Increase the pool capacity",
        &[
            ("src/pool.rs", "pub struct Pool { capacity: usize }\n".into()),
            ("src/walk.rs", "pub fn walk() {}\n".into()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prompt_shows_the_base_as_committed_whatever_the_worktree_holds() {
    let env = pool_and_walk();
    let model = Model::good().await;
    let p = Pipeline::default().without_pr();
    env.run(&model, &p).expect("dry_run", 0);
    // What a killed cycle's tests could leave behind: changed files, and a tracked file
    // swapped for a link to prbot's own environment.
    let tree = env.work.join("worktree");
    std::fs::write(
        tree.join("src/pool.rs"),
        "pub struct Pool { capacity: usize } // planted pool capacity\n",
    )
    .unwrap();
    std::fs::remove_file(tree.join("src/walk.rs")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", tree.join("src/walk.rs")).unwrap();
    env.write("docs/PRD.md", "# PRD\n\n- [ ] Walk the pool capacity [bot-eligible]\n");
    env.commit("another gap");
    let r = env.run(&model, &p).expect("dry_run", 0);
    let prompt = model.prompts().await.pop().unwrap();
    assert!(prompt.contains("--- src/pool.rs ---\npub struct Pool { capacity: usize }\n"), "{prompt}");
    assert!(prompt.contains("--- src/walk.rs ---\npub fn walk() {}\n"), "{prompt}");
    assert!(!prompt.contains("planted") && !prompt.contains(MODEL_KEY_ENV), "{prompt}");
    let shown: Vec<String> = picks(&r).into_iter().map(|p| p.0).collect();
    assert!(shown.contains(&"src/walk.rs".to_string()), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_base_is_ranked_by_what_it_holds_not_by_the_kept_index() {
    let env = pool_and_walk();
    let model = Model::good().await;
    let p = Pipeline::default().without_pr();
    let first = env.run(&model, &p).expect("dry_run", 0);
    assert_eq!(picks(&first)[0].0, "src/pool.rs");
    // A new commit moves the pool into another file; the gap is the same.
    env.write("src/pool.rs", "// moved\n");
    env.write("src/tank.rs", "pub struct Pool { capacity: usize, pool_capacity: usize }\n");
    env.commit("move the pool");
    let second = env.run(&model, &p).expect("dry_run", 0);
    let ranked: Vec<String> =
        picks(&second).into_iter().filter(|p| p.2 != "touched by an earlier attempt").map(|p| p.0).collect();
    assert_eq!(ranked.first().map(String::as_str), Some("src/tank.rs"), "{ranked:?}");
}
