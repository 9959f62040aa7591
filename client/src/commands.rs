//! The commands: `nat-check`, `listen`, `connect` (`send` and `inbox` are in
//! [`crate::messages`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use punchline_core::client::{ClientConfig, ClientEvent, ConnectError, ConnectFailure};
use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy};
use punchline_core::wire::frame::{CloseReason, ErrorCode, SessionId, Transport};
use serde_json::{json, Value};

use crate::exit::Failure;
use crate::nat::{nearest_preset, ports_name};
use crate::ping::Ping;
use crate::runtime::{self, ClientRuntime, Next, RuntimeKind};

/// Settings every command shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// The server's primary address.
    pub server: SocketAddr,
    /// The server's alternate address (NAT discovery).
    pub alt_server: Option<SocketAddr>,
    /// The server's TCP address, for networks that drop UDP (`None`: no
    /// fallback).
    pub server_tcp: Option<SocketAddr>,
    /// Who we log in as.
    pub user: String,
    /// The runtime.
    pub runtime: RuntimeKind,
    /// The primary socket's address (default: the IP routed toward the
    /// server, any free port).
    pub bind: Option<SocketAddr>,
    /// How long the login may take before the server counts as unreachable.
    pub server_timeout: Duration,
    /// A session silent for this long closes (the peer vanished).
    pub session_timeout: Option<Duration>,
    /// Seeds the client's random choices, its secrets included (OS entropy:
    /// see `main`).
    pub seed: punchline_core::Seed,
    /// Hold every session on the server's relay: never punch.
    pub relay: bool,
    /// The user's identity key.
    pub identity: punchline_core::secure::StaticKey,
    /// The server's key: pinned, or `None` to learn it on first contact.
    pub server_key: Option<punchline_core::secure::PublicKey>,
    /// Where a learned server key is pinned (`None` with `--server-key`).
    pub known_servers: Option<crate::identity::KnownServers>,
    /// Contacts' keys pinned by `whois`.
    pub known_peers: crate::identity::KnownPeers,
}

impl Common {
    fn client_config(&self) -> Result<ClientConfig, Failure> {
        let mut config = ClientConfig::new(self.user.clone(), self.server);
        config.peer_keys = self.known_peers.for_server(self.server)?;
        config.alt_server = self.alt_server;
        config.server_tcp = self.server_tcp;
        config.seed = self.seed;
        config.identity = self.identity.clone();
        config.server_key = self.server_key;
        config.server_timeout = self.server_timeout;
        if let Some(t) = self.session_timeout {
            config.session_timeout = t;
        }
        config.punch = !self.relay;
        config.host_addresses = crate::interfaces::host_addresses(self.bind_addr());
        // A text is acknowledged only once printed: a crash before that
        // makes the server deliver it again instead of losing it.
        config.messaging.ack_on_receipt = false;
        Ok(config)
    }

    /// `--bind`, or any port on the unspecified address of the server's
    /// family: an IPv4 socket cannot talk to an IPv6 server (issue 24).
    fn bind_addr(&self) -> SocketAddr {
        self.bind.unwrap_or_else(|| unspecified_for(self.server))
    }

    pub(crate) fn start(&self) -> Result<Box<dyn ClientRuntime>, Failure> {
        self.start_on_port(self.bind_addr())
    }

    fn start_on_port(&self, bind: SocketAddr) -> Result<Box<dyn ClientRuntime>, Failure> {
        let rt = runtime::start(self.runtime, self.client_config()?, bind)?;
        let known_servers = self.known_servers.clone().filter(|_| self.server_key.is_none());
        Ok(Box::new(runtime::Pinning::new(rt, known_servers, self.known_peers.clone(), self.server)))
    }

    /// The failure of a contact whose key is not the pinned one (exit 14).
    pub(crate) fn contact_key_changed(
        &self,
        peer: &str,
        pinned: punchline_core::secure::PublicKey,
        offered: punchline_core::secure::PublicKey,
    ) -> Failure {
        Failure::ContactKeyChanged {
            peer: peer.to_owned(),
            pinned: pinned.to_string(),
            offered: offered.to_string(),
            pins: self.known_peers.path().display().to_string(),
        }
    }

