//! One end of a simulated TCP connection (the TCP fallback, issue 21): a
//! reliable, ordered byte stream carried as segments through the same
//! links, NATs and internet as every UDP datagram.
//!
//! The model keeps what makes TCP cost something and drops the rest:
//!
//! - **Handshake**: SYN, SYN-ACK, ACK (RFC 9293 §3.5): a connection is open
//!   at the client one round trip after its SYN. An unanswered SYN is sent
//!   again after 1 s, then 2 s (RFC 6298 §2.1's initial RTO, doubled), and
//!   the connect fails 4 s after the last: 7 s in all ([`SYN_RETRIES`]).
//!   The server's SYN-ACK is retransmitted the same way.
//! - **Sequence numbers** are 64-bit byte offsets from an initial sequence
//!   number of 0 (the SYN and the FIN take one each, as in TCP): no
//!   wrapping, and deterministic.
//! - **Loss shows as delay**: every segment is acknowledged cumulatively;
//!   the oldest unacknowledged one is retransmitted when the
//!   retransmission timer expires (RFC 6298: RTO = SRTT + 4 RTTVAR, at
//!   least [`MIN_RTO`] as Linux has it, doubled on every expiry, at most
//!   [`MAX_RTO`]; Karn's rule: no RTT sample from an ACK that covers a
//!   retransmitted segment). The receiver holds segments that arrive out of order and
//!   hands bytes on only in order, so one lost segment delays every later
//!   byte until it is delivered (head-of-line blocking). There is no fast
//!   retransmit and no SACK: every loss costs a timeout, which is what a
//!   sparse flow like a client's signaling gets from real TCP anyway.
//! - **Giving up**: after [`DATA_RETRIES`] retransmissions of the same
//!   segment without progress, when the last one's timer expires, the end
//!   gives up and the connection is closed there (about 25 s at a 200 ms
//!   RTO). A real stack tries for longer (Linux's `tcp_retries2` is about
//!   15 minutes); the core's own liveness rules act well before either.
//! - **No congestion or flow control**: a write is sent at once, one
//!   segment per [`MSS`] bytes; the link's bandwidth queue does the
//!   pacing. What is written and not yet acknowledged is the write buffer
//!   the driver bounds ([`Conn::unacknowledged`]).
//! - **ACKs** ride on the next data segment when the machine answers at
//!   once, and otherwise go alone, at once (no delayed ACK timer). The
//!   SYN-ACK is acknowledged at once, before anything is written.
//!
//! [`Conn`] is pure: segments and time in, [`Step`]s out. The engine's
//! hosts (the client's end) and network (the server's end) carry the
//! segments and hand the bytes to the machines.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::nat::TcpFlags;

/// Bytes a segment's payload spends on the model's header: the sequence
/// and acknowledgement numbers.
pub(crate) const SEGMENT_HEADER: usize = 16;
/// The IPv4 and TCP headers of a segment on the wire (no options), for the
/// links' bandwidth.
pub(crate) const WIRE_OVERHEAD: usize = 40;
/// Largest data per segment: Ethernet's 1500 bytes less the headers.
pub(crate) const MSS: usize = 1460;
/// The smallest retransmission timeout (Linux's `TCP_RTO_MIN`; RFC 6298
/// asks for 1 s, which every deployed stack ignores).
pub(crate) const MIN_RTO: Duration = Duration::from_millis(200);
/// The largest retransmission timeout (RFC 6298 §2.5 allows a cap of at
/// least 60 s).
pub(crate) const MAX_RTO: Duration = Duration::from_secs(60);
/// The timeout of a SYN or SYN-ACK, and of data before any RTT sample
/// (RFC 6298 §2.1).
pub(crate) const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Retransmissions of a SYN (or SYN-ACK) before the connect fails: waits of
/// 1 s, 2 s and 4 s.
pub(crate) const SYN_RETRIES: u32 = 2;
/// Retransmissions of a data segment before the end gives up.
pub(crate) const DATA_RETRIES: u32 = 6;

/// One segment: flags, sequence and acknowledgement numbers, data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) flags: TcpFlags,
    pub(crate) seq: u64,
    pub(crate) ack: u64,
    pub(crate) data: Bytes,
}

