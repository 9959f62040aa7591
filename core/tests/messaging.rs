//! Text messaging end to end through real core machines on the in-memory
//! network: store-and-forward, the direct path and its fallback, loss, a
//! server crash, limits, bad input and determinism.

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Harness, SERVER};
use punchline_core::client::{ClientEvent, ConnectFailure, PathKind};
use punchline_core::messaging::{
    MemoryStore, MessageId, MessageStore, PutOutcome, SendTextError, StoreError, StoredMessage, TextFailure, TextPath,
    MAX_SEALED_TEXT, MAX_TEXT,
};
use punchline_core::secure::{HelloSent, PublicKey};
use punchline_core::wire::frame::{Frame, TextRejection, TextStatus};
use punchline_core::Machine;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Acknowledgements client `i` got, by id.
fn acks(h: &Harness, i: usize) -> BTreeMap<MessageId, (TextStatus, TextPath)> {
    h.find(i, |e| match e {
        ClientEvent::TextAcked { id, status, path } => Some((*id, (*status, *path))),
        _ => None,
    })
    .into_iter()
    .map(|(_, a)| a)
    .collect()
}

fn failures(h: &Harness, i: usize) -> Vec<(MessageId, TextFailure)> {
    h.find(i, |e| match e {
        ClientEvent::TextFailed { id, reason } => Some((*id, *reason)),
        _ => None,
    })
    .into_iter()
    .map(|(_, f)| f)
    .collect()
}

/// Frames client `i` sent to the server that `pick` selects.
fn sent_to_server(h: &Harness, i: usize, pick: impl Fn(&Frame) -> bool) -> usize {
    h.captured
        .iter()
        .filter(|(c, p)| *c == i && p.dst == SERVER)
        .filter(|(_, p)| p.frame().is_some_and(|f| pick(&f)))
        .count()
}

