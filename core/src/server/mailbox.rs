//! Store-and-forward for text messages (DESIGN §3, "Messaging").
//!
//! - A [`Frame::TextSend`] becomes a [`StoreOp::Put`] request, and the server
//!   says nothing to the sender until its completion says the text is
//!   committed: the acknowledgement means "durable". A retransmission that
//!   arrives while the put is in flight only moves where the answer goes; one
//!   that arrives later is recognised by its (recipient, sender, id) and
//!   stored once.
//! - When the recipient is online, the message is forwarded at once and the
//!   sender's acknowledgement waits up to [`MailboxConfig::delivered_wait`]
//!   for the recipient's: it then says `Delivered`, otherwise `Stored`.
//! - A recipient's stored messages are loaded ([`StoreOp::LoadQueue`]) and
//!   delivered when it logs in (and on [`Frame::InboxSync`]), oldest first, at most
//!   [`MailboxConfig::delivery_window`] unacknowledged at a time, each
//!   retransmitted every [`MailboxConfig::delivery_retransmit`] until the
//!   recipient acknowledges it; only that acknowledgement deletes it
//!   ([`StoreOp::Remove`]). A queue loaded before a delete completed may
//!   still hold the deleted message: deletes in flight are remembered and
//!   such copies skipped.
//! - Text frames are limited per user (a token bucket), not per source
//!   address, so a recipient draining thousands of stored messages is not
//!   throttled to the request rate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::limits::Bucket;
use super::storage::{QueueStatus, ReplyTo, Waiting};
use super::{valid_user_name, Server, ServerEvent, ServerTimer};
use crate::machine::SocketId;
use crate::messaging::{PutOutcome, StoreError, StoreOp, StoreReply, StoredMessage};
use crate::secure::{PublicKey, X_OVERHEAD};
use crate::wire::frame::ErrorCode;
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
    /// Default 4,096.
    pub text_burst: u32,
    /// Text frames per second one user may sustain. Default 16,384: above
    /// what one sender reaches with group commit (about 12,000 durable
    /// texts/s on loopback), so the limit stops a flood without bounding a
    /// bulk sender. At 512 it was what held a 3,000-text stream to 650
    /// texts/s, whatever the disk. The store itself is protected by
    /// [`max_store_requests`](Self::max_store_requests) and the
    /// per-recipient limit.
    pub text_rate: u32,
    /// Most storage requests in flight (issued, not completed) before new
    /// texts are refused with `StoreUnavailable`, so a store that stalls
    /// cannot make the server queue without bound. Default 65,536.
    pub max_store_requests: usize,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            max_text_bytes: MAX_TEXT,
            max_stored_per_recipient: 10_000,
            delivery_window: 64,
            delivery_retransmit: Duration::from_secs(1),
            delivered_wait: Duration::from_millis(500),
            text_burst: 4096,
            text_rate: 16_384,
            max_store_requests: 65_536,
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
    /// Puts in flight by (recipient, sender, id), with where the sender is
    /// now: a retransmission only moves the answer.
    putting: BTreeMap<(String, String, MessageId), ReplyTo>,
    /// Deletes in flight, by (recipient, sender, id): a queue load that ran
    /// before them still lists these messages.
    removing: BTreeSet<(String, String, MessageId)>,
    /// Orders in-flight deliveries by when they were first sent.
    next_order: u64,
}

#[derive(Debug)]
struct InFlight {
    sealed: Vec<u8>,
    next_send: Instant,
    order: u64,
}

#[derive(Debug)]
struct Awaiting {
    reply_to: ReplyTo,
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

    /// How many of `recipient`'s messages are being deleted.
    fn removing_count(&self, recipient: &str) -> usize {
        let from = (recipient.to_owned(), String::new(), MessageId { conversation: 0, seq: 0 });
        self.removing.range(from..).take_while(|(r, _, _)| r == recipient).count()
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
        sealed: Vec<u8>,
    ) {
        let Some(sender) = self.text_user(now, socket, from, token) else { return };
        let reply_to = (socket, from, token);
        if !self.take_text_token(now, &sender) {
            self.stats.rate_limited += 1;
            return self.reject_text(reply_to, &sender, id, TextRejection::RateLimited);
        }
        if sealed.len() > self.config.mailbox.max_text_bytes.min(MAX_TEXT) + X_OVERHEAD {
            return self.reject_text(reply_to, &sender, id, TextRejection::TooLarge);
        }
        if !valid_user_name(&to) {
            return self.reject_text(reply_to, &sender, id, TextRejection::BadRecipient);
        }
        let key = (to, sender, id);
        if let Some(answer_to) = self.mailbox.putting.get_mut(&key) {
            // Its put is in flight: the answer goes where the sender is now.
            *answer_to = reply_to;
            return;
        }
        let (to, sender, id) = key;
        if self.storage.outstanding() >= self.config.mailbox.max_store_requests {
            debug!(outstanding = self.storage.outstanding(), "store saturated; text refused");
            return self.reject_text(reply_to, &sender, id, TextRejection::StoreUnavailable);
        }
        // Online (proved or about to) or known to the store: a recipient.
        if self.users.contains(&to) || self.known_users.contains(&to) {
            self.put_text(reply_to, sender, id, to, sealed);
        } else {
            let user = to.clone();
            self.storage
                .request(StoreOp::ReadUser { user }, Waiting::TextRecipient { reply_to, sender, id, to, sealed });
        }
    }

