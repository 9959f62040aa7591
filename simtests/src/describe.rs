//! One-line descriptions of datagrams and client events for traces.

use std::fmt::{self, Write};

use punchline_core::client::ClientEvent;
use punchline_core::wire::frame::{Frame, SessionBody, StreamMessage};
use punchline_core::wire::{self, channel as layout, stun};

use crate::addr::Addr;

/// A short, stable description of a datagram.
pub fn datagram(payload: &[u8]) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_datagram(&mut out, payload);
    out
}

/// Writes [`datagram`]'s description into `out`, without building a string
/// of its own (the engine writes one for every datagram sent).
pub fn write_datagram<W: Write>(out: &mut W, payload: &[u8]) -> fmt::Result {
    match wire::classify(payload) {
        wire::Kind::Stun => match stun::Message::decode(payload) {
            Ok(m) => write!(out, "STUN {:?}", m.class),
            Err(_) => out.write_str("STUN (malformed)"),
        },
        // A session's datagrams, end to end: what is inside, only the two
        // members can read (a client's own sends are shown by their
        // plaintext, see [`transmit`]).
        wire::Kind::Punchline if payload[0] == layout::tag::PEER_SEALED => out.write_str("sealed"),
        wire::Kind::Punchline if payload[0] == layout::tag::PEER_HELLO => out.write_str("PeerHello"),
        wire::Kind::Punchline if payload[0] == layout::tag::PEER_WELCOME => out.write_str("PeerWelcome"),
        wire::Kind::Punchline => match Frame::decode(payload) {
            Ok(f) => write_frame(out, &f),
            Err(e) => write!(out, "malformed ({e})"),
        },
        wire::Kind::Unknown => out.write_str("unknown datagram"),
    }
}

/// A short description of a datagram a machine sent: a datagram of the
/// client–server channel is shown by the frame inside (`plaintext`,
/// [`Transmit::plaintext`](punchline_core::Transmit::plaintext)): a sealed
/// frame as that frame, the handshake as `Hello[...]` and `Welcome[...]`.
pub fn transmit(payload: &[u8], plaintext: Option<&[u8]>) -> String {
    let mut out = String::new();
    let _ = write_transmit(&mut out, payload, plaintext);
    out
}

/// Writes [`transmit`]'s description into `out`.
pub fn write_transmit<W: Write>(out: &mut W, payload: &[u8], plaintext: Option<&[u8]>) -> fmt::Result {
    let inner = |out: &mut W| match plaintext {
        Some(plain) => write_datagram(out, plain),
        None => out.write_str("?"),
    };
    match payload.first().copied() {
        Some(layout::tag::SEALED | layout::tag::PEER_SEALED) => inner(out),
        Some(layout::tag::HELLO) => {
            out.write_str("Hello[")?;
            inner(out)?;
            out.write_str("]")
        }
        Some(layout::tag::WELCOME) => {
            out.write_str("Welcome[")?;
            inner(out)?;
            out.write_str("]")
        }
        Some(layout::tag::KEY_REQUEST) => out.write_str("KeyRequest"),
        Some(layout::tag::KEY_REPLY) => out.write_str("KeyReply"),
        Some(layout::tag::COOKIE_REPLY) => out.write_str("CookieReply"),
        _ => write_datagram(out, payload),
    }
}

/// Writes the description of stream bytes a machine wrote to a TCP
/// connection ([`Transmit::payload`](punchline_core::Transmit::payload) for
/// a connection): the datagram inside its framing
/// ([`wire::stream`]), as [`write_transmit`]
/// describes it.
pub fn write_stream_write<W: Write>(out: &mut W, framed: &[u8], plaintext: Option<&[u8]>) -> fmt::Result {
    // A Punchline unit sits behind a two-byte header whose first byte has
    // the top bit set; a STUN message is framed by its own header.
    let datagram = match framed.first() {
        Some(first) if first & 0x80 != 0 && framed.len() > 2 => &framed[2..],
        _ => framed,
    };
    write_transmit(out, datagram, plaintext)
}