/// Asserts that `received` holds every one of `sent` exactly once.
fn assert_each_once(received: &[(String, MessageId, String)], sent: &[(MessageId, String)]) {
    let mut count: BTreeMap<MessageId, usize> = BTreeMap::new();
    for (_, id, _) in received {
        *count.entry(*id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "shown more than once: {twice:?}");
    for (id, text) in sent {
        let got = received.iter().find(|(_, r, _)| r == id);
        assert_eq!(got.map(|(_, _, t)| t), Some(text), "message {id} lost or altered");
    }
    assert_eq!(received.len(), sent.len(), "nothing else arrived");
}

/// Alice online; bob logged in once (so he is known) and went away.
fn alice_and_absent_bob(seed: u64) -> (Harness, usize) {
    let mut h = Harness::new(seed);
    let bob_config = h.config("bob");
    let bob = h.add_public_client(bob_config);
    h.run_for(secs(1));
    h.leave(bob, Duration::from_millis(100));
    let alice_config = h.config("alice");
    let alice = h.add_public_client(alice_config);
    h.run_for(secs(3));
    (h, alice)
}

/// A new "bob" process (on a fresh address) logs in and drains its inbox.
fn bob_returns(h: &mut Harness) -> usize {
    let config = h.config("bob");
    h.add_public_client(config)
}

#[test]
fn given_an_offline_recipient_then_messages_are_stored_and_delivered_in_order_at_login() {
    // Given
    let (mut h, alice) = alice_and_absent_bob(1);
    // When
    let sent: Vec<(MessageId, String)> =
        (0..50).map(|n| format!("message {n}")).map(|t| (h.send_text(alice, "bob", &t), t)).collect();
    h.run_for(secs(2));
    // Then: every send is acknowledged as stored, through the server.
    let acked = acks(&h, alice);
    assert_eq!(acked.len(), 50);
    assert!(acked.values().all(|a| *a == (TextStatus::Stored, TextPath::Server)), "{acked:?}");
    // When bob comes back
    let bob = bob_returns(&mut h);
    h.run_for(secs(5));
    // Then he gets each once, in send order, and the server keeps nothing.
    let received = h.texts(bob);
    assert_each_once(&received, &sent);
    let order: Vec<MessageId> = received.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(order, sent.iter().map(|(id, _)| *id).collect::<Vec<_>>(), "stored messages keep send order");
    assert!(received.iter().all(|(from, _, _)| from == "alice"));
    assert_eq!(h.find(bob, |e| matches!(e, ClientEvent::InboxEmpty).then_some(())).len(), 1);
    assert_eq!(h.server.stats().texts_stored, 50);
    assert_eq!(h.server.stats().texts_delivered, 50);
    // Ids are (conversation, 1..): one conversation, consecutive sequence.
    assert!(sent.iter().all(|(id, _)| id.conversation == sent[0].0.conversation));
    assert_eq!(sent.iter().map(|(id, _)| id.seq).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
}

#[test]
fn given_an_online_recipient_without_a_session_then_the_server_forwards_and_acknowledges_delivered() {
    let mut h = Harness::new(2);
    let (ac, bc) = (h.config("alice"), h.config("bob"));
    let alice = h.add_public_client(ac);
    let bob = h.add_public_client(bc);
    h.run_for(secs(3));
    let id = h.send_text(alice, "bob", "hello bob");
    h.run_for(secs(2));
    assert_eq!(acks(&h, alice).get(&id), Some(&(TextStatus::Delivered, TextPath::Server)));
    assert_eq!(h.texts(bob), [("alice".to_owned(), id, "hello bob".to_owned())]);
}

/// Alice and bob with a direct session between them.
fn direct_pair(seed: u64) -> (Harness, usize, usize) {
    let mut h = Harness::new(seed);
    let (ac, bc) = (h.config("alice"), h.config("bob"));
    let alice = h.add_public_client(ac);
    let bob = h.add_public_client(bc);
    h.run_for(secs(3));
    h.connect(alice, "bob");
    h.run_for(secs(3));
    let session = h.clients[alice].client.sessions().next().expect("a session");
    let path = h.clients[alice].client.session_info(session).unwrap().path;
    assert!(matches!(path, PathKind::Direct { .. }), "the pair went direct: {path:?}");
    (h, alice, bob)
}

#[test]
fn given_a_direct_session_then_text_goes_peer_to_peer_and_the_peer_acknowledges_it() {
    // Given
    let (mut h, alice, bob) = direct_pair(3);
    // When
    let sent: Vec<(MessageId, String)> =
        (0..20).map(|n| format!("direct {n}")).map(|t| (h.send_text(alice, "bob", &t), t)).collect();
    h.run_for(secs(2));
    // Then
    let acked = acks(&h, alice);
    assert_eq!(acked.len(), 20);
    assert!(acked.values().all(|a| *a == (TextStatus::Delivered, TextPath::Direct)));
    assert_each_once(&h.texts(bob), &sent);
    assert_eq!(sent_to_server(&h, alice, |f| matches!(f, Frame::TextSend { .. })), 0, "the server never saw them");
    assert!(h.received(bob).is_empty(), "texts are not handed to the application as session data");
    // And bob can answer the same way.
    let reply = h.send_text(bob, "alice", "hi alice");
    h.run_for(secs(1));
    assert_eq!(acks(&h, bob).get(&reply), Some(&(TextStatus::Delivered, TextPath::Direct)));
    assert_eq!(h.texts(alice), [("bob".to_owned(), reply, "hi alice".to_owned())]);
}

#[test]
fn given_a_direct_path_that_dies_then_texts_fall_back_to_the_server_and_are_shown_once() {
    // Given a direct session whose path silently stops carrying packets
    let (mut h, alice, bob) = direct_pair(4);
    h.drop_direct = true;
    // When alice sends before anyone noticed
    let sent: Vec<(MessageId, String)> =
        (0..10).map(|n| format!("across {n}")).map(|t| (h.send_text(alice, "bob", &t), t)).collect();
    h.run_for(secs(10));
    // Then they went through the server after the fallback time ...
    let acked = acks(&h, alice);
    assert_eq!(acked.len(), 10, "{acked:?}");
    assert!(acked.values().all(|(_, path)| *path == TextPath::Server), "{acked:?}");
    assert_eq!(sent_to_server(&h, alice, |f| matches!(f, Frame::TextSend { .. })), 10);
    // ... and the session stream, back on the relay, delivered its copies
    // too: bob still shows each message once.
    assert_each_once(&h.texts(bob), &sent);
    // When the direct path comes back, texts go direct again.
    h.drop_direct = false;
    h.run_for(secs(20));
    let session = h.clients[alice].client.sessions().next().expect("a session");
    if matches!(h.clients[alice].client.session_info(session).unwrap().path, PathKind::Direct { .. }) {
        let id = h.send_text(alice, "bob", "direct again");
        h.run_for(secs(1));
        assert_eq!(acks(&h, alice).get(&id), Some(&(TextStatus::Delivered, TextPath::Direct)));
        assert_eq!(h.texts(bob).iter().filter(|(_, i, _)| *i == id).count(), 1);
    } else {
        eprintln!("the session had not re-punched within 20 s; the direct-again half was not exercised");
    }
}

#[test]
fn given_twenty_percent_loss_then_every_message_arrives_exactly_once_online_and_offline() {
    for seed in [10, 11, 12] {
        // Online recipient.
        let mut h = Harness::new(seed);
        let (ac, bc) = (h.config("alice"), h.config("bob"));
        let alice = h.add_public_client(ac);
        let bob = h.add_public_client(bc);
        h.run_for(secs(5));
        h.loss = 0.2;
        let mut sent = Vec::new();
        for n in 0..100 {
            let text = format!("lossy {n}");
            sent.push((h.send_text(alice, "bob", &text), text));
            h.run_for(Duration::from_millis(50));
        }
        h.run_for(secs(60));
        assert_eq!(acks(&h, alice).len(), 100, "seed {seed}: every send acknowledged");
        assert!(failures(&h, alice).is_empty());
        assert_each_once(&h.texts(bob), &sent);
        assert!(h.clients[alice].client.unacknowledged_texts() == 0);

        // Offline recipient, coming back under loss.
        let (mut h, alice) = alice_and_absent_bob(seed);
        h.loss = 0.2;
        let sent: Vec<(MessageId, String)> =
            (0..100).map(|n| format!("stored {n}")).map(|t| (h.send_text(alice, "bob", &t), t)).collect();
        h.run_for(secs(60));
        assert_eq!(acks(&h, alice).len(), 100, "seed {seed}");
        let bob = bob_returns(&mut h);
        h.run_for(secs(60));
        assert_each_once(&h.texts(bob), &sent);
        assert_eq!(h.server.stats().texts_delivered, 100, "seed {seed}: the store drained");
    }
}

#[test]
fn given_server_crashes_while_sending_then_every_acknowledged_message_reaches_the_recipient_once() {
    // Given
    let (mut h, alice) = alice_and_absent_bob(20);
    h.loss = 0.1;
    let mut sent = Vec::new();
    let mut store: Option<Box<dyn MessageStore>> = None;
    // When alice streams messages while the server dies and restarts
    for n in 0..300u64 {
        let text = format!("crash {n}");
        sent.push((h.send_text(alice, "bob", &text), text));
        h.run_for(Duration::from_millis(20));
        match n % 60 {
            17 => store = Some(h.crash_server()),
            41 => h.start_server(store.take().expect("crashed before")),
            _ => {}
        }
    }
    h.run_for(secs(120));
    // Then every send was acknowledged in the end (alice logs in again and
    // retransmits)
    let acked = acks(&h, alice);
    assert_eq!(acked.len(), 300, "failures: {:?}", failures(&h, alice));
    // and bob, coming back, sees every one exactly once.
    let bob = bob_returns(&mut h);
    h.run_for(secs(30));
    assert_each_once(&h.texts(bob), &sent);
}

#[test]
fn given_the_limits_then_senders_get_clear_rejections() {
    let (mut h, alice) = alice_and_absent_bob(30);
    // Local limits: no frame is sent.
    let now = h.now;
    let client = &mut h.clients[alice].client;
    let long = "x".repeat(MAX_TEXT + 1);
    assert_eq!(client.send_text(now, "bob", &long), Err(SendTextError::TooLarge { len: MAX_TEXT + 1, max: MAX_TEXT }));
    assert_eq!(client.send_text(now, "bad name", "x"), Err(SendTextError::BadRecipient));
    assert_eq!(client.send_text(now, "alice", "x"), Err(SendTextError::BadRecipient), "not to ourselves");
    assert_eq!(client.send_text(now, "", "x"), Err(SendTextError::BadRecipient));

    // Server limits: restart the server with small ones (the store keeps bob).
    h.server_config.mailbox.max_stored_per_recipient = 3;
    h.server_config.mailbox.max_text_bytes = 10;
    let store = h.crash_server();
    h.start_server(store);
    h.run_for(secs(10)); // alice notices and logs in again
    let ok: Vec<MessageId> = (0..3).map(|n| h.send_text(alice, "bob", &format!("ok {n}"))).collect();
    h.run_for(secs(1));
    let full = h.send_text(alice, "bob", "one more");
    let large = h.send_text(alice, "bob", "eleven byte");
    let unknown = h.send_text(alice, "nobody", "hello?");
    h.run_for(secs(2));
    let acked = acks(&h, alice);
    assert!(
        ok.iter().all(|id| acked.get(id) == Some(&(TextStatus::Stored, TextPath::Server))),
        "{acked:?} {:?}",
        failures(&h, alice)
    );
    let failed: BTreeMap<MessageId, TextFailure> = failures(&h, alice).into_iter().collect();
    assert_eq!(failed.get(&full), Some(&TextFailure::Rejected(TextRejection::RecipientFull)));
    assert_eq!(failed.get(&large), Some(&TextFailure::Rejected(TextRejection::TooLarge)));
    assert_eq!(failed.get(&unknown), Some(&TextFailure::Rejected(TextRejection::UnknownRecipient)));
    // The unknown recipient was refused by the directory: it has no key to
    // seal to, so nothing was sent for the server to reject.
    assert_eq!(h.server.stats().texts_rejected, 2);
}

#[test]
fn given_a_restarted_server_then_a_connect_logs_in_again_and_a_user_the_store_knows_is_offline_not_unknown() {
    // Given bob logged in once and left, and the server restarted since
    // (its store remembers bob; the new process has not seen him),
    let (mut h, alice) = alice_and_absent_bob(31);
    let store = h.crash_server();
    h.start_server(store);
    h.run_for(secs(1));
    // when alice, who has not noticed the restart yet (her keepalive is
    // every 25 s), connects to bob and to someone who never logged in,
    h.connect(alice, "bob");
    h.connect(alice, "nobody");
    h.run_for(secs(5));
    // then the server's NotLoggedIn makes her log in again, and the
    // connects, sent again, find bob offline and the other unknown.
    assert_eq!(h.find(alice, |e| matches!(e, ClientEvent::LoggedIn { .. }).then_some(())).len(), 2);
    let failed = h.find(alice, |e| match e {
        ClientEvent::ConnectFailed { peer, reason } => Some((peer.clone(), *reason)),
        _ => None,
    });
    let failed: BTreeMap<String, ConnectFailure> = failed.into_iter().map(|(_, f)| f).collect();
    assert_eq!(failed.get("bob"), Some(&ConnectFailure::PeerOffline));
    assert_eq!(failed.get("nobody"), Some(&ConnectFailure::UnknownPeer));
}

#[test]
fn given_an_unreachable_server_then_a_text_fails_after_the_timeout() {
    let mut h = Harness::new(31);
    let mut config = h.config("alice");
    config.messaging.text_timeout = secs(20);
    let alice = h.add_public_client(config);
    h.run_for(secs(2));
    h.server_down = true;
    let id = h.send_text(alice, "bob", "into the void");
    h.run_for(secs(19));
    assert!(failures(&h, alice).is_empty(), "still trying before the timeout");
    h.run_for(secs(2));
    assert_eq!(failures(&h, alice), [(id, TextFailure::Timeout)]);
    // Bob's key was never confirmed (the directory is down with the
    // server): the text waits for it, asking once a second, and nothing is
    // sealed to a key the directory did not confirm.
    assert_eq!(sent_to_server(&h, alice, |f| matches!(f, Frame::TextSend { .. })), 0);
    let lookups = sent_to_server(&h, alice, |f| matches!(f, Frame::Lookup { .. }));
    assert_eq!(lookups, 20, "one lookup a second until the text's timeout");
}

#[test]
fn given_a_confirmed_recipient_and_a_server_gone_then_the_text_backs_off_and_fails_after_the_timeout() {
    let mut h = Harness::new(32);
    let mut config = h.config("alice");
    config.messaging.text_timeout = secs(20);
    let alice = h.add_public_client(config);
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));
    // Bob's key is confirmed by a first text, which reaches him.
    h.send_text(alice, "bob", "hello");
    h.run_for(secs(1));
    assert_eq!(h.texts(bob).len(), 1);
    let before = sent_to_server(&h, alice, |f| matches!(f, Frame::TextSend { .. }));
    h.server_down = true;
    let id = h.send_text(alice, "bob", "into the void");
    h.run_for(secs(19));
    assert!(failures(&h, alice).is_empty(), "still trying before the timeout");
    h.run_for(secs(2));
    assert_eq!(failures(&h, alice), [(id, TextFailure::Timeout)]);
    let sends = sent_to_server(&h, alice, |f| matches!(f, Frame::TextSend { .. })) - before;
    // 1 s, 2 s, 4 s, then every 8 s: sends at 0, 1, 3, 7, 15 s.
    assert_eq!(sends, 5, "bounded backoff");
}

