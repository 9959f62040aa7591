//! A server and two clients on loopback, driven by punchline-mio.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::client::{ClientConfig, ClientEvent};
use punchline_core::nat::{FilteringBehavior, MappingBehavior};
use punchline_core::server::ServerConfig;
use punchline_mio::{ClientHandle, ServerRunner, ShutdownHandle};

fn start_server() -> (SocketAddr, SocketAddr, ShutdownHandle, thread::JoinHandle<std::io::Result<()>>) {
    let config = ServerConfig::new(addr("127.0.0.1:0"), Some(addr("127.0.0.2:0")));
    let runner = ServerRunner::bind_config(config).expect("server binds");
    let addrs = runner.local_addrs();
    assert_eq!(addrs.len(), 4, "primary, alternate and two crossed sockets: {addrs:?}");
    let (primary, alt) = (addrs[0].1, addrs[1].1);
    let handle = runner.shutdown_handle();
    let thread = thread::spawn(move || runner.run(|_| {}));
    (primary, alt, handle, thread)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

/// The first event that `pred` accepts. The deadline only turns a hang into
/// a failure; it is far beyond anything awaited here.
fn wait_for(client: &ClientHandle, what: &str, mut pred: impl FnMut(&ClientEvent) -> bool) -> ClientEvent {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(e) = client.next_event(Duration::from_millis(100)) {
            if pred(&e) {
                return e;
            }
        }
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn two_clients_go_direct_and_exchange_data() {
    // Given a server with an alternate address and two clients on loopback.
    let (primary, alt, shutdown, server_thread) = start_server();
    let config = |user: &str| ClientConfig { alt_server: Some(alt), ..ClientConfig::new(user, primary) };
    let alice = ClientHandle::start(config("alice"), "127.0.0.1:0".parse().expect("addr")).expect("alice starts");
    let bob = ClientHandle::start(config("bob"), "127.0.0.1:0".parse().expect("addr")).expect("bob starts");

    // Then both log in and see their own address as reflexive, and NAT
    // discovery (which asks the driver for an extra socket) measures "no NAT".
    for (client, name) in [(&alice, "alice"), (&bob, "bob")] {
        let reflexive = wait_for(client, &format!("{name} logged in"), |e| matches!(e, ClientEvent::LoggedIn { .. }));
        assert_eq!(reflexive, ClientEvent::LoggedIn { reflexive: client.local_addr() });
        let ClientEvent::NatProfile(profile) = wait_for(client, "profile", |e| matches!(e, ClientEvent::NatProfile(_)))
        else {
            unreachable!()
        };
        assert_eq!(profile.mapping, Some(MappingBehavior::EndpointIndependent));
        assert_eq!(profile.filtering, Some(FilteringBehavior::EndpointIndependent));
    }

    // When alice connects to bob.
    alice.connect("bob").expect("running").expect("valid peer");
    let ClientEvent::SessionOpened { session, .. } =
        wait_for(&alice, "session", |e| matches!(e, ClientEvent::SessionOpened { .. }))
    else {
        unreachable!()
    };

    // Then the path goes direct to bob's own socket, and data arrives.
    let direct = wait_for(&alice, "direct path", |e| matches!(e, ClientEvent::PathDirect { .. }));
    let ClientEvent::PathDirect { remote, .. } = direct else { unreachable!() };
    assert_eq!(remote.ip(), bob.local_addr().ip());
    alice.send(session, b"hello bob").expect("running").expect("sent");
    let got = wait_for(&bob, "data", |e| matches!(e, ClientEvent::DataReceived { .. }));
    assert_eq!(got, ClientEvent::DataReceived { session, data: bytes_of(b"hello bob") });

    // When alice shuts down, bob hears the session close.
    alice.shutdown().expect("clean shutdown");
    let closed = wait_for(&bob, "close", |e| matches!(e, ClientEvent::SessionClosed { .. }));
    assert!(matches!(closed, ClientEvent::SessionClosed { session: s, .. } if s == session));

    bob.shutdown().expect("clean shutdown");
    shutdown.shutdown();
    server_thread.join().expect("server thread").expect("server ran cleanly");
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b)
}