/// A short description of a frame.
pub fn frame(f: &Frame) -> String {
    let mut out = String::new();
    let _ = write_frame(&mut out, f);
    out
}

/// Writes [`frame`]'s description into `out`.
pub fn write_frame<W: Write>(out: &mut W, f: &Frame) -> fmt::Result {
    match f {
        Frame::Login { user, .. } => write!(out, "Login {user}"),
        Frame::LoginOk { reflexive, .. } => write!(out, "LoginOk reflexive={}", Addr(*reflexive)),
        Frame::Keepalive { .. } => out.write_str("Keepalive"),
        Frame::KeepaliveAck { reflexive } => write!(out, "KeepaliveAck reflexive={}", Addr(*reflexive)),
        Frame::Profile { .. } => out.write_str("Profile"),
        Frame::Lookup { user, .. } => write!(out, "Lookup {user}"),
        Frame::LookupReply { online, .. } => write!(out, "LookupReply online={online}"),
        Frame::Connect { peer, .. } => write!(out, "Connect {peer}"),
        Frame::Offer { session, peer, strategy, .. } => {
            write!(out, "Offer session={session} peer={peer} strategy={}", strategy.name())
        }
        Frame::OfferAck { .. } => out.write_str("OfferAck"),
        Frame::Leave { .. } => out.write_str("Leave"),
        Frame::Relay { payload, .. } => {
            out.write_str("Relay[")?;
            write_datagram(out, payload)?;
            out.write_str("]")
        }
        Frame::Relayed { payload, .. } => {
            out.write_str("Relayed[")?;
            write_datagram(out, payload)?;
            out.write_str("]")
        }
        Frame::SessionEnded { reason, .. } => write!(out, "SessionEnded {reason:?}"),
        Frame::Discover { answer_from, .. } => write!(out, "Discover from={answer_from:?}"),
        Frame::DiscoverReply { reflexive, .. } => write!(out, "DiscoverReply reflexive={}", Addr(*reflexive)),
        Frame::Logout { .. } => out.write_str("Logout"),
        Frame::Error { code, .. } => write!(out, "Error {code:?}"),
        Frame::TextSend { id, to, sealed, .. } => write!(out, "TextSend {id} to={to} sealed={}", sealed.len()),
        Frame::TextAck { id, status } => write!(out, "TextAck {id} {status:?}"),
        Frame::TextRejected { id, reason } => write!(out, "TextRejected {id} {reason:?}"),
        Frame::TextDeliver { from, id, sealed } => write!(out, "TextDeliver {id} from={from} sealed={}", sealed.len()),
        Frame::TextDeliverAck { from, id, .. } => write!(out, "TextDeliverAck {id} from={from}"),
        Frame::InboxSync { .. } => out.write_str("InboxSync"),
        Frame::InboxStatus { pending } => write!(out, "InboxStatus pending={pending}"),
        Frame::Opener { .. } => out.write_str("Opener"),
        Frame::Probe { attempt, .. } => write!(out, "Probe attempt={attempt}"),
        Frame::ProbeAck { attempt, observed, .. } => {
            write!(out, "ProbeAck attempt={attempt} observed={}", Addr(*observed))
        }
        Frame::Session { body, .. } => match body {
            SessionBody::Stream { seq, message } => match message {
                StreamMessage::App(data) => write!(out, "Data seq={seq} len={}", data.len()),
                StreamMessage::Candidates { attempt, candidates } => {
                    write!(out, "Candidates seq={seq} attempt={attempt} [")?;
                    for (i, c) in candidates.iter().enumerate() {
                        if i > 0 {
                            out.write_str(" ")?;
                        }
                        Addr(*c).write_to(out)?;
                    }
                    out.write_str("]")
                }
                StreamMessage::OpenersOut { attempt } => write!(out, "OpenersOut seq={seq} attempt={attempt}"),
                StreamMessage::Prediction { attempt, base, delta, window } => {
                    write!(out, "Prediction seq={seq} attempt={attempt} base={base} delta={delta} window={window}")
                }
                StreamMessage::PoolOpen { attempt, ip, sockets } => {
                    write!(out, "PoolOpen seq={seq} attempt={attempt} ip={ip} sockets={sockets}")
                }
                StreamMessage::Text { id, text } => write!(out, "Text seq={seq} id={id} len={}", text.len()),
                StreamMessage::TextAck { id } => write!(out, "TextAck seq={seq} id={id}"),
                StreamMessage::Profile { profile } => write!(out, "Profile seq={seq} {}", profile_text(profile)),
                StreamMessage::Strategy { attempt, strategy } => {
                    write!(out, "Strategy seq={seq} attempt={attempt} {}", strategy.name())
                }
                StreamMessage::FileOffer { transfer, name, size, root } => {
                    write!(out, "FileOffer seq={seq} {transfer} {name:?} size={size} root={}", short_hash(root))
                }
                StreamMessage::FileAccept { transfer, credit, have } => {
                    write!(out, "FileAccept seq={seq} {transfer} credit={credit} have=")?;
                    write_ranges(out, have.iter().copied(), "..")
                }
                StreamMessage::FileRefuse { transfer, reason } => {
                    write!(out, "FileRefuse seq={seq} {transfer} {reason:?}")
                }
                StreamMessage::FileAbort { transfer, mine, reason } => {
                    write!(out, "FileAbort seq={seq} {transfer} mine={mine} {reason:?}")
                }
                StreamMessage::FileDone { transfer } => write!(out, "FileDone seq={seq} {transfer}"),
            },
            SessionBody::Ack { next, .. } => write!(out, "Ack next={next}"),
            SessionBody::Close { reason } => write!(out, "Close {reason:?}"),
            SessionBody::Ping { nonce } => write!(out, "Ping nonce={nonce}"),
            SessionBody::Pong { nonce } => write!(out, "Pong nonce={nonce}"),
            SessionBody::FileData { pn, transfer, piece, data, .. } => {
                write!(out, "file {transfer} piece {piece} pn {pn} ({} B)", data.len())
            }
            SessionBody::FileAck { ranges, delay_us, credits } => {
                out.write_str("FileAck ")?;
                // Inclusive ranges, largest first, as on the wire.
                write_ranges(out, ranges.iter().copied(), "-")?;
                write!(out, " delay={delay_us}us credits=[")?;
                for (i, (transfer, credit)) in credits.iter().enumerate() {
                    if i > 0 {
                        out.write_str(" ")?;
                    }
                    write!(out, "{transfer}:{credit}")?;
                }
                out.write_str("]")
            }
        },
    }
}