/// A store the test can break while the server uses it.
#[derive(Debug, Clone, Default)]
struct SharedStore(Arc<Mutex<MemoryStore>>);

impl MessageStore for SharedStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.0.lock().unwrap().begin()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.0.lock().unwrap().commit()
    }
    fn rollback(&mut self) {
        self.0.lock().unwrap().rollback()
    }
    fn put(&mut self, m: &StoredMessage, max: usize) -> Result<PutOutcome, StoreError> {
        self.0.lock().unwrap().put(m, max)
    }
    fn remove(&mut self, r: &str, s: &str, id: MessageId) -> Result<bool, StoreError> {
        self.0.lock().unwrap().remove(r, s, id)
    }
    fn load_queue(&mut self, r: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError> {
        self.0.lock().unwrap().load_queue(r, limit)
    }
    fn read_user(&mut self, u: &str) -> Result<Option<PublicKey>, StoreError> {
        self.0.lock().unwrap().read_user(u)
    }
    fn write_user(&mut self, u: &str, key: &PublicKey) -> Result<PublicKey, StoreError> {
        self.0.lock().unwrap().write_user(u, key)
    }
}

#[test]
fn given_a_failing_store_then_nothing_is_acknowledged_until_it_commits() {
    let (mut h, alice) = alice_and_absent_bob(40);
    // Restart the server over a store the test can break, carrying over
    // that bob exists.
    let mut old = h.crash_server();
    let bob_key = old.read_user("bob").unwrap().expect("bob's name is bound to his key");
    let shared = SharedStore::default();
    shared.0.lock().unwrap().write_user("bob", &bob_key).unwrap();
    h.start_server(Box::new(shared.clone()));
    h.run_for(secs(10));
    shared.0.lock().unwrap().set_failing(true);
    let id = h.send_text(alice, "bob", "wait for the disk");
    h.run_for(secs(5));
    assert!(acks(&h, alice).is_empty(), "no acknowledgement without a commit");
    assert!(failures(&h, alice).is_empty(), "a store failure is retried, not final");
    assert!(h.server.stats().store_errors >= 1);
    shared.0.lock().unwrap().set_failing(false);
    h.run_for(secs(10));
    assert_eq!(acks(&h, alice).get(&id), Some(&(TextStatus::Stored, TextPath::Server)));
    assert_eq!(shared.0.lock().unwrap().len(), 1);
}

