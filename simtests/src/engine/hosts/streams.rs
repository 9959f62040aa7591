//! A peer host's TCP connections to the server (the TCP fallback, issue
//! 21): the driver duties `punchline_core::machine` lists for streams, on
//! the client's side.
//!
//! - `ClientEvent::OpenStream` opens a connection from a fresh local port
//!   (from [`FIRST_TCP_PORT`], the IANA dynamic range) and answers
//!   `Client::stream_opened` once the handshake completes, or with `None`
//!   when the SYN goes unanswered (see `engine::tcp`).
//! - A connection is named by a `SocketId` from the same counter as the
//!   host's UDP sockets, so the two never collide.
//! - A transmit on a connection is written to it as it is (the core framed
//!   it); bytes that arrive in order go to `handle_stream_data`, in the
//!   piece they arrived in.
//! - `ClientEvent::CloseStream` sends a FIN after what was written; the
//!   client is not told again. A connection the other end closed (FIN),
//!   reset, or that gave up is reported with `handle_stream_closed`.
//! - A segment for no connection of the host is answered with a RST, as a
//!   host's stack does.

use std::net::SocketAddr;

use bytes::Bytes;
use punchline_core::{Machine, SocketId, Transmit};

use super::{HostEvent, Hosts};
use crate::addr::Addr;
use crate::describe;
use crate::engine::tcp::{millis, Conn, Segment, Sending, State, Step, WIRE_OVERHEAD};
use crate::engine::{index, lost_why, network::NetEvent, Arrow, DEFAULT_TTL};
use crate::nat::{Packet, Proto, TcpFlags};

/// The first local port of a host's TCP connections (RFC 6335's dynamic
/// range).
pub(crate) const FIRST_TCP_PORT: u16 = 49152;

/// One of a host's connections.
pub(in crate::engine) struct HostStream {
    id: SocketId,
    /// The client's `OpenStream` request it answers.
    request: u32,
    conn: Conn,
    /// The client was told it opened.
    opened: bool,
    /// The client holds it: told it opened, and has not asked to close it.
    held: bool,
}

/// What a host's connections did, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamCounts {
    /// Connections that opened.
    pub(crate) opened: u64,
    /// Connects that failed (no answer to the SYN, or a RST).
    pub(crate) failed: u64,
    /// Segments sent again.
    pub(crate) retransmissions: u64,
}

impl Hosts {
    /// `ClientEvent::OpenStream`: connects to `to`.
    pub(super) fn open_stream(&mut self, i: usize, request: u32, to: SocketAddr) {
        let now = self.now;
        let peer = &mut self.peers[i];
        let id = SocketId(peer.next_socket);
        peer.next_socket += 1;
        let port = peer.next_tcp_port;
        peer.next_tcp_port = peer.next_tcp_port.checked_add(1).unwrap_or(FIRST_TCP_PORT);
        let local = SocketAddr::new(peer.addr, port);
        let mut steps = Vec::new();
        let conn = Conn::connect(now, local, to, &mut steps);
        let name = &self.peers[i].name;
        self.lines.record(now, format_args!("{name}: opens tcp connection {} {} => {}", id.0, Addr(local), Addr(to)));
        self.peers[i].streams.push(HostStream { id, request, conn, opened: false, held: false });
        self.run_steps(i, id, steps);
        self.arm_tcp_timer(i);
    }

    /// `ClientEvent::CloseStream`: a FIN after what was written.
    pub(super) fn close_stream(&mut self, i: usize, id: SocketId) {
        let now = self.now;
        let mut steps = Vec::new();
        if let Some(s) = self.stream_mut(i, id) {
            s.held = false;
            if s.conn.state() == State::Established {
                s.conn.close(now, &mut steps);
            }
        }
        self.run_steps(i, id, steps);
        self.arm_tcp_timer(i);
    }

