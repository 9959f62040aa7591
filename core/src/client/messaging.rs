//! The client's half of text messaging (DESIGN §3, "Messaging"; the
//! guarantees are in [`crate::messaging`]).
//!
//! Sending: [`Client::send_text`](super::Client::send_text) gives the message
//! a fresh [`MessageId`]. When a session with the recipient is on a direct
//! path, the text rides that session's reliable stream and the peer
//! acknowledges it there; if no acknowledgement comes within
//! [`MessagingConfig::direct_fallback`](crate::client::MessagingConfig::direct_fallback), the same message (same id) goes to the
//! server as well. On the server path it is retransmitted (1 s, doubling, at
//! most 8 s apart) until the server acknowledges or refuses it, or
//! [`MessagingConfig::text_timeout`](crate::client::MessagingConfig::text_timeout) passes.
//!
//! Receiving: from the server or a peer, every copy is acknowledged and only
//! the first raises [`ClientEvent::TextReceived`] ([`SeenIds`]). The server
//! delivers stored messages at login by itself;
//! [`Client::sync_inbox`](super::Client::sync_inbox) asks how many remain and
//! ends in [`ClientEvent::InboxEmpty`] once none do.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::debug;

use super::context::{Ctx, Out};
use super::events::ClientEvent;
use crate::messaging::{SeenIds, SendTextError, TextFailure, TextPath, MAX_TEXT};
use crate::rng::Rng;
use crate::secure::seal_text_with;
use crate::wire::frame::{Frame, MessageId, TextRejection, TextStatus};

#[derive(Debug)]
pub(crate) struct Messaging {
    outbox: BTreeMap<MessageId, Outgoing>,
    inbox: InboxSync,
    rng: Rng,
    /// Recipient → our conversation with it.
    conversations: BTreeMap<String, Conversation>,
    seen: SeenIds,
    /// Texts raised to the application and not yet acknowledged by it
    /// (`ack_on_receipt = false`), at most [`MAX_AWAITING_APP`].
    awaiting_app: BTreeSet<(String, MessageId)>,
    /// Recipients whose key a text waits for: the client asks the server's
    /// directory ([`Messaging::take_wanted_keys`]).
    wanted_keys: BTreeSet<String>,
    /// Recipients whose pinned key the server's directory confirmed during
    /// this run (at an offer, a lookup, or a text they sealed): texts to
    /// them are sealed at once; to others, after a lookup, so that a
    /// changed key is noticed before a text is sealed to a stale one.
    confirmed: BTreeSet<String>,
}

/// How often texts waiting for their recipient's key ask the directory.
const KEY_RETRY: Duration = Duration::from_secs(1);

/// Most recipients remembered as confirmed; past it the set starts over (a
/// lookup each confirms them again).
const MAX_CONFIRMED: usize = 4096;

/// Most texts waiting for the application's acknowledgement; beyond it a
/// new text is neither raised nor acknowledged (the server delivers it again).
const MAX_AWAITING_APP: usize = 4096;

#[derive(Debug)]
struct Conversation {
    number: u64,
    next_seq: u64,
}

#[derive(Debug)]
struct Outgoing {
    to: String,
    text: String,
    give_up_at: Instant,
    /// On the direct path: when to fall back to the server. On the server
    /// path: when to send again.
    next_action: Instant,
    direct: bool,
    server_sends: u32,
    /// The text sealed to the recipient, once its key is known: every
    /// send through the server carries the same bytes.
    sealed: Option<Vec<u8>>,
}

/// Asking the server for our stored messages until it says none are left.
#[derive(Debug, Default)]
struct InboxSync {
    /// The application asked ([`Client::sync_inbox`](super::Client::sync_inbox)).
    wanted: bool,
    next_sync: Option<Instant>,
    sends: u32,
    /// What the server last said is pending; `None` before it answered.
    pending: Option<u32>,
}

impl Messaging {
    pub(crate) fn new(rng: Rng) -> Self {
        Messaging {
            rng,
            conversations: BTreeMap::new(),
            outbox: BTreeMap::new(),
            seen: SeenIds::new(),
            awaiting_app: BTreeSet::new(),
            wanted_keys: BTreeSet::new(),
            confirmed: BTreeSet::new(),
            inbox: InboxSync::default(),
        }
    }

