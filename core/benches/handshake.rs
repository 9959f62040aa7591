//! What the encryption costs (issue 20): one client–server Noise IK
//! handshake (both sides, four X25519 operations each way), and sealing and
//! opening one signaling frame, measured against the baseline of encoding
//! the same frame in the clear; then the same for a session between peers
//! (its IK handshake, and a 1,000-byte stream message sealed end to end), and
//! sealing a text to its recipient (Noise X).
//!
//! `cargo bench -p punchline-core --bench handshake`

use criterion::{black_box, criterion_main, Criterion};
use std::time::Duration;

use punchline_core::secure::{
    open_text, seal_text, HelloReceived, HelloSent, PeerHelloReceived, PeerHelloSent, StaticKey,
};
use punchline_core::wire::channel::Hello;
use punchline_core::wire::frame::{Frame, SessionBody, SessionId, StreamMessage};

fn login() -> Vec<u8> {
    Frame::Login { request: 1, user: "alice".into(), host_candidates: vec!["10.0.0.2:4000".parse().unwrap()] }.encode()
}

fn handshake(c: &mut Criterion) {
    let server = StaticKey::derive(1.into(), "server");
    let alice = StaticKey::derive(1.into(), "alice");
    let login = login();
    let login_ok = Frame::LoginOk { request: 1, token: 7, reflexive: "198.51.100.1:4000".parse().unwrap() }.encode();
    let mut group = c.benchmark_group("handshake");
    group.bench_function("client hello", |b| {
        b.iter(|| HelloSent::start(&alice, &server.public(), black_box(&login), None, 2.into()))
    });
    group.bench_function("whole handshake (both sides)", |b| {
        b.iter(|| {
            let (sent, hello) = HelloSent::start(&alice, &server.public(), &login, None, 2.into());
            let parsed = Hello::parse(&hello).expect("a hello");
            let received = HelloReceived::read(&server, parsed.sender, parsed.noise, 3.into()).expect("reads");
            let (welcome, _) = received.answer(&login_ok, 7).expect("answers");
            sent.finish(black_box(&welcome)).expect("finishes")
        })
    });
    group.finish();

    let (sent, hello) = HelloSent::start(&alice, &server.public(), &login, None, 2.into());
    let parsed = Hello::parse(&hello).expect("a hello");
    let (welcome, mut server_end) = HelloReceived::read(&server, parsed.sender, parsed.noise, 3.into())
        .expect("reads")
        .answer(&login_ok, 7)
        .expect("answers");
    let client_end = sent.finish(&welcome).expect("finishes").1.into_channel(7).expect("a channel");
    let keepalive = Frame::Keepalive { token: 7, profile: Default::default() };
    let text = Frame::TextSend {
        token: 7,
        id: punchline_core::wire::frame::MessageId { conversation: 1, seq: 1 },
        to: "bob".into(),
        sealed: vec![b'x'; 200],
    };
    let mut group = c.benchmark_group("frame");
    for (name, frame) in [("keepalive", keepalive), ("200-byte text", text)] {
        group.bench_function(format!("{name}: encode in the clear (baseline)"), |b| {
            b.iter(|| black_box(&frame).encode())
        });
        group.bench_function(format!("{name}: encode, seal and open"), |b| {
            b.iter(|| {
                let sealed = client_end.seal(&black_box(&frame).encode()).expect("sealed");
                server_end.open(&sealed).expect("opens")
            })
        });
    }
    group.finish();

    let bob = StaticKey::derive(1.into(), "bob");
    let session = SessionId(9);
    let t0 = Duration::ZERO;
    let mut group = c.benchmark_group("session");
    group.bench_function("whole peer handshake (both sides)", |b| {
        b.iter(|| {
            let (mut sent, hello) = PeerHelloSent::start(&bob, &alice.public(), session, 2.into());
            let (welcome, _) =
                PeerHelloReceived::answer(&alice, &bob.public(), session, &hello, t0, 3.into()).expect("answers");
            sent.finish(black_box(&welcome), t0).expect("finishes")
        })
    });
    let (mut sent, hello) = PeerHelloSent::start(&bob, &alice.public(), session, 2.into());
    let (welcome, mut alice_end) =
        PeerHelloReceived::answer(&alice, &bob.public(), session, &hello, t0, 3.into()).expect("answers");
    let mut bob_end = sent.finish(&welcome, t0).expect("finishes");
    let data = Frame::Session {
        session,
        counter: 1,
        body: SessionBody::Stream { seq: 1, message: StreamMessage::App(vec![b'x'; 1000]) },
    };
    group.bench_function("1000-byte message: encode in the clear (baseline)", |b| b.iter(|| black_box(&data).encode()));
    group.bench_function("1000-byte message: encode, seal and open", |b| {
        b.iter(|| {
            let (sealed, _) = alice_end.seal(t0, &black_box(&data).encode()).expect("sealed");
            bob_end.open(t0, &sealed).expect("opens")
        })
    });
    let id = punchline_core::wire::frame::MessageId { conversation: 1, seq: 1 };
    let text = "x".repeat(200);
    group.bench_function("200-byte text: seal to the recipient and open", |b| {
        b.iter(|| {
            let sealed = seal_text(&alice, &bob.public(), ("alice", "bob", id), black_box(&text), 4.into());
            open_text(&bob, ("alice", "bob", id), &sealed).expect("opens")
        })
    });
    group.finish();
}

// The macros generate undocumented items; this file is not a library.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::handshake);
}
criterion_main!(group::benches);
