//! How the client reaches the server: UDP, or a TCP connection where UDP is
//! blocked (issue 21). Both carry the same sealed datagrams in the same
//! channel; the server follows the client from one to the other on an
//! authenticated keepalive, as it follows it from one address to another.
//!
//! # The rules
//!
//! - **Login (happy eyeballs, RFC 8305 in spirit).** The Hello goes over UDP.
//!   If no answer came within [`ClientConfig::tcp_delay`] (300 ms), the
//!   client asks its driver for a TCP connection to
//!   [`ClientConfig::server_tcp`] ([`ClientEvent::OpenStream`]); once it is
//!   open, a fresh Hello goes over it and over UDP, and so does every later
//!   one. The server answers whichever copy arrives first (the second is a
//!   replay); the transport the Welcome comes back on carries the login. A
//!   login completed over UDP closes the connection: UDP is preferred.
//! - **UDP stops working.** A keepalive waiting for its answer over UDP
//!   (the regular one, or one sent because a session's direct path went
//!   quiet or its stream lost a frame on the relay) is followed by
//!   another every [`SILENCE_PROBE`] (250 ms). After [`UDP_DEAD_AFTER`]
//!   (2 s) with nothing at all from the server over UDP, UDP counts as
//!   blocked: the keepalive goes over TCP (a connection is opened if none
//!   is), and the server follows. At 20 % loss each way, the eight
//!   keepalives in that time all fail with probability 0.36⁸ ≈ 3 × 10⁻⁴
//!   (with 500 ms, 0.36⁵ ≈ 0.6 %: the simulator's `--stress loss` then
//!   ended 1 run in 120 on TCP); a false move costs the next UDP check. A
//!   session's direct path goes quiet about 1.5 to 2 s after a block, so
//!   the move comes about 4 s after it (the kernel lab measures it).
//! - **Back to UDP.** On TCP, the client checks UDP [`UDP_CHECK_FIRST`]
//!   (2 s) after the move, then at doubling intervals up to
//!   [`ClientConfig::udp_retry`] (30 s), and every 30 s after; a check is a
//!   sealed `Discover` over UDP, sent up to [`UDP_CHECK_SENDS`] (3) times a
//!   second apart until answered. A login that TCP won only because UDP was
//!   lossy comes back within seconds; a network that blocks UDP costs three
//!   small datagrams every 30 s. When its answer comes back
//!   over UDP, the client sends its keepalives over UDP again (the server
//!   follows); once one is answered over UDP the connection is closed.
//! - **The connection dies.** Closed by the network or the server, or
//!   silent for [`STREAM_DEAD_AFTER`] while a keepalive waits, the client
//!   returns to UDP, and the rule above brings it back to TCP if UDP is
//!   still blocked.
//!
//! Nothing is lost in a move: sessions' streams retransmit what a path
//! dropped, and texts through the server are acknowledged end to end.
//!
//! [`ClientConfig::tcp_delay`]: crate::client::ClientConfig::tcp_delay
//! [`ClientConfig::server_tcp`]: crate::client::ClientConfig::server_tcp
//! [`ClientConfig::udp_retry`]: crate::client::ClientConfig::udp_retry

use std::time::{Duration, Instant};

use tracing::debug;

use super::context::{ClientTimer, Ctx};
use super::events::ClientEvent;
use super::Client;
use crate::machine::SocketId;
use crate::streams::Received;
use crate::wire::frame::{AnswerFrom, Frame, Transport};

/// How often a keepalive goes while one waits for its answer over UDP: eight
/// in [`UDP_DEAD_AFTER`], so that loss alone almost never passes for a block.
pub const SILENCE_PROBE: Duration = Duration::from_millis(250);
/// How long the server may stay silent over UDP, keepalives unanswered,
/// before the client moves to TCP.
pub const UDP_DEAD_AFTER: Duration = Duration::from_secs(2);
/// How long a keepalive may wait for its answer over TCP before the
/// connection counts as dead.
pub const STREAM_DEAD_AFTER: Duration = Duration::from_secs(10);
/// The first UDP check after a move to TCP: a login that TCP won only
/// because UDP lost a packet or two comes back to UDP within seconds.
pub const UDP_CHECK_FIRST: Duration = Duration::from_secs(2);
/// `Discover`s one UDP check sends, a second apart, before it counts as
/// failed: at 15 % loss each way one round trip fails 28 % of the time,
/// three in a row 2 %.
pub const UDP_CHECK_SENDS: u32 = 3;
/// The wait for a check's answer before its next `Discover`.
const UDP_CHECK_RESEND: Duration = Duration::from_secs(1);
/// The longest wait between attempts to connect over TCP while one is
/// wanted.
const TCP_RETRY_MAX: Duration = Duration::from_secs(8);

