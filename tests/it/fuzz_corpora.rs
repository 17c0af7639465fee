//! The fuzz targets' committed corpora, replayed on stable through the same property
//! checks the fuzzers run (`prbot::fuzzing`), so every input ever kept stays checked.

use std::path::Path;

#[test]
fn every_committed_fuzz_input_still_holds_its_properties() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for target in prbot::fuzzing::TARGETS {
        assert!(
            root.join("fuzz_targets").join(format!("{target}.rs")).is_file(),
            "no fuzz target for {target}"
        );
        let dir = root.join("corpus").join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 3, "{target}: only {} inputs in its corpus", inputs.len());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let name = input.file_name().unwrap().to_string_lossy().into_owned();
            let result = std::panic::catch_unwind(|| prbot::fuzzing::run(target, &data));
            assert!(result.is_ok(), "{target}: the input {name} breaks a property (see the panic above)");
        }
    }
}