#[test]
fn given_a_commit_in_flight_then_logins_are_answered_and_texts_wait_for_their_commit() {
    // Given alice online, bob, who exists, offline, and carol, who was
    // online once, gone too,
    let (mut h, alice) = alice_and_absent_bob(41);
    let carol_config = h.config("carol");
    let first_carol = h.add_public_client(carol_config.clone());
    h.run_for(secs(1));
    h.leave(first_carol, secs(1));
    // when the store's commit is held in flight and alice sends three texts,
    h.hold_store = true;
    let ids: Vec<MessageId> = (0..3).map(|k| h.send_text(alice, "bob", &format!("text {k}"))).collect();
    // and carol logs in again meanwhile,
    let carol = h.add_public_client(carol_config);
    h.run_for(secs(5));
    // then carol is logged in although her login's own storage waits too
    // (a name whose key the server knows never waits for a store read),
    assert!(h.clients[carol].client.is_logged_in(), "a known name's login never waits for the store");
    // and no text is acknowledged before its commit, nor given up on;
    assert!(acks(&h, alice).is_empty(), "{:?}", acks(&h, alice));
    assert!(failures(&h, alice).is_empty());
    assert!(!h.held.is_empty(), "the texts' puts wait for the commit");
    let sends = sent_to_server(&h, alice, |f| matches!(f, Frame::TextSend { .. }));
    assert!(sends > 3, "alice retransmitted while she waited ({sends} sends)");
    // when the commit ends, every text is acknowledged as stored, once.
    h.release_store();
    h.run_for(secs(1));
    let acked = acks(&h, alice);
    assert_eq!(acked.len(), 3);
    assert!(ids.iter().all(|id| acked.get(id) == Some(&(TextStatus::Stored, TextPath::Server))), "{acked:?}");
    assert_eq!(h.server.stats().texts_stored, 3, "retransmissions during the commit were not stored again");
}

