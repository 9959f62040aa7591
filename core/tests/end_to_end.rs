//! Issue 20's end-to-end guarantees, each a test that fails for the
//! attacker: the server relays and stores only ciphertext (it cannot read a
//! session or a stored text, even with its own key and its whole store), a
//! contact whose key changed gets no session and no text, and a long session
//! moves to new keys without losing a byte.

mod harness;

use std::time::Duration;

use harness::Harness;
use punchline_core::client::{ClientEvent, ConnectFailure};
use punchline_core::messaging::{MessageStore, TextFailure};
use punchline_core::secure::{open_text, StaticKey};
use punchline_core::wire::channel::{self as layout, tag};
use punchline_core::wire::frame::Frame;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn nothing_the_server_relays_or_stores_holds_a_session_or_a_text_in_the_clear() {
    // Given alice and bob online with every direct packet dropped (their
    // session stays on the relay), and carol, who logged in once and left,
    let mut h = Harness::new(1);
    let carol = h.add_public_client(h.config("carol"));
    h.run_for(secs(1));
    h.leave(carol, Duration::from_millis(100));
    h.drop_direct = true;
    let alice = h.add_public_client(h.config("alice"));
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(3));

    // when alice sends bob data on their session, and texts to bob (online)
    // and carol (stored for her),
    h.connect(alice, "bob");
    h.run_for(secs(1));
    h.send(alice, b"session marker 7f3a");
    let to_bob = h.send_text(alice, "bob", "text marker 9c1d");
    let to_carol = h.send_text(alice, "carol", "stored marker 41be");
    h.run_for(secs(3));

    // then bob has the data and the text (the markers arrived intact),
    assert_eq!(h.received(bob), [b"session marker 7f3a".to_vec()]);
    assert_eq!(h.texts(bob), [("alice".to_owned(), to_bob, "text marker 9c1d".to_owned())]);
    // and nothing the server handled holds a marker: every frame it sent,
    // as it had it before sealing it in a channel (relayed session
    // datagrams, delivered texts),
    let markers: [&[u8]; 3] = [b"marker 7f3a", b"marker 9c1d", b"marker 41be"];
    let relayed = h.server_sent.iter().filter(|p| matches!(p.frame(), Some(Frame::Relayed { .. }))).count();
    assert!(relayed > 0, "the session went through the relay");
    for p in &h.server_sent {
        let seen = p.plaintext.as_deref().unwrap_or(&p.payload);
        assert!(markers.iter().all(|m| !contains(seen, m)), "the server handled plaintext: {:?}", p.frame());
        if let Some(Frame::Relayed { payload, .. }) = p.frame() {
            assert!(layout::is_peer_tag(payload[0]), "the relay carries only the session's own datagrams");
        }
    }
    // and what it stores for carol, read with the server's own key too.
    let (stored, _) = h.store.load_queue("carol", 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert!(markers.iter().all(|m| !contains(&stored[0].sealed, m)), "stored in the clear");
    let names = ("alice", "carol", to_carol);
    assert_eq!(open_text(&h.server_config.key, names, &stored[0].sealed), None, "the server's key opens it");

    // When carol comes back, then she reads it, and knows alice sealed it.
    let carol = h.add_public_client(h.config("carol"));
    h.run_for(secs(3));
    assert_eq!(h.texts(carol), [("alice".to_owned(), to_carol, "stored marker 41be".to_owned())]);
}

#[test]
fn a_contact_whose_key_changed_gets_no_session_and_no_text_and_the_change_is_loud() {
    // Given alice, who pinned another key for bob than the one bob holds
    // (bob replaced his identity, or a server substitutes keys),
    let mut h = Harness::new(2);
    let mut config = h.config("alice");
    let old_bob = StaticKey::derive(99.into(), "bob's old key").public();
    config.peer_keys.insert("bob".into(), old_bob);
    let alice = h.add_public_client(config);
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));

    // when alice connects to bob,
    h.connect(alice, "bob");
    h.run_for(secs(1));
    // then the connect fails for that reason, loudly, and no session exists
    // on either side: bob's ended at once (the server ended it for him).
    let changed = h.find(alice, |e| match e {
        ClientEvent::PeerKeyChanged { peer, pinned, .. } => Some((peer.clone(), *pinned)),
        _ => None,
    });
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1, ("bob".to_owned(), old_bob));
    let failed = h.find(alice, |e| match e {
        ClientEvent::ConnectFailed { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(failed.iter().map(|(_, r)| *r).collect::<Vec<_>>(), [ConnectFailure::PeerKeyChanged]);
    assert!(h.find(alice, |e| matches!(e, ClientEvent::SessionOpened { .. }).then_some(())).is_empty());
    let bob_closed = h.find(bob, |e| matches!(e, ClientEvent::SessionClosed { .. }).then_some(()));
    assert_eq!(bob_closed.len(), 1, "bob's side of the refused session ends");
    let sealed_by_alice = h.captured.iter().filter(|(i, p)| *i == alice && p.payload[0] == tag::PEER_SEALED).count();
    assert_eq!(sealed_by_alice, 0);

    // When alice texts bob, then nothing is sealed to the new key.
    let id = h.send_text(alice, "bob", "for the old bob only");
    h.run_for(secs(2));
    let failures = h.find(alice, |e| match e {
        ClientEvent::TextFailed { id, reason } => Some((*id, *reason)),
        _ => None,
    });
    assert_eq!(failures.iter().map(|(_, f)| *f).collect::<Vec<_>>(), [(id, TextFailure::PeerKeyChanged)]);
    assert!(h.texts(bob).is_empty());

    // When bob texts alice, then she does not show it: it was sealed by a
    // key that is not the one she pinned for bob.
    h.send_text(bob, "alice", "trust me, it is bob");
    h.run_for(secs(2));
    assert!(h.texts(alice).is_empty());
}

#[test]
fn a_long_session_moves_to_new_keys_every_two_minutes_and_loses_nothing() {
    // Given alice and bob on a direct session,
    let mut h = Harness::new(3);
    let alice = h.add_public_client(h.config("alice"));
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));
    h.connect(alice, "bob");
    h.run_for(secs(1));
    // when alice sends every 10 s for five minutes,
    let mut sent = Vec::new();
    for n in 0..30u32 {
        let data = n.to_be_bytes().to_vec();
        h.send(alice, &data);
        sent.push(data);
        h.run_for(secs(10));
    }
    // then bob has every byte, once, in order,
    assert_eq!(h.received(bob), sent);
    // and alice's sealed datagrams went out under three keys at least (the
    // counter's top 16 bits name the key's epoch).
    let epochs: std::collections::BTreeSet<u64> = h
        .captured
        .iter()
        .filter(|(i, p)| *i == alice && p.payload[0] == tag::PEER_SEALED)
        .filter_map(|(_, p)| layout::parse_sealed_as(tag::PEER_SEALED, &p.payload).map(|(_, counter, _)| counter >> 48))
        .collect();
    assert!(epochs.len() >= 3 && epochs.contains(&2), "epochs {epochs:?}");
    // and the session never fell back or reopened.
    assert_eq!(h.find(bob, |e| matches!(e, ClientEvent::SessionOpened { .. }).then_some(())).len(), 1);
    assert!(h.find(bob, |e| matches!(e, ClientEvent::SessionClosed { .. }).then_some(())).is_empty());
}
