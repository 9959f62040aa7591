//! The server's TCP connections (the TCP fallback, issue 21): the driver
//! duties `punchline_core::machine` lists for streams, on the server's
//! side.
//!
//! - The server accepts connections on its primary address (its
//!   `SocketId(0)`); a SYN to any other of its addresses is answered with a
//!   RST (nothing listens there). A connection is handed to the machine
//!   (`Server::stream_accepted`) when its handshake completes, named by a
//!   `SocketId` above every socket of the server's.
//! - A transmit on a connection is written to it as it is. Its write
//!   buffer is bounded as a runtime bounds it: while what is written and
//!   unacknowledged exceeds [`WRITE_SOFT_LIMIT`], a `Transmit::droppable`
//!   datagram (a relayed one) is dropped and counted; past
//!   [`WRITE_HARD_LIMIT`] even signaling does not fit, and the connection is
//!   reset and reported closed.
//! - `ServerEvent::CloseStream` sends a FIN after what was written; the
//!   machine is not told again. The other end's FIN, a RST, or giving up
//!   after the retransmissions is reported with `handle_stream_closed`.
//! - A server restart is a process dying: its kernel resets every
//!   connection it held.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use punchline_core::{Machine, SocketId, Transmit};

use super::{NetEvent, Network};
use crate::addr::Addr;
use crate::describe;
use crate::engine::tcp::{millis, Conn, Segment, Sending, State, Step};
use crate::engine::{Arrow, DEFAULT_TTL};
use crate::nat::{Packet, Proto, TcpFlags};

/// Unacknowledged bytes past which a connection's relayed datagrams are
/// dropped (a runtime's bounded write buffer).
pub const WRITE_SOFT_LIMIT: usize = 256 * 1024;
/// Unacknowledged bytes past which a connection is reset: it does not take
/// even signaling.
pub const WRITE_HARD_LIMIT: usize = 1024 * 1024;

/// The server's connections.
#[derive(Default)]
pub(in crate::engine) struct ServerStreams {
    conns: BTreeMap<SocketId, ServerConn>,
    /// (local, remote) -> connection.
    by_tuple: BTreeMap<(SocketAddr, SocketAddr), SocketId>,
    next_id: u32,
    /// The TCP retransmission deadline the queue holds an event for.
    timer: Option<Duration>,
    pub(in crate::engine) counts: ServerStreamCounts,
}

/// What the server's connections did, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ServerStreamCounts {
    /// Connections accepted (handshake completed).
    pub(crate) accepted: u64,
    /// Segments the server sent again.
    pub(crate) retransmissions: u64,
    /// Relayed datagrams dropped for a full write buffer.
    pub(crate) dropped: u64,
    /// Connections reset for a write buffer past the hard limit.
    pub(crate) overflowed: u64,
}

struct ServerConn {
    conn: Conn,
    /// The machine holds it: accepted, and not closed by it.
    held: bool,
}

/// What becomes of one write on an open connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Written.
    Write,
    /// A relayed datagram dropped: the buffer is past the soft limit.
    Drop,
    /// Past the hard limit even for signaling: the connection is reset.
    Reset,
    /// The connection no longer takes writes (closing, closed, or not the
    /// machine's any more): dropped.
    Closed,
}

/// The fate of a write of `len` bytes on an open connection holding
/// `buffered` unacknowledged bytes, as a runtime with a bounded write
/// buffer decides it: a relayed (`droppable`) datagram that would take the
/// buffer past [`WRITE_SOFT_LIMIT`] is dropped; anything that would take it
/// past [`WRITE_HARD_LIMIT`] resets the connection; the rest is written.
fn write_fate(buffered: usize, len: usize, droppable: bool) -> Fate {
    let after = buffered + len;
    if droppable && after > WRITE_SOFT_LIMIT {
        Fate::Drop
    } else if after > WRITE_HARD_LIMIT {
        Fate::Reset
    } else {
        Fate::Write
    }
}