/// The client's way to the server.
#[derive(Debug, Default)]
pub(crate) struct Route {
    /// The transport sealed frames take now.
    active: Transport,
    stream: Stream,
    /// TCP is wanted (the login waited too long, or UDP went silent): a
    /// connection opens, and once open, is used.
    want_tcp: bool,
    /// Failed connection attempts in a row, for the retry's backoff.
    failures: u32,
    /// The nonce of the `Discover` that asks, from TCP, whether UDP works.
    udp_check: Option<u64>,
    /// Back on UDP with the connection still open: it closes once a
    /// keepalive is answered over UDP.
    returning: bool,
    /// When a sealed frame from the server last came over UDP (any of our
    /// sockets but the connection): what the UDP silence rule reads, so
    /// that frames still coming over TCP do not hide a silent UDP.
    last_heard_udp: Option<Instant>,
    /// UDP checks made since the client went on TCP, for their backoff.
    udp_checks: u32,
    /// `Discover`s sent in the current check.
    check_sends: u32,
}

#[derive(Debug, Default)]
enum Stream {
    #[default]
    Closed,
    Connecting {
        request: u32,
    },
    Open {
        conn: SocketId,
    },
}

impl Route {
    /// Where sealed frames to the server leave from.
    pub(crate) fn server_socket(&self, primary: SocketId) -> SocketId {
        match (self.active, &self.stream) {
            (Transport::Tcp, Stream::Open { conn }) => *conn,
            _ => primary,
        }
    }

    /// The open connection to the server, if any.
    pub(crate) fn open_stream(&self) -> Option<SocketId> {
        match self.stream {
            Stream::Open { conn } => Some(conn),
            _ => None,
        }
    }

    /// The transport sealed frames take now.
    pub(crate) fn transport(&self) -> Transport {
        self.active
    }

    /// When the next UDP check goes, after `checks` went since the move to
    /// TCP: 2 s, 4 s, 8 s, 16 s, then every `every` (30 s by default).
    fn udp_check_delay(checks: u32, every: Duration) -> Duration {
        (UDP_CHECK_FIRST * 2u32.pow(checks.min(8))).min(every)
    }
}

impl Client {
    /// The driver's answer to [`ClientEvent::OpenStream`]: the connection
    /// `request` asked for is open as `conn`, or `None` when it could not
    /// connect. `conn` must not name one of the client's sockets.
    pub fn stream_opened(&mut self, now: Instant, request: u32, conn: Option<SocketId>) {
        self.out.now = Some(now);
        if !matches!(self.route.stream, Stream::Connecting { request: r } if r == request) {
            if let Some(conn) = conn {
                debug!(conn = conn.0, "a connection nobody waits for; closed");
                self.out.event(ClientEvent::CloseStream { conn });
            }
            return;
        }
        let Some(conn) = conn else {
            debug!("the TCP connection to the server failed");
            self.route.stream = Stream::Closed;
            self.route.failures += 1;
            if self.route.want_tcp {
                let wait = Duration::from_secs(1) * 2u32.pow(self.route.failures.min(4));
                self.timers.set(ClientTimer::TryTcp, now + wait.min(TCP_RETRY_MAX));
            }
            return;
        };
        self.route.failures = 0;
        self.route.stream = Stream::Open { conn };
        let remote = self.config.server_tcp.unwrap_or(self.config.server);
        self.streams.open(now, conn, remote);
        if self.login.is_pending() {
            let ctx = ctx!(self, now);
            self.login.send_again(&ctx, &mut self.out, &mut self.timers);
        } else if self.login.is_online() && self.route.want_tcp {
            self.move_to(now, Transport::Tcp);
        } else {
            // The login completed over UDP meanwhile.
            self.close_stream();
        }
    }

    /// How the client reaches the server now.
    pub fn transport(&self) -> Transport {
        self.route.transport()
    }

    /// Bytes from the TCP connection: the datagrams in them, handled as
    /// if they came over UDP from the server.
    pub(super) fn stream_data(&mut self, now: Instant, conn: SocketId, bytes: &[u8]) {
        let (remote, datagrams, broken) = match self.streams.receive(now, conn, bytes) {
            Received::Datagrams(remote, datagrams) => (remote, datagrams, None),
            Received::Broken(remote, datagrams, error) => (remote, datagrams, Some(error)),
            Received::Unknown => return debug!(conn = conn.0, "bytes on a connection we do not hold"),
        };
        for datagram in datagrams {
            crate::Machine::handle_datagram(self, now, conn, remote, &datagram);
        }
        if let Some(error) = broken {
            debug!(%error, "the server's connection breaks the framing; closed");
            self.stats.malformed += 1;
            self.close_stream();
            self.stream_gone(now);
        }
    }

