//! What a run reports: JSON (a public format), a human table and a Mermaid
//! sequence diagram.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Arrow;

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// On a direct path when the run ended.
    Direct,
    /// On the relay, over UDP both ways, when the run ended.
    Relay,
    /// On the relay when the run ended, with either member reaching the
    /// server over TCP (the TCP fallback, issue 21): what a network that
    /// drops UDP leaves.
    RelayTcp,
    /// Never had a usable path, or closed with an error.
    Failed,
}

impl Outcome {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Direct => "direct",
            Outcome::Relay => "relay",
            Outcome::RelayTcp => "relay-tcp",
            Outcome::Failed => "failed",
        }
    }
}

/// One peer's view of its connection's path at the end of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerPath {
    /// On a direct path.
    Direct,
    /// On the relay.
    Relay,
    /// The peer closed the session (or learned it was closed).
    Closed,
    /// The peer never had the session.
    None,
}

impl PeerPath {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            PeerPath::Direct => "direct",
            PeerPath::Relay => "relay",
            PeerPath::Closed => "closed",
            PeerPath::None => "none",
        }
    }
}

/// One `connect` event's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Connection {
    /// The peer that connected.
    pub from: String,
    /// The peer it asked for.
    pub to: String,
    /// How it ended: `direct` only when both peers are on the direct path
    /// at the end of the run.
    pub outcome: Outcome,
    /// The strategy in use at the end, in the connecting peer's session: the
    /// server's choice, or the one chosen again from both measured profiles
    /// (`pending` if never chosen; `null` when no session was made).
    pub strategy: Option<String>,
    /// Simulated ms from the connect event to the first usable path.
    pub connect_ms: Option<f64>,
    /// Simulated ms from the connect event to the first direct path.
    pub direct_ms: Option<f64>,
    /// Times the session fell back to the relay, both peers' fallbacks
    /// together.
    pub fallbacks: u32,
    /// Each peer's view of the path at the end of the run, by peer name.
    pub paths: BTreeMap<String, PeerPath>,
    /// Simulated ms during which one peer was on the direct path and the
    /// other was not (on the relay, or closed), from the moment both had
    /// the session. Every migration adds the flight of one message; a side
    /// that never notices a dead path adds the rest of the run.
    pub disagree_ms: f64,
    /// Datagrams the connecting peer sent during the whole run.
    pub packets_from: u64,
    /// Datagrams the other peer sent during the whole run.
    pub packets_to: u64,
    /// Probes the connecting peer sent.
    pub probes_from: u64,
    /// Probes the other peer sent.
    pub probes_to: u64,
}

impl Connection {
    /// The two views, `from/to` (`direct/relay`), marked `!` when they
    /// differ about the direct path.
    pub fn path_pair(&self) -> String {
        let of = |peer: &str| self.paths.get(peer).copied().unwrap_or(PeerPath::None);
        let (a, b) = (of(&self.from), of(&self.to));
        let mark = if (a == PeerPath::Direct) != (b == PeerPath::Direct) { "!" } else { "" };
        format!("{mark}{}/{}", a.name(), b.name())
    }
}

/// The text messages of a run (`send_text` events), counted by message id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Messages {
    /// `send_text` events the sender's client accepted.
    pub sent: u64,
    /// Of those, acknowledged to the sender (by the server or the peer).
    pub acknowledged: u64,
    /// Shown to their recipient at least once.
    pub delivered: u64,
    /// Times a recipient was shown a message it had already shown (must
    /// stay 0).
    pub duplicated: u64,
    /// Acknowledged but never shown to the recipient by the end of the run
    /// (must stay 0).
    pub lost: u64,
}

/// One peer at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerReport {
    /// The peer's name.
    pub name: String,
    /// Logged in to the server.
    pub logged_in: bool,
    /// How it reaches the server: `udp`, or `tcp` (the TCP fallback).
    pub transport: String,
    /// Packets its access link dropped for a full buffer; left out of the
    /// JSON when there were none (always, on a link without a buffer).
    #[serde(skip_serializing_if = "TailDrops::is_zero")]
    pub tail_drops: TailDrops,
}