    /// Texts awaiting acknowledgement.
    pub(crate) fn unacknowledged(&self) -> usize {
        self.outbox.len()
    }

    /// Sends `text` to `to`: through the server, or, when `direct` (a
    /// session with `to` is on a direct path and can take it), as the
    /// returned [`PeerText`] for the caller to put on that session.
    pub(crate) fn send_text(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        to: &str,
        text: &str,
        direct: bool,
    ) -> Result<(MessageId, Option<PeerText>), SendTextError> {
        if !crate::server::valid_user_name(to) || to == ctx.config.user {
            return Err(SendTextError::BadRecipient);
        }
        if text.len() > MAX_TEXT {
            return Err(SendTextError::TooLarge { len: text.len(), max: MAX_TEXT });
        }
        if self.outbox.len() >= ctx.config.messaging.text_window {
            return Err(SendTextError::WindowFull);
        }
        let rng = &mut self.rng;
        let conversation = self
            .conversations
            .entry(to.to_owned())
            .or_insert_with(|| Conversation { number: rng.next_u64(), next_seq: 1 });
        let id = MessageId { conversation: conversation.number, seq: conversation.next_seq };
        conversation.next_seq += 1;
        let mut message = Outgoing {
            to: to.to_owned(),
            text: text.to_owned(),
            give_up_at: ctx.now + ctx.config.messaging.text_timeout,
            next_action: ctx.now,
            direct: false,
            server_sends: 0,
            sealed: None,
        };
        let mut on_session = None;
        if direct {
            on_session = Some(PeerText::Text { id, text: message.text.clone() });
            message.direct = true;
            message.next_action = ctx.now + ctx.config.messaging.direct_fallback;
        } else {
            self.send_to_server(ctx, out, id, &mut message);
        }
        self.outbox.insert(id, message);
        Ok((id, on_session))
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        let outbox = self.outbox.values().map(|m| m.next_action.min(m.give_up_at)).min();
        [outbox, self.inbox.next_sync].into_iter().flatten().min()
    }

