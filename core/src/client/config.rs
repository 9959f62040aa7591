//! The client's settings, with the defaults a deployment should start from.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secure::{PublicKey, StaticKey};

/// The client's settings. Every field has a documented default
/// ([`ClientConfig::new`]); the simulator's scenario files set them by these
/// field names (`config = { keepalive = "25s", opener_ttl = 3 }`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// The user name to log in as (1–64 printable bytes, no spaces).
    pub user: String,
    /// The server's primary address.
    pub server: SocketAddr,
    /// The server's alternate address, for NAT behaviour discovery. Without it
    /// the profile's mapping and filtering stay unmeasured.
    pub alt_server: Option<SocketAddr>,
    /// Where the server accepts TCP, for networks that drop UDP (issue 21):
    /// a login whose Hello has no answer within [`ClientConfig::tcp_delay`]
    /// tries it in parallel, and a client whose UDP stops working moves
    /// there. Default: the server's own address. `None` turns the fallback
    /// off; a driver that does not carry out
    /// [`ClientEvent::OpenStream`](crate::client::ClientEvent::OpenStream)
    /// should set it so (a request it leaves unanswered only keeps the
    /// client on UDP).
    pub server_tcp: Option<SocketAddr>,
    /// How long a login waits for an answer over UDP before it also tries
    /// TCP (RFC 8305's connection attempt delay, in spirit). Default 300 ms.
    pub tcp_delay: Duration,
    /// How often a client on TCP asks over UDP whether UDP works again, and
    /// moves back when it does. Default 30 s.
    pub udp_retry: Duration,
    /// Seeds every random choice the client makes, its secrets included:
    /// OS entropy when deployed ([`Seed::from_entropy`](crate::Seed::from_entropy)),
    /// a number for reproducible runs. Default `Seed::from(0)`.
    pub seed: crate::Seed,
    /// The user's static key: every login proves it, and the server binds
    /// the name to it at the first login (issue 20). [`ClientConfig::new`]
    /// derives one from `Seed::from(0)` and the user name, for tests; a
    /// deployment loads the user's own (`punchline --identity`).
    pub identity: StaticKey,
    /// The server's public key, pinned. `None`: the client asks the server
    /// for its key before logging in, trusts the first answer, and reports
    /// it ([`ClientEvent::ServerKeyLearned`](crate::client::ClientEvent::ServerKeyLearned))
    /// so the application can pin it for next time, as SSH does with
    /// `known_hosts`. A pinned key the server no longer has is refused
    /// loudly ([`ClientEvent::ServerKeyChanged`](crate::client::ClientEvent::ServerKeyChanged)).
    /// Default `None`.
    pub server_key: Option<PublicKey>,
    /// Contacts' public keys, pinned (the application keeps them, as
    /// `punchline` does in `known_peers`). A session with a pinned contact
    /// is made only if the server's directory names the pinned key; another
    /// key is refused loudly ([`ClientEvent::PeerKeyChanged`](crate::client::ClientEvent::PeerKeyChanged)).
    /// A contact without a pin is pinned at its first session (trust on
    /// first use, reported as [`ClientEvent::PeerKeyLearned`](crate::client::ClientEvent::PeerKeyLearned)).
    /// Default empty.
    pub peer_keys: std::collections::BTreeMap<String, PublicKey>,
    /// Interval between keepalives to the server. Default 25 s: inside the
    /// 30 s that the shortest common NAT timeouts allow (RFC 4787 REQ-5 asks
    /// for at least 2 minutes, but many NATs use 30 s).
    pub keepalive: Duration,
    /// After this long without an answer from the server, the client reports
    /// [`ClientEvent::ServerUnreachable`](crate::client::ClientEvent::ServerUnreachable). Default 10 s.
    pub server_timeout: Duration,
    /// Whether to measure the NAT after login. Default true.
    pub discover_nat: bool,
    /// How long a discovery request waits for its answer (spread over three
    /// sends). Default 1.5 s.
    pub discovery_timeout: Duration,
    /// IP TTL of the openers that open the local NAT mapping before probing.
    /// Default 3: it leaves one NAT (and a CGNAT behind it) but dies in the
    /// first routers of the internet, long before the peer's NAT. Raise it for
    /// deeper NAT nesting; it never needs to reach the peer.
    pub opener_ttl: u8,
    /// Try for direct paths. False holds every session on the server's
    /// relay: no openers or probes are sent, and the peer's probes are not
    /// answered, so neither side ever proves a direct path. For measuring
    /// the relay, and for users who want no direct path (it shows their
    /// address to the peer). Default true.
    pub punch: bool,
    /// Skip the openers and probe at once. Only for demonstrating the
    /// conntrack race of DESIGN §3; never set it in production. Default false.
    pub skip_openers: bool,
    /// Interval between probe rounds while punching. Default 100 ms.
    pub probe_interval: Duration,
    /// How long one punching attempt probes before it counts as failed.
    /// Default 4 s.
    pub punch_timeout: Duration,
    /// The wait before the first retry after a failed attempt or a fallback;
    /// it doubles with each further failure. Default 5 s.
    pub punch_retry: Duration,
    /// The longest wait between attempts. Default 120 s.
    pub punch_retry_max: Duration,
    /// Consecutive failed attempts after which the session stays on the relay
    /// for good. Default 6.
    pub max_punch_attempts: u32,
    /// Interval of keepalive probes on a direct path. Default 1 s.
    pub direct_keepalive: Duration,
    /// A direct path that answers no probe for this long is abandoned for the
    /// relay. Default 3 s.
    pub fallback_timeout: Duration,
    /// Interval of keepalives between peers while on the relay. Default 5 s.
    /// None are sent, and the client does not wake for them, while the path
    /// is direct (the direct keepalive covers it); after a fall back they
    /// resume on the beat they kept since the session opened.
    pub session_keepalive: Duration,
    /// A session that hears nothing from its peer for this long closes with
    /// [`CloseReason::PeerTimeout`](crate::wire::frame::CloseReason::PeerTimeout). Default 30 s.
    pub session_timeout: Duration,
    /// Most unacknowledged application messages per session. Default 256.
    pub send_window: usize,
    /// Fewest predicted ports opened toward a sequential symmetric peer
    /// ([`Strategy::Predict`](crate::nat::Strategy::Predict)). Default 4.
    pub prediction_window_min: u16,
    /// Most predicted ports opened toward a sequential symmetric peer. The
    /// window between the two grows with the rate at which other hosts behind
    /// that NAT take ports (see the client's strategy documentation). Default 64.
    pub prediction_window_max: u16,
    /// Sockets the symmetric side of birthday probing opens, one mapping each
    /// ([`Strategy::Birthday`](crate::nat::Strategy::Birthday)). Default 256.
    pub birthday_pool: u16,
    /// Probes per second the cone side of birthday probing sends to random
    /// ports. Default 250.
    pub birthday_probe_rate: u32,
    /// Most random ports the cone side probes in one attempt. Default 1,024:
    /// with the default pool, 98 % of attempts succeed against a NAT that
    /// picks from 64,512 ports, and a failed attempt is retried with backoff.
    pub birthday_probe_budget: u32,
    /// The machine's own addresses, announced to peers (with the primary
    /// socket's port) as host candidates beside the primary socket's local
    /// address, at most [`MAX_HOST_CANDIDATES`](crate::client::MAX_HOST_CANDIDATES)
    /// in all. A driver whose primary socket is bound to the unspecified
    /// address fills this from the machine's interfaces, so two peers on one
    /// LAN find each other. Default empty.
    pub host_addresses: Vec<std::net::IpAddr>,
    /// Text messaging.
    pub messaging: MessagingConfig,
}

