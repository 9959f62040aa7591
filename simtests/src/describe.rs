//! One-line descriptions of datagrams and client events for traces.

use punchline_core::client::ClientEvent;
use punchline_core::wire::frame::{Frame, SessionBody, StreamMessage};
use punchline_core::wire::{self, stun};

/// A short, stable description of a datagram.
pub fn datagram(payload: &[u8]) -> String {
    match wire::classify(payload) {
        wire::Kind::Stun => match stun::Message::decode(payload) {
            Ok(m) => format!("STUN {:?}", m.class),
            Err(_) => "STUN (malformed)".into(),
        },
        wire::Kind::Punchline => match Frame::decode(payload) {
            Ok(f) => frame(&f),
            Err(e) => format!("malformed ({e})"),
        },
        wire::Kind::Unknown => "unknown datagram".into(),
    }
}

/// A short description of a frame.
pub fn frame(f: &Frame) -> String {
    match f {
        Frame::Login { user, .. } => format!("Login {user}"),
        Frame::LoginOk { reflexive, .. } => format!("LoginOk reflexive={reflexive}"),
        Frame::Keepalive { .. } => "Keepalive".into(),
        Frame::KeepaliveAck { reflexive } => format!("KeepaliveAck reflexive={reflexive}"),
        Frame::Profile { .. } => "Profile".into(),
        Frame::Lookup { user, .. } => format!("Lookup {user}"),
        Frame::LookupReply { online, .. } => format!("LookupReply online={online}"),
        Frame::Connect { peer, .. } => format!("Connect {peer}"),
        Frame::Offer { session, peer, strategy, .. } => {
            format!("Offer session={session} peer={peer} strategy={}", strategy.name())
        }
        Frame::OfferAck { .. } => "OfferAck".into(),
        Frame::Relay { payload, .. } => format!("Relay[{}]", datagram(payload)),
        Frame::Relayed { payload, .. } => format!("Relayed[{}]", datagram(payload)),
        Frame::SessionEnded { reason, .. } => format!("SessionEnded {reason:?}"),
        Frame::Discover { answer_from, .. } => format!("Discover from={answer_from:?}"),
        Frame::DiscoverReply { reflexive, .. } => format!("DiscoverReply reflexive={reflexive}"),
        Frame::Logout { .. } => "Logout".into(),
        Frame::Error { code, .. } => format!("Error {code:?}"),
        Frame::TextSend { id, to, text, .. } => format!("TextSend {id} to={to} len={}", text.len()),
        Frame::TextAck { id, status } => format!("TextAck {id} {status:?}"),
        Frame::TextRejected { id, reason } => format!("TextRejected {id} {reason:?}"),
        Frame::TextDeliver { from, id, text } => format!("TextDeliver {id} from={from} len={}", text.len()),
        Frame::TextDeliverAck { from, id, .. } => format!("TextDeliverAck {id} from={from}"),
        Frame::InboxSync { .. } => "InboxSync".into(),
        Frame::InboxStatus { pending } => format!("InboxStatus pending={pending}"),
        Frame::Opener => "Opener".into(),
        Frame::Probe { attempt, .. } => format!("Probe attempt={attempt}"),
        Frame::ProbeAck { attempt, observed, .. } => format!("ProbeAck attempt={attempt} observed={observed}"),
        Frame::Session { body, .. } => match body {
            SessionBody::Stream { seq, message } => match message {
                StreamMessage::App(data) => format!("Data seq={seq} len={}", data.len()),
                StreamMessage::Candidates { attempt, candidates } => {
                    let list: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
                    format!("Candidates seq={seq} attempt={attempt} [{}]", list.join(" "))
                }
                StreamMessage::OpenersOut { attempt } => format!("OpenersOut seq={seq} attempt={attempt}"),
                StreamMessage::Prediction { attempt, base, delta, window } => {
                    format!("Prediction seq={seq} attempt={attempt} base={base} delta={delta} window={window}")
                }
                StreamMessage::PoolOpen { attempt, ip, sockets } => {
                    format!("PoolOpen seq={seq} attempt={attempt} ip={ip} sockets={sockets}")
                }
                StreamMessage::Text { id, text } => format!("Text seq={seq} id={id} len={}", text.len()),
                StreamMessage::TextAck { id } => format!("TextAck seq={seq} id={id}"),
            },
            SessionBody::Ack { next, .. } => format!("Ack next={next}"),
            SessionBody::Close { reason } => format!("Close {reason:?}"),
        },
    }
}

/// A short description of a client event.
pub fn event(e: &ClientEvent) -> String {
    match e {
        ClientEvent::LoggedIn { reflexive } => format!("logged in as {reflexive}"),
        ClientEvent::LoginFailed { code } => format!("login failed: {code:?}"),
        ClientEvent::ServerUnreachable => "server unreachable".into(),
        ClientEvent::ReflexiveChanged { old, new } => format!("reflexive address changed {old} -> {new}"),
        ClientEvent::NatProfile(p) => format!(
            "NAT profile mapping={} filtering={} ports={} public={}",
            p.mapping.map_or("?".into(), |m| format!("{m:?}")),
            p.filtering.map_or("?".into(), |f| format!("{f:?}")),
            p.ports.map_or("?".into(), |x| format!("{x:?}")),
            p.public
        ),
        ClientEvent::LookupResult { user, online } => format!("lookup {user}: online={online}"),
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
        ClientEvent::TextReceived { from, id, text } => format!("text {id} from {from}: {} bytes", text.len()),
        ClientEvent::TextAcked { id, status, path } => format!("text {id} acknowledged: {status:?} via {path:?}"),
        ClientEvent::TextFailed { id, reason } => format!("text {id} failed: {reason:?}"),
        ClientEvent::InboxEmpty => "inbox empty".into(),
    }
}