#[test]
fn given_hostile_text_frames_then_they_are_dropped_and_counted_without_panic() {
    let mut h = Harness::new(50);
    let ac = h.config("alice");
    let alice = h.add_public_client(ac);
    h.run_for(secs(2));
    // Mallory logs in by hand, to send what no client would, sealed in her
    // own channel.
    let from: std::net::SocketAddr = "192.0.2.66:6666".parse().unwrap();
    let (token, mallory) = h.hand_login(from, "mallory");
    let id = MessageId { conversation: 1, seq: 1 };
    let malformed_before = h.server.stats().malformed;
    // An oversized text (the frame's size limit), a truncated frame, and a
    // text whose length prefix lies.
    let sealed = vec![b'x'; MAX_SEALED_TEXT];
    let mut oversized = Frame::TextSend { token, id, to: "bob".into(), sealed }.encode();
    oversized.extend(std::iter::repeat_n(b'x', 30));
    let full = Frame::TextSend { token, id, to: "bob".into(), sealed: b"hello".to_vec() }.encode();
    let truncated = full[..full.len() - 3].to_vec();
    let mut lying = full.clone();
    let len_at = lying.len() - 6;
    lying[len_at] = 100;
    for payload in [oversized, truncated, lying] {
        h.inject(from, SERVER, mallory.seal(&payload).expect("sealed"));
    }
    h.run_for(secs(1));
    assert_eq!(h.server.stats().malformed - malformed_before, 3);
    assert_eq!(h.server.stats().texts_stored, 0);

    // The same text in the clear is not even read: signaling travels only
    // inside a channel.
    let unauthenticated_before = h.server.stats().unauthenticated;
    h.inject(from, SERVER, full.clone());
    h.run_for(secs(1));
    assert_eq!(h.server.stats().unauthenticated - unauthenticated_before, 1);

    // A delivery that does not come sealed from the server is not shown,
    // whether it claims the server's address or not.
    let client_addr = h.clients[alice].client.reflexive().unwrap();
    let forged = Frame::TextDeliver { from: "mallory".into(), id, sealed: b"trust me".to_vec() }.encode();
    h.inject("198.51.100.99:5000".parse().unwrap(), client_addr, forged.clone());
    h.inject(SERVER, client_addr, forged);
    h.run_for(secs(1));
    assert!(h.texts(alice).is_empty());
    assert_eq!(h.clients[alice].client.stats().unauthenticated, 2);

    // A text naming another channel's token (alice's, say) is refused.
    let bad_token_before = h.server.stats().bad_token;
    let stolen = Frame::TextSend { token: token ^ 1, id, to: "alice".into(), sealed: b"x".to_vec() }.encode();
    h.inject(from, SERVER, mallory.seal(&stolen).expect("sealed"));
    h.run_for(secs(1));
    assert_eq!(h.server.stats().texts_stored, 0);
    assert_eq!(h.server.stats().bad_token - bad_token_before, 1);
}