impl ServerStreams {
    /// Connections get ids from `first` up (above the server's sockets).
    pub(super) fn new(first: u32) -> ServerStreams {
        ServerStreams { next_id: first, ..ServerStreams::default() }
    }
}

impl Network {
    /// A TCP segment reached one of the server's addresses.
    pub(super) fn server_segment(&mut self, p: Packet) {
        let now = self.now;
        let Proto::Tcp(flags) = p.proto else { return };
        let Some(seg) = Segment::decode(flags, &p.payload) else {
            self.lines.record(now, format_args!("server: malformed tcp segment from {}", Addr(p.src)));
            return;
        };
        let (local, remote) = (p.dst, p.src);
        let id = match self.tcp.by_tuple.get(&(local, remote)) {
            Some(&id) => id,
            None if flags.is_syn() && Some(local) == self.listener() => {
                let id = SocketId(self.tcp.next_id);
                self.tcp.next_id += 1;
                let mut steps = Vec::new();
                let conn = Conn::accept(now, local, remote, &seg, &mut steps);
                self.lines.record(
                    now,
                    format_args!(
                        "server {} <= {} tcp SYN: connection {} answers SYN-ACK",
                        Addr(local),
                        Addr(remote),
                        id.0
                    ),
                );
                self.tcp.conns.insert(id, ServerConn { conn, held: false });
                self.tcp.by_tuple.insert((local, remote), id);
                self.run_server_steps(id, steps);
                self.arm_server_tcp_timer();
                return;
            }
            None => {
                if !flags.has(TcpFlags::RST) {
                    self.lines.record(
                        now,
                        format_args!(
                            "server: no tcp connection {} -> {} [{flags}]; answers RST",
                            Addr(remote),
                            Addr(local)
                        ),
                    );
                    let rst = Segment { flags: TcpFlags::RST, seq: seg.ack, ack: 0, data: Bytes::new() };
                    self.send_server_segment(local, remote, rst);
                }
                return;
            }
        };
        let mut steps = Vec::new();
        if let Some(c) = self.tcp.conns.get_mut(&id) {
            c.conn.receive(now, seg, &mut steps);
        }
        self.run_server_steps(id, steps);
        self.sweep_server_streams();
        self.arm_server_tcp_timer();
    }

    /// A transmit on one of the server's connections: written to it, or
    /// dropped for a full buffer. False when `t.socket` names no
    /// connection.
    pub(super) fn server_stream_transmit(&mut self, t: &Transmit) -> bool {
        let now = self.now;
        let Some(c) = self.tcp.conns.get_mut(&t.socket) else { return false };
        let (local, remote, id) = (c.conn.local, c.conn.remote, t.socket);
        let buffered = c.conn.unacknowledged();
        let open = c.held && c.conn.state() == State::Established && !c.conn.fin_sent();
        let fate = if open { write_fate(buffered, t.payload.len(), t.droppable) } else { Fate::Closed };
        let mut steps = Vec::new();
        match fate {
            Fate::Write => c.conn.write(now, &t.payload, &mut steps),
            Fate::Drop => self.tcp.counts.dropped += 1,
            Fate::Reset => {
                self.tcp.counts.overflowed += 1;
                c.held = false;
                let rst = c.conn.reset();
                steps.push(Step::Send { seg: rst, why: Sending::First });
            }
            Fate::Closed => {}
        }
        self.lines.record_with(now, |line| {
            use std::fmt::Write as _;
            write!(line, "server {} => {} tcp write {} bytes [", Addr(local), Addr(remote), t.payload.len())?;
            describe::write_stream_write(line, &t.payload, t.plaintext.as_deref())?;
            line.push(']');
            match fate {
                Fate::Write => {}
                Fate::Closed => line.push_str(" on a closed connection: dropped"),
                Fate::Drop => write!(line, " dropped: the write buffer is full ({buffered} bytes unacknowledged)")?,
                Fate::Reset => {
                    write!(line, " does not fit ({buffered} bytes unacknowledged): the connection is reset")?
                }
            }
            Ok(())
        });
        if self.lines.keeps_arrows() && fate == Fate::Write {
            let mut label = String::from("tcp ");
            let _ = describe::write_stream_write(&mut label, &t.payload, t.plaintext.as_deref());
            self.lines.push_arrow(Arrow { at: now, from: "server".to_string(), to: remote.to_string(), label });
        }
        self.run_server_steps(id, steps);
        if fate == Fate::Reset {
            // The driver gave up on it: the machine hears so (and not of
            // the RST, which is ours).
            self.server.handle_stream_closed(self.instant(), id);
        }
        self.arm_server_tcp_timer();
        true
    }