    /// Why the login stopped, from the event that says so.
    pub(crate) fn login_failure(&self, event: &ClientEvent) -> Option<Failure> {
        match event {
            ClientEvent::LoginFailed { code: ErrorCode::KeyMismatch } => Some(Failure::NameTaken(self.user.clone())),
            ClientEvent::LoginFailed { code } => Some(Failure::Refused(login_refusal(*code))),
            ClientEvent::ServerKeyChanged { pinned, offered } => Some(Failure::ServerKeyChanged {
                pinned: pinned.to_string(),
                offered: offered.to_string(),
                pins: self.known_servers.as_ref().map_or("--server-key".into(), |k| k.path().display().to_string()),
            }),
            _ => None,
        }
    }
}

/// `nat-check` options.
#[derive(Clone, Debug, Default)]
pub struct NatCheck {
    /// A standard STUN server for the reflexive address.
    pub stun: Option<String>,
    /// JSON output.
    pub json: bool,
}

/// `connect` options.
#[derive(Clone, Debug)]
pub struct Connect {
    /// Whom to connect to.
    pub peer: String,
    /// Pings to send.
    pub pings: u32,
    /// Time between pings.
    pub interval: Duration,
    /// Limit for the session to open, and for outstanding pongs after the
    /// last ping.
    pub timeout: Duration,
    /// Limit for the wait for a direct path before pinging starts.
    pub direct_wait: Duration,
    /// JSON output.
    pub json: bool,
}