    /// A transmit on one of the host's connections: written to it. False
    /// when `t.socket` names no connection (it is a UDP socket's).
    pub(super) fn stream_transmit(&mut self, i: usize, t: &Transmit) -> bool {
        let now = self.now;
        let peer = &mut self.peers[i];
        let Some(s) = peer.streams.iter_mut().find(|s| s.id == t.socket) else { return false };
        peer.sent += 1;
        let (local, remote) = (s.conn.local, s.conn.remote);
        let open = s.held && s.conn.state() == State::Established && !s.conn.fin_sent();
        let mut steps = Vec::new();
        if open {
            s.conn.write(now, &t.payload, &mut steps);
        }
        let name = &self.peers[i].name;
        self.lines.record_with(now, |line| {
            use std::fmt::Write as _;
            write!(line, "{name} {} => {} tcp write {} bytes [", Addr(local), Addr(remote), t.payload.len())?;
            describe::write_stream_write(line, &t.payload, t.plaintext.as_deref())?;
            line.push(']');
            if !open {
                line.push_str(" on a closed connection: dropped");
            }
            Ok(())
        });
        if self.lines.keeps_arrows() {
            let mut label = String::from("tcp ");
            let _ = describe::write_stream_write(&mut label, &t.payload, t.plaintext.as_deref());
            let from = self.peers[i].name.clone();
            let to = if self.server_addrs.contains(&remote) { "server".to_string() } else { remote.to_string() };
            self.lines.push_arrow(Arrow { at: now, from, to, label });
        }
        self.run_steps(i, t.socket, steps);
        self.arm_tcp_timer(i);
        true
    }

    /// A TCP segment reached host `i`.
    pub(super) fn deliver_segment(&mut self, i: usize, p: Packet) {
        let now = self.now;
        let Proto::Tcp(flags) = p.proto else { return };
        let Some(seg) = Segment::decode(flags, &p.payload) else {
            let name = &self.peers[i].name;
            self.lines.record(now, format_args!("{name}: malformed tcp segment from {}", Addr(p.src)));
            return;
        };
        let found = self.peers[i].streams.iter_mut().find(|s| s.conn.local == p.dst && s.conn.remote == p.src);
        let Some(s) = found else {
            if !flags.has(TcpFlags::RST) {
                let name = &self.peers[i].name;
                self.lines.record(
                    now,
                    format_args!("{name}: no tcp connection {} -> {} [{flags}]; answers RST", Addr(p.src), Addr(p.dst)),
                );
                let rst = Segment { flags: TcpFlags::RST, seq: seg.ack, ack: 0, data: Bytes::new() };
                self.send_segment(i, p.dst, p.src, rst);
            }
            return;
        };
        let id = s.id;
        let mut steps = Vec::new();
        s.conn.receive(now, seg, &mut steps);
        self.run_steps(i, id, steps);
        self.sweep_streams(i);
        self.arm_tcp_timer(i);
    }

    /// `HostEvent::TcpTimer`: the retransmission timers that are due.
    pub(super) fn fire_tcp_timer(&mut self, i: usize) {
        if self.peers[i].tcp_timer != Some(self.now) {
            return;
        }
        self.peers[i].tcp_timer = None;
        let now = self.now;
        let due: Vec<SocketId> = self.peers[i]
            .streams
            .iter()
            .filter(|s| s.conn.deadline().is_some_and(|at| at <= now))
            .map(|s| s.id)
            .collect();
        for id in due {
            let mut steps = Vec::new();
            if let Some(s) = self.stream_mut(i, id) {
                s.conn.on_timeout(now, &mut steps);
            }
            self.run_steps(i, id, steps);
        }
        self.sweep_streams(i);
        self.arm_tcp_timer(i);
    }

    fn stream_mut(&mut self, i: usize, id: SocketId) -> Option<&mut HostStream> {
        self.peers[i].streams.iter_mut().find(|s| s.id == id)
    }

