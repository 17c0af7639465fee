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
    ];
    for (yaml, want) in cases {
        let (code, stderr) = validate(yaml);
        assert_eq!(code, 2, "{yaml}");
        assert!(stderr.contains(want), "for:\n{yaml}\nwanted {want:?}, got:\n{stderr}");
    }
}

#[test]
fn the_shipped_pipelines_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for f in ["pipelines/default.yml", "pipelines/dry-run.yml"] {
        let out =
            std::process::Command::new(BIN).arg("validate").arg(format!("{root}/{f}")).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{f}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dry = std::process::Command::new(BIN)
        .arg("validate")
        .arg(format!("{root}/pipelines/dry-run.yml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dry.stdout).contains("dry runs"));
}

#[test]
fn the_readmes_pipelines_are_valid() {
    let readme = include_str!("../../README.md");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let yaml = block.split("```").next().unwrap();
        if !yaml.contains("stages:") {
            continue;
        }
        let file = dir.path().join(format!("readme-{i}.yml"));
        std::fs::write(&file, yaml).unwrap();
        let out = std::process::Command::new(BIN).arg("validate").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "README block {i}: {}", String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} pipelines found in README.md");
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