#[test]
fn given_a_direct_session_then_texts_and_application_data_never_mix() {
    let (mut h, alice, bob) = direct_pair(60);
    // Application data that once marked a text (the old 8-byte prefix) is
    // just data now: texts travel as their own stream messages.
    let mut lookalike = b"\xffPLTEXT\x01".to_vec();
    lookalike.extend([0, 0xff, 0xff]);
    h.send(alice, &lookalike);
    h.send(alice, b"ordinary data");
    let now = h.now;
    let id = h.clients[alice].client.send_text(now, "bob", "a text").expect("sent");
    h.run_for(secs(1));
    // Then bob's application gets both payloads as data, the text as a text.
    assert_eq!(h.received(bob), [lookalike, b"ordinary data".to_vec()]);
    assert_eq!(h.texts(bob), [("alice".to_owned(), id, "a text".to_owned())]);
}

#[test]
fn given_the_same_seed_then_a_messaging_run_is_identical() {
    let run = |seed| {
        let (mut h, alice) = alice_and_absent_bob(seed);
        h.loss = 0.1;
        for n in 0..20 {
            h.send_text(alice, "bob", &format!("d{n}"));
        }
        h.run_for(secs(20));
        let bob = bob_returns(&mut h);
        h.run_for(secs(20));
        let _ = bob;
        h.log
    };
    assert_eq!(run(70), run(70));
    assert_ne!(run(70), run(71));
}

#[test]
fn given_message_ids_then_they_print_and_parse_as_32_hex_digits() {
    let id = MessageId { conversation: 0x0123_4567_89ab_cdef, seq: 42 };
    let text = id.to_string();
    assert_eq!(text, "0123456789abcdef000000000000002a");
    assert_eq!(text.parse::<MessageId>(), Ok(id));
    assert!("xyz".parse::<MessageId>().is_err());
    assert!("0123456789abcdef000000000000002g".parse::<MessageId>().is_err());
}

#[test]
fn given_a_server_machine_then_the_sender_ack_waits_for_an_online_recipient_at_most_the_configured_time() {
    // Bob is online but his client is dead (it stopped acknowledging): the
    // server still answers alice, with "stored", after `delivered_wait`.
    let mut h = Harness::new(80);
    let (ac, bc) = (h.config("alice"), h.config("bob"));
    let alice = h.add_public_client(ac);
    let bob = h.add_public_client(bc);
    h.run_for(secs(3));
    h.clients[bob].dead = true;
    let before = h.elapsed();
    let id = h.send_text(alice, "bob", "are you there?");
    h.run_for(secs(3));
    let acked = h.find(alice, |e| match e {
        ClientEvent::TextAcked { id: i, status, .. } if *i == id => Some(*status),
        _ => None,
    });
    assert_eq!(acked.len(), 1);
    let (at, status) = acked[0];
    assert_eq!(status, TextStatus::Stored);
    let waited = at - before;
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(600), "{waited:?}");
    assert!(h.server.poll_timeout().is_some(), "the delivery to bob is still retried");
}

#[test]
fn given_statuses_and_paths_then_their_names_are_the_command_line_contract() {
    // `punchline send --json` prints these (issue 7): they are public.
    assert_eq!(TextStatus::Delivered.as_str(), "delivered");
    assert_eq!(TextStatus::Stored.as_str(), "stored");
    assert_eq!(TextPath::Direct.as_str(), "direct");
    assert_eq!(TextPath::Server.as_str(), "server");
    assert_eq!(
        TextFailure::Rejected(TextRejection::UnknownRecipient).to_string(),
        "refused by the server: no such user"
    );
}

#[test]
fn given_an_inbox_sync_then_inbox_empty_comes_only_after_every_stored_message_arrived() {
    // Given 30 stored messages for bob
    let (mut h, alice) = alice_and_absent_bob(90);
    h.loss = 0.2;
    let sent: Vec<(MessageId, String)> =
        (0..30).map(|n| format!("inbox {n}")).map(|t| (h.send_text(alice, "bob", &t), t)).collect();
    // (20 % loss each way: a text may need its eighth try, at 39 s.)
    h.run_for(secs(60));
    assert_eq!(acks(&h, alice).len(), 30, "{:?}", failures(&h, alice));
    // When bob's `inbox` starts and asks at once (before its login is done)
    let bob = bob_returns(&mut h);
    h.sync_inbox(bob);
    h.run_for(secs(60));
    // Then InboxEmpty comes once, after the last message was shown.
    let empty = h.find(bob, |e| matches!(e, ClientEvent::InboxEmpty).then_some(()));
    assert_eq!(empty.len(), 1);
    let last_text = h.find(bob, |e| matches!(e, ClientEvent::TextReceived { .. }).then_some(())).last().unwrap().0;
    assert!(empty[0].0 >= last_text);
    assert_each_once(&h.texts(bob), &sent);

    // And with nothing stored, the answer is immediate.
    h.loss = 0.0;
    h.sync_inbox(bob);
    let before = h.elapsed();
    h.run_for(secs(1));
    let empty = h.find(bob, |e| matches!(e, ClientEvent::InboxEmpty).then_some(()));
    assert_eq!(empty.len(), 2);
    assert!(empty[1].0 - before < Duration::from_millis(100));
}

