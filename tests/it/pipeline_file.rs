//! The pipeline file: validation with locations, and the pipelines the project ships.

use crate::support::*;

fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "p.yml");
    (out.status.code().unwrap(), stderr)
}

#[test]
fn yaml_errors_name_the_file_and_the_place() {
    let cases: &[(&str, &str)] = &[
        ("stages:\n  - uses: guard\n    colour: red\n", "p.yml:3:5: stages[0]: unknown field `colour`"),
        ("budget:\n  calls_per_dya: 3\nstages:\n  - uses: guard\n", "p.yml:2:3: budget: unknown field `calls_per_dya`"),
        ("stages:\n  - uses: guard\n  - uses: lint\n", "p.yml:3:11: stages[1].uses: unknown variant `lint`"),
        ("stages:\n  - uses: guard\n    timeout: 9 parsecs\n", "p.yml:2:5: stages[0]: bad duration `9 parsecs`"),
        ("stages:\n  - uses: pick-gap\n  - uses: apply\n  - uses: propose\n", "p.yml: stage #2 (id: apply): `apply` needs a proposal, but no enabled stage before it provides one; move it after the `propose` stage"),
        ("stages:\n  - uses: pick-gap\n    enabled: false\n  - uses: propose\n", "p.yml: stage #2 (id: propose): `propose` needs a gap"),
        ("stages:\n  - uses: test\n    with:\n      comands: [x]\n", "p.yml: stage #1 (id: test): with: unknown field `comands`"),
        ("stages:\n  - run: echo\n    uses: guard\n", "has both `uses:` and `run:`"),
        ("stages: [\n", "p.yml:2:1"),
        // Found by fuzzing: a second document had no place.
        ("stages: []\n---\nx: 1\n", "p.yml:2:1: a second YAML document begins here"),
        ("# c\n    stages:\n  - uses: guard\n", "p.yml:3:1: a second YAML document"),
    ];
    for (yaml, want) in cases {
        let (code, stderr) = validate(yaml);
        assert_eq!(code, 2, "{yaml}");
        assert!(stderr.contains(want), "for:\n{yaml}\nwanted {want:?}, got:\n{stderr}");
    }
}

#[test]
fn validate_says_what_the_dry_run_pipeline_does() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dry = std::process::Command::new(BIN)
        .arg("validate")
        .arg(format!("{root}/pipelines/dry-run.yml"))
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("dry runs"));
}

#[test]
fn validate_takes_the_file_as_the_other_commands_do() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dry = format!("{root}/pipelines/dry-run.yml");
    let flag = std::process::Command::new(BIN).args(["validate", "--pipeline", &dry]).output().unwrap();
    assert_eq!(flag.status.code(), Some(0), "{}", String::from_utf8_lossy(&flag.stderr));
    assert!(String::from_utf8_lossy(&flag.stdout).contains("dry runs"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "stages:\n  - uses: lint\n").unwrap();
    let flag = std::process::Command::new(BIN).arg("validate").arg("--pipeline").arg(&bad).output().unwrap();
    assert_eq!(flag.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&flag.stderr).contains("bad.yml:2:11"),
        "{}",
        String::from_utf8_lossy(&flag.stderr)
    );
    // Both at once is ambiguous, and said to be.
    let both = std::process::Command::new(BIN).args(["validate", &dry, "--pipeline", &dry]).output().unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_pipeline_exits_2_and_runs_nothing() {
    let env = Env::new();
    let model = Model::good().await;
    let run = env.run(&model, &Pipeline::default().settings("bogus: 1"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("unknown field `bogus`"), "{}", run.stderr);
    assert!(!env.state().exists());
}

fn committed_schema() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/prbot.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_committed_schema_is_what_prbot_schema_prints() {
    let out = std::process::Command::new(BIN).arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/prbot.schema.json")).unwrap();
    assert!(
        printed == committed,
        "pipelines/prbot.schema.json is stale: run `cargo run -- schema > pipelines/prbot.schema.json`"
    );
}

#[test]
fn every_key_in_the_schema_has_a_description_and_optional_keys_their_default() {
    fn walk(at: &str, node: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
            let required: Vec<&str> = obj
                .get("required")
                .and_then(|r| r.as_array())
                .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            for (key, schema) in props {
                let here = format!("{at}.{key}");
                if schema.get("description").is_none() {
                    missing.push(format!("{here}: no description"));
                }
                // A stage's keys say their defaults in words: they depend on the stage.
                let in_stage = at.ends_with("Stage");
                if !required.contains(&key.as_str()) && !in_stage && schema.get("default").is_none() {
                    missing.push(format!("{here}: no default"));
                }
            }
        }
        for (key, child) in obj {
            // `allOf`/`oneOf` hold the stage's rules, not keys.
            if !matches!(key.as_str(), "properties" | "default" | "allOf" | "oneOf") {
                match child {
                    serde_json::Value::Array(items) => {
                        items.iter().for_each(|c| walk(&format!("{at}.{key}"), c, missing))
                    }
                    c => walk(&format!("{at}.{key}"), c, missing),
                }
            }
        }
        if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
            for (key, child) in props {
                walk(&format!("{at}.{key}"), child, missing);
            }
        }
    }
    let schema = committed_schema();
    let mut missing = Vec::new();
    walk("$", &schema, &mut missing);
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    let propose = &schema["$defs"]["ProposeSettings"]["properties"];
    assert_eq!(propose["context_tokens"]["default"], 24000);
    assert_eq!(schema["$defs"]["ForgeConfig"]["properties"]["timeout"]["default"], "30s");
    assert_eq!(schema["properties"]["prd"]["default"]["tag"], "[bot-eligible]");
}