    /// `ServerEvent::CloseStream`: a FIN after what was written.
    pub(super) fn server_close_stream(&mut self, id: SocketId) {
        let now = self.now;
        let mut steps = Vec::new();
        if let Some(c) = self.tcp.conns.get_mut(&id) {
            c.held = false;
            if c.conn.state() == State::Established {
                c.conn.close(now, &mut steps);
            }
        }
        self.run_server_steps(id, steps);
        self.arm_server_tcp_timer();
    }

    /// `NetEvent::TcpTimer`: the retransmission timers that are due.
    pub(super) fn fire_server_tcp_timer(&mut self) {
        if self.tcp.timer != Some(self.now) {
            return;
        }
        self.tcp.timer = None;
        let now = self.now;
        let due: Vec<SocketId> = self
            .tcp
            .conns
            .iter()
            .filter(|(_, c)| c.conn.deadline().is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let mut steps = Vec::new();
            if let Some(c) = self.tcp.conns.get_mut(&id) {
                c.conn.on_timeout(now, &mut steps);
            }
            self.run_server_steps(id, steps);
        }
        self.sweep_server_streams();
        self.arm_server_tcp_timer();
    }

    /// The server process died: its kernel resets every connection.
    pub(super) fn reset_server_streams(&mut self) {
        let conns = std::mem::take(&mut self.tcp.conns);
        self.tcp.by_tuple.clear();
        for (_, mut c) in conns {
            if c.conn.state() != State::Closed {
                let rst = c.conn.reset();
                self.send_server_segment(c.conn.local, c.conn.remote, rst);
            }
        }
        self.arm_server_tcp_timer();
    }

    /// Open (or opening, or closing) connections.
    pub(super) fn server_stream_count(&self) -> usize {
        self.tcp.conns.len()
    }

    /// The address the server accepts connections on: its primary one.
    fn listener(&self) -> Option<SocketAddr> {
        self.server.sockets().iter().find(|(id, _)| *id == SocketId(0)).map(|(_, a)| *a)
    }

    /// Carries out what connection `id` asked for, then sends the ACK it
    /// still owes. Never removes a connection: it runs inside the server's
    /// drain too.
    fn run_server_steps(&mut self, id: SocketId, steps: Vec<Step>) {
        let now = self.instant();
        for step in steps {
            let Some(c) = self.tcp.conns.get_mut(&id) else { return };
            let (local, remote) = (c.conn.local, c.conn.remote);
            match step {
                Step::Send { seg, why } => {
                    if let Sending::AfterTimeout(waited) = why {
                        self.tcp.counts.retransmissions += 1;
                        let (what, waited) = (seg.text(), millis(waited));
                        self.lines.record(
                            self.now,
                            format_args!(
                                "server {} => {} tcp retransmits {what} after {waited}",
                                Addr(local),
                                Addr(remote)
                            ),
                        );
                    }
                    self.send_server_segment(local, remote, seg);
                }
                Step::Established => {
                    c.held = true;
                    self.tcp.counts.accepted += 1;
                    self.lines.record(
                        self.now,
                        format_args!("server: tcp connection {} accepted from {}", id.0, Addr(remote)),
                    );
                    self.server.stream_accepted(now, id, remote);
                    self.drain_server();
                }
                Step::Deliver(bytes) => {
                    let held = c.held;
                    self.lines.record(
                        self.now,
                        format_args!("server {} <= {} tcp read {} bytes", Addr(local), Addr(remote), bytes.len()),
                    );
                    if held {
                        self.server.handle_stream_data(now, id, &bytes);
                        self.drain_server();
                    }
                }
                Step::ConnectFailed => {
                    self.lines.record(
                        self.now,
                        format_args!(
                            "server: tcp connection {} from {} dropped: its SYN-ACK went unanswered",
                            id.0,
                            Addr(remote)
                        ),
                    );
                }
                Step::PeerClosed | Step::Reset | Step::GaveUp => {
                    let why = match step {
                        Step::PeerClosed => "closed by the client (FIN)",
                        Step::Reset => "reset (RST)",
                        _ => "gave up: its data went unacknowledged",
                    };
                    let held = std::mem::replace(&mut c.held, false);
                    self.lines.record(self.now, format_args!("server: tcp connection {} {why}", id.0));
                    if held {
                        self.server.handle_stream_closed(now, id);
                        self.drain_server();
                    }
                }
            }
        }
        let ack = self.tcp.conns.get_mut(&id).and_then(|c| c.conn.take_ack().map(|a| (c.conn.local, c.conn.remote, a)));
        if let Some((local, remote, ack)) = ack {
            self.send_server_segment(local, remote, ack);
        }
    }

