//! Relay throughput over TCP against over UDP, on loopback, in one run
//! (issue 21): the same server relays a bulk transfer between two clients on
//! UDP, and between two clients whose UDP goes nowhere and who reach it over
//! TCP. Sessions stay on the relay (`punch` off), so every byte crosses the
//! server; the relay's budget is raised so that it is not the limit.
//!
//! `cargo bench -p punchline-mio --bench relay_tcp`; the ratio of the two
//! medians is the figure (README, "When UDP is blocked: TCP").

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use punchline_core::client::{ClientConfig, ClientEvent, SendError};
use punchline_core::server::ServerConfig;
use punchline_core::wire::frame::{SessionId, Transport};
use punchline_mio::{ClientHandle, ServerRunner};

/// Messages per transfer, of [`MESSAGE`] bytes each.
const MESSAGES: usize = 2_000;
const MESSAGE: usize = 1_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("bench address parses")
}

/// The first event `pred` accepts, within a minute.
fn wait_for(client: &ClientHandle, mut pred: impl FnMut(&ClientEvent) -> bool) -> ClientEvent {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(e) = client.next_event(Duration::from_millis(100)) {
            if pred(&e) {
                return e;
            }
        }
    }
    panic!("the bench's setup hung");
}

/// Two clients logged in (over `transport`) with a session on the relay.
struct Pair {
    sender: ClientHandle,
    receiver: ClientHandle,
    session: SessionId,
}

impl Pair {
    fn open(server: SocketAddr, blackhole: SocketAddr, transport: Transport, tag: &str) -> Pair {
        let start = |user: &str| {
            let udp_target = if transport == Transport::Tcp { blackhole } else { server };
            let config = ClientConfig {
                server_tcp: Some(server),
                punch: false,
                // The default window, as a real client sends with.
                ..ClientConfig::new(user, udp_target)
            };
            let client = ClientHandle::start(config, addr("127.0.0.1:0")).expect("client starts");
            wait_for(&client, |e| matches!(e, ClientEvent::LoggedIn { .. }));
            assert_eq!(client.call(|c, _| c.transport()).expect("running"), transport);
            client
        };
        let (sender_name, receiver_name) = (format!("s-{tag}"), format!("r-{tag}"));
        let sender = start(&sender_name);
        let receiver = start(&receiver_name);
        // The receiver's login must have reached the server before a connect.
        receiver.lookup(&receiver_name).expect("running").expect("valid");
        wait_for(&receiver, |e| matches!(e, ClientEvent::LookupResult { online: true, .. }));
        sender.connect(&receiver_name).expect("running").expect("valid");
        let ClientEvent::SessionOpened { session, .. } =
            wait_for(&sender, |e| matches!(e, ClientEvent::SessionOpened { .. }))
        else {
            unreachable!("matched")
        };
        wait_for(&receiver, |e| matches!(e, ClientEvent::SessionOpened { .. }));
        Pair { sender, receiver, session }
    }

    /// Sends [`MESSAGES`] messages and waits until the receiver has them all.
    fn transfer(&self) -> Duration {
        let data = vec![0x5a; MESSAGE];
        let started = Instant::now();
        let mut sent = 0;
        let mut received = 0;
        while received < MESSAGES {
            while sent < MESSAGES {
                match self.sender.send(self.session, &data).expect("running") {
                    Ok(()) => sent += 1,
                    Err(SendError::WindowFull) => break,
                    Err(e) => panic!("send failed: {e:?}"),
                }
            }
            // The sender's events (acknowledgements) are drained by its
            // own thread; the receiver's are counted here.
            while let Some(e) = self.receiver.next_event(Duration::from_millis(1)) {
                if matches!(e, ClientEvent::DataReceived { .. }) {
                    received += 1;
                }
            }
            while self.sender.next_event(Duration::ZERO).is_some() {}
        }
        started.elapsed()
    }
}

fn relay_throughput(c: &mut Criterion) {
    let mut config = ServerConfig::new(addr("127.0.0.1:0"), None);
    config.relay_burst_bytes = 1 << 30;
    config.relay_rate_bytes = 1 << 30;
    let runner = ServerRunner::bind_config(config).expect("server binds");
    let server = runner.local_addrs()[0].1;
    let shutdown = runner.shutdown_handle();
    let serving = thread::spawn(move || runner.run(|_| {}));
    // UDP to the server for the TCP pair goes here: a socket nobody reads.
    let blackhole = UdpSocket::bind("127.0.0.1:0").expect("blackhole binds");
    let blackhole_addr = blackhole.local_addr().expect("bound");

    let udp = Pair::open(server, blackhole_addr, Transport::Udp, "udp");
    let tcp = Pair::open(server, blackhole_addr, Transport::Tcp, "tcp");
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Bytes((MESSAGES * MESSAGE) as u64));
    group.sample_size(20);
    for (name, pair) in [("udp", &udp), ("tcp", &tcp)] {
        group.bench_function(name, |b| b.iter_custom(|iters| (0..iters).map(|_| pair.transfer()).sum()));
    }
    group.finish();
    drop((udp, tcp));
    shutdown.shutdown();
    let _ = serving.join();
}

criterion_group!(benches, relay_throughput);
criterion_main!(benches);