/// Every pipeline the project ships or writes, and every pipeline (or part of one) in the
/// README, as files: `(name, yaml)`.
fn pipelines_to_check() -> Vec<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut out = Vec::new();
    for f in ["pipelines/default.yml", "pipelines/dry-run.yml"] {
        out.push((f.to_string(), std::fs::read_to_string(format!("{root}/{f}")).unwrap()));
    }
    for forge in ["gitea", "github"] {
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new(BIN)
            .args(["init", "--forge", forge, "--repo"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let text = std::fs::read_to_string(dir.path().join("pipelines/default.yml")).unwrap();
        let schema = std::fs::read_to_string(dir.path().join("pipelines/prbot.schema.json")).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&schema).unwrap(),
            committed_schema(),
            "init writes the schema"
        );
        out.push((format!("init --forge {forge}"), text));
    }
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let yaml = block.split("```").next().unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        // A part of a pipeline is checked as a pipeline with one stage.
        let yaml = if doc.get("stages").is_some() {
            yaml.to_string()
        } else {
            format!("{yaml}stages:\n  - uses: guard\n")
        };
        out.push((format!("README.md yaml block {}", i + 1), yaml));
    }
    out
}

fn check_jsonschema(files: &[std::path::PathBuf]) -> (bool, String) {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/prbot.schema.json");
    let out = std::process::Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(schema)
        .args(files)
        .output()
        .expect("check-jsonschema runs: install it (`pip install check-jsonschema`), as .ci/run does");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn shipped_written_and_documented_pipelines_validate_against_the_schema_and_prbot_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (name, yaml)) in pipelines_to_check().into_iter().enumerate() {
        let file = dir.path().join(format!("{i}.yml"));
        std::fs::write(&file, &yaml).unwrap();
        let out = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        files.push(file);
    }
    assert!(files.len() >= 8, "only {} pipelines found", files.len());
    let (ok, report) = check_jsonschema(&files);
    assert!(ok, "{report}");
}

#[test]
fn the_schema_refuses_what_prbot_refuses() {
    let cases = [
        ("a misspelt top-level key", "budgets: {}\nstages:\n  - uses: guard\n", "budgets"),
        ("a key of another stage", "stages:\n  - uses: guard\n    with: {models: [a/b]}\n", "models"),
        ("a misspelt setting", "stages:\n  - uses: propose\n    with: {contxt_tokens: 9}\n", "contxt_tokens"),
        ("both uses and run", "stages:\n  - uses: guard\n    run: echo\n", "stages[0]"),
        ("a bad backend", "sandbox: docker\nstages:\n  - uses: guard\n", "sandbox"),
        ("no stages", "budget: {calls_per_day: 3}\n", "stages"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, yaml, named) in cases {
        let file = dir.path().join("p.yml");
        std::fs::write(&file, yaml).unwrap();
        let prbot = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
        assert_eq!(prbot.status.code(), Some(2), "prbot accepts {what}");
        let (ok, report) = check_jsonschema(&[file]);
        assert!(!ok && report.contains(named), "the schema accepts {what}:\n{report}");
    }
}
