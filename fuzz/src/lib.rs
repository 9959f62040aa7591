//! What each fuzz target checks, as a plain function of the input bytes.
//!
//! The targets in `fuzz_targets/` only call these; `core/tests/fuzz_corpus.rs`
//! includes the same files to replay the committed corpora in a normal
//! `cargo test`, without libFuzzer. So each module uses nothing but
//! `punchline_core`, the core's own dependencies (`blake2`,
//! `chacha20poly1305`), `std` and `input` (which that test includes too, as
//! `crate::input`).

mod input;

pub mod client;
pub mod frame;
pub mod handshake;
pub mod server;
pub mod session;
pub mod stun;
