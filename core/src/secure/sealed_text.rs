//! Texts sealed to their recipient (issue 20), for the trip through the
//! server and its store: Noise X (§7.4), one message from the sender, whose
//! static key travels encrypted inside it, to the recipient's static key.
//! The server keeps and forwards the sealed bytes with the routing it needs
//! (sender, recipient, id) and can read none of the text; the recipient
//! learns which key sealed it and checks that against the sender's.
//!
//! The prologue binds the sender's and the recipient's names and the
//! message id, so a sealed text cannot be replayed under another id or
//! passed off as from another name. X gives no forward secrecy against a
//! later theft of the recipient's key (there is no recipient ephemeral), as
//! with Signal's sealed sender; `SECURITY.md` says so.

use super::keys::{PublicKey, StaticKey};
use super::noise::{x_recipient, x_sender, X_OVERHEAD};
use crate::rng::Rng;
use crate::wire::frame::MessageId;

const PROLOGUE: &[u8] = b"punchline/1 offline-text";

fn prologue(from: &str, to: &str, id: MessageId) -> Vec<u8> {
    let mut p = PROLOGUE.to_vec();
    for name in [from, to] {
        p.push(name.len() as u8);
        p.extend_from_slice(name.as_bytes());
    }
    p.extend_from_slice(&id.conversation.to_le_bytes());
    p.extend_from_slice(&id.seq.to_le_bytes());
    p
}

/// `text` from `from` (as `identity`) to `to` (whose key is `recipient`),
/// sealed; [`X_OVERHEAD`] bytes longer than the text.
pub fn seal_text(
    identity: &StaticKey,
    recipient: &PublicKey,
    (from, to, id): (&str, &str, MessageId),
    text: &str,
    seed: crate::Seed,
) -> Vec<u8> {
    seal_text_with(identity, recipient, (from, to, id), text, Rng::new(seed))
}

pub(crate) fn seal_text_with(
    identity: &StaticKey,
    recipient: &PublicKey,
    (from, to, id): (&str, &str, MessageId),
    text: &str,
    rng: Rng,
) -> Vec<u8> {
    let mut handshake = x_sender(identity, recipient, &prologue(from, to, id), rng);
    let mut sealed = vec![0; text.len() + X_OVERHEAD];
    let len = handshake.0.write_message(text.as_bytes(), &mut sealed).expect("a text within MAX_TEXT fits a message");
    sealed.truncate(len);
    sealed
}

/// The text sealed in `sealed` for `identity`, and the key that sealed it;
/// `None` when it is not for this key, not for these names and id, altered,
/// or not UTF-8.
pub fn open_text(
    identity: &StaticKey,
    (from, to, id): (&str, &str, MessageId),
    sealed: &[u8],
) -> Option<(PublicKey, String)> {
    let mut handshake = x_recipient(identity, &prologue(from, to, id));
    let mut text = vec![0; sealed.len()];
    let len = handshake.0.read_message(sealed, &mut text).ok()?;
    text.truncate(len);
    let sender = handshake.remote_static()?;
    Some((sender, String::from_utf8(text).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seed;

    const ID: MessageId = MessageId { conversation: 7, seq: 1 };

    #[test]
    fn only_the_recipient_opens_and_learns_the_senders_key() {
        let (alice, bob, eve) = (
            StaticKey::derive(Seed::from(1), "alice"),
            StaticKey::derive(Seed::from(1), "bob"),
            StaticKey::derive(Seed::from(1), "eve"),
        );
        let sealed = seal_text(&alice, &bob.public(), ("alice", "bob", ID), "meet at noon", Seed::from(2));
        assert!(!sealed.windows(4).any(|w| w == b"noon"), "no plaintext in the sealed bytes");
        assert_eq!(sealed.len(), "meet at noon".len() + X_OVERHEAD);
        let opened = open_text(&bob, ("alice", "bob", ID), &sealed);
        assert_eq!(opened, Some((alice.public(), "meet at noon".to_owned())));
        assert_eq!(open_text(&eve, ("alice", "bob", ID), &sealed), None, "another key");
        // Bound to the names and the id.
        assert_eq!(open_text(&bob, ("mallory", "bob", ID), &sealed), None);
        assert_eq!(open_text(&bob, ("alice", "bob", MessageId { conversation: 7, seq: 2 }), &sealed), None);
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert_eq!(open_text(&bob, ("alice", "bob", ID), &flipped), None);
    }
}