    /// The TCP connection closed (by the driver's word, or ours).
    pub(super) fn stream_closed(&mut self, now: Instant, conn: SocketId) {
        if self.route.open_stream() != Some(conn) {
            return;
        }
        self.streams.close(conn);
        self.out.transmits.retain(|t| t.socket != conn);
        self.route.stream = Stream::Closed;
        self.stream_gone(now);
    }

    /// The connection is gone: back to UDP, whose check brings the client
    /// to TCP again if UDP is still blocked.
    fn stream_gone(&mut self, now: Instant) {
        self.route.returning = false;
        if self.route.active == Transport::Tcp {
            self.move_to(now, Transport::Udp);
        }
    }

    fn close_stream(&mut self) {
        if let Some(conn) = self.route.open_stream() {
            self.streams.close(conn);
            self.out.transmits.retain(|t| t.socket != conn);
            self.out.event(ClientEvent::CloseStream { conn });
        }
        self.route.stream = Stream::Closed;
        self.route.returning = false;
    }

    /// Asks the driver for a connection, unless one is open or coming.
    fn want_tcp(&mut self, now: Instant) {
        let Some(to) = self.config.server_tcp else { return };
        self.route.want_tcp = true;
        match self.route.stream {
            Stream::Open { .. } if self.login.is_online() => self.move_to(now, Transport::Tcp),
            Stream::Open { .. } | Stream::Connecting { .. } => {}
            Stream::Closed => {
                let request = self.fresh_request();
                self.route.stream = Stream::Connecting { request };
                self.out.event(ClientEvent::OpenStream { request, to });
            }
        }
    }

    /// Sends the server's sealed frames over `transport` from now on; a
    /// keepalive goes at once, so the server follows.
    fn move_to(&mut self, now: Instant, transport: Transport) {
        if self.route.active == transport {
            return;
        }
        debug!(transport = transport.name(), "the way to the server changes");
        self.set_transport(transport);
        match transport {
            Transport::Tcp => {
                self.route.want_tcp = false;
                self.route.returning = false;
                self.route.udp_checks = 0;
                self.route.check_sends = 0;
                self.timers.set(ClientTimer::UdpRetry, now + Route::udp_check_delay(0, self.config.udp_retry));
                self.timers.stop(&ClientTimer::UdpSilence);
            }
            Transport::Udp => {
                self.route.returning = self.route.open_stream().is_some();
                self.timers.stop(&ClientTimer::UdpRetry);
                // Measured again from UDP, if never measured.
                if self.login.is_online() && !self.profile_known && self.config.discover_nat {
                    self.start_discovery(now);
                }
            }
        }
        // The wait for an answer starts now, on the new way.
        self.login.restart_wait(now);
        let ctx = ctx!(self, now);
        let profile = self.profile;
        self.login.send_keepalive(&ctx, &mut self.out, profile);
    }

    /// Sealed frames take `transport` from now on: told to the application,
    /// and to every session whose relay leg changes with it.
    fn set_transport(&mut self, transport: Transport) {
        if self.route.active == transport {
            return;
        }
        self.route.active = transport;
        self.out.event(ClientEvent::TransportChanged { transport });
        for (_, s) in self.sessions.iter_mut() {
            s.report_relay_transport(&mut self.out, transport);
        }
    }

    /// The login went online over `socket` (UDP's primary socket, or the
    /// connection).
    pub(super) fn logged_in_over(&mut self, now: Instant, socket: SocketId) {
        if Some(socket) == self.route.open_stream() {
            self.route.want_tcp = false;
            self.route.udp_checks = 0;
            self.route.check_sends = 0;
            self.timers.set(ClientTimer::UdpRetry, now + Route::udp_check_delay(0, self.config.udp_retry));
            self.set_transport(Transport::Tcp);
        } else {
            // UDP works: a connection opened (or opening) for the login is
            // not needed. One that opens later is closed then.
            self.route.want_tcp = false;
            self.timers.stop(&ClientTimer::TryTcp);
            self.set_transport(Transport::Udp);
            if matches!(self.route.stream, Stream::Open { .. }) {
                self.close_stream();
            }
        }
    }