/// Packets an access link dropped at the tail of its full interface queue
/// ([`LinkSpec::buffer`](crate::link::LinkSpec::buffer)), each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TailDrops {
    /// Sent by the peer, dropped on its uplink.
    pub up: u64,
    /// Sent to the peer, dropped on its downlink.
    pub down: u64,
}

impl TailDrops {
    /// True when neither direction dropped a packet.
    pub fn is_zero(&self) -> bool {
        self.up == 0 && self.down == 0
    }
}

/// One `send_file` event's transfer, as the sender offered it and the
/// receiver took it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileTransfer {
    /// The sender.
    pub from: String,
    /// The receiver.
    pub to: String,
    /// The file's length in bytes.
    pub size: u64,
    /// Simulated ms from the `send_file` event to the receiver's
    /// `FileCompleted` (`null`: it never completed).
    pub completed_ms: Option<f64>,
    /// Content bytes sent (the size less what the receiver held before)
    /// times 8, over the simulated time from the sender's `FileAccepted` to
    /// the receiver's `FileCompleted`, in Mbit/s (10^6 bit/s); `null` when
    /// it never completed.
    pub goodput_mbps: Option<f64>,
    /// Pieces the sender sent again after a loss, as its `FileProgress`
    /// said last before completion.
    pub retransmitted: u64,
    /// True only when the receiver completed the transfer and every group
    /// it wrote matched the content sent, byte for byte, every group once
    /// at least.
    pub verified: bool,
    /// The file's name.
    pub name: String,
    /// Its BLAKE3 root, in hexadecimal.
    pub root: String,
    /// Simulated ms from the event to the sender's `FileAccepted`.
    pub accepted_ms: Option<f64>,
    /// Bytes the receiver held before (not sent again).
    pub resumed: u64,
    /// Content bytes the receiver wrote that matched the content sent (the
    /// whole `size` once verified; less for a transfer cut short).
    pub received: u64,
    /// The sender's path to the receiver while the transfer was under way,
    /// each change once, from the offer on: `relay`, `direct`.
    pub paths: Vec<PeerPath>,
    /// Why it failed, at the sender or else at the receiver (`null` when it
    /// did not).
    pub failure: Option<String>,
}

/// The TCP connections of a run (the TCP fallback, issue 21), all peers'
/// and the server's together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Streams {
    /// Connections the peers opened (handshake completed).
    pub opened: u64,
    /// Connects that failed (no answer to the SYN, or a RST).
    pub failed: u64,
    /// Connections the server accepted.
    pub accepted: u64,
    /// Segments sent again after a retransmission timeout, both ends.
    pub retransmissions: u64,
    /// Relayed datagrams the server dropped because the connection's write
    /// buffer held more than [`WRITE_SOFT_LIMIT`](crate::engine::WRITE_SOFT_LIMIT)
    /// unacknowledged bytes.
    pub dropped: u64,
    /// Connections the server reset because even signaling did not fit
    /// under [`WRITE_HARD_LIMIT`](crate::engine::WRITE_HARD_LIMIT).
    pub overflowed: u64,
}

/// The report of one run (`punchline-sim run --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The seed the run used.
    pub seed: u64,
    /// A 64-bit fingerprint of the whole trace text, line by line, in hex
    /// (16 digits); empty when the run skipped its trace
    /// ([`crate::engine::Simulation::skip_trace`]).
    pub trace_hash: String,
    /// One per `connect` event, and per `send_file` event that had to open
    /// a session, in the order they started.
    pub connections: Vec<Connection>,
    /// Text message counts.
    pub messages: Messages,
    /// Every peer at the end of the run, in scenario order.
    pub peers: Vec<PeerReport>,
    /// TCP connection counts.
    pub streams: Streams,
    /// One per `send_file` event, in the order they happened; left out of
    /// the JSON when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileTransfer>,
}