/// `nat-check`: logs in, measures the NAT, prints the profile.
/// Any port on the unspecified address of `server`'s family.
fn unspecified_for(server: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = match server {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

pub fn nat_check(common: &Common, opts: &NatCheck) -> Result<(), Failure> {
    let mut stun_reflexive = None;
    let rt = match &opts.stun {
        Some(stun_server) => {
            // Ask STUN from a socket bound where the client will bind, then
            // hand the same local address to the client, so both reflexive
            // addresses describe one mapping.
            let probe_bind = match common.bind {
                Some(b) => b,
                None => SocketAddr::new(route_ip(common.server)?, 0),
            };
            let socket = std::net::UdpSocket::bind(probe_bind)?;
            let local = socket.local_addr()?;
            let server = crate::stun::resolve(stun_server, local)?;
            stun_reflexive = Some((stun_server.clone(), crate::stun::reflexive(&socket, server)?));
            drop(socket);
            common.start_on_port(local)?
        }
        None => common.start()?,
    };
    let local = rt.local_addr();
    let deadline = Instant::now() + common.server_timeout;
    let (server_reflexive, transport) = wait_logged_in(rt.as_ref(), common, deadline)?;
    // The profile comes after discovery (a few round trips and at most
    // the discovery timeout per step); without an alternate address the
    // mapping and filtering cannot be measured, and over TCP (UDP gets no
    // answer) there is no UDP mapping to measure.
    let profile = if transport == Transport::Tcp {
        NatProfile::default()
    } else if common.alt_server.is_some() {
        let deadline = Instant::now() + common.server_timeout;
        loop {
            match rt.next_event(deadline) {
                Next::Event(ClientEvent::NatProfile(p)) => break p,
                Next::Event(_) => {}
                Next::Idle | Next::Stopped => {
                    return Err(Failure::Timeout {
                        after: humantime::format_duration(common.server_timeout).to_string(),
                        waiting_for: "NAT discovery did not finish".into(),
                    })
                }
            }
        }
    } else {
        NatProfile { public: server_reflexive == local, ..NatProfile::default() }
    };
    rt.shutdown()?;

    let reflexive = stun_reflexive.as_ref().map_or(server_reflexive, |(_, a)| *a);
    let delta = match profile.ports {
        Some(PortAllocation::Sequential { delta }) => Some(delta),
        _ => None,
    };
    let report = json!({
        "reflexive": reflexive.to_string(),
        "mapping": profile.mapping.map(MappingBehavior::name),
        "filtering": profile.filtering.map(FilteringBehavior::name),
        "ports": profile.ports.map(ports_name),
        "port_delta": delta,
        // The simulator's preset for a network that drops UDP.
        "preset": if transport == Transport::Tcp { Some("udp-blocked") } else { nearest_preset(&profile) },
        "transport": transport.name(),
        "public": profile.public,
        "local": local.to_string(),
        "server_reflexive": server_reflexive.to_string(),
        "stun": stun_reflexive.as_ref().map(|(s, _)| s.clone()),
    });
    if opts.json {
        println!("{report}");
    } else {
        let text = |v: &Value| v.as_str().map_or_else(|| "unmeasured".to_owned(), str::to_owned);
        let via = stun_reflexive.as_ref().map_or_else(|| "via the server".to_owned(), |(s, _)| format!("via STUN {s}"));
        println!("reflexive  {reflexive} ({via})");
        println!("local      {local}");
        println!("mapping    {}", text(&report["mapping"]));
        println!("filtering  {}", text(&report["filtering"]));
        let ports = text(&report["ports"]);
        match delta {
            Some(d) => println!("ports      {ports} (delta {d:+})"),
            None => println!("ports      {ports}"),
        }
        println!("preset     {}", text(&report["preset"]));
        println!("transport  {}", transport.name());
    }
    Ok(())
}

/// `whois PEER`: the key the server's directory binds `peer`'s name to,
/// pinned in `known_peers` the first time and checked against the pin after.
pub fn whois(common: &Common, peer: &str, json_out: bool) -> Result<(), Failure> {
    if !punchline_core::server::valid_user_name(peer) {
        return Err(Failure::Usage(format!("{peer:?} is not a valid user name")));
    }
    let rt = common.start()?;
    let deadline = Instant::now() + common.server_timeout;
    wait_logged_in(rt.as_ref(), common, deadline)?;
    if let Err(e) = rt.lookup(peer)? {
        return Err(Failure::Refused(e.to_string()));
    }
    let (online, key) = loop {
        match rt.next_event(deadline) {
            Next::Event(ClientEvent::LookupResult { user, online, key }) if user == peer => break (online, key),
            Next::Event(e) if common.login_failure(&e).is_some() => {
                return Err(common.login_failure(&e).expect("checked"))
            }
            Next::Event(_) => {}
            Next::Idle => return Err(Failure::ServerUnreachable(common.server)),
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        }
    };
    rt.shutdown()?;
    let Some(key) = key else { return Err(Failure::UnknownPeer(peer.to_owned())) };
    let pins = &common.known_peers;
    let pinned = pins.lookup(common.server, peer)?;
    match pinned {
        Some(pinned) if pinned != key => return Err(common.contact_key_changed(peer, pinned, key)),
        Some(_) => {}
        None => pins.pin(common.server, peer, key)?,
    }
    if json_out {
        println!(
            "{}",
            json!({"peer": peer, "fingerprint": key.to_string(), "online": online,
            "pinned_before": pinned.is_some()})
        );
    } else {
        let state = if pinned.is_some() { "matches the pin" } else { "pinned now, on first use" };
        println!("{} {key} ({state})", crate::display::escaped(peer));
    }
    Ok(())
}

/// `listen` options.
#[derive(Clone, Debug, Default)]
pub struct Listen {
    /// JSON lines.
    pub json: bool,
    /// Accept offered files into this directory (`None`: refuse them).
    pub accept_files: Option<std::path::PathBuf>,
    /// Ask on the terminal before accepting each file.
    pub ask: bool,
}

/// `listen`: stays online, accepts sessions, answers pings, receives files
/// (see [`crate::files::receive`]), prints events, until SIGINT or SIGTERM.
pub fn listen(common: &Common, opts: &Listen) -> Result<(), Failure> {
    let mut receiver = crate::files::receive::Receiver::new(opts)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let rt = common.start()?;
    let deadline = Instant::now() + common.server_timeout;
    let (reflexive, transport) = wait_logged_in(rt.as_ref(), common, deadline)?;
    let mut printer = Printer { json: opts.json, sessions: BTreeMap::new(), bars: receiver.bars() };
    printer.line(json!({"event": "logged-in", "peer": null, "path": null, "user": common.user,
        "transport": transport.name(),
        "local": rt.local_addr().to_string(), "reflexive": reflexive.to_string()}));
    while !stop.load(Ordering::SeqCst) {
        receiver.tick(rt.as_ref(), &mut printer)?;
        let event = match rt.next_event(Instant::now() + Duration::from_millis(200)) {
            Next::Event(e) => e,
            Next::Idle => continue,
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        };
        if receiver.event(rt.as_ref(), &mut printer, &event)? {
            continue;
        }
        if let ClientEvent::DataReceived { session, data } = &event {
            if let Some(answer) = Ping::decode(data).and_then(Ping::answer) {
                // A full send window only delays the pong: the pinger counts
                // it as unanswered, which is the truth.
                let _ = rt.send(*session, &answer.encode())?;
            }
        }
        printer.event(&event);
        if let Some(failure) = common.login_failure(&event) {
            return Err(failure);
        }
        if let ClientEvent::TextReceived { from, id, .. } = &event {
            let _ = std::io::stdout().flush();
            rt.ack_text(from, *id)?;
        }
    }
    receiver.stop();
    rt.shutdown()?;
    Ok(())
}

/// What `connect` measured, printed at the end.
#[derive(Debug, Default)]
struct ConnectReport {
    /// How the client reaches the server (UDP until told otherwise).
    transport: Transport,
    /// The session's relay leg rides TCP (ours or the peer's).
    relay_tcp: bool,
    session: Option<SessionId>,
    strategy: Option<Strategy>,
    direct: bool,
    connect_ms: Option<f64>,
    direct_ms: Option<f64>,
    rtts_ms: Vec<f64>,
    pings_sent: u32,
    fallbacks: u32,
}

/// `connect PEER`: opens a session, waits (bounded) for the punch, sends the
/// pings, prints the path and timings.
///
/// The wait rule: after the session opens (on the relay), pinging starts when
/// the path went direct, or the strategy is relay-only, or the client gave up
/// punching (a failed attempt with no retry), or `--direct-wait` passed,
/// whichever comes first. A failed attempt that will be retried (birthday
/// probing succeeds 98 % per attempt, not always) is waited through.
/// The reported `outcome` is the path at the end.
pub fn connect(common: &Common, opts: &Connect) -> Result<(), Failure> {
    let start = Instant::now();
    let rt = common.start()?;
    let mut report = ConnectReport::default();
    let result = run_connect(rt.as_ref(), common, opts, start, &mut report);
    if let Some(session) = report.session {
        let _ = rt.close(session);
    }
    rt.shutdown()?;
    print_connect(opts, &report, result.as_ref().err());
    result
}

fn run_connect(
    rt: &dyn ClientRuntime,
    common: &Common,
    opts: &Connect,
    start: Instant,
    report: &mut ConnectReport,
) -> Result<(), Failure> {
    match rt.connect(&opts.peer)? {
        Ok(()) => {}
        Err(ConnectError::BadUserName) => {
            return Err(Failure::Usage(format!("{:?} cannot be a peer (invalid name, or yourself)", opts.peer)))
        }
        Err(ConnectError::NotLoggedIn) => return Err(Failure::Refused("login refused".into())),
    }
    let ms = |t: Instant| t.duration_since(start).as_secs_f64() * 1000.0;
    let timeout_text = humantime::format_duration(opts.timeout).to_string();

    // 1. The session opens (usable over the relay).
    let open_deadline = start + opts.timeout;
    let mut logged_in = false;
    let session = loop {
        match rt.next_event(open_deadline) {
            Next::Event(ClientEvent::LoggedIn { .. }) => logged_in = true,
            Next::Event(ClientEvent::TransportChanged { transport }) => report.transport = transport,
            Next::Event(e) if common.login_failure(&e).is_some() => {
                return Err(common.login_failure(&e).expect("checked"))
            }
            Next::Event(ClientEvent::ServerUnreachable) if !logged_in => {
                return Err(Failure::ServerUnreachable(common.server))
            }
            Next::Event(ClientEvent::ConnectFailed { reason, .. }) => {
                return Err(match reason {
                    ConnectFailure::UnknownPeer => Failure::UnknownPeer(opts.peer.clone()),
                    ConnectFailure::PeerOffline => Failure::PeerOffline(opts.peer.clone()),
                    ConnectFailure::ServerUnreachable => Failure::ServerUnreachable(common.server),
                    ConnectFailure::Refused(code) => Failure::Refused(format!("{code:?}")),
                    ConnectFailure::PeerKeyChanged => Failure::Refused("the peer's key is not the one pinned".into()),
                })
            }
            Next::Event(ClientEvent::PeerKeyChanged { peer, pinned, offered }) if peer == opts.peer => {
                return Err(common.contact_key_changed(&peer, pinned, offered))
            }
            Next::Event(ClientEvent::SessionOpened { session, peer, initiator: true, strategy })
                if peer == opts.peer =>
            {
                report.session = Some(session);
                report.strategy = Some(strategy);
                report.connect_ms = Some(ms(Instant::now()));
                break session;
            }
            Next::Event(_) => {}
            Next::Idle => {
                let waiting_for = if logged_in { "no session yet" } else { "no answer from the server" };
                return Err(if logged_in {
                    Failure::Timeout { after: timeout_text, waiting_for: waiting_for.into() }
                } else {
                    Failure::ServerUnreachable(common.server)
                });
            }
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        }
    };

    let mut pending: BTreeMap<u64, Instant> = BTreeMap::new();
    // Handles one event of the session; true when the first punching
    // attempt concluded.
    let on_event = |e: ClientEvent,
                    report: &mut ConnectReport,
                    pending: &mut BTreeMap<u64, Instant>|
     -> Result<bool, Failure> {
        match e {
            ClientEvent::PathDirect { session: s, .. } if s == session => {
                report.direct = true;
                report.direct_ms.get_or_insert(ms(Instant::now()));
                return Ok(true);
            }
            ClientEvent::PathFellBack { session: s } if s == session => {
                report.direct = false;
                report.fallbacks += 1;
            }
            ClientEvent::PunchFailed { session: s, retry_in, .. } if s == session => return Ok(retry_in.is_none()),
            ClientEvent::TransportChanged { transport } => report.transport = transport,
            ClientEvent::RelayTransportChanged { session: s, transport } if s == session => {
                report.relay_tcp = transport == Transport::Tcp;
            }
            ClientEvent::StrategyChanged { session: s, strategy } if s == session => {
                // Chosen once both NAT profiles were measured: relay-only
                // concludes the punching at once.
                report.strategy = Some(strategy);
                return Ok(strategy == Strategy::RelayOnly);
            }
            ClientEvent::DataReceived { session: s, data } if s == session => {
                if let Some(Ping::Pong(seq)) = Ping::decode(&data) {
                    if let Some(sent) = pending.remove(&seq) {
                        report.rtts_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                } else if let Some(answer) = Ping::decode(&data).and_then(Ping::answer) {
                    let _ = rt.send(session, &answer.encode())?;
                }
            }
            ClientEvent::SessionClosed { session: s, reason } if s == session => {
                report.session = None;
                return Err(Failure::SessionClosed { peer: opts.peer.clone(), reason: close_reason(reason, common) });
            }
            _ => {}
        }
        Ok(false)
    };

    // 2. Punching concludes (bounded by --direct-wait).
    if report.strategy != Some(Strategy::RelayOnly) {
        let deadline = Instant::now() + opts.direct_wait;
        loop {
            match rt.next_event(deadline) {
                Next::Event(e) => {
                    if on_event(e, report, &mut pending)? {
                        break;
                    }
                }
                Next::Idle => break,
                Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
            }
        }
    }

    // 3. Pings, one per interval; then the outstanding pongs, bounded by --timeout.
    let mut next_ping = Instant::now();
    let mut seq = 0u64;
    let mut pongs_deadline = None;
    loop {
        let now = Instant::now();
        if report.pings_sent < opts.pings && now >= next_ping {
            seq += 1;
            match rt.send(session, &Ping::Ping(seq).encode())? {
                Ok(()) => {
                    pending.insert(seq, now);
                }
                Err(e) => tracing::debug!(error = %e, seq, "ping not sent"),
            }
            report.pings_sent += 1;
            next_ping = now + opts.interval;
        }
        let done_sending = report.pings_sent >= opts.pings;
        if done_sending && pending.is_empty() {
            return Ok(());
        }
        let deadline = if done_sending { *pongs_deadline.get_or_insert(now + opts.timeout) } else { next_ping };
        match rt.next_event(deadline) {
            Next::Event(e) => {
                on_event(e, report, &mut pending)?;
            }
            Next::Idle if done_sending => {
                return Err(Failure::Timeout {
                    after: timeout_text,
                    waiting_for: format!("{} of {} pings unanswered", pending.len(), opts.pings),
                })
            }
            Next::Idle => {}
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        }
    }
}

/// A session's path as output lines name it: `direct`, `relay`, or
/// `relay-tcp` when the relay leg rides TCP.
pub(crate) fn path_name(direct: bool, relay_tcp: bool) -> &'static str {
    match (direct, relay_tcp) {
        (true, _) => "direct",
        (false, false) => "relay",
        (false, true) => "relay-tcp",
    }
}

fn print_connect(opts: &Connect, report: &ConnectReport, error: Option<&Failure>) {
    let outcome = match (error, report.connect_ms) {
        (Some(Failure::Timeout { .. }), Some(_)) | (None, _) => path_name(report.direct, report.relay_tcp),
        _ => "failed",
    };
    let mut rtts = report.rtts_ms.clone();
    rtts.sort_by(f64::total_cmp);
    let p50 = (!rtts.is_empty()).then(|| rtts[rtts.len() / 2]);
    // The nearest-rank 99th percentile.
    let p99 = (!rtts.is_empty()).then(|| rtts[(rtts.len() * 99).div_ceil(100) - 1]);
    let round = |v: Option<f64>| v.map(|x| (x * 1000.0).round() / 1000.0);
    if opts.json {
        let mut line = json!({
            "peer": opts.peer,
            "outcome": outcome,
            "transport": report.transport.name(),
            "strategy": report.strategy.map(Strategy::name),
            "connect_ms": round(report.connect_ms),
            "direct_ms": round(report.direct_ms),
            "rtt_ms_p50": round(p50),
            "rtt_ms_p99": round(p99),
            "pings_sent": report.pings_sent,
            "pings_answered": rtts.len(),
            "fallbacks": report.fallbacks,
        });
        if let Some(e) = error {
            line["error"] = Value::from(e.to_string());
        }
        println!("{line}");
    } else if report.connect_ms.is_some() {
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1} ms"));
        println!("peer        {}", opts.peer);
        println!("outcome     {outcome}");
        println!("transport   {}", report.transport.name());
        println!("strategy    {}", report.strategy.map_or("-", Strategy::name));
        println!("connected   {}", fmt(report.connect_ms));
        println!("direct      {}", fmt(report.direct_ms));
        println!(
            "pings       {} of {} answered, rtt p50 {}, p99 {}",
            rtts.len(),
            report.pings_sent,
            fmt(p50),
            fmt(p99)
        );
    }
    let _ = std::io::stdout().flush();
}

/// Waits for the login; the server counts as unreachable after `deadline`.
/// Waits for the login: the reflexive address the server saw, and the
/// transport the login took (told before the login itself).
pub(crate) fn wait_logged_in(
    rt: &dyn ClientRuntime,
    common: &Common,
    deadline: Instant,
) -> Result<(SocketAddr, Transport), Failure> {
    let mut transport = Transport::Udp;
    loop {
        match rt.next_event(deadline) {
            Next::Event(ClientEvent::LoggedIn { reflexive }) => return Ok((reflexive, transport)),
            Next::Event(ClientEvent::TransportChanged { transport: t }) => transport = t,
            Next::Event(e) if common.login_failure(&e).is_some() => {
                return Err(common.login_failure(&e).expect("checked"))
            }
            Next::Event(ClientEvent::ServerUnreachable) | Next::Idle => {
                return Err(Failure::ServerUnreachable(common.server))
            }
            Next::Event(_) => {}
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        }
    }
}

fn login_refusal(code: ErrorCode) -> String {
    match code {
        ErrorCode::BadUserName => "invalid user name".into(),
        ErrorCode::UnsupportedVersion => "the server speaks another protocol version".into(),
        ErrorCode::RateLimited => "rate limited".into(),
        ErrorCode::KeyMismatch => "the user name belongs to another key on this server".into(),
        other => format!("login refused ({other:?})"),
    }
}

/// A session's close reason, in words.
pub(crate) fn close_reason(reason: CloseReason, common: &Common) -> String {
    match reason {
        CloseReason::Local => "closed locally".into(),
        CloseReason::Peer => "the peer closed it".into(),
        CloseReason::PeerOffline => "the peer went offline".into(),
        CloseReason::PeerTimeout => {
            let t = common.session_timeout.unwrap_or(ClientConfig::new("x", common.server).session_timeout);
            format!("peer timed out (nothing heard for {})", humantime::format_duration(t))
        }
        CloseReason::ServerUnreachable => "the server could not be reached".into(),
    }
}

fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Local => "local",
        CloseReason::Peer => "peer",
        CloseReason::PeerOffline => "peer-offline",
        CloseReason::PeerTimeout => "peer-timeout",
        CloseReason::ServerUnreachable => "server-unreachable",
    }
}