    /// [`ClientTimer::TryTcp`]: the login waited `tcp_delay` over UDP, or
    /// a connection is tried again.
    pub(super) fn try_tcp(&mut self, now: Instant) {
        if self.login.is_pending() || self.route.want_tcp {
            self.want_tcp(now);
        }
    }

    /// A login (re)started: TCP joins in if UDP has not answered within
    /// `tcp_delay`.
    pub(super) fn arm_tcp_delay(&mut self, now: Instant) {
        if self.config.server_tcp.is_some() && self.route.open_stream().is_none() {
            self.timers.set(ClientTimer::TryTcp, now + self.config.tcp_delay);
        }
    }

    /// [`ClientTimer::UdpRetry`]: on TCP, ask over UDP whether UDP works.
    pub(super) fn retry_udp(&mut self, now: Instant) {
        if self.route.active != Transport::Tcp || !self.login.is_online() {
            return;
        }
        // One nonce per check: an answer to any of its sends counts.
        let nonce = match (self.route.check_sends, self.route.udp_check) {
            (1.., Some(nonce)) => nonce,
            _ => self.rng.next_u64(),
        };
        self.route.udp_check = Some(nonce);
        let ctx = ctx!(self, now);
        let frame = Frame::Discover { nonce, answer_from: AnswerFrom::Same };
        self.out.send_to_server_at(&ctx, self.primary.0, self.config.server, &frame);
        self.route.check_sends += 1;
        let next = if self.route.check_sends < UDP_CHECK_SENDS {
            UDP_CHECK_RESEND
        } else {
            self.route.check_sends = 0;
            self.route.udp_checks += 1;
            Route::udp_check_delay(self.route.udp_checks, self.config.udp_retry)
        };
        self.timers.set(ClientTimer::UdpRetry, now + next);
    }

    /// A `DiscoverReply` over `socket`: true when it answers the UDP check
    /// (and the client moves back to UDP).
    pub(super) fn on_udp_check(&mut self, now: Instant, socket: SocketId, nonce: u64) -> bool {
        if self.route.udp_check != Some(nonce) || socket != self.primary.0 {
            return false;
        }
        self.route.udp_check = None;
        if self.route.active == Transport::Tcp {
            self.move_to(now, Transport::Udp);
        }
        true
    }

    /// A sealed frame from the server opened, having come over `socket`.
    pub(super) fn heard_over(&mut self, now: Instant, socket: SocketId) {
        if Some(socket) != self.route.open_stream() {
            self.route.last_heard_udp = Some(now);
        }
    }

    /// A keepalive was answered over `socket`.
    pub(super) fn on_keepalive_answered(&mut self, socket: SocketId) {
        self.timers.stop(&ClientTimer::UdpSilence);
        if socket == self.primary.0 && self.route.returning && self.route.active == Transport::Udp {
            // UDP works both ways again: the connection goes.
            self.close_stream();
        }
    }

    /// After every input: watch the server's silence on the way in use, and
    /// move when it says the way is blocked (see the module documentation).
    pub(super) fn watch_route(&mut self, now: Instant) {
        if !self.login.is_online() {
            return;
        }
        let Some(since) = self.login.awaiting_since() else {
            self.timers.stop(&ClientTimer::UdpSilence);
            return;
        };
        let silent_for = now.saturating_duration_since(since);
        let heard_since = self.route.last_heard_udp.is_some_and(|at| at >= since);
        match self.route.active {
            Transport::Udp if self.config.server_tcp.is_some() && !heard_since => {
                if silent_for >= UDP_DEAD_AFTER {
                    self.timers.stop(&ClientTimer::UdpSilence);
                    if !self.route.want_tcp {
                        debug!(?silent_for, "the server is silent over UDP; trying TCP");
                        self.want_tcp(now);
                    }
                } else if self.timers.get(&ClientTimer::UdpSilence).is_none() {
                    self.timers.set(ClientTimer::UdpSilence, now + SILENCE_PROBE);
                }
            }
            Transport::Tcp if silent_for >= STREAM_DEAD_AFTER => {
                debug!(?silent_for, "the server is silent over TCP; the connection is given up");
                self.close_stream();
                self.stream_gone(now);
            }
            _ => {}
        }
    }

    /// [`ClientTimer::UdpSilence`]: another keepalive while the server is
    /// silent over UDP.
    pub(super) fn silence_probe(&mut self, now: Instant) {
        if self.route.active != Transport::Udp || self.login.awaiting_since().is_none() {
            return;
        }
        let ctx = ctx!(self, now);
        let profile = self.profile;
        self.login.send_keepalive(&ctx, &mut self.out, profile);
        self.timers.set(ClientTimer::UdpSilence, now + SILENCE_PROBE);
    }
}