    /// Asks the store to commit a text whose recipient exists.
    fn put_text(&mut self, reply_to: ReplyTo, sender: String, id: MessageId, to: String, sealed: Vec<u8>) {
        let key = (to.clone(), sender.clone(), id);
        self.mailbox.putting.insert(key.clone(), reply_to);
        let message = StoredMessage { recipient: to, sender, id, sealed: sealed.clone() };
        let max_per_recipient = self.config.mailbox.max_stored_per_recipient;
        self.storage.request(StoreOp::Put { message, max_per_recipient }, Waiting::TextPut { key, sealed });
    }

    /// A text's put completed: now, and only now, the sender hears of it.
    fn text_put_done(
        &mut self,
        now: Instant,
        key: (String, String, MessageId),
        sealed: Vec<u8>,
        outcome: Result<PutOutcome, StoreError>,
    ) {
        let Some(reply_to) = self.mailbox.putting.remove(&key) else { return };
        let (to, sender, id) = key;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                self.store_failed(error);
                return self.reject_text(reply_to, &sender, id, TextRejection::StoreUnavailable);
            }
        };
        match outcome {
            PutOutcome::RecipientFull => self.reject_text(reply_to, &sender, id, TextRejection::RecipientFull),
            PutOutcome::AlreadyStored => {
                let key = (to, sender, id);
                if let Some(waiting) = self.mailbox.awaiting.get_mut(&key) {
                    // The answer is coming; send it where the sender is now.
                    waiting.reply_to = reply_to;
                } else {
                    self.reply_in(reply_to, Frame::TextAck { id, status: TextStatus::Stored });
                }
            }
            PutOutcome::Stored => {
                self.stats.texts_stored += 1;
                let window = self.config.mailbox.delivery_window;
                if self.reachable(&to) && self.mailbox.in_flight_count(&to) < window {
                    // The recipient is online and everything older is in
                    // flight already: forward now, and let the sender's
                    // acknowledgement wait briefly for the recipient's.
                    self.deliver(now, &to, sender.clone(), id, sealed);
                    let deadline = now + self.config.mailbox.delivered_wait;
                    self.mailbox.awaiting.insert((to, sender, id), Awaiting { reply_to, deadline });
                } else {
                    self.reply_in(reply_to, Frame::TextAck { id, status: TextStatus::Stored });
                }
            }
        }
    }

    fn reject_text(&mut self, reply_to: ReplyTo, sender: &str, id: MessageId, reason: TextRejection) {
        debug!(%sender, %id, ?reason, "text refused");
        self.stats.texts_rejected += 1;
        self.reply_in(reply_to, Frame::TextRejected { id, reason });
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
        let key = (recipient.clone(), sender.clone(), id);
        if self.mailbox.removing.insert(key.clone()) {
            let op = StoreOp::Remove { recipient: recipient.clone(), sender: sender.clone(), id };
            self.storage.request(op, Waiting::Remove { key });
        }
        if let Some(in_flight) = self.mailbox.in_flight.get_mut(&recipient) {
            in_flight.remove(&(sender.clone(), id));
            if in_flight.is_empty() {
                self.mailbox.in_flight.remove(&recipient);
            }
        }
        if let Some(waiting) = self.mailbox.awaiting.remove(&(recipient.clone(), sender, id)) {
            self.reply_in(waiting.reply_to, Frame::TextAck { id, status: TextStatus::Delivered });
        }
        if !self.refill(&recipient, QueueStatus::IfDrained((socket, from, token))) {
            self.queue_status(&recipient, QueueStatus::IfDrained((socket, from, token)), 0);
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
        self.load_queue(&user, QueueStatus::Count((socket, from, token)));
    }

    /// A user logged in: bind its name to its key durably (if it is not
    /// yet) and start delivering.
    pub(super) fn mailbox_login(&mut self, user: &str, key: PublicKey) {
        let op = StoreOp::WriteUser { user: user.to_owned(), key };
        self.storage.request(op, Waiting::UserWrite { user: user.to_owned() });
        self.refill(user, QueueStatus::Silent);
    }

    /// The mailbox timer: retransmit deliveries, answer waiting senders.
    pub(super) fn mailbox_timeout(&mut self, now: Instant) {
        let retransmit = self.config.mailbox.delivery_retransmit;
        let mut due: Vec<(u64, String, String, MessageId, Vec<u8>)> = Vec::new();
        for (recipient, in_flight) in self.mailbox.in_flight.iter_mut() {
            for ((sender, id), f) in in_flight.iter_mut() {
                if f.next_send <= now {
                    f.next_send = now + retransmit;
                    due.push((f.order, recipient.clone(), sender.clone(), *id, f.sealed.clone()));
                }
            }
        }
        due.sort_by_key(|d| d.0);
        for (_, recipient, from, id, sealed) in due {
            self.send_to_user(&recipient, Frame::TextDeliver { from, id, sealed });
        }
        let expired: Vec<(String, String, MessageId)> =
            self.mailbox.awaiting.iter().filter(|(_, a)| a.deadline <= now).map(|(k, _)| k.clone()).collect();
        for key in expired {
            let waiting = self.mailbox.awaiting.remove(&key).expect("collected from the map above");
            let id = key.2;
            self.reply_in(waiting.reply_to, Frame::TextAck { id, status: TextStatus::Stored });
        }
        self.arm_mailbox();
    }

    /// Resumes what waited for a store request (see `storage`).
    pub(super) fn resume(&mut self, now: Instant, waiting: Waiting, result: Result<StoreReply, StoreError>) {
        match (waiting, result) {
            (Waiting::TextPut { key, sealed }, result) => {
                let outcome = result.and_then(|reply| match reply {
                    StoreReply::Put(outcome) => Ok(outcome),
                    other => Err(mismatched(&other)),
                });
                self.text_put_done(now, key, sealed, outcome);
            }
            (Waiting::TextRecipient { reply_to, sender, id, to, sealed }, result) => match known(result) {
                Ok(Some(key)) => {
                    self.known_users.insert(to.clone(), key);
                    self.put_text(reply_to, sender, id, to, sealed);
                }
                Ok(None) => self.reject_text(reply_to, &sender, id, TextRejection::UnknownRecipient),
                Err(error) => {
                    self.store_failed(error);
                    self.reject_text(reply_to, &sender, id, TextRejection::StoreUnavailable);
                }
            },
            (Waiting::ConnectPeer { reply_to, request, peer }, result) => {
                let known = known(result).map(|key| key.map(|key| self.known_users.insert(peer, key)).is_some());
                let known = known.unwrap_or_else(|error| {
                    // Offline either way; whether they exist cannot be told.
                    self.store_failed(error);
                    true
                });
                let code = if known { ErrorCode::PeerOffline } else { ErrorCode::UnknownPeer };
                self.reply_in(reply_to, Frame::Error { request, code });
            }
            (Waiting::Queue { recipient, status }, result) => match result {
                Ok(StoreReply::Queue { messages, total }) => {
                    self.queue_loaded(now, &recipient, status, messages, total)
                }
                Ok(other) => self.store_failed(mismatched(&other)),
                Err(error) => self.store_failed(error),
            },
            (Waiting::Remove { key }, result) => {
                self.mailbox.removing.remove(&key);
                match result {
                    Ok(StoreReply::Removed(true)) => self.stats.texts_delivered += 1,
                    // Still stored on failure: it is delivered again later,
                    // and the recipient recognises it.
                    Ok(StoreReply::Removed(false)) => {}
                    Ok(other) => self.store_failed(mismatched(&other)),
                    Err(error) => self.store_failed(error),
                }
            }
            (Waiting::UserWrite { user }, result) => match result {
                Ok(StoreReply::UserBound(key)) => self.user_bound(&user, key),
                Ok(other) => self.store_failed(mismatched(&other)),
                Err(error) => self.store_failed(error),
            },
            (Waiting::Lookup { reply_to, request, user }, result) => {
                let key = known(result).unwrap_or_else(|error| {
                    // Unknown either way: the asker may ask again.
                    self.store_failed(error);
                    None
                });
                if let Some(key) = key {
                    self.known_users.insert(user.clone(), key);
                }
                let online = self.users.contains(&user);
                self.reply_in(reply_to, Frame::LookupReply { request, online, key: key.map(|k| k.0) });
            }
            (Waiting::Hello(wait), result) => match known(result) {
                Ok(bound) => self.hello_binding_read(now, *wait, bound),
                Err(error) => {
                    // The binding cannot be told: no login now (the client
                    // sends its Hello again).
                    self.store_failed(error);
                    self.hello_dropped();
                }
            },
        }
        self.arm_mailbox();
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

    /// Asks for `recipient`'s queue to top up its deliveries in flight, when
    /// it is online with room in its window. False when nothing was asked.
    fn refill(&mut self, recipient: &str, status: QueueStatus) -> bool {
        if !self.users.contains(recipient) {
            return false;
        }
        let in_flight = self.mailbox.in_flight_count(recipient);
        if in_flight >= self.config.mailbox.delivery_window {
            return false;
        }
        self.load_queue(recipient, status);
        true
    }

    fn load_queue(&mut self, recipient: &str, status: QueueStatus) {
        // Among the oldest `in flight + removing + window` at most that many
        // are in flight or being deleted, so this finds every message that
        // fits, whatever the in-flight set is when the load completes.
        let skip = self.mailbox.in_flight_count(recipient) + self.mailbox.removing_count(recipient);
        let limit = skip + self.config.mailbox.delivery_window;
        let recipient = recipient.to_owned();
        self.storage
            .request(StoreOp::LoadQueue { recipient: recipient.clone(), limit }, Waiting::Queue { recipient, status });
    }

    /// A queue load completed: deliver what is neither in flight nor being
    /// deleted, then answer whoever asked.
    fn queue_loaded(
        &mut self,
        now: Instant,
        recipient: &str,
        status: QueueStatus,
        messages: Vec<StoredMessage>,
        total: usize,
    ) {
        if self.reachable(recipient) {
            let room = self.config.mailbox.delivery_window.saturating_sub(self.mailbox.in_flight_count(recipient));
            let sent = self.mailbox.in_flight.get(recipient);
            let removing = &self.mailbox.removing;
            let fresh: Vec<StoredMessage> = messages
                .into_iter()
                .filter(|m| !sent.is_some_and(|sent| sent.contains_key(&(m.sender.clone(), m.id))))
                .filter(|m| !removing.contains(&(m.recipient.clone(), m.sender.clone(), m.id)))
                .take(room)
                .collect();
            for m in fresh {
                self.deliver(now, recipient, m.sender, m.id, m.sealed);
            }
        }
        let pending = total.saturating_sub(self.mailbox.removing_count(recipient));
        self.queue_status(recipient, status, pending);
    }

    fn queue_status(&mut self, recipient: &str, status: QueueStatus, pending: usize) {
        match status {
            QueueStatus::Silent => {}
            QueueStatus::IfDrained(reply_to) => {
                if self.mailbox.in_flight_count(recipient) == 0 {
                    self.reply_in(reply_to, Frame::InboxStatus { pending: 0 });
                }
            }
            QueueStatus::Count(reply_to) => {
                let pending = u32::try_from(pending).unwrap_or(u32::MAX);
                self.reply_in(reply_to, Frame::InboxStatus { pending });
            }
        }
    }

    fn deliver(&mut self, now: Instant, recipient: &str, sender: String, id: MessageId, sealed: Vec<u8>) {
        if !self.reachable(recipient) {
            return;
        }
        let in_flight = self.mailbox.in_flight.entry(recipient.to_owned()).or_default();
        self.mailbox.next_order += 1;
        let next_send = now + self.config.mailbox.delivery_retransmit;
        in_flight.insert(
            (sender.clone(), id),
            InFlight { sealed: sealed.clone(), next_send, order: self.mailbox.next_order },
        );
        self.send_to_user(recipient, Frame::TextDeliver { from: sender, id, sealed });
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

/// A user lookup's answer: the key the name is bound to, if any.
fn known(result: Result<StoreReply, StoreError>) -> Result<Option<PublicKey>, StoreError> {
    match result? {
        StoreReply::UserKey(key) => Ok(key),
        other => Err(mismatched(&other)),
    }
}

/// A driver answered a request with another request's reply: a driver bug,
/// handled as a store failure rather than a panic.
fn mismatched(reply: &StoreReply) -> StoreError {
    StoreError(format!("the driver answered with a mismatched reply: {reply:?}"))
}