    pub(crate) fn handle_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let now = ctx.now;
        let expired: Vec<MessageId> =
            self.outbox.iter().filter(|(_, m)| m.give_up_at <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.outbox.remove(&id);
            out.event(ClientEvent::TextFailed { id, reason: TextFailure::Timeout });
        }
        let due: Vec<MessageId> = self.outbox.iter().filter(|(_, m)| m.next_action <= now).map(|(id, _)| *id).collect();
        for id in due {
            let mut message = self.outbox.remove(&id).expect("collected from the outbox above");
            if message.direct {
                debug!(%id, "no direct acknowledgement; sending through the server");
            }
            self.send_to_server(ctx, out, id, &mut message);
            self.outbox.insert(id, message);
        }
        if self.inbox.next_sync.is_some_and(|at| at <= now) {
            self.sync(ctx, out);
        }
    }

    /// The application wants to know when everything stored for it has
    /// arrived ([`ClientEvent::InboxEmpty`]).
    pub(crate) fn sync_inbox(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        self.inbox.wanted = true;
        self.inbox.pending = None;
        self.inbox.sends = 0;
        self.sync(ctx, out);
    }

    /// Logged in (again): resend what waits, and ask for the inbox's state
    /// if the application wanted it. (The server starts delivering stored
    /// messages at login by itself.)
    pub(crate) fn on_logged_in(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let wanted = self.inbox.wanted;
        self.inbox = InboxSync { wanted, ..InboxSync::default() };
        if wanted {
            self.sync(ctx, out);
        }
        let waiting: Vec<MessageId> = self.outbox.iter().filter(|(_, m)| !m.direct).map(|(id, _)| *id).collect();
        for id in waiting {
            let mut message = self.outbox.remove(&id).expect("collected from the outbox above");
            self.send_to_server(ctx, out, id, &mut message);
            self.outbox.insert(id, message);
        }
    }

    /// The recipients whose keys texts wait for, once each: the client
    /// looks them up in the server's directory.
    pub(crate) fn take_wanted_keys(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.wanted_keys)
    }

    /// `user`'s pinned key is the one the server's directory names.
    pub(crate) fn confirm_key(&mut self, user: &str) {
        if self.confirmed.len() >= MAX_CONFIRMED {
            self.confirmed.clear();
        }
        self.confirmed.insert(user.to_owned());
    }

    /// The directory answered for `user`: its texts go out sealed to its
    /// key (`Ok`, confirmed or pinned now), or fail: sent to an unknown
    /// recipient (no login under the name ever completed), or to a key that
    /// is not the pinned one.
    pub(crate) fn on_recipient_key(&mut self, ctx: &Ctx<'_>, out: &mut Out, user: &str, key: Result<(), TextFailure>) {
        if key.is_ok() {
            self.confirm_key(user);
        }
        let waiting: Vec<MessageId> =
            self.outbox.iter().filter(|(_, m)| m.to == user && m.sealed.is_none()).map(|(id, _)| *id).collect();
        for id in waiting {
            let mut message = self.outbox.remove(&id).expect("collected from the outbox above");
            if let Err(reason) = key {
                out.event(ClientEvent::TextFailed { id, reason });
                continue;
            }
            if !message.direct {
                self.send_to_server(ctx, out, id, &mut message);
            }
            self.outbox.insert(id, message);
        }
    }

    /// The server's answer to a [`Frame::TextSend`].
    pub(crate) fn on_server_answer(&mut self, out: &mut Out, id: MessageId, answer: Result<TextStatus, TextRejection>) {
        match answer {
            Ok(status) => {
                if self.outbox.remove(&id).is_some() {
                    out.event(ClientEvent::TextAcked { id, status, path: TextPath::Server });
                }
            }
            Err(reason @ (TextRejection::StoreUnavailable | TextRejection::RateLimited)) => {
                // Worth retrying: keep the message on its retransmission
                // schedule.
                debug!(%id, ?reason, "the server could not take the text now");
            }
            Err(reason) => {
                if self.outbox.remove(&id).is_some() {
                    out.event(ClientEvent::TextFailed { id, reason: TextFailure::Rejected(reason) });
                }
            }
        }
    }

    /// A text delivered by the server, opened: `text` is `None` when it
    /// did not open, or was sealed by another key than the sender's pinned
    /// one. Such a text is acknowledged unseen, so the server stops
    /// delivering it.
    pub(crate) fn on_server_text(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        from: String,
        id: MessageId,
        text: Option<String>,
    ) {
        let Some(token) = ctx.token else {
            // Not logged in: the server delivers again.
            return;
        };
        let ack = Frame::TextDeliverAck { token, from: from.clone(), id };
        if let Some(text) = text {
            if !self.raise(ctx, out, &from, id, text) {
                return;
            }
        }
        out.send_to_server(ctx, &ack);
    }

    /// Raises a received text once; true when it may be acknowledged now
    /// (acknowledgement on receipt, or a copy of a text the application
    /// already acknowledged).
    fn raise(&mut self, ctx: &Ctx<'_>, out: &mut Out, from: &str, id: MessageId, text: String) -> bool {
        let manual = !ctx.config.messaging.ack_on_receipt;
        let key = (from.to_owned(), id);
        if manual && self.awaiting_app.contains(&key) {
            return false;
        }
        if self.seen.contains(from, id) {
            return true;
        }
        if manual && self.awaiting_app.len() >= MAX_AWAITING_APP {
            debug!(%id, "too many texts wait for the application; the server delivers this one again");
            return false;
        }
        self.seen.insert(from, id);
        out.event(ClientEvent::TextReceived { from: from.to_owned(), id, text });
        if manual {
            self.awaiting_app.insert(key);
        }
        !manual
    }

    /// The application has shown or saved a text: acknowledge it to the
    /// server. True when the text waited for it; the caller then sends
    /// [`PeerText::Ack`] on every session open with the sender.
    pub(crate) fn ack_text(&mut self, ctx: &Ctx<'_>, out: &mut Out, from: &str, id: MessageId) -> bool {
        if !self.awaiting_app.remove(&(from.to_owned(), id)) {
            return false;
        }
        if let Some(token) = ctx.token {
            let ack = Frame::TextDeliverAck { token, from: from.to_owned(), id };
            out.send_to_server(ctx, &ack);
        }
        true
    }

    pub(crate) fn on_inbox_status(&mut self, ctx: &Ctx<'_>, out: &mut Out, pending: u32) {
        let was = self.inbox.pending.replace(pending);
        if pending == 0 {
            self.inbox.next_sync = None;
            self.inbox.sends = 0;
            self.inbox.wanted = false;
            if was != Some(0) {
                out.event(ClientEvent::InboxEmpty);
            }
        } else if self.inbox.wanted {
            // Deliveries are on their way; ask again later in case the
            // server's "none left" is lost.
            self.inbox.next_sync = Some(ctx.now + Duration::from_secs(2));
        }
    }

    /// A text or an acknowledgement that arrived from `from` on a session's
    /// stream ([`StreamMessage::Text`](crate::wire::frame::StreamMessage::Text),
    /// [`StreamMessage::TextAck`](crate::wire::frame::StreamMessage::TextAck)).
    /// Returns the acknowledgement to send back on that session, if any.
    pub(crate) fn on_peer_text(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        from: &str,
        text: PeerText,
    ) -> Option<PeerText> {
        match text {
            PeerText::Text { id, text } => {
                // Acknowledge every copy (once the application has, when it
                // acknowledges itself). Acknowledgements stay outside the
                // send window: there are no more of them than texts the
                // peer's own window let through.
                self.raise(ctx, out, from, id, text).then_some(PeerText::Ack { id })
            }
            PeerText::Ack { id } => {
                if self.outbox.get(&id).is_some_and(|m| m.to == from) {
                    self.outbox.remove(&id);
                    out.event(ClientEvent::TextAcked { id, status: TextStatus::Delivered, path: TextPath::Direct });
                }
                None
            }
        }
    }

    fn sync(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(token) = ctx.token else {
            // Sent at login.
            self.inbox.next_sync = None;
            return;
        };
        self.inbox.sends += 1;
        out.send_to_server(ctx, &Frame::InboxSync { token });
        self.inbox.next_sync = Some(ctx.now + retransmit_after(self.inbox.sends));
    }
}

