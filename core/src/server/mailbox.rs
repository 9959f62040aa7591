//! Store-and-forward for text messages (DESIGN §3, "Messaging").
//!
//! - A [`Frame::TextSend`] is committed to the [`MessageStore`] *before* the
//!   server says anything to the sender: the acknowledgement means "durable".
//!   A retransmission of a stored message is recognised by its (recipient,
//!   sender, id) and stored once.
//! - When the recipient is online, the message is forwarded at once and the
//!   sender's acknowledgement waits up to [`MailboxConfig::delivered_wait`]
//!   for the recipient's: it then says `Delivered`, otherwise `Stored`.
//! - A recipient's stored messages are delivered when it logs in (and on
//!   [`Frame::InboxSync`]), oldest first, at most
//!   [`MailboxConfig::delivery_window`] unacknowledged at a time, each
//!   retransmitted every [`MailboxConfig::delivery_retransmit`] until the
//!   recipient acknowledges it; only that acknowledgement deletes it.
//! - Text frames are limited per user (a token bucket), not per source
//!   address, so a recipient draining thousands of stored messages is not
//!   throttled to the request rate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::limits::Bucket;
use super::{valid_user_name, Server, ServerEvent, ServerTimer};
use crate::machine::SocketId;
use crate::messaging::{PutOutcome, StoreError, StoredMessage};
use crate::wire::frame::{Frame, MessageId, TextRejection, TextStatus, MAX_TEXT};

/// The server's messaging settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxConfig {
    /// Longest text accepted, in bytes (at most [`MAX_TEXT`], the wire's
    /// limit). Default [`MAX_TEXT`].
    pub max_text_bytes: usize,
    /// Most messages stored for one recipient. Default 10,000.
    pub max_stored_per_recipient: usize,
    /// Most messages in flight to one recipient, unacknowledged. Default 64.
    pub delivery_window: usize,
    /// Interval between sends of an unacknowledged delivery. Default 1 s.
    pub delivery_retransmit: Duration,
    /// How long the sender's acknowledgement waits for an online
    /// recipient's before it says `Stored`. Default 500 ms.
    pub delivered_wait: Duration,
    /// Text frames (sends, acknowledgements, syncs) one user may burst.
    /// Default 1,024.
    pub text_burst: u32,
    /// Text frames per second one user may sustain. Default 512.
    pub text_rate: u32,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            max_text_bytes: MAX_TEXT,
            max_stored_per_recipient: 10_000,
            delivery_window: 64,
            delivery_retransmit: Duration::from_secs(1),
            delivered_wait: Duration::from_millis(500),
            text_burst: 1024,
            text_rate: 512,
        }
    }
}

/// The mailbox's in-memory state; the messages themselves are in the store.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    /// Per online recipient with deliveries sent and not yet acknowledged:
    /// those deliveries. Recipients with none have no entry, so the walks
    /// for the next deadline and for retransmissions cost what is in
    /// flight, not one step per online user.
    in_flight: BTreeMap<String, BTreeMap<(String, MessageId), InFlight>>,
    /// Senders whose acknowledgement waits for the recipient's, by
    /// (recipient, sender, id).
    awaiting: BTreeMap<(String, String, MessageId), Awaiting>,
    /// Per user: the text-frame rate limit.
    buckets: BTreeMap<String, Bucket>,
    /// Orders in-flight deliveries by when they were first sent.
    next_order: u64,
}

#[derive(Debug)]
struct InFlight {
    text: String,
    next_send: Instant,
    order: u64,
}

#[derive(Debug)]
struct Awaiting {
    socket: SocketId,
    sender_addr: SocketAddr,
    deadline: Instant,
}

impl Mailbox {
    /// Forgets a user that went offline: its deliveries stay in the store.
    pub(super) fn forget_user(&mut self, user: &str) {
        self.in_flight.remove(user);
        self.buckets.remove(user);
    }

    /// How many deliveries to `recipient` await acknowledgement.
    fn in_flight_count(&self, recipient: &str) -> usize {
        self.in_flight.get(recipient).map_or(0, BTreeMap::len)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let deliveries = self.in_flight.values().flat_map(|m| m.values().map(|f| f.next_send));
        deliveries.chain(self.awaiting.values().map(|a| a.deadline)).min()
    }
}