/// The local IP routed toward `server`.
fn route_ip(server: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind(SocketAddr::new(
        if server.is_ipv4() { std::net::Ipv4Addr::UNSPECIFIED.into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() },
        0,
    ))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// Prints `listen`'s events: JSON lines (`event`, `peer`, `path` always
/// present, `null` when they do not apply) or human lines.
pub(crate) struct Printer {
    json: bool,
    /// Session → (peer, path name).
    sessions: BTreeMap<SessionId, (String, &'static str)>,
    /// The receiver's progress bars: lines are printed with them hidden.
    bars: Option<indicatif::MultiProgress>,
}

impl Printer {
    fn event(&mut self, event: &ClientEvent) {
        let line = match event {
            ClientEvent::SessionOpened { session, peer, initiator, strategy } => {
                self.sessions.insert(*session, (peer.clone(), "relay"));
                json!({"event": "session-opened", "session": session.to_string(), "peer": peer, "path": "relay",
                    "initiator": initiator, "strategy": strategy.name()})
            }
            ClientEvent::StrategyChanged { session, strategy } => {
                let mut l = self.session_line("strategy-changed", *session);
                l["strategy"] = strategy.name().into();
                l
            }
            ClientEvent::PunchStarted { session, attempt } => {
                let mut l = self.session_line("punch-started", *session);
                l["attempt"] = (*attempt).into();
                l
            }
            ClientEvent::PunchFailed { session, attempt, retry_in } => {
                let mut l = self.session_line("punch-failed", *session);
                l["attempt"] = (*attempt).into();
                l["retry_in_ms"] = retry_in.map(|d| d.as_millis() as u64).into();
                l
            }
            ClientEvent::PathDirect { session, remote, .. } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.1 = "direct";
                }
                let mut l = self.session_line("path-direct", *session);
                l["remote"] = remote.to_string().into();
                l
            }
            ClientEvent::PathFellBack { session } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.1 = "relay";
                }
                self.session_line("path-fell-back", *session)
            }
            ClientEvent::DataReceived { session, data } => match Ping::decode(data) {
                Some(Ping::Ping(seq)) => {
                    let mut l = self.session_line("ping", *session);
                    l["seq"] = seq.into();
                    l
                }
                Some(Ping::Pong(seq)) => {
                    let mut l = self.session_line("pong", *session);
                    l["seq"] = seq.into();
                    l
                }
                None => {
                    let mut l = self.session_line("data", *session);
                    l["text"] = String::from_utf8_lossy(data).into_owned().into();
                    l
                }
            },
            ClientEvent::SessionClosed { session, reason } => {
                let mut l = self.session_line("session-closed", *session);
                l["reason"] = reason_name(*reason).into();
                self.sessions.remove(session);
                l
            }
            ClientEvent::ServerUnreachable => json!({"event": "server-unreachable", "peer": null, "path": null}),
            ClientEvent::LoggedIn { reflexive } => {
                json!({"event": "logged-in", "peer": null, "path": null, "reflexive": reflexive.to_string()})
            }
            ClientEvent::ReflexiveChanged { old, new } => json!({"event": "reflexive-changed", "peer": null,
                "path": null, "old": old.to_string(), "new": new.to_string()}),
            ClientEvent::NatProfile(p) => json!({"event": "nat-profile", "peer": null, "path": null,
                "mapping": p.mapping.map(MappingBehavior::name), "filtering": p.filtering.map(FilteringBehavior::name),
                "ports": p.ports.map(ports_name), "preset": nearest_preset(p)}),
            ClientEvent::LoginFailed { code } => {
                json!({"event": "login-failed", "peer": null, "path": null, "reason": login_refusal(*code)})
            }
            ClientEvent::ServerKeyLearned { key } => {
                json!({"event": "server-key-pinned", "peer": null, "path": null, "key": key.to_string()})
            }
            ClientEvent::ServerKeyChanged { pinned, offered } => json!({"event": "server-key-changed", "peer": null,
                "path": null, "pinned": pinned.to_string(), "offered": offered.to_string()}),
            ClientEvent::PeerKeyLearned { peer, key } => {
                json!({"event": "peer-key-pinned", "peer": peer, "path": null, "key": key.to_string()})
            }
            ClientEvent::PeerKeyChanged { peer, pinned, offered } => json!({"event": "peer-key-changed", "peer": peer,
                "path": null, "pinned": pinned.to_string(), "offered": offered.to_string()}),
            ClientEvent::TextReceived { from, id, text } => json!({"event": "text", "peer": from, "path": null,
                "id": id.to_string(), "text": text}),
            ClientEvent::TextAcked { .. } | ClientEvent::TextFailed { .. } | ClientEvent::InboxEmpty => return,
            ClientEvent::TransportChanged { transport } => {
                json!({"event": "transport-changed", "peer": null, "path": null, "transport": transport.name()})
            }
            ClientEvent::RelayTransportChanged { session, transport } => {
                let mut l = self.session_line("relay-transport-changed", *session);
                l["transport"] = transport.name().into();
                l
            }
            ClientEvent::LookupResult { .. }
            | ClientEvent::ConnectFailed { .. }
            | ClientEvent::OpenSockets { .. }
            | ClientEvent::ReleaseSocket { .. }
            | ClientEvent::OpenStream { .. }
            | ClientEvent::CloseStream { .. } => return,
            // The receiver prints what concerns files (crate::files::receive).
            ClientEvent::FileOffered { .. }
            | ClientEvent::FileAccepted { .. }
            | ClientEvent::FileRead { .. }
            | ClientEvent::FileWrite { .. }
            | ClientEvent::FileCompleted { .. }
            | ClientEvent::FileFailed { .. } => return,
        };
        self.line(line);
    }

    /// The path of `session` now (`direct` or `relay`), while it is open.
    pub(crate) fn path_of(&self, session: SessionId) -> Option<&'static str> {
        self.sessions.get(&session).map(|(_, path)| *path)
    }

    fn session_line(&self, event: &str, session: SessionId) -> Value {
        let (peer, path) = self.sessions.get(&session).map_or((None, None), |(p, path)| (Some(p.clone()), Some(*path)));
        json!({"event": event, "session": session.to_string(), "peer": peer, "path": path})
    }

    /// Prints one line: `line` as JSON, or as `event key=value ...`.
    pub(crate) fn line(&mut self, line: Value) {
        match self.bars.clone() {
            Some(bars) => bars.suspend(|| self.print(&line)),
            None => self.print(&line),
        }
    }

    fn print(&self, line: &Value) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{line}");
        } else {
            let mut text = line["event"].as_str().unwrap_or("?").to_owned();
            if let Value::Object(fields) = line {
                for (k, v) in fields.iter().filter(|(k, v)| *k != "event" && !v.is_null()) {
                    // Names and texts come from the network: escaped for the
                    // terminal (JSON lines are escaped by their encoder).
                    let v = v.as_str().map_or_else(|| v.to_string(), |s| crate::display::escaped(s).into_owned());
                    text.push_str(&format!(" {k}={v}"));
                }
            }
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }
}
