//! A punching attempt that cannot succeed is retried from fresh sockets that
//! the driver binds on request (`ClientEvent::OpenSockets`).
//!
//! Loopback never loses a packet, so the test blocks the first attempt's
//! 5-tuple (the two clients' primary sockets) with nftables. It runs in a
//! network namespace of its own: the test re-executes itself inside
//! `ip netns exec`, and the namespace (with its rules) is deleted afterwards.
//! It needs root, iproute2 and nftables, so it is
//! `#[ignore]`d (`cargo test -p punchline-smol --test fresh_sockets -- --ignored`
//! runs it) and fails without them.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use punchline_core::SocketId;
use punchline_smol::{BoundServer, Client, ClientConfig, PathKind, ServerConfig, SessionEvent};

#[path = "../../runtime-mio/tests/support/netns.rs"]
mod netns;
use netns::run;

const INSIDE: &str = "PUNCHLINE_SMOL_TEST_IN_NETNS";
const GUARD: Duration = Duration::from_secs(60);
/// A TTL no other packet on this loopback has (Linux's default is 64), so
/// the firewall can count the openers on the wire.
const OPENER_TTL: u8 = 7;

async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    smol::future::or(f, async {
        smol::Timer::after(GUARD).await;
        panic!("timed out waiting for {what}")
    })
    .await
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn a_blocked_first_attempt_is_retried_from_fresh_sockets_and_goes_direct() {
    if netns::inside(INSIDE) {
        return retried_from_fresh_sockets();
    }
    netns::run_test_in_fresh_namespace(
        "plsmol",
        "a_blocked_first_attempt_is_retried_from_fresh_sockets_and_goes_direct",
        INSIDE,
        "a network namespace with a firewall rule",
    );
}

/// Inside the namespace.
fn retried_from_fresh_sockets() {
    smol::block_on(async {
        // Given a server and two clients that give up on an attempt quickly
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Some("127.0.0.2:0".parse().unwrap()));
        let server = BoundServer::bind_config(config).expect("bind");
        let (primary, alternate) = (server.primary(), server.alternate().expect("alternate"));
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let serving = smol::spawn(server.run(async move {
            let _ = stopped.recv().await;
        }));
        let config = |user: &str| {
            let mut c = ClientConfig::new(user, primary);
            c.alt_server = Some(alternate);
            c.punch_timeout = Duration::from_millis(800);
            c.punch_retry = Duration::from_millis(200);
            c.opener_ttl = OPENER_TTL;
            c
        };
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let alice = Client::start(config("alice"), any).await.expect("start");
        let bob = Client::start(config("bob"), any).await.expect("start");
        let incoming = bob.accept();
        guard("logins", async {
            alice.wait_logged_in().await.expect("alice");
            bob.wait_logged_in().await.expect("bob");
        })
        .await;

        // And a firewall that drops everything between the two primary
        // sockets (in both directions), so attempt 0 cannot prove a path
        let (a, b) = (alice.local_addr().port().to_string(), bob.local_addr().port().to_string());
        let chain = "{ type filter hook input priority 0; }";
        assert!(run("nft", &["add", "table", "inet", "punchline_test"]), "nft table");
        assert!(run("nft", &["add", "chain", "inet", "punchline_test", "input", chain]), "nft chain");
        let ttl = OPENER_TTL.to_string();
        assert!(run("nft", &["add", "rule", "inet", "punchline_test", "input", "ip", "ttl", &ttl, "counter"]), "nft");
        for (from, to) in [(&a, &b), (&b, &a)] {
            let rule =
                ["add", "rule", "inet", "punchline_test", "input", "udp", "sport", from, "udp", "dport", to, "drop"];
            assert!(run("nft", &rule), "nft rule");
        }
        let before = alice.driver_stats().sockets_opened;

        // When Alice opens a session with Bob
        let session = guard("session", alice.connect_session("bob")).await.expect("session");
        let from_alice = guard("accept", incoming).await.expect("accepted");

        // Then the first attempt fails, a later one goes direct from a fresh
        // socket to a port other than Bob's primary
        let mut failed_attempts = Vec::new();
        let (socket, remote) = guard("a direct path", async {
            loop {
                match session.next_event().await.expect("session open") {
                    SessionEvent::PunchFailed { attempt, retry_in } => {
                        assert!(retry_in.is_some(), "attempt {attempt} gave up for good");
                        failed_attempts.push(attempt);
                    }
                    SessionEvent::PathDirect { socket, remote } => return (socket, remote),
                    SessionEvent::Closed(reason) => panic!("session closed: {reason:?}"),
                    _ => {}
                }
            }
        })
        .await;
        assert!(failed_attempts.contains(&0), "attempt 0 failed first: {failed_attempts:?}");
        assert_ne!(socket, SocketId(0));
        assert_ne!(remote.port(), bob.local_addr().port());
        assert!(alice.driver_stats().sockets_opened > before, "{:?}", alice.driver_stats());

        // And data flows on the new path, both ways
        session.send(b"through the fresh socket").await.expect("send");
        assert_eq!(guard("data", from_alice.recv()).await.as_deref(), Some(&b"through the fresh socket"[..]));
        from_alice.send(b"and back").await.expect("send");
        assert_eq!(guard("data", session.recv()).await.as_deref(), Some(&b"and back"[..]));
        assert!(matches!(session.path(), PathKind::Direct { socket: s, .. } if s == socket));

        alice.shutdown().await;
        bob.shutdown().await;
        let _ = stop.send(()).await;
        guard("server stop", serving).await.expect("served");

        // And exactly the openers the drivers sent with a TTL carried it on
        // the wire: the default TTL was restored for everything else
        let openers = alice.driver_stats().low_ttl_sent + bob.driver_stats().low_ttl_sent;
        assert!(openers > 0);
        eprintln!("openers sent with TTL {OPENER_TTL}: {openers}");
        assert_eq!(packets_counted_with_ttl(OPENER_TTL), openers);
    });
}

/// The packets the `ip ttl N counter` rule counted.
fn packets_counted_with_ttl(ttl: u8) -> u64 {
    let out = Command::new("nft").args(["list", "chain", "inet", "punchline_test", "input"]).output().expect("nft");
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing.lines().find(|l| l.contains(&format!("ip ttl {ttl} counter"))).expect("the counter rule");
    let mut words = line.split_whitespace().skip_while(|w| *w != "packets");
    words.nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("a packet count in {line:?}"))
}