impl Server {
    /// Sender → server: [`Frame::TextSend`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn text_send(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        token: u64,
        id: MessageId,
        to: String,
        text: String,
    ) {
        let Some(sender) = self.text_user(now, socket, from, token) else { return };
        let reject = |server: &mut Server, reason: TextRejection| {
            debug!(%sender, %id, ?reason, "text refused");
            server.stats.texts_rejected += 1;
            server.reply(socket, from, Frame::TextRejected { id, reason });
        };
        if !self.take_text_token(now, &sender) {
            self.stats.rate_limited += 1;
            return reject(self, TextRejection::RateLimited);
        }
        if text.len() > self.config.mailbox.max_text_bytes.min(MAX_TEXT) {
            return reject(self, TextRejection::TooLarge);
        }
        if !valid_user_name(&to) {
            return reject(self, TextRejection::BadRecipient);
        }
        match self.knows_user(&to) {
            Ok(true) => {}
            Ok(false) => return reject(self, TextRejection::UnknownRecipient),
            Err(error) => {
                self.store_failed(error);
                return reject(self, TextRejection::StoreUnavailable);
            }
        }
        let message = StoredMessage { recipient: to.clone(), sender: sender.clone(), id, text };
        let outcome = match self.store.put(&message, self.config.mailbox.max_stored_per_recipient) {
            Ok(outcome) => outcome,
            Err(error) => {
                self.store_failed(error);
                return reject(self, TextRejection::StoreUnavailable);
            }
        };
        let key = (to.clone(), sender.clone(), id);
        match outcome {
            PutOutcome::RecipientFull => reject(self, TextRejection::RecipientFull),
            PutOutcome::AlreadyStored => {
                if let Some(waiting) = self.mailbox.awaiting.get_mut(&key) {
                    // The answer is coming; send it where the sender is now.
                    waiting.socket = socket;
                    waiting.sender_addr = from;
                } else {
                    self.reply(socket, from, Frame::TextAck { id, status: TextStatus::Stored });
                }
            }
            PutOutcome::Stored => {
                self.stats.texts_stored += 1;
                let window = self.config.mailbox.delivery_window;
                let online = self.users.contains(&to);
                if online && self.mailbox.in_flight_count(&to) < window {
                    // The recipient is online and everything older is in
                    // flight already: forward now, and let the sender's
                    // acknowledgement wait briefly for the recipient's.
                    self.deliver(now, &to, sender, id, message.text);
                    let deadline = now + self.config.mailbox.delivered_wait;
                    self.mailbox.awaiting.insert(key, Awaiting { socket, sender_addr: from, deadline });
                } else {
                    self.reply(socket, from, Frame::TextAck { id, status: TextStatus::Stored });
                }
            }
        }
        self.arm_mailbox();
    }

    /// Recipient → server: [`Frame::TextDeliverAck`].
    pub(super) fn text_delivered(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        token: u64,
        sender: String,
        id: MessageId,
    ) {
        let Some(recipient) = self.text_user(now, socket, from, token) else { return };
        if !self.take_text_token(now, &recipient) {
            // The delivery is retransmitted; its acknowledgement comes again.
            self.stats.rate_limited += 1;
            return;
        }
        match self.store.remove(&recipient, &sender, id) {
            Ok(true) => self.stats.texts_delivered += 1,
            Ok(false) => {}
            Err(error) => {
                // Still stored: it is delivered again later, and the
                // recipient recognises it.
                self.store_failed(error);
            }
        }
        if let Some(in_flight) = self.mailbox.in_flight.get_mut(&recipient) {
            in_flight.remove(&(sender.clone(), id));
            if in_flight.is_empty() {
                self.mailbox.in_flight.remove(&recipient);
            }
        }
        if let Some(waiting) = self.mailbox.awaiting.remove(&(recipient.clone(), sender, id)) {
            self.reply(waiting.socket, waiting.sender_addr, Frame::TextAck { id, status: TextStatus::Delivered });
        }
        self.refill(now, &recipient);
        if self.mailbox.in_flight_count(&recipient) == 0 {
            self.reply(socket, from, Frame::InboxStatus { pending: 0 });
        }
        self.arm_mailbox();
    }

    /// Client → server: [`Frame::InboxSync`].
    pub(super) fn inbox_sync(&mut self, now: Instant, socket: SocketId, from: SocketAddr, token: u64) {
        let Some(user) = self.text_user(now, socket, from, token) else { return };
        if !self.take_text_token(now, &user) {
            self.stats.rate_limited += 1;
            return;
        }
        self.refill(now, &user);
        match self.store.pending_count(&user) {
            Ok(pending) => {
                let pending = u32::try_from(pending).unwrap_or(u32::MAX);
                self.reply(socket, from, Frame::InboxStatus { pending });
            }
            Err(error) => self.store_failed(error),
        }
        self.arm_mailbox();
    }

    /// A user logged in: remember it durably and start delivering.
    pub(super) fn mailbox_login(&mut self, now: Instant, user: &str) {
        if let Err(error) = self.store.remember_user(user) {
            self.store_failed(error);
        }
        self.refill(now, user);
        self.arm_mailbox();
    }

    /// The mailbox timer: retransmit deliveries, answer waiting senders.
    pub(super) fn mailbox_timeout(&mut self, now: Instant) {
        let retransmit = self.config.mailbox.delivery_retransmit;
        let mut due: Vec<(u64, String, String, MessageId, String)> = Vec::new();
        for (recipient, in_flight) in self.mailbox.in_flight.iter_mut() {
            for ((sender, id), f) in in_flight.iter_mut() {
                if f.next_send <= now {
                    f.next_send = now + retransmit;
                    due.push((f.order, recipient.clone(), sender.clone(), *id, f.text.clone()));
                }
            }
        }
        due.sort_by_key(|d| d.0);
        for (_, recipient, from, id, text) in due {
            self.send_to_user(&recipient, Frame::TextDeliver { from, id, text });
        }
        let expired: Vec<(String, String, MessageId)> =
            self.mailbox.awaiting.iter().filter(|(_, a)| a.deadline <= now).map(|(k, _)| k.clone()).collect();
        for key in expired {
            let waiting = self.mailbox.awaiting.remove(&key).expect("collected from the map above");
            let id = key.2;
            self.reply(waiting.socket, waiting.sender_addr, Frame::TextAck { id, status: TextStatus::Stored });
        }
        self.arm_mailbox();
    }

    /// Hands the store back, e.g. to a restarted server (the simulator's
    /// model of a crash: what `put` committed survives, nothing else).
    pub fn into_store(self) -> Box<dyn crate::messaging::MessageStore> {
        self.store
    }

    /// The logged-in user a text frame's token names; otherwise answers
    /// `NotLoggedIn` (within the per-source request limit).
    fn text_user(&mut self, now: Instant, socket: SocketId, from: SocketAddr, token: u64) -> Option<String> {
        let Some((name, user)) = self.users.by_token_mut(token) else {
            self.stats.bad_token += 1;
            if self.limits.allow(now, from.ip()) {
                self.not_logged_in(socket, from, 0);
            } else {
                self.stats.rate_limited += 1;
            }
            return None;
        };
        user.last_seen = now;
        Some(name.to_owned())
    }

    fn take_text_token(&mut self, now: Instant, user: &str) -> bool {
        let (burst, rate) = (self.config.mailbox.text_burst as f64, self.config.mailbox.text_rate as f64);
        let bucket = self.mailbox.buckets.entry(user.to_owned()).or_insert_with(|| Bucket::full(burst, now));
        bucket.take(now, burst, rate, 1.0)
    }

    /// Tops up `recipient`'s deliveries in flight from the store.
    fn refill(&mut self, now: Instant, recipient: &str) {
        let window = self.config.mailbox.delivery_window;
        if !self.users.contains(recipient) {
            return;
        }
        let in_flight = self.mailbox.in_flight_count(recipient);
        let room = window.saturating_sub(in_flight);
        if room == 0 {
            return;
        }
        // Among the oldest `len + window` at most `len` are in flight, so
        // this finds every message that fits, whatever the in-flight set is.
        let pending = match self.store.pending_for(recipient, in_flight + window) {
            Ok(pending) => pending,
            Err(error) => return self.store_failed(error),
        };
        let sent = self.mailbox.in_flight.get(recipient);
        let fresh: Vec<StoredMessage> = pending
            .into_iter()
            .filter(|m| !sent.is_some_and(|sent| sent.contains_key(&(m.sender.clone(), m.id))))
            .take(room)
            .collect();
        for m in fresh {
            self.deliver(now, recipient, m.sender, m.id, m.text);
        }
    }

    fn deliver(&mut self, now: Instant, recipient: &str, sender: String, id: MessageId, text: String) {
        if !self.users.contains(recipient) {
            return;
        }
        let in_flight = self.mailbox.in_flight.entry(recipient.to_owned()).or_default();
        self.mailbox.next_order += 1;
        let next_send = now + self.config.mailbox.delivery_retransmit;
        in_flight
            .insert((sender.clone(), id), InFlight { text: text.clone(), next_send, order: self.mailbox.next_order });
        self.send_to_user(recipient, Frame::TextDeliver { from: sender, id, text });
    }

    fn send_to_user(&mut self, user: &str, frame: Frame) {
        if let Some(u) = self.users.get(user) {
            let (socket, to) = (u.socket, u.reflexive);
            self.reply(socket, to, frame);
        }
    }

    /// Whether `user` ever logged in: seen since this server started, or
    /// remembered by the store from before.
    pub(super) fn knows_user(&mut self, user: &str) -> Result<bool, StoreError> {
        if self.known_users.contains(user) {
            return Ok(true);
        }
        self.store.knows_user(user)
    }

    pub(super) fn store_failed(&mut self, error: StoreError) {
        debug!(%error, "message store failed");
        self.stats.store_errors += 1;
        self.events.push_back(ServerEvent::StoreFailed { error: error.to_string() });
    }

    fn arm_mailbox(&mut self) {
        match self.mailbox.next_deadline() {
            Some(at) => self.timers.set(ServerTimer::Mailbox, at),
            None => self.timers.stop(&ServerTimer::Mailbox),
        }
    }
}