/// A text message or its acknowledgement on a session's stream: what a
/// session hands to messaging when it receives one, and what messaging asks
/// a session to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerText {
    /// A message.
    Text {
        /// Its id.
        id: MessageId,
        /// The text.
        text: String,
    },
    /// The message with `id` arrived.
    Ack {
        /// Its id.
        id: MessageId,
    },
}

impl Messaging {
    /// Sends `message` through the server, sealed to its recipient; when
    /// the recipient's key is not known yet, asks for it first (the text
    /// goes out once the directory answers, or on its next retransmission).
    fn send_to_server(&mut self, ctx: &Ctx<'_>, out: &mut Out, id: MessageId, message: &mut Outgoing) {
        message.direct = false;
        if message.sealed.is_none() {
            let key = ctx.config.peer_keys.get(&message.to).filter(|_| self.confirmed.contains(&message.to));
            let Some(key) = key else {
                // Asked again every second until the directory answers; the
                // text's own backoff starts when it is sent.
                self.wanted_keys.insert(message.to.clone());
                message.next_action = ctx.now + KEY_RETRY;
                return;
            };
            let names = (ctx.config.user.as_str(), message.to.as_str(), id);
            let label = self.rng.next_u64();
            let rng = self.rng.fork(label);
            message.sealed = Some(seal_text_with(&ctx.config.identity, key, names, &message.text, rng));
        }
        message.server_sends += 1;
        message.next_action = ctx.now + retransmit_after(message.server_sends);
        let (Some(token), Some(sealed)) = (ctx.token, message.sealed.clone()) else {
            // Not logged in: sent again on login.
            return;
        };
        let frame = Frame::TextSend { token, id, to: message.to.clone(), sealed };
        out.send_to_server(ctx, &frame);
    }
}

/// 1 s, doubling, at most 8 s.
fn retransmit_after(sends: u32) -> Duration {
    Duration::from_secs(1 << sends.saturating_sub(1).min(3))
}
