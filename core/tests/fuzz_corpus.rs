//! Replays the committed fuzz corpora of the decoder targets
//! (`fuzz/corpus/stun_decode/`, `fuzz/corpus/frame_decode/`) through the very
//! checks the fuzz targets run (`fuzz/src/`, included here), so a plain
//! `cargo test` catches a regression on any input the fuzzer once found
//! interesting, without libFuzzer or a nightly toolchain. See
//! `fuzz/README.md` for running the fuzzers themselves.

#[allow(unreachable_pub)]
#[path = "../../fuzz/src/frame.rs"]
mod frame;
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/stun.rs"]
mod stun;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use punchline_core::wire::frame::{Frame, FRAME_TYPES};
use punchline_core::wire::stun::{answer_binding, Message};

/// Runs `check` on every input of `target`'s corpus, failing with the name
/// of each input that panics; returns the inputs.
fn replay(target: &str, check: fn(&[u8])) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("a directory entry").path()).collect();
    paths.sort();
    assert!(paths.len() >= 20, "{} holds only {} inputs", dir.display(), paths.len());
    let mut inputs = Vec::new();
    let mut failed = Vec::new();
    for path in paths {
        let data = std::fs::read(&path).expect("a corpus file reads");
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(()) => inputs.push(data),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "{target}: {} inputs fail: {failed:#?}", failed.len());
    inputs
}

#[test]
fn the_stun_corpus_round_trips_and_is_answered_correctly() {
    // Given the corpus, when each input is checked, then none fails.
    let inputs = replay("stun_decode", stun::check);
    // And the corpus is no vacuous pass: it holds messages that decode, and
    // requests that get each kind of answer.
    let decoded = inputs.iter().filter(|d| Message::decode(d).is_ok()).count();
    let from: SocketAddr = "192.0.2.1:4000".parse().expect("an address");
    let answers: BTreeSet<String> = inputs
        .iter()
        .filter_map(|d| answer_binding(d, from))
        .map(|a| {
            let a = Message::decode(&a).expect("an answer decodes");
            format!("{:?} {:?}", a.class, a.error_code().map(|(code, _)| code))
        })
        .collect();
    assert!(decoded >= 10, "only {decoded} inputs decode");
    let expected = ["ErrorResponse Some(400)", "ErrorResponse Some(420)", "SuccessResponse None"];
    assert_eq!(answers.iter().map(String::as_str).collect::<Vec<_>>(), expected);
}

#[test]
fn the_frame_corpus_round_trips_within_each_types_limit() {
    // Given the corpus, when each input is checked, then none fails.
    let inputs = replay("frame_decode", frame::check);
    // And it holds a decodable frame of every registered type, so every
    // row's round trip and limit are checked.
    let tags: BTreeSet<u8> = inputs.iter().filter_map(|d| Frame::decode(d).ok()).map(|f| f.tag()).collect();
    let missing: Vec<&str> = FRAME_TYPES.iter().filter(|t| !tags.contains(&t.tag)).map(|t| t.name).collect();
    assert!(missing.is_empty(), "no input decodes to {missing:?}");
}
