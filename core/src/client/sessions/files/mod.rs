//! A session's file transfers (issue 22): the offers and answers that ride
//! its reliable stream, and the data plane that carries the pieces.
//!
//! - [`outgoing`]: a file we send;
//! - [`incoming`]: a file we receive.
//!
//! The data plane is one per session, shared by all its transfers both
//! ways: packet numbers, acknowledgements with ranges, RFC 9002 loss
//! recovery and a congestion controller with pacing
//! ([`crate::transfer`]). Transfers that have something to send take turns
//! packet by packet, so two files share the path evenly; texts and pings
//! ride the stream beside it, so none waits behind a file. When the path
//! changes (direct, relay, direct again) the controller starts afresh on
//! the new one and what was in flight is sent again there without
//! counting as loss (RFC 9000 §9.4).

mod incoming;
mod outgoing;

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::debug;

use super::path::Channel;
use super::timers::SessionTimer;
use crate::client::context::{Ctx, Out};
use crate::client::file_api::{FileDirection, FileFailure, FileId, FileProgress, FileSource};
use crate::client::ClientEvent;
use crate::files::check_name;
use crate::transfer::{AckRanges, AckTracker, NewReno, NewRenoConfig, Recovery};
use crate::wire::frame::files::{FileAbort, FileRefusal, TransferId, MAX_CREDITS};
use crate::wire::frame::{CloseReason, SessionBody, StreamMessage};
use incoming::{InState, Incoming, PieceOutcome};
use outgoing::Outgoing;

/// Most transfers a session receives at once; more offers are refused
/// ([`FileRefusal::Busy`]).
const MAX_INCOMING: usize = 8;
/// Bytes a data packet adds to its piece on the wire (frame, session and
/// relay headers, two AEAD tags): what the controller counts.
const PACKET_OVERHEAD: u64 = 120;
/// The controller's datagram size.
const MAX_DATAGRAM: u64 = 1200;
/// While a transfer is received, its credit is told again this often even
/// when nothing arrives, so a lost update cannot leave the sender waiting.
const CREDIT_REFRESH: Duration = Duration::from_millis(250);

/// How often the receiver should acknowledge, for a window of `window`
/// bytes: about sixteen acknowledgements per window, at least every second
/// packet (RFC 9000 §13.2.2, which small windows need for loss recovery)
/// and at most every tenth (a large window's loss detection stays prompt).
fn ack_every(window: u64) -> u8 {
    (window / MAX_DATAGRAM / 16).clamp(2, 10) as u8
}

/// What a data packet carried: the controller's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    transfer: TransferId,
    piece: u64,
}

#[derive(Debug)]
struct Plane {
    recovery: Recovery<Sent>,
    acks: AckTracker,
    /// The transfer that sent last: the next turn goes to the one after.
    turn: Option<TransferId>,
}

