#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prbot::fuzzing::run("pipeline", data));
