//! A server and two clients on loopback, driven by punchline-mio.

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::client::{ClientConfig, ClientEvent};
use punchline_core::nat::{FilteringBehavior, MappingBehavior};
use punchline_core::server::{Server, ServerConfig};
use punchline_mio::{ClientHandle, ServerRunner, ShutdownHandle};

/// A port that was free a moment ago on both loopback IPs we use.
fn free_port() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let port = a.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

fn start_server() -> (SocketAddr, SocketAddr, ShutdownHandle, thread::JoinHandle<std::io::Result<()>>) {
    loop {
        let primary: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let alt: SocketAddr = format!("127.0.0.2:{}", free_port()).parse().expect("addr");
        let server = Server::new(ServerConfig::new(primary, Some(alt)), Instant::now());
        // Another test may grab a crossed port between the probe and here: retry.
        let Ok(runner) = ServerRunner::bind(server) else { continue };
        let handle = runner.shutdown_handle();
        let thread = thread::spawn(move || runner.run(|_| {}));
        return (primary, alt, handle, thread);
    }
}

fn wait_for(client: &ClientHandle, what: &str, mut pred: impl FnMut(&ClientEvent) -> bool) -> ClientEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
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