    /// Forgets connections that are done (closed, or closed by the machine
    /// and fully acknowledged), at the events' entry points only.
    fn sweep_server_streams(&mut self) {
        let done: Vec<SocketId> = self
            .tcp
            .conns
            .iter()
            .filter(|(_, c)| c.conn.state() == State::Closed || (!c.held && c.conn.fin_sent() && c.conn.all_acked()))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if let Some(c) = self.tcp.conns.remove(&id) {
                self.tcp.by_tuple.remove(&(c.conn.local, c.conn.remote));
            }
        }
    }

    /// Sets the TCP timer to the earliest retransmission deadline.
    pub(super) fn arm_server_tcp_timer(&mut self) {
        let at = self.tcp.conns.values().filter_map(|c| c.conn.deadline()).min().map(|at| at.max(self.now));
        if self.tcp.timer != at {
            self.tcp.timer = at;
            if let Some(at) = at {
                self.schedule(at, NetEvent::TcpTimer);
            }
        }
    }

    /// Sends a segment from the server into the internet.
    fn send_server_segment(&mut self, src: SocketAddr, dst: SocketAddr, seg: Segment) {
        if self.server_down {
            self.lines.record(
                self.now,
                format_args!("server: link down, lost tcp {} -> {} [{}]", Addr(src), Addr(dst), seg.flags),
            );
            return;
        }
        let p = Packet { src, dst, ttl: DEFAULT_TTL, payload: seg.encode(), proto: Proto::Tcp(seg.flags) };
        self.packet_events += 1;
        self.internet(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_datagrams_are_dropped_past_the_soft_limit_and_signaling_only_past_the_hard_one() {
        // Given a connection with room left, a relayed datagram and
        // signaling are both written;
        assert_eq!(write_fate(0, 1200, true), Fate::Write);
        assert_eq!(write_fate(WRITE_SOFT_LIMIT - 1200, 1200, true), Fate::Write);
        // when a relayed datagram would take the buffer past 256 KiB, it is
        // dropped, while signaling still goes;
        assert_eq!(write_fate(WRITE_SOFT_LIMIT - 1199, 1200, true), Fate::Drop);
        assert_eq!(write_fate(WRITE_SOFT_LIMIT, 100, false), Fate::Write);
        // and past 1 MiB signaling does not fit either: the connection goes.
        assert_eq!(write_fate(WRITE_HARD_LIMIT - 100, 100, false), Fate::Write);
        assert_eq!(write_fate(WRITE_HARD_LIMIT - 99, 100, false), Fate::Reset);
        assert_eq!(write_fate(WRITE_HARD_LIMIT, 1200, true), Fate::Drop, "a relayed datagram is only dropped");
    }
}
