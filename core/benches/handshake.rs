//! What the client–server channel costs (issue 20): one Noise IK handshake
//! (both sides, four X25519 operations each way), and sealing and opening
//! one signaling frame, measured against the baseline of encoding the same
//! frame in the clear.
//!
//! `cargo bench -p punchline-core --bench handshake`

use criterion::{black_box, criterion_main, Criterion};
use punchline_core::secure::{HelloReceived, HelloSent, StaticKey};
use punchline_core::wire::channel::Hello;
use punchline_core::wire::frame::Frame;

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
        text: "x".repeat(200),
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
}

// The macros generate undocumented items; this file is not a library.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::handshake);
}
criterion_main!(group::benches);