impl Report {
    /// The human table.
    pub fn table(&self) -> String {
        let mut out = format!("seed {}  trace {}\n", self.seed, self.trace_hash);
        out.push_str(&format!(
            "{:<12} {:<12} {:<9} {:<11} {:>10} {:>10} {:>9} {:>8} {:>8} {:<14} {:>9}\n",
            "from",
            "to",
            "outcome",
            "strategy",
            "connect",
            "direct",
            "fallbacks",
            "packets",
            "probes",
            "paths",
            "disagree"
        ));
        for c in &self.connections {
            let time = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.0}ms"));
            out.push_str(&format!(
                "{:<12} {:<12} {:<9} {:<11} {:>10} {:>10} {:>9} {:>8} {:>8} {:<14} {:>9}\n",
                c.from,
                c.to,
                c.outcome.name(),
                c.strategy.as_deref().unwrap_or("-"),
                time(c.connect_ms),
                time(c.direct_ms),
                c.fallbacks,
                format!("{}/{}", c.packets_from, c.packets_to),
                format!("{}/{}", c.probes_from, c.probes_to),
                c.path_pair(),
                format!("{:.0}ms", c.disagree_ms),
            ));
        }
        if self.connections.is_empty() {
            out.push_str("(no connect events)\n");
        }
        let m = &self.messages;
        if m.sent > 0 {
            out.push_str(&format!(
                "messages: {} sent, {} acknowledged, {} delivered, {} duplicated, {} lost\n",
                m.sent, m.acknowledged, m.delivered, m.duplicated, m.lost
            ));
        }
        if !self.files.is_empty() {
            out.push_str(&format!(
                "{:<12} {:<12} {:>12} {:>11} {:>13} {:>13} {:<8} {}\n",
                "file from", "to", "size", "completed", "goodput", "retransmitted", "verified", "paths"
            ));
        }
        for f in &self.files {
            let paths: Vec<&str> = f.paths.iter().map(|p| p.name()).collect();
            out.push_str(&format!(
                "{:<12} {:<12} {:>12} {:>11} {:>13} {:>13} {:<8} {}{}\n",
                f.from,
                f.to,
                f.size,
                f.completed_ms.map_or("-".to_string(), |t| format!("{t:.0}ms")),
                f.goodput_mbps.map_or("-".to_string(), |g| format!("{g:.2}Mbit/s")),
                f.retransmitted,
                if f.verified { "yes" } else { "NO" },
                if paths.is_empty() { "-".to_string() } else { paths.join(">") },
                f.failure.as_ref().map_or(String::new(), |why| format!(" ({why})")),
            ));
        }
        let dropping: Vec<String> = self
            .peers
            .iter()
            .filter(|p| !p.tail_drops.is_zero())
            .map(|p| format!("{} {} up, {} down", p.name, p.tail_drops.up, p.tail_drops.down))
            .collect();
        if !dropping.is_empty() {
            out.push_str(&format!("tail drops (full link buffers): {}\n", dropping.join("; ")));
        }
        let s = &self.streams;
        if s.opened + s.failed + s.accepted > 0 {
            let over_tcp: Vec<&str> =
                self.peers.iter().filter(|p| p.transport == "tcp").map(|p| p.name.as_str()).collect();
            out.push_str(&format!(
                "tcp: {} opened, {} failed, {} accepted, {} retransmissions, {} relayed datagrams dropped; on tcp at \
                 the end: {}\n",
                s.opened,
                s.failed,
                s.accepted,
                s.retransmissions,
                s.dropped,
                if over_tcp.is_empty() { "none".to_string() } else { over_tcp.join(", ") }
            ));
        }
        out
    }
}

/// A Mermaid `sequenceDiagram` of the datagrams of a run.
pub fn mermaid(arrows: &[Arrow], participants: &[String]) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for p in participants {
        out.push_str(&format!("    participant {}\n", sanitize(p)));
    }
    for a in arrows {
        let to = if participants.contains(&a.to) { sanitize(&a.to) } else { sanitize(&format!("net {}", a.to)) };
        out.push_str(&format!(
            "    {}->>{}: {:.1}ms {}\n",
            sanitize(&a.from),
            to,
            a.at.as_secs_f64() * 1000.0,
            a.label.replace([';', '#', ':'], " ")
        ));
    }
    out
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}