impl ClientConfig {
    /// Defaults for `user` logging in to `server`.
    pub fn new(user: impl Into<String>, server: SocketAddr) -> Self {
        let user = user.into();
        ClientConfig {
            identity: StaticKey::derive(crate::Seed::from(0), &user),
            server_key: None,
            peer_keys: Default::default(),
            user,
            server,
            alt_server: None,
            seed: crate::Seed::from(0),
            keepalive: Duration::from_secs(25),
            server_timeout: Duration::from_secs(10),
            server_tcp: Some(server),
            tcp_delay: Duration::from_millis(300),
            udp_retry: Duration::from_secs(30),
            discover_nat: true,
            discovery_timeout: Duration::from_millis(1500),
            opener_ttl: 3,
            punch: true,
            skip_openers: false,
            probe_interval: Duration::from_millis(100),
            punch_timeout: Duration::from_secs(4),
            punch_retry: Duration::from_secs(5),
            punch_retry_max: Duration::from_secs(120),
            max_punch_attempts: 6,
            direct_keepalive: Duration::from_secs(1),
            fallback_timeout: Duration::from_secs(3),
            session_keepalive: Duration::from_secs(5),
            session_timeout: Duration::from_secs(30),
            send_window: 256,
            prediction_window_min: 4,
            prediction_window_max: 64,
            birthday_pool: 256,
            birthday_probe_rate: 250,
            birthday_probe_budget: 1024,
            host_addresses: Vec::new(),
            messaging: MessagingConfig::default(),
        }
    }
}

/// The client's messaging settings (field `messaging` of [`ClientConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagingConfig {
    /// How long a text sent on a direct path waits for the peer's
    /// acknowledgement before it also goes through the server. Default 2 s.
    pub direct_fallback: Duration,
    /// How long a text is retransmitted before it fails with
    /// [`TextFailure::Timeout`](crate::messaging::TextFailure::Timeout). Default 5 minutes.
    pub text_timeout: Duration,
    /// Most texts awaiting acknowledgement. Default 1,024.
    pub text_window: usize,
    /// Acknowledge a received text as soon as it is raised as
    /// [`ClientEvent::TextReceived`](crate::client::ClientEvent::TextReceived). Default true. An application that must
    /// not lose a text to its own crash sets it false and calls
    /// [`Client::ack_text`](crate::client::Client::ack_text) once the text is
    /// shown or saved: until then the server keeps it and delivers it again
    /// (to the next process), so a crash can repeat a text but never lose it.
    pub ack_on_receipt: bool,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            direct_fallback: Duration::from_secs(2),
            text_timeout: Duration::from_secs(300),
            text_window: 1024,
            ack_on_receipt: true,
        }
    }
}
