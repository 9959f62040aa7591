//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`: the
//! decoders, the server and client machines, the client–server handshake,
//! the sessions' end-to-end handshake and transport) through the
//! very checks the fuzz targets run (`fuzz/src/`, included here), so a plain
//! `cargo test` catches a regression on any input the fuzzer once found
//! interesting, without libFuzzer or a nightly toolchain. See
//! `fuzz/README.md` for running the fuzzers themselves.

#[allow(unreachable_pub)]
#[path = "../../fuzz/src/client.rs"]
mod client;
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/frame.rs"]
mod frame;
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/handshake.rs"]
mod handshake;
#[path = "../../fuzz/src/input.rs"]
mod input;
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/server.rs"]
mod server;
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/session.rs"]
mod session;
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
fn replay(target: &str, mut check: impl FnMut(&[u8])) -> Vec<Vec<u8>> {
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

#[test]
fn the_handshake_corpus_opens_each_channel_datagram_once() {
    // Given the corpus, when each input drives a real handshake and its
    // transport, then none fails.
    let mut reached = handshake::Reached::default();
    replay("handshake", |data| {
        let r = handshake::check(data);
        reached.channel |= r.channel;
        reached.opened += r.opened;
        reached.refused += r.refused;
    });
    // And it gets past the handshake, opens sealed datagrams and refuses
    // others.
    assert!(reached.channel && reached.opened > 0 && reached.refused > 0, "{reached:?}");
}

#[test]
fn the_session_corpus_opens_each_datagram_once_across_rekeys() {
    // Given the corpus, when each input drives a real session handshake
    // between two users and its transport while time moves, then none
    // fails.
    let mut reached = session::Reached::default();
    replay("session", |data| {
        let r = session::check(data);
        reached.keyed |= r.keyed;
        reached.opened += r.opened;
        reached.refused += r.refused;
        reached.rekeyed += r.rekeyed;
    });
    // And it keys sessions, opens and refuses datagrams, and seals under
    // later keys.
    assert!(reached.keyed && reached.opened > 0 && reached.refused > 0 && reached.rekeyed > 0, "{reached:?}");
}

#[test]
fn the_server_corpus_logs_in_through_the_channel_without_amplification() {
    // Given the corpus, when each input drives a server through real
    // handshakes, sealed, plain, forged and replayed frames, then none fails.
    let mut all = Vec::new();
    replay("server_machine", |data| all.push(server::check(data)));
    // And it reaches deep: channels, proved logins, cookies under load,
    // sessions, relayed frames, stored texts and STUN answers.
    let sum = |f: fn(&server::Reached) -> usize| all.iter().map(f).sum::<usize>();
    let reached = [
        ("channels", sum(|r| r.channels)),
        ("online", sum(|r| r.online)),
        ("cookies", sum(|r| r.cookies)),
        ("sessions", sum(|r| r.sessions)),
        ("relayed", sum(|r| r.relayed)),
        ("texts stored", sum(|r| r.texts_stored)),
        ("stun", sum(|r| r.stun)),
        ("sealed opened", sum(|r| r.sealed_opened)),
    ];
    assert!(reached.iter().all(|(_, n)| *n > 0), "{reached:?}");
}

#[test]
fn the_client_corpus_acts_only_on_frames_sealed_in_its_channel() {
    // Given the corpus, when each input drives a client whose server the
    // driver plays, then none fails.
    let mut all = Vec::new();
    replay("client_machine", |data| all.push(client::check(data)));
    // And it reaches deep: logins, sealed frames both ways, sessions, text
    // deliveries, NAT profiles and cookie replies.
    let sum = |f: fn(&client::Reached) -> usize| all.iter().map(f).sum::<usize>();
    let reached = [
        ("logins", sum(|r| r.logins)),
        ("sealed opened", sum(|r| r.sealed_opened)),
        ("sessions", sum(|r| r.sessions)),
        ("texts", sum(|r| r.texts)),
        ("profiles", sum(|r| r.profiles)),
        ("cookies", sum(|r| r.cookies)),
    ];
    assert!(reached.iter().all(|(_, n)| *n > 0), "{reached:?}");
}