/// Datagrams and bytes the server sent to `to` (from the harness's log).
fn sent_to(h: &Harness, to: std::net::SocketAddr) -> (usize, usize) {
    let lines: Vec<&String> = h.log.iter().filter(|l| l.contains(&format!(" server -> {to} "))).collect();
    let bytes = lines.iter().map(|l| l.rsplit_once('[').map_or(0, |(_, list)| list.matches(", ").count() + 1)).sum();
    (lines.len(), bytes)
}

#[test]
fn a_login_from_a_spoofed_source_gets_nothing_back_but_its_answer() {
    // Given stored texts for bob, who is away,
    let (mut h, alice) = alice_and_absent_bob(11);
    for n in 0..40 {
        h.send_text(alice, "bob", &format!("a long enough message, number {n}, to make delivery worth aiming"));
    }
    h.run_for(secs(2));
    // when an attacker replays a Hello of bob's (made with his very key)
    // with a victim's address as the source, and (not receiving there)
    // never follows up,
    let victim: std::net::SocketAddr = "198.51.100.99:4000".parse().expect("address");
    let login = Frame::Login { request: 1, user: "bob".into(), host_candidates: vec![] }.encode();
    let (bob_identity, server_key) = (h.config("bob").identity, h.server_config.key.public());
    let (_, hello) = HelloSent::start(&bob_identity, &server_key, &login, None, 99.into());
    h.inject(victim, SERVER, hello.clone());
    h.run_for(secs(30));
    // then the victim got the handshake's one answer and nothing else: no
    // stored text, and fewer bytes than the Hello.
    let (datagrams, bytes) = sent_to(&h, victim);
    assert_eq!(datagrams, 1, "only the Welcome");
    assert!(bytes <= hello.len(), "{bytes} bytes for a {}-byte hello", hello.len());
    assert!(h.log.iter().filter(|l| l.contains(&format!(" server -> {victim} "))).all(|l| !l.contains("TextDeliver")));

    // When the real bob logs in from where he receives, then his texts come.
    let bob = bob_returns(&mut h);
    h.run_for(secs(5));
    assert_eq!(h.texts(bob).len(), 40, "the stored texts reach the address that proved it receives");
}

mod server_with_many_users {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::{Duration, Instant};

    use punchline_core::messaging::{MemoryStore, MessageId, MessageStore};
    use punchline_core::secure::{ChannelEnd, HelloSent, StaticKey};
    use punchline_core::server::{Server, ServerConfig};
    use punchline_core::wire::frame::{Frame, TextStatus};
    use punchline_core::{Machine, SocketId};