    /// Carries out what connection `id` asked for, then sends the ACK it
    /// still owes. Never removes a connection (see [`Hosts::sweep_streams`]):
    /// it runs inside the client's drain, for its writes too.
    fn run_steps(&mut self, i: usize, id: SocketId, steps: Vec<Step>) {
        let now = self.instant();
        for step in steps {
            let Some(s) = self.stream_mut(i, id) else { return };
            let (local, remote, request) = (s.conn.local, s.conn.remote, s.request);
            // Only connections' steps come here, rarely: a copy of the name
            // keeps the borrows simple.
            let name = self.peers[i].name.clone();
            match step {
                Step::Send { seg, why } => {
                    if let Sending::AfterTimeout(waited) = why {
                        self.peers[i].tcp.retransmissions += 1;
                        let what = seg.text();
                        let waited = millis(waited);
                        self.lines.record(
                            self.now,
                            format_args!(
                                "{name} {} => {} tcp retransmits {what} after {waited}",
                                Addr(local),
                                Addr(remote)
                            ),
                        );
                    }
                    self.send_segment(i, local, remote, seg);
                }
                Step::Established => {
                    self.lines.record(self.now, format_args!("{name}: tcp connection {} open", id.0));
                    self.peers[i].tcp.opened += 1;
                    if let Some(s) = self.stream_mut(i, id) {
                        (s.opened, s.held) = (true, true);
                    }
                    self.peers[i].client.stream_opened(now, request, Some(id));
                    self.drain_peer(i);
                }
                Step::ConnectFailed => {
                    self.lines.record(
                        self.now,
                        format_args!(
                            "{name}: tcp connection {} to {} failed: no answer to its SYN",
                            id.0,
                            Addr(remote)
                        ),
                    );
                    self.peers[i].tcp.failed += 1;
                    self.peers[i].client.stream_opened(now, request, None);
                    self.drain_peer(i);
                }
                Step::Deliver(bytes) => {
                    self.lines.record(
                        self.now,
                        format_args!("{name} {} <= {} tcp read {} bytes", Addr(local), Addr(remote), bytes.len()),
                    );
                    if self.stream_mut(i, id).is_some_and(|s| s.held) {
                        self.peers[i].client.handle_stream_data(now, id, &bytes);
                        self.drain_peer(i);
                    }
                }
                Step::PeerClosed | Step::Reset | Step::GaveUp => {
                    let why = match step {
                        Step::PeerClosed => "closed by the server (FIN)",
                        Step::Reset => "reset (RST)",
                        _ => "gave up: its data went unacknowledged",
                    };
                    self.lines.record(self.now, format_args!("{name}: tcp connection {} {why}", id.0));
                    let was = self.stream_mut(i, id).map(|s| (s.opened, std::mem::replace(&mut s.held, false)));
                    match was {
                        Some((_, true)) => self.peers[i].client.handle_stream_closed(now, id),
                        // A RST before the handshake completed: the
                        // connect failed.
                        Some((false, _)) => {
                            self.peers[i].tcp.failed += 1;
                            self.peers[i].client.stream_opened(now, request, None);
                        }
                        _ => continue,
                    }
                    self.drain_peer(i);
                }
            }
        }
        let ack = self.stream_mut(i, id).and_then(|s| s.conn.take_ack().map(|a| (s.conn.local, s.conn.remote, a)));
        if let Some((local, remote, ack)) = ack {
            self.send_segment(i, local, remote, ack);
        }
    }

    /// Forgets connections that are done: closed, or closed by the client
    /// and fully acknowledged. Only where no step of theirs can still be
    /// running: at the events' entry points, never within a drain.
    fn sweep_streams(&mut self, i: usize) {
        let done =
            |s: &HostStream| s.conn.state() == State::Closed || (!s.held && s.conn.fin_sent() && s.conn.all_acked());
        self.peers[i].streams.retain(|s| !done(s));
    }

    /// Sets the host's TCP timer to the earliest retransmission deadline.
    fn arm_tcp_timer(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        let at = peer.streams.iter().filter_map(|s| s.conn.deadline()).min().map(|at| at.max(self.now));
        if peer.tcp_timer != at {
            peer.tcp_timer = at;
            if let Some(at) = at {
                self.schedule(at, HostEvent::TcpTimer(index(i)));
            }
        }
    }

    /// Sends a segment of host `i` up its link.
    fn send_segment(&mut self, i: usize, src: SocketAddr, dst: SocketAddr, seg: Segment) {
        let size = seg.data.len() + WIRE_OVERHEAD;
        let p = Packet { src, dst, ttl: DEFAULT_TTL, payload: seg.encode(), proto: Proto::Tcp(seg.flags) };
        let arrivals = self.peers[i].up.transmit(self.now, size);
        if arrivals.is_empty() {
            let (name, why) = (&self.peers[i].name, lost_why(&arrivals));
            self.lines.record(
                self.now,
                format_args!("link {name}: {why} tcp {} -> {} [{}]", Addr(src), Addr(dst), seg.flags),
            );
        }
        let behind = self.peers[i].behind;
        let event = |p| match behind {
            Some(n) => NetEvent::FromInside(index(n), p),
            None => NetEvent::Internet(p),
        };
        self.outbox.push_copies(&arrivals, p, event);
    }
}
