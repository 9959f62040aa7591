//! What each fuzz target checks, as a plain function of the input bytes.
//!
//! The targets in `fuzz_targets/` only call these; `core/tests/fuzz_corpus.rs`
//! includes the same files to replay the committed corpora in a normal
//! `cargo test`, without libFuzzer. So each module uses nothing but
//! `punchline_core` and `std`.

pub mod frame;
pub mod stun;