impl Plane {
    fn new() -> Self {
        let controller = NewReno::new(NewRenoConfig::default());
        Plane { recovery: Recovery::new(Box::new(controller), MAX_DATAGRAM), acks: AckTracker::new(), turn: None }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Files {
    next_transfer: u32,
    outgoing: BTreeMap<TransferId, Outgoing>,
    incoming: BTreeMap<TransferId, Incoming>,
    /// Made at the first transfer: most sessions carry none.
    plane: Option<Box<Plane>>,
}

impl Files {
    pub(crate) fn has(&self, file: FileId) -> bool {
        self.outgoing.values().any(|o| o.file == file) || self.incoming.values().any(|i| i.file == file)
    }

    /// Offers `source` to the peer.
    pub(crate) fn offer(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        file: FileId,
        source: FileSource,
    ) {
        self.next_transfer += 1;
        let transfer = TransferId(self.next_transfer);
        let offer =
            StreamMessage::FileOffer { transfer, name: source.name.clone(), size: source.size, root: source.root };
        self.outgoing.insert(transfer, Outgoing::new(file, transfer, source));
        ch.send_stream(ctx, out, offer);
    }

    /// A file control message from the peer (the stream's `File*`
    /// variants).
    pub(crate) fn on_message(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        peer: &str,
        message: StreamMessage,
    ) {
        match message {
            StreamMessage::FileOffer { transfer, name, size, root } => {
                if self.incoming.contains_key(&transfer) {
                    return;
                }
                let file = out.fresh_file_id();
                let refusal = if check_name(&name).is_err() {
                    Some(FileRefusal::BadName)
                } else if self.incoming.len() >= MAX_INCOMING {
                    Some(FileRefusal::Busy)
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    debug!(%transfer, ?reason, "a file offer refused by the core");
                    ch.send_stream(ctx, out, StreamMessage::FileRefuse { transfer, reason });
                    return;
                }
                self.incoming.insert(transfer, Incoming::new(file, transfer, name.clone(), size, root));
                let session = ch.path.id();
                out.event(ClientEvent::FileOffered { file, session, peer: peer.to_owned(), name, size, root });
            }
            StreamMessage::FileAccept { transfer, credit, have } => {
                if let Some(o) = self.outgoing.get_mut(&transfer) {
                    o.accepted(out, credit, &have);
                    self.plane.get_or_insert_with(|| Box::new(Plane::new()));
                    self.pump(ctx, out, ch);
                }
            }
            StreamMessage::FileRefuse { transfer, reason } => {
                if let Some(o) = self.outgoing.remove(&transfer) {
                    out.event(ClientEvent::FileFailed { file: o.file, failure: FileFailure::Refused(reason) });
                }
            }
            StreamMessage::FileAbort { transfer, mine, reason } => {
                // `mine` is the peer's: its outgoing is our incoming.
                let file = if mine {
                    self.incoming.remove(&transfer).map(|i| i.file)
                } else {
                    self.outgoing.remove(&transfer).map(|o| o.file)
                };
                if let Some(file) = file {
                    let failure = FileFailure::Aborted { reason, by_peer: true };
                    out.event(ClientEvent::FileFailed { file, failure });
                }
            }
            StreamMessage::FileDone { transfer } => {
                if let Some(o) = self.outgoing.remove(&transfer) {
                    let event = ClientEvent::FileCompleted {
                        file: o.file,
                        direction: FileDirection::Outgoing,
                        size: o.size,
                        root: o.root,
                    };
                    out.event(event);
                }
            }
            _ => {}
        }
    }

    /// The driver's answer to an offer: accept with what it holds.
    pub(crate) fn accept(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        file: FileId,
        have: &[(u64, u64)],
    ) {
        let Some(i) = self.incoming.values_mut().find(|i| i.file == file) else { return };
        if !matches!(i.state, InState::Offered) {
            return;
        }
        let transfer = i.transfer;
        let (have, credit) = i.accept(have);
        self.plane.get_or_insert_with(|| Box::new(Plane::new()));
        ch.send_stream(ctx, out, StreamMessage::FileAccept { transfer, credit, have });
        let i = self.incoming.get_mut(&transfer).expect("found above");
        if !i.start_empty(out) {
            return self.abort(ctx, out, ch, file, FileAbort::VerificationFailed);
        }
        self.finish_incoming(ctx, out, ch, transfer);
        ch.timers.set(SessionTimer::FileCredit, ctx.now + CREDIT_REFRESH);
    }

    /// The driver's refusal of an offer.
    pub(crate) fn refuse(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        file: FileId,
        reason: FileRefusal,
    ) {
        let Some(transfer) =
            self.incoming.values().find(|i| i.file == file && matches!(i.state, InState::Offered)).map(|i| i.transfer)
        else {
            return;
        };
        self.incoming.remove(&transfer);
        ch.send_stream(ctx, out, StreamMessage::FileRefuse { transfer, reason });
    }

    /// The driver's bytes for a group of a file we send.
    pub(crate) fn data(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        file: FileId,
        offset: u64,
        data: &[u8],
    ) {
        if let Some(o) = self.outgoing.values_mut().find(|o| o.file == file) {
            if o.on_data(offset, data) {
                self.pump(ctx, out, ch);
            }
        }
    }

    /// The driver wrote (or failed to write) a group of a file we receive.
    pub(crate) fn written(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        file: FileId,
        offset: u64,
        result: Result<(), FileAbort>,
    ) {
        let Some(i) = self.incoming.values_mut().find(|i| i.file == file) else { return };
        if let Err(reason) = result {
            return self.abort(ctx, out, ch, file, incoming::write_abort(reason));
        }
        let transfer = i.transfer;
        i.written(offset);
        if self.finish_incoming(ctx, out, ch, transfer) {
            return;
        }
        // Room opened: tell the sender soon if it may be waiting for it.
        let i = &self.incoming[&transfer];
        let credit = i.credit();
        if i.receiving().is_some_and(|r| credit >= r.advertised + incoming::WINDOW_PIECES / 4) {
            self.send_ack(ctx, out, ch);
        }
    }

    /// Ends a transfer from this side, telling the peer.
    pub(crate) fn abort(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        file: FileId,
        reason: FileAbort,
    ) {
        let (transfer, mine) = if let Some(o) = self.outgoing.values().find(|o| o.file == file) {
            (o.transfer, true)
        } else if let Some(i) = self.incoming.values().find(|i| i.file == file) {
            (i.transfer, false)
        } else {
            return;
        };
        if mine {
            self.outgoing.remove(&transfer);
        } else {
            self.incoming.remove(&transfer);
        }
        ch.send_stream(ctx, out, StreamMessage::FileAbort { transfer, mine, reason });
        out.event(ClientEvent::FileFailed { file, failure: FileFailure::Aborted { reason, by_peer: false } });
    }

    /// The session ended: every transfer with it.
    pub(crate) fn session_closed(&mut self, out: &mut Out, reason: CloseReason) {
        let files = self.outgoing.values().map(|o| o.file).chain(self.incoming.values().map(|i| i.file));
        let files: Vec<FileId> = files.collect();
        for file in files {
            out.event(ClientEvent::FileFailed { file, failure: FileFailure::SessionClosed(reason) });
        }
        self.outgoing.clear();
        self.incoming.clear();
        self.plane = None;
    }

    /// The session's path changed: the controller starts again on the new
    /// one, and what was in flight on the old one goes again, without
    /// counting as loss.
    pub(crate) fn path_changed(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        let Some(plane) = self.plane.as_mut() else { return };
        let in_flight = plane.recovery.reset_path();
        self.send_again(in_flight);
        self.pump(ctx, out, ch);
    }

    /// A data-plane packet from the peer.
    pub(crate) fn on_body(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, body: SessionBody) {
        match body {
            SessionBody::FileData { pn, transfer, piece, ack_every, data } => {
                let Some(plane) = self.plane.as_mut() else { return };
                plane.acks.set_threshold(u32::from(ack_every));
                if !plane.acks.on_received(ctx.now, pn) {
                    // A duplicate: its ack may have been lost.
                    return self.ack_when_due(ctx, out, ch);
                }
                let corrupt = match self.incoming.get_mut(&transfer) {
                    Some(i) => i.on_piece(out, piece, &data) == PieceOutcome::Corrupt,
                    None => false,
                };
                if corrupt {
                    let file = self.incoming[&transfer].file;
                    self.abort(ctx, out, ch, file, FileAbort::VerificationFailed);
                }
                self.ack_when_due(ctx, out, ch);
            }
            SessionBody::FileAck { ranges, delay_us, credits } => {
                for (transfer, credit) in credits {
                    if let Some(o) = self.outgoing.get_mut(&transfer) {
                        o.raise_credit(credit);
                    }
                }
                let Some(plane) = self.plane.as_mut() else { return };
                // A credit update may carry no acknowledgement.
                let ack = AckRanges { ranges, delay: Duration::from_micros(u64::from(delay_us)) };
                if ack.ranges.is_empty() {
                    return self.pump(ctx, out, ch);
                }
                if !ack.is_valid() {
                    debug!("a malformed file acknowledgement; dropped");
                    return;
                }
                let outcome = plane.recovery.on_ack(ctx.now, &ack);
                for sent in outcome.acked {
                    if let Some(o) = self.outgoing.get_mut(&sent.transfer) {
                        o.on_acked(sent.piece);
                    }
                }
                self.send_again(outcome.lost);
                self.pump(ctx, out, ch);
            }
            _ => {}
        }
    }

    /// The data plane's timers.
    pub(crate) fn on_timer(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, timer: SessionTimer) {
        match timer {
            SessionTimer::FilePace => self.pump(ctx, out, ch),
            SessionTimer::FileLoss => {
                let Some(plane) = self.plane.as_mut() else { return };
                if plane.recovery.timeout().is_none_or(|at| at > ctx.now) {
                    return self.arm(ch);
                }
                let outcome = plane.recovery.on_timeout(ctx.now);
                self.send_again(outcome.lost);
                for _ in 0..outcome.probes {
                    self.send_one(ctx, out, ch, true);
                }
                self.pump(ctx, out, ch);
            }
            SessionTimer::FileAck => self.send_ack(ctx, out, ch),
            SessionTimer::FileCredit if self.incoming.values().any(|i| i.receiving().is_some()) => {
                self.send_ack(ctx, out, ch);
                ch.timers.set(SessionTimer::FileCredit, ctx.now + CREDIT_REFRESH);
            }
            _ => {}
        }
    }

    pub(crate) fn progress(&self, file: FileId, peer: &str, path: crate::client::PathKind) -> Option<FileProgress> {
        if let Some(o) = self.outgoing.values().find(|o| o.file == file) {
            let s = o.sending();
            return Some(FileProgress {
                direction: FileDirection::Outgoing,
                peer: peer.to_owned(),
                name: o.name.clone(),
                size: o.size,
                done: o.done_bytes(),
                resumed: s.map_or(0, |s| s.resumed),
                retransmitted: s.map_or(0, |s| s.retransmitted),
                path,
                accepted: s.is_some(),
            });
        }
        let i = self.incoming.values().find(|i| i.file == file)?;
        let r = i.receiving();
        Some(FileProgress {
            direction: FileDirection::Incoming,
            peer: peer.to_owned(),
            name: i.name.clone(),
            size: i.size,
            done: i.done_bytes(),
            resumed: r.map_or(0, |r| r.resumed),
            retransmitted: 0,
            path,
            accepted: r.is_some(),
        })
    }

    /// Queues the pieces of packets lost (or left on an old path) to be
    /// sent again, unless their transfer ended.
    fn send_again(&mut self, packets: Vec<Sent>) {
        for sent in packets {
            if let Some(o) = self.outgoing.get_mut(&sent.transfer) {
                o.on_lost(sent.piece);
            }
        }
    }

    /// Sends what the window, the pacer and the credits allow, the
    /// transfers taking turns.
    fn pump(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        while self.send_one(ctx, out, ch, false) {}
        if let Some(plane) = self.plane.as_mut() {
            // Out of data (or of credit) with room in the window: the
            // window is not what limits, so acks must not grow it (RFC 9002
            // §7.8).
            let starved = !self.outgoing.values().any(Outgoing::wants_to_send);
            plane.recovery.set_app_limited(starved && plane.recovery.can_send(MAX_DATAGRAM));
        }
        self.arm(ch);
    }

    /// Sends one packet if one may go now (a PTO probe ignores the window
    /// and the pacer); false when none went.
    fn send_one(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, probe: bool) -> bool {
        let Some(plane) = self.plane.as_mut() else { return false };
        let bytes = MAX_DATAGRAM.min(1024 + PACKET_OVERHEAD);
        if !probe {
            if !plane.recovery.can_send(bytes) {
                return false;
            }
            if let Some(at) = plane.recovery.send_time(ctx.now, bytes) {
                ch.timers.set(SessionTimer::FilePace, at);
                return false;
            }
        }
        // The next transfer after the last one to send, round robin.
        let after = plane.turn;
        let order = self
            .outgoing
            .range(after.map_or(TransferId(0), |t| TransferId(t.0.saturating_add(1)))..)
            .chain(self.outgoing.range(..=after.unwrap_or(TransferId(0))))
            .map(|(t, _)| *t);
        let order: Vec<TransferId> = order.collect();
        for transfer in order {
            let o = self.outgoing.get_mut(&transfer).expect("listed above");
            let next = if probe { o.next_piece(out).or_else(|| o.probe_piece()) } else { o.next_piece(out) };
            let Some((piece, data)) = next else { continue };
            let plane = self.plane.as_mut().expect("checked above");
            let pn = plane.recovery.next_pn();
            let size = data.len() as u64 + PACKET_OVERHEAD;
            let ack_every = ack_every(plane.recovery.window());
            ch.path.transmit(ctx, out, SessionBody::FileData { pn, transfer, piece, ack_every, data });
            plane.recovery.on_sent(ctx.now, pn, size, Sent { transfer, piece });
            plane.turn = Some(transfer);
            return true;
        }
        false
    }

    /// Arms the loss-detection timer.
    fn arm(&mut self, ch: &mut Channel<'_>) {
        if self.outgoing.is_empty() {
            // Nothing left to send: what is still in flight (its transfer
            // completed or ended) needs neither probing nor resending.
            if let Some(plane) = self.plane.as_mut().filter(|p| p.recovery.packets_in_flight() > 0) {
                plane.recovery.reset_path();
            }
        }
        match self.plane.as_ref().and_then(|p| p.recovery.timeout()) {
            Some(at) => ch.timers.set(SessionTimer::FileLoss, at),
            None => ch.timers.stop(&SessionTimer::FileLoss),
        }
    }

    fn ack_when_due(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        let Some(plane) = self.plane.as_ref() else { return };
        match plane.acks.ack_due() {
            Some(at) if at <= ctx.now => self.send_ack(ctx, out, ch),
            Some(at) => ch.timers.set(SessionTimer::FileAck, at),
            None => {}
        }
    }

    /// Acknowledges what arrived, with every receiving transfer's credit.
    fn send_ack(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        let Some(plane) = self.plane.as_mut() else { return };
        let ack = plane.acks.take_ack(ctx.now);
        ch.timers.stop(&SessionTimer::FileAck);
        let mut credits = Vec::new();
        for i in self.incoming.values_mut() {
            let credit = i.credit();
            if let InState::Receiving(r) = &mut i.state {
                r.advertised = credit;
                if credits.len() < MAX_CREDITS {
                    credits.push((i.transfer, credit));
                }
            }
        }
        if ack.is_none() && credits.is_empty() {
            return;
        }
        let (ranges, delay) = ack.map_or((Vec::new(), Duration::ZERO), |a| (a.ranges, a.delay));
        let delay_us = u32::try_from(delay.as_micros()).unwrap_or(u32::MAX);
        ch.path.transmit(ctx, out, SessionBody::FileAck { ranges, delay_us, credits });
    }

    /// A received transfer that is complete: the driver is told, and the
    /// sender. True when it was.
    fn finish_incoming(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, transfer: TransferId) -> bool {
        if !self.incoming.get(&transfer).is_some_and(Incoming::is_complete) {
            return false;
        }
        let i = self.incoming.remove(&transfer).expect("checked above");
        // The last acknowledgements, so the sender stops sending again.
        self.send_ack(ctx, out, ch);
        ch.send_stream(ctx, out, StreamMessage::FileDone { transfer });
        out.event(ClientEvent::FileCompleted {
            file: i.file,
            direction: FileDirection::Incoming,
            size: i.size,
            root: i.root,
        });
        true
    }
}