    /// User `i`'s address: a host of its own, so fifty users' logins and
    /// keepalives do not share one source's request limit.
    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1 + i as u8), 10_000 + i))
    }

    /// Feeds `datagram` from `addr(i)`, carries out the storage requests at
    /// once, and returns what the server sent: (destination, datagram,
    /// frame inside). Its events are drained and dropped.
    fn exchange(server: &mut Server, now: Instant, i: u16, datagram: &[u8]) -> Vec<(SocketAddr, Vec<u8>, Frame)> {
        thread_local!(static STORE: std::cell::RefCell<MemoryStore> = Default::default());
        server.handle_datagram(now, SocketId(0), addr(i), datagram);
        STORE.with_borrow_mut(|store| loop {
            let batch: Vec<_> = std::iter::from_fn(|| server.poll_store_request()).collect();
            if batch.is_empty() {
                break;
            }
            for completion in store.execute(batch) {
                server.handle_store_completion(now, completion);
            }
        });
        while server.poll_event().is_some() {}
        std::iter::from_fn(|| server.poll_transmit())
            .map(|t| {
                let frame =
                    Frame::decode(t.plaintext.as_deref().unwrap_or(&t.payload)).expect("the server sends frames");
                (t.destination, t.payload.to_vec(), frame)
            })
            .collect()
    }

    /// Logs user `i` in with a handshake and proves its address (the
    /// keepalive a client sends at once), as a client does.
    fn login(server: &mut Server, now: Instant, i: u16) -> (u64, ChannelEnd) {
        let name = format!("user-{i}");
        let identity = StaticKey::derive(7.into(), &name);
        let login = Frame::Login { request: 1, user: name, host_candidates: Vec::new() }.encode();
        let (hello, datagram) = HelloSent::start(&identity, &server.public_key(), &login, None, u64::from(i).into());
        let welcome =
            exchange(server, now, i, &datagram).into_iter().find(|(to, ..)| *to == addr(i)).expect("a welcome");
        let (payload, finished) = hello.finish(&welcome.1).expect("the welcome authenticates");
        let Ok(Frame::LoginOk { token, .. }) = Frame::decode(&payload) else { panic!("not logged in: {payload:?}") };
        let channel = finished.into_channel(token).expect("a channel");
        let keepalive = Frame::Keepalive { token, profile: Default::default() }.encode();
        exchange(server, now, i, &channel.seal(&keepalive).expect("sealed"));
        (token, channel)
    }

    #[test]
    fn given_many_users_online_then_the_mailbox_waits_only_on_deliveries_in_flight() {
        // Given fifty users online, with nothing to deliver,
        let now = Instant::now();
        let mut server = Server::new(ServerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 3478)), None), now);
        let users: Vec<(u64, ChannelEnd)> = (0..50).map(|i| login(&mut server, now, i)).collect();
        // then the server's next deadline is its periodic sweep, no mailbox timer;
        let sweep = server.poll_timeout().expect("the sweep is always armed");
        assert!(sweep >= now + Duration::from_secs(1), "{:?}", sweep - now);
        // when one sends another a text, it is forwarded at once and the
        // server now waits on that delivery,
        let id = MessageId { conversation: 7, seq: 1 };
        let text = Frame::TextSend { token: users[0].0, id, to: "user-1".to_owned(), sealed: b"hi".to_vec() };
        let out = exchange(&mut server, now, 0, &users[0].1.seal(&text.encode()).expect("sealed"));
        assert!(out.iter().any(|(to, _, f)| *to == addr(1) && matches!(f, Frame::TextDeliver { .. })), "{out:?}");
        assert!(server.poll_timeout().expect("armed") < sweep);
        // and once the recipient acknowledges it, the sender hears
        // "delivered", the recipient that nothing is pending, and the
        // mailbox has nothing left to wait for.
        let ack = Frame::TextDeliverAck { token: users[1].0, from: "user-0".to_owned(), id };
        let out = exchange(&mut server, now, 1, &users[1].1.seal(&ack.encode()).expect("sealed"));
        let frames: Vec<(SocketAddr, Frame)> = out.into_iter().map(|(to, _, f)| (to, f)).collect();
        assert!(frames.contains(&(addr(0), Frame::TextAck { id, status: TextStatus::Delivered })), "{frames:?}");
        assert!(frames.contains(&(addr(1), Frame::InboxStatus { pending: 0 })), "{frames:?}");
        assert_eq!(server.stats().texts_delivered, 1);
        assert_eq!(server.poll_timeout(), Some(sweep));
    }
}

mod seen_ids_model {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use punchline_core::messaging::{MessageId, SeenIds};

    proptest! {
        /// Against a model that remembers everything: within the documented
        /// bounds (few conversations, bounded disorder), an id is new exactly
        /// when it was never inserted before.
        #[test]
        fn an_id_is_new_exactly_once(
            arrivals in proptest::collection::vec((0usize..3, 0u64..4, 1u64..300), 1..2000)
        ) {
            let senders = ["alice", "bob", "carol"];
            let mut seen = SeenIds::new();
            let mut model = BTreeSet::new();
            for (sender, conversation, seq) in arrivals {
                let id = MessageId { conversation, seq };
                let fresh = model.insert((sender, id));
                prop_assert_eq!(seen.insert(senders[sender], id), fresh);
                prop_assert!(seen.contains(senders[sender], id));
            }
        }
    }
}

#[test]
fn given_manual_acknowledgement_then_a_recipient_crash_before_its_ack_repeats_texts_and_never_loses_them() {
    // Given texts stored for bob, whose application acknowledges by itself
    // (ack_on_receipt off),
    let (mut h, alice) = alice_and_absent_bob(7);
    let sent: Vec<(MessageId, String)> =
        (0..20).map(|n| format!("text {n}")).map(|t| (h.send_text(alice, "bob", &t), t)).collect();
    h.run_for(secs(2));
    assert_eq!(acks(&h, alice).len(), 20);
    let manual_bob = |h: &mut Harness| {
        let mut config = h.config("bob");
        config.messaging.ack_on_receipt = false;
        h.add_public_client(config)
    };
    // when a first bob process receives them and dies before acknowledging any,
    let first = manual_bob(&mut h);
    h.run_for(secs(3));
    assert_each_once(&h.texts(first), &sent);
    h.clients[first].dead = true;
    h.run_for(secs(90));
    // then the server still holds every one and a second process gets them all again;
    let second = manual_bob(&mut h);
    h.run_for(secs(3));
    let again = h.texts(second);
    assert_each_once(&again, &sent);
    // when that one acknowledges them as it shows them,
    let now = h.now;
    for (from, id, _) in &again {
        assert!(h.clients[second].client.ack_text(now, from, *id), "{id} awaited the application");
        assert!(!h.clients[second].client.ack_text(now, from, *id), "a second ack of {id} is refused");
    }
    h.run_for(secs(3));
    h.clients[second].dead = true;
    h.run_for(secs(90));
    // then the server has deleted them: a third process gets nothing.
    let third = manual_bob(&mut h);
    h.run_for(secs(3));
    assert!(h.texts(third).is_empty(), "{:?}", h.texts(third));
}
