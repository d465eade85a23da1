//! Fuzz target `idx`: the body is [`fuzz_bodies::idx`], which `cargo test` also replays over
//! the committed corpus (`crates/densenet/tests/corpus_replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_bodies::idx(data));
