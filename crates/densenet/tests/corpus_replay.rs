//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same function the
//! fuzz target calls (`fuzz/src/lib.rs`, included here as a module), so a plain `cargo test`
//! covers the corpora and every crash once found and fixed, without nightly or libFuzzer.

#[path = "../../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_replays_without_failure() {
    for (target, body) in fuzz_bodies::TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: empty corpus");
        for file in &files {
            let bytes = std::fs::read(file).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| body(&bytes));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} fails on {}",
                file.display()
            );
        }
        eprintln!("{target}: {} inputs replayed", files.len());
    }
}