impl Segment {
    /// The packet payload: sequence and acknowledgement numbers, then the
    /// data (the flags travel in the packet's [`Proto`](crate::nat::Proto)).
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(SEGMENT_HEADER + self.data.len());
        out.put_u64(self.seq);
        out.put_u64(self.ack);
        out.extend_from_slice(&self.data);
        out.freeze()
    }

    /// The segment in a packet's payload; `None` when it is too short.
    pub(crate) fn decode(flags: TcpFlags, payload: &Bytes) -> Option<Segment> {
        if payload.len() < SEGMENT_HEADER {
            return None;
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Some(Segment { flags, seq: word(0), ack: word(8), data: payload.slice(SEGMENT_HEADER..) })
    }

    /// The segment as a trace line names it: `12 bytes seq=1`, or its
    /// flags when it has no data (`SYN seq=0`).
    pub(crate) fn text(&self) -> String {
        if self.data.is_empty() {
            format!("{} seq={}", self.flags, self.seq)
        } else {
            format!("{} bytes seq={}", self.data.len(), self.seq)
        }
    }

    /// Sequence space the segment takes: its data, plus one for a SYN or
    /// a FIN.
    fn len(&self) -> u64 {
        self.data.len() as u64 + u64::from(self.flags.has(TcpFlags::SYN)) + u64::from(self.flags.has(TcpFlags::FIN))
    }
}

/// Where a connection end stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// The client sent its SYN.
    SynSent,
    /// The server answered a SYN.
    SynReceived,
    /// Both ways open (or closing: see [`Conn::fin_sent`]).
    Established,
    /// Reset, given up, or closed by the other end's FIN.
    Closed,
}

/// What a connection end asks of its driver, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this segment, for the first time or again.
    Send { seg: Segment, why: Sending },
    /// The handshake completed.
    Established,
    /// Bytes arrived in order (everything newly in order, in one piece).
    Deliver(Bytes),
    /// The other end finished (its FIN arrived, in order).
    PeerClosed,
    /// A RST arrived.
    Reset,
    /// The SYN (or SYN-ACK) went unanswered [`SYN_RETRIES`] times over.
    ConnectFailed,
    /// A segment went unacknowledged [`DATA_RETRIES`] times over.
    GaveUp,
}

/// Why a segment is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sending {
    /// It is new.
    First,
    /// Its retransmission timeout (this long) expired.
    AfterTimeout(Duration),
    /// The other end repeated its SYN: the SYN-ACK goes again.
    Again,
}

/// One end of a connection; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    state: State,
    /// The oldest sequence number not acknowledged.
    snd_una: u64,
    /// The next sequence number to send.
    snd_nxt: u64,
    /// Segments sent and not acknowledged, in order.
    unacked: VecDeque<Sent>,
    /// Our FIN is sent (the machine closed this end).
    fin_sent: bool,
    /// Smoothed RTT and its variation, once sampled.
    rtt: Option<(Duration, Duration)>,
    /// The timeout now, backed off.
    rto: Duration,
    /// Retransmissions of the oldest segment since the last progress.
    retries: u32,
    deadline: Option<Duration>,
    /// The next sequence number expected from the other end.
    rcv_nxt: u64,
    /// Segments that arrived ahead of `rcv_nxt`, by sequence number.
    ahead: BTreeMap<u64, Segment>,
    /// Something arrived that our next segment must acknowledge.
    ack_owed: bool,
    /// Retransmissions this end made.
    pub(crate) retransmissions: u64,
}

#[derive(Debug)]
struct Sent {
    seg: Segment,
    at: Duration,
    retransmitted: bool,
}

impl Conn {
    /// A client's end: sends its SYN.
    pub(crate) fn connect(now: Duration, local: SocketAddr, remote: SocketAddr, out: &mut Vec<Step>) -> Conn {
        let mut c = Conn::new(local, remote, State::SynSent);
        c.send_new(now, TcpFlags::SYN, Bytes::new(), out);
        c
    }

    /// A server's end for the SYN `syn`: answers SYN-ACK.
    pub(crate) fn accept(
        now: Duration,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &Segment,
        out: &mut Vec<Step>,
    ) -> Conn {
        let mut c = Conn::new(local, remote, State::SynReceived);
        c.rcv_nxt = syn.seq + 1;
        c.send_new(now, TcpFlags::SYN.with(TcpFlags::ACK), Bytes::new(), out);
        c
    }