/// A short description of a client event.
pub fn event(e: &ClientEvent) -> String {
    match e {
        ClientEvent::LoggedIn { reflexive } => format!("logged in as {reflexive}"),
        ClientEvent::LoginFailed { code } => format!("login failed: {code:?}"),
        ClientEvent::ServerKeyLearned { key } => format!("pins the server key {key}"),
        ClientEvent::ServerKeyChanged { pinned, offered } => {
            format!("server key changed: pinned {pinned}, offered {offered}")
        }
        ClientEvent::PeerKeyLearned { peer, key } => format!("pins {peer}'s key {key}"),
        ClientEvent::PeerKeyChanged { peer, pinned, offered } => {
            format!("{peer}'s key changed: pinned {pinned}, offered {offered}")
        }
        ClientEvent::ServerUnreachable => "server unreachable".into(),
        ClientEvent::ReflexiveChanged { old, new } => format!("reflexive address changed {old} -> {new}"),
        ClientEvent::NatProfile(p) => format!("NAT profile {}", profile_text(p)),
        ClientEvent::StrategyChanged { session, strategy } => {
            format!("session {session}: strategy chosen: {}", strategy.name())
        }
        ClientEvent::LookupResult { user, online, .. } => format!("lookup {user}: online={online}"),
        ClientEvent::SessionOpened { session, peer, initiator, strategy } => format!(
            "session {session} with {peer} opened on relay ({}, strategy {})",
            if *initiator { "initiator" } else { "responder" },
            strategy.name()
        ),
        ClientEvent::PunchStarted { session, attempt } => format!("session {session}: probing, attempt {attempt}"),
        ClientEvent::PunchFailed { session, attempt, retry_in } => match retry_in {
            Some(d) => format!("session {session}: attempt {attempt} failed, retry in {d:?}"),
            None => format!("session {session}: attempt {attempt} failed, giving up on direct"),
        },
        ClientEvent::PathDirect { session, socket, remote } => {
            format!("session {session}: path direct via socket {} to {remote}", socket.0)
        }
        ClientEvent::PathFellBack { session } => format!("session {session}: fell back to relay"),
        ClientEvent::DataReceived { session, data } => format!("session {session}: received {} bytes", data.len()),
        ClientEvent::SessionClosed { session, reason } => format!("session {session} closed: {reason:?}"),
        ClientEvent::ConnectFailed { peer, reason } => format!("connect to {peer} failed: {reason:?}"),
        ClientEvent::OpenSockets { count, .. } => format!("asks for {count} socket(s)"),
        ClientEvent::ReleaseSocket { socket } => format!("releases socket {}", socket.0),
        ClientEvent::OpenStream { to, .. } => format!("asks for a TCP connection to {to}"),
        ClientEvent::CloseStream { conn } => format!("closes TCP connection {}", conn.0),
        ClientEvent::TransportChanged { transport } => format!("reaches the server over {}", transport.name()),
        ClientEvent::RelayTransportChanged { session, transport } => {
            format!("session {session}: the relay leg rides {}", transport.name())
        }
        ClientEvent::TextReceived { from, id, text } => format!("text {id} from {from}: {} bytes", text.len()),
        ClientEvent::TextAcked { id, status, path } => format!("text {id} acknowledged: {status:?} via {path:?}"),
        ClientEvent::TextFailed { id, reason } => format!("text {id} failed: {reason:?}"),
        ClientEvent::InboxEmpty => "inbox empty".into(),
        ClientEvent::FileOffered { file, session, peer, name, size, root } => {
            format!("session {session}: {peer} offers {file} {name:?} ({size} B, root {})", short_hash(root))
        }
        ClientEvent::FileAccepted { file, resumed } => format!("{file} accepted (resumed {resumed} B)"),
        ClientEvent::FileRead { file, offset, len } => format!("{file}: read {len} B at {offset}"),
        ClientEvent::FileWrite { file, offset, data } => format!("{file}: write {} B at {offset}", data.len()),
        ClientEvent::FileCompleted { file, direction, size, root } => {
            format!("{file} completed ({direction:?}, {size} B, root {})", short_hash(root))
        }
        ClientEvent::FileFailed { file, failure } => format!("{file} failed: {failure}"),
    }
}

/// The first four bytes of a BLAKE3 hash in hexadecimal: enough to tell
/// the files of one trace apart.
fn short_hash(hash: &[u8; 32]) -> String {
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `[a<sep>b c<sep>d]`, a pair's two ends joined by `sep`.
fn write_ranges<W: Write>(out: &mut W, ranges: impl Iterator<Item = (u64, u64)>, sep: &str) -> fmt::Result {
    out.write_str("[")?;
    for (i, (a, b)) in ranges.enumerate() {
        if i > 0 {
            out.write_str(" ")?;
        }
        write!(out, "{a}{sep}{b}")?;
    }
    out.write_str("]")
}

fn profile_text(p: &punchline_core::nat::NatProfile) -> String {
    format!(
        "mapping={} filtering={} ports={} public={}",
        p.mapping.map_or("?".into(), |m| format!("{m:?}")),
        p.filtering.map_or("?".into(), |f| format!("{f:?}")),
        p.ports.map_or("?".into(), |x| format!("{x:?}")),
        p.public
    )
}