    fn new(local: SocketAddr, remote: SocketAddr, state: State) -> Conn {
        Conn {
            local,
            remote,
            state,
            snd_una: 0,
            snd_nxt: 0,
            unacked: VecDeque::new(),
            fin_sent: false,
            rtt: None,
            rto: INITIAL_RTO,
            retries: 0,
            deadline: None,
            rcv_nxt: 0,
            ahead: BTreeMap::new(),
            ack_owed: false,
            retransmissions: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// When [`Conn::on_timeout`] is next due.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Bytes written and not yet acknowledged: the write buffer a runtime
    /// bounds (nothing waits unsent here: see the module documentation).
    pub(crate) fn unacknowledged(&self) -> usize {
        self.unacked.iter().map(|s| s.seg.data.len()).sum()
    }

    /// Our FIN has been sent.
    pub(crate) fn fin_sent(&self) -> bool {
        self.fin_sent
    }

    /// Everything we sent, our FIN included, is acknowledged.
    pub(crate) fn all_acked(&self) -> bool {
        self.unacked.is_empty()
    }

    /// Writes `data` (the connection is established): one segment per
    /// [`MSS`] bytes, each acknowledging what has arrived.
    pub(crate) fn write(&mut self, now: Duration, data: &Bytes, out: &mut Vec<Step>) {
        if self.state != State::Established || self.fin_sent {
            return;
        }
        let mut at = 0;
        while at < data.len() {
            let end = (at + MSS).min(data.len());
            self.send_new(now, TcpFlags::PSH.with(TcpFlags::ACK), data.slice(at..end), out);
            at = end;
        }
    }

    /// Closes this end: a FIN after what was written.
    pub(crate) fn close(&mut self, now: Duration, out: &mut Vec<Step>) {
        if self.state == State::Closed || self.fin_sent {
            return;
        }
        self.fin_sent = true;
        self.send_new(now, TcpFlags::FIN.with(TcpFlags::ACK), Bytes::new(), out);
    }

    /// A RST for this connection, which closes this end.
    pub(crate) fn reset(&mut self) -> Segment {
        self.state = State::Closed;
        self.deadline = None;
        self.ack_owed = false;
        Segment { flags: TcpFlags::RST, seq: self.snd_nxt, ack: 0, data: Bytes::new() }
    }

    /// A pure ACK, if something arrived that no segment since has
    /// acknowledged (the other end's FIN included).
    pub(crate) fn take_ack(&mut self) -> Option<Segment> {
        if !self.ack_owed {
            return None;
        }
        self.ack_owed = false;
        Some(Segment { flags: TcpFlags::ACK, seq: self.snd_nxt, ack: self.rcv_nxt, data: Bytes::new() })
    }

    /// A segment of this connection arrived.
    pub(crate) fn receive(&mut self, now: Duration, seg: Segment, out: &mut Vec<Step>) {
        if self.state == State::Closed {
            return;
        }
        if seg.flags.has(TcpFlags::RST) {
            self.state = State::Closed;
            self.deadline = None;
            self.ack_owed = false;
            out.push(Step::Reset);
            return;
        }
        match self.state {
            State::SynSent => {
                // Only the SYN-ACK for our SYN moves us.
                if !(seg.flags.has(TcpFlags::SYN.with(TcpFlags::ACK)) && seg.ack == 1) {
                    return;
                }
                self.rcv_nxt = seg.seq + 1;
                self.acknowledged(now, seg.ack);
                self.state = State::Established;
                // The stack acknowledges the SYN-ACK at once, before the
                // application writes anything (as Linux does), so the
                // server's first RTT sample is a true one.
                let ack = Segment { flags: TcpFlags::ACK, seq: self.snd_nxt, ack: self.rcv_nxt, data: Bytes::new() };
                out.push(Step::Send { seg: ack, why: Sending::First });
                out.push(Step::Established);
                return;
            }
            State::SynReceived if seg.flags.is_syn() => {
                // Our SYN-ACK was lost: the client sent its SYN again.
                self.retransmit_oldest(now, Sending::Again, out);
                return;
            }
            State::SynReceived => {
                if !seg.flags.has(TcpFlags::ACK) || seg.ack < 1 {
                    return;
                }
                self.acknowledged(now, seg.ack);
                self.state = State::Established;
                out.push(Step::Established);
            }
            State::Established | State::Closed => {
                if seg.flags.has(TcpFlags::SYN) {
                    // A retransmitted SYN-ACK: our ACK of it was lost.
                    self.ack_owed = true;
                    return;
                }
                if seg.flags.has(TcpFlags::ACK) {
                    self.acknowledged(now, seg.ack);
                }
            }
        }
        self.take_in(seg, out);
    }

    /// The retransmission timer, when [`Conn::deadline`] has come.
    pub(crate) fn on_timeout(&mut self, now: Duration, out: &mut Vec<Step>) {
        if self.deadline.is_none_or(|at| at > now) || self.state == State::Closed {
            return;
        }
        let limit = match self.state {
            State::SynSent | State::SynReceived => SYN_RETRIES,
            _ => DATA_RETRIES,
        };
        if self.retries >= limit {
            let failed = self.state == State::SynSent || self.state == State::SynReceived;
            self.state = State::Closed;
            self.deadline = None;
            self.ack_owed = false;
            out.push(if failed { Step::ConnectFailed } else { Step::GaveUp });
            return;
        }
        let waited = self.rto;
        self.retries += 1;
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmit_oldest(now, Sending::AfterTimeout(waited), out);
    }

    /// Sends a new segment and keeps it until acknowledged.
    fn send_new(&mut self, now: Duration, flags: TcpFlags, data: Bytes, out: &mut Vec<Step>) {
        let seg = Segment { flags, seq: self.snd_nxt, ack: self.rcv_nxt, data };
        self.snd_nxt += seg.len();
        if flags.has(TcpFlags::ACK) {
            self.ack_owed = false;
        }
        if self.deadline.is_none() {
            self.deadline = Some(now + self.rto);
        }
        self.unacked.push_back(Sent { seg: seg.clone(), at: now, retransmitted: false });
        out.push(Step::Send { seg, why: Sending::First });
    }

    /// Sends the oldest unacknowledged segment again, acknowledging what
    /// has arrived since, and restarts the timer.
    fn retransmit_oldest(&mut self, now: Duration, why: Sending, out: &mut Vec<Step>) {
        let rcv_nxt = self.rcv_nxt;
        let Some(oldest) = self.unacked.front_mut() else { return };
        oldest.retransmitted = true;
        if oldest.seg.flags.has(TcpFlags::ACK) {
            oldest.seg.ack = rcv_nxt;
        }
        let seg = oldest.seg.clone();
        self.retransmissions += 1;
        self.deadline = Some(now + self.rto);
        out.push(Step::Send { seg, why });
    }

    /// The other end acknowledged everything before `ack`.
    fn acknowledged(&mut self, now: Duration, ack: u64) {
        if ack <= self.snd_una || ack > self.snd_nxt {
            return;
        }
        let mut sample = None;
        let mut ambiguous = false;
        while let Some(front) = self.unacked.front() {
            if front.seg.seq + front.seg.len() > ack {
                break;
            }
            // Karn's rule: only a segment sent once times the round trip.
            if front.retransmitted {
                ambiguous = true;
            } else {
                sample = Some(now.saturating_sub(front.at));
            }
            self.unacked.pop_front();
        }
        self.snd_una = ack;
        // Nor does an ACK that covers a retransmission: it was sent when
        // the retransmission filled the hole, so the segments held behind
        // it would "measure" the whole wait for the timeout (seconds, under
        // loss), inflate SRTT and RTTVAR, and stretch every later timeout
        // (RFC 6298 §3, Karn's algorithm; Linux drops the sample the same
        // way, FLAG_RETRANS_DATA_ACKED in tcp_clean_rtx_queue).
        if ambiguous {
            sample = None;
        }
        if let Some(r) = sample {
            self.rtt = Some(match self.rtt {
                None => (r, r / 2),
                // RFC 6298 §2.3: alpha = 1/8, beta = 1/4.
                Some((srtt, rttvar)) => {
                    let delta = srtt.abs_diff(r);
                    ((srtt * 7 + r) / 8, (rttvar * 3 + delta) / 4)
                }
            });
        }
        self.retries = 0;
        self.rto = match self.rtt {
            Some((srtt, rttvar)) => (srtt + rttvar * 4).clamp(MIN_RTO, MAX_RTO),
            None => INITIAL_RTO,
        };
        self.deadline = (!self.unacked.is_empty()).then(|| now + self.rto);
    }

    /// The data and FIN of `seg`: in order, handed on with whatever was
    /// waiting behind it; ahead of a gap, kept; already seen, acknowledged
    /// again.
    fn take_in(&mut self, seg: Segment, out: &mut Vec<Step>) {
        if seg.len() == 0 {
            return;
        }
        self.ack_owed = true;
        if seg.seq > self.rcv_nxt {
            self.ahead.entry(seg.seq).or_insert(seg);
            return;
        }
        let mut delivered = BytesMut::new();
        let mut fin = false;
        let mut next = Some(seg);
        while let Some(seg) = next {
            let end = seg.seq + seg.len();
            if end > self.rcv_nxt {
                let skip = (self.rcv_nxt - seg.seq) as usize;
                if skip < seg.data.len() {
                    delivered.extend_from_slice(&seg.data[skip..]);
                }
                self.rcv_nxt = end;
                fin |= seg.flags.has(TcpFlags::FIN);
            }
            let waiting = self.ahead.first_key_value().map(|(&seq, _)| seq).filter(|&seq| seq <= self.rcv_nxt);
            next = waiting.and_then(|seq| self.ahead.remove(&seq));
        }
        if !delivered.is_empty() {
            out.push(Step::Deliver(delivered.freeze()));
        }
        if fin {
            self.state = State::Closed;
            self.deadline = None;
            out.push(Step::PeerClosed);
        }
    }
}

/// A timeout as trace lines show it: `200ms`, `604.460ms` (to the
/// microsecond).
pub(crate) fn millis(d: Duration) -> String {
    let micros = d.as_micros();
    if micros % 1000 == 0 {
        format!("{}ms", micros / 1000)
    } else {
        format!("{}.{:03}ms", micros / 1000, micros % 1000)
    }
}

#[cfg(test)]
mod tests;
