//! Scenario files: the TOML format of DESIGN §4, parsed strictly.
//!
//! Every table rejects unknown fields, every value is checked, and every
//! cross-reference (a peer behind a NAT, an event naming a peer, a NAT behind
//! another) is resolved before anything runs. An error is one line naming the
//! file, the line and the field:
//!
//! ```text
//! scenarios/x.toml:12: field `nat[0].preset`: unknown preset "cone"; expected one of open, full-cone, ...
//! ```
//!
//! Beyond DESIGN §4, a `link` also takes `loss_burst` (mean loss burst length
//! in packets), `reorder` (probability) and `buffer` (the bytes its interface
//! queue holds before it drops at the tail, [`LinkSpec::buffer`]: `65536`,
//! `"64KiB"`, `"1.5MB"`, or `"20ms"` for that long at the link's
//! `bandwidth`, which a buffer requires), and a `nat` takes
//! `inbound_refreshes`, `blocks_udp` and `tcp_timeout` overrides, mirroring
//! [`NatSpec`]. Events `block_udp = true` and `unblock_udp = true` act on a
//! peer's host (`peer = NAME`) or on a NAT (`nat = NAME`).
//! An event `send_file = { to = NAME, size = "8MiB" }` (optional `name`,
//! default `"file.bin"`; `size` in bytes, `40960`, or with a unit as
//! [`parse_size`] reads it) has the peer offer a file whose content the run's
//! seed generates, opening a session first when it has none with `to`, as
//! `connect` does; the receiver accepts every offer and checks every group it
//! writes against the same generator (`engine::files`; the report's
//! `files`).
//! A peer's `config` is kept as a raw table with the line of each key, so the
//! engine applies it to the client config and reports unknown names with
//! [`Scenario::config_error`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use punchline_core::nat::{FilteringBehavior, MappingBehavior};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::duration::{format_duration, parse_bandwidth, parse_duration, parse_size, UnitError, SIZE_UNIT_NAMES};
use crate::link::LinkSpec;
use crate::nat::{parse_filtering, parse_mapping, NatSpec, PortPolicy, Preset, Unsolicited};

/// A parsed and validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file name given to the parser, for messages.
    pub file: String,
    /// Seed for everything random in the run; the command line may override.
    pub seed: Option<u64>,
    /// Simulated time to run.
    pub duration: Duration,
    /// Routers between any two public addresses (default 8).
    pub internet_hops: u8,
    /// The server's addresses.
    pub server: ServerSpec,
    /// NAT devices, in file order.
    pub nats: Vec<NatDecl>,
    /// Peers, in file order.
    pub peers: Vec<PeerSpec>,
    /// Scheduled actions, sorted by time; ties keep file order.
    pub events: Vec<Event>,
}

/// Where the server listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// Primary address.
    pub addr: SocketAddr,
    /// Alternate address for NAT behaviour discovery.
    pub alt_addr: Option<SocketAddr>,
    /// How long the server's store takes to commit a batch of requests
    /// (`store_latency`, default 0: every request completes in the instant
    /// it is made). Requests made while a commit is in flight form the next
    /// batch, as a group-committing store does.
    pub store_latency: Duration,
}

/// A `[[nat]]` table: a preset and the fields it overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatDecl {
    /// Unique name.
    pub name: String,
    /// Public addresses, at least one.
    pub public_ips: Vec<Ipv4Addr>,
    /// The preset the overrides apply to.
    pub preset: Preset,
    /// Fields set explicitly in the file.
    pub overrides: NatOverrides,
    /// The NAT this one sits behind.
    pub behind: Option<String>,
    /// Line of the table in the file.
    pub line: usize,
}

/// Preset fields a `[[nat]]` table overrides; `None` keeps the preset's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatOverrides {
    /// `mapping`.
    pub mapping: Option<MappingBehavior>,
    /// `filtering`.
    pub filtering: Option<FilteringBehavior>,
    /// `ports` and `port_delta`.
    pub ports: Option<PortPolicy>,
    /// `port_range`.
    pub port_range: Option<(u16, u16)>,
    /// `timeout`.
    pub timeout: Option<Duration>,
    /// `hairpin`.
    pub hairpin: Option<bool>,
    /// `unsolicited`.
    pub unsolicited: Option<Unsolicited>,
    /// `inbound_refreshes`.
    pub inbound_refreshes: Option<bool>,
    /// `blocks_udp`.
    pub blocks_udp: Option<bool>,
    /// `tcp_timeout`.
    pub tcp_timeout: Option<Duration>,
    /// `background_flows`.
    pub background_flows: Option<u32>,
}

impl NatDecl {
    /// The device: the preset's spec with the overrides applied.
    pub fn spec(&self) -> NatSpec {
        let mut spec = self.preset.spec(self.name.clone(), self.public_ips.clone());
        let o = &self.overrides;
        spec.mapping = o.mapping.unwrap_or(spec.mapping);
        spec.filtering = o.filtering.unwrap_or(spec.filtering);
        spec.ports = o.ports.unwrap_or(spec.ports);
        spec.port_range = o.port_range.unwrap_or(spec.port_range);
        spec.timeout = o.timeout.unwrap_or(spec.timeout);
        spec.hairpin = o.hairpin.unwrap_or(spec.hairpin);
        spec.unsolicited = o.unsolicited.unwrap_or(spec.unsolicited);
        spec.inbound_refreshes = o.inbound_refreshes.unwrap_or(spec.inbound_refreshes);
        spec.blocks_udp = o.blocks_udp.unwrap_or(spec.blocks_udp);
        spec.tcp_timeout = o.tcp_timeout.unwrap_or(spec.tcp_timeout);
        spec.background_flows = o.background_flows.unwrap_or(spec.background_flows);
        spec.behind = self.behind.clone();
        spec
    }
}

/// A `[[peer]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSpec {
    /// Unique name (the user id).
    pub name: String,
    /// Host address; ports are chosen by the machine.
    pub addr: IpAddr,
    /// The NAT in front of the peer; `None` is a host on the public side.
    pub behind: Option<String>,
    /// The access link (an ideal link when omitted).
    pub link: LinkSpec,
    /// Client settings, by their names in the core's client config.
    pub config: ClientConfig,
    /// Line of the table in the file.
    pub line: usize,
}

/// A peer's raw `config` table, with lines for error messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientConfig {
    /// The settings as written.
    pub values: toml::Table,
    /// Line of `config` (0 when absent).
    pub line: usize,
    /// Line of each setting's name.
    pub key_lines: BTreeMap<String, usize>,
}

/// A scheduled action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it happens, from the start of the run.
    pub at: Duration,
    /// What happens.
    pub action: Action,
    /// Line of the event in the file.
    pub line: usize,
}

/// The one thing an event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `peer` asks the server for a session with `to`.
    Connect { peer: String, to: String },
    /// `peer` closes its session with `from`.
    Disconnect { peer: String, from: String },
    /// `peer` sends a text message.
    SendText { peer: String, to: String, text: String },
    /// `peer` offers `to` a file of `size` bytes named `name`, its content
    /// generated from the run's seed (see `engine` for how), opening a
    /// session first when there is none.
    SendFile { peer: String, to: String, name: String, size: u64 },
    /// `peer`'s link is cut both ways.
    Partition { peer: String },
    /// `peer`'s link is restored.
    Heal { peer: String },
    /// The NAT loses all its state.
    NatReboot { nat: String },
    /// `peer` moves behind another NAT (keeping its host address).
    MoveTo { peer: String, nat: String },
    /// The server's link is cut: every datagram to or from any of its
    /// addresses (primary, alternate and their crossings) is dropped. The
    /// server itself keeps running, timers included.
    ServerDown,
    /// The server's link is restored.
    ServerUp,
    /// UDP is dropped (TCP passes): every UDP datagram to and from a peer's
    /// host, or every one crossing a NAT (the TCP fallback, issue 21).
    BlockUdp { target: Target },
    /// UDP passes again.
    UnblockUdp { target: Target },
    /// The server crashes and starts again at once: a new machine with the
    /// same config, so every login, session and relay channel is forgotten,
    /// while its store (the offline texts) is kept. See
    /// `engine::network` for what happens to store requests in flight.
    ServerRestart,
}

/// What a `block_udp` or `unblock_udp` event acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A peer's host: its UDP both ways, whatever network it is in.
    Peer(String),
    /// A NAT: the UDP crossing it, both ways, for every host behind it.
    Nat(String),
}

/// Why a scenario file was rejected; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file name.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{file}:{line}: invalid TOML: {message}")]
    Syntax {
        /// The file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A field is unknown, missing, or has an invalid value.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted path, e.g. `nat[0].preset`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Reads and parses the scenario at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Scenario::from_toml_str(&text, &file),
            Err(source) => Err(ScenarioError::Read { file, source }),
        }
    }

    /// Parses scenario `text`; `file` names it in error messages.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let tree = toml::from_str::<SpannedNode>(text).map_err(|e| ScenarioError::Syntax {
            file: file.to_owned(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: one_line(e.message()),
        })?;
        let ctx = Ctx { file, tree: &tree, lines: LineIndex::new(text) };
        let raw = toml::from_str::<RawScenario>(text).map_err(|e| ctx.serde_error(&e))?;
        ctx.validate(raw)
    }

    /// The device of the `i`-th `[[nat]]`. Panics when `i` is out of range.
    pub fn nat_spec(&self, i: usize) -> NatSpec {
        self.nats[i].spec()
    }

    /// Index of the NAT named `name`.
    pub fn nat_index(&self, name: &str) -> Option<usize> {
        self.nats.iter().position(|n| n.name == name)
    }

    /// Index of the peer named `name`.
    pub fn peer_index(&self, name: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.name == name)
    }

    /// An error about setting `key` of peer `peer`'s `config`, in the same
    /// format as parse errors (for unknown or invalid client settings).
    /// Panics when `peer` is out of range.
    pub fn config_error(&self, peer: usize, key: &str, message: impl Into<String>) -> ScenarioError {
        let p = &self.peers[peer];
        ScenarioError::Invalid {
            file: self.file.clone(),
            line: p.config.key_lines.get(key).copied().unwrap_or(p.config.line.max(p.line)),
            field: format!("peer[{peer}].config.{key}"),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// The raw file, as serde sees it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    seed: Option<u64>,
    duration: String,
    internet_hops: Option<u8>,
    server: RawServer,
    #[serde(default)]
    nat: Vec<RawNat>,
    #[serde(default)]
    peer: Vec<RawPeer>,
    #[serde(default)]
    event: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    addr: String,
    alt_addr: Option<String>,
    store_latency: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNat {
    name: String,
    public_ips: Vec<String>,
    preset: String,
    mapping: Option<String>,
    filtering: Option<String>,
    ports: Option<String>,
    port_delta: Option<i32>,
    port_range: Option<Vec<i64>>,
    timeout: Option<String>,
    hairpin: Option<bool>,
    unsolicited: Option<String>,
    inbound_refreshes: Option<bool>,
    blocks_udp: Option<bool>,
    tcp_timeout: Option<String>,
    behind: Option<String>,
    background_flows: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    addr: String,
    behind: Option<String>,
    link: Option<RawLink>,
    config: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    latency: Option<String>,
    jitter: Option<String>,
    loss: Option<f64>,
    loss_burst: Option<f64>,
    duplicate: Option<f64>,
    reorder: Option<f64>,
    bandwidth: Option<String>,
    /// Bytes (an integer, or a string with a unit), or a time's worth of
    /// the bandwidth: checked by `Ctx::buffer`.
    buffer: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: String,
    peer: Option<String>,
    connect: Option<String>,
    disconnect: Option<String>,
    send_text: Option<RawSendText>,
    send_file: Option<RawSendFile>,
    partition: Option<bool>,
    heal: Option<bool>,
    nat_reboot: Option<String>,
    move_to: Option<String>,
    server_down: Option<bool>,
    server_up: Option<bool>,
    server_restart: Option<bool>,
    nat: Option<String>,
    block_udp: Option<bool>,
    unblock_udp: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSendText {
    to: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSendFile {
    to: String,
    /// Bytes (an integer, or a string with a unit): checked by
    /// `Ctx::file_size`.
    size: toml::Value,
    name: Option<String>,
}

/// The name of a `send_file` that gives none.
pub const DEFAULT_FILE_NAME: &str = "file.bin";

const EVENT_ACTIONS: &str =
    "connect, disconnect, send_text, send_file, partition, heal, nat_reboot, move_to, server_down, \
                             server_up, server_restart, block_udp, unblock_udp";
const BEHAVIOURS: &str = "endpoint-independent, address-dependent, address-and-port-dependent";

// ---------------------------------------------------------------------------
// Validation.

/// What every error needs: the file's name and text, and where each field is.
struct Ctx<'a> {
    file: &'a str,
    tree: &'a SpannedNode,
    /// Every declaration records its line: found by binary search, not by
    /// counting from the top each time (a 1,000-host file took seconds).
    lines: LineIndex,
}

impl Ctx<'_> {
    fn err(&self, path: &FieldPath, message: impl Into<String>) -> ScenarioError {
        let line = self.line(path);
        ScenarioError::Invalid { file: self.file.to_owned(), line, field: path.to_string(), message: message.into() }
    }

    fn line(&self, path: &FieldPath) -> usize {
        self.tree.span_of(&path.0).map_or(1, |s| self.lines.line_of(s.start))
    }

    /// Turns serde's error into ours, finding the field from the error's span.
    fn serde_error(&self, e: &toml::de::Error) -> ScenarioError {
        let mut message = one_line(e.message());
        let mut path = FieldPath(e.span().map(|s| self.tree.path_at(s.start)).unwrap_or_default());
        if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            // The span is the table's, whose start may fall on its first key:
            // climb back to the table and name the missing field in it.
            while !path.0.is_empty() && !self.tree.is_table_at(&path.0) {
                path.0.pop();
            }
            path = path.key(missing);
            message = "required but missing".to_owned();
        }
        let line = e.span().map_or(1, |s| self.lines.line_of(s.start));
        ScenarioError::Invalid { file: self.file.to_owned(), line, field: path.to_string(), message }
    }

    fn duration(&self, path: &FieldPath, text: &str) -> Result<Duration, ScenarioError> {
        parse_duration(text).map_err(|e| self.err(path, e.to_string()))
    }

    fn validate(&self, raw: RawScenario) -> Result<Scenario, ScenarioError> {
        let root = FieldPath::default();
        let duration = self.duration(&root.key("duration"), &raw.duration)?;
        if duration.is_zero() {
            return Err(self.err(&root.key("duration"), "must be longer than 0s"));
        }
        let server = self.server(&raw.server)?;
        let nats = raw.nat.iter().enumerate().map(|(i, n)| self.nat(i, n)).collect::<Result<Vec<_>, _>>()?;
        self.check_nats(&nats, &server)?;
        // Names are looked up through maps: a scenario of thousands of
        // peers and NATs spent most of its loading time scanning the lists.
        let nat_index = name_index(nats.iter().map(|n| n.name.as_str()));
        let peers = raw
            .peer
            .iter()
            .enumerate()
            .map(|(i, p)| self.peer(i, p, &nats, &nat_index))
            .collect::<Result<Vec<_>, _>>()?;
        self.check_peers(&peers, &nats, &nat_index, &server)?;
        let peer_index = name_index(peers.iter().map(|p| p.name.as_str()));
        let names = Names { nats: &nats, nat_index: &nat_index, peers: &peers, peer_index: &peer_index };
        let mut events = raw
            .event
            .iter()
            .enumerate()
            .map(|(i, e)| self.event(i, e, duration, &names))
            .collect::<Result<Vec<_>, _>>()?;
        // Stable: simultaneous events keep their file order.
        events.sort_by_key(|e| e.at);
        Ok(Scenario {
            file: self.file.to_owned(),
            seed: raw.seed,
            duration,
            internet_hops: raw.internet_hops.unwrap_or(DEFAULT_INTERNET_HOPS),
            server,
            nats,
            peers,
            events,
        })
    }

    fn server(&self, raw: &RawServer) -> Result<ServerSpec, ScenarioError> {
        let path = FieldPath::default().key("server");
        let parse = |field: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|_| {
                self.err(&path.key(field), format!("{text:?} is not an IP address and port like \"203.0.113.10:3478\""))
            })
        };
        let addr = parse("addr", &raw.addr)?;
        let alt_addr = raw.alt_addr.as_deref().map(|a| parse("alt_addr", a)).transpose()?;
        if alt_addr == Some(addr) {
            return Err(self.err(&path.key("alt_addr"), "must differ from `addr`"));
        }
        let store_latency = match raw.store_latency.as_deref() {
            None => Duration::ZERO,
            Some(text) => parse_duration(text).map_err(|e| self.err(&path.key("store_latency"), e.to_string()))?,
        };
        Ok(ServerSpec { addr, alt_addr, store_latency })
    }

    fn nat(&self, i: usize, raw: &RawNat) -> Result<NatDecl, ScenarioError> {
        let path = FieldPath::default().key("nat").index(i);
        if raw.name.is_empty() {
            return Err(self.err(&path.key("name"), "must not be empty"));
        }
        let preset: Preset = raw.preset.parse().map_err(|e| self.err(&path.key("preset"), format!("{e}")))?;
        if raw.public_ips.is_empty() {
            return Err(self.err(&path.key("public_ips"), "needs at least one address"));
        }
        let public_ips = raw
            .public_ips
            .iter()
            .enumerate()
            .map(|(j, ip)| {
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| self.err(&path.key("public_ips").index(j), format!("{ip:?} is not an IPv4 address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mapping = self.choice(&path, "mapping", raw.mapping.as_deref(), parse_mapping, BEHAVIOURS)?;
        let filtering = self.choice(&path, "filtering", raw.filtering.as_deref(), parse_filtering, BEHAVIOURS)?;
        let unsolicited = self.choice(
            &path,
            "unsolicited",
            raw.unsolicited.as_deref(),
            |v| match v {
                "drop" => Some(Unsolicited::Drop),
                "track" => Some(Unsolicited::Track),
                _ => None,
            },
            "drop, track",
        )?;
        let ports = self.ports(&path, raw, preset)?;
        let port_range = raw.port_range.as_deref().map(|r| self.port_range(&path.key("port_range"), r)).transpose()?;
        let timeout = raw.timeout.as_deref().map(|t| self.duration(&path.key("timeout"), t)).transpose()?;
        if timeout == Some(Duration::ZERO) {
            return Err(self.err(&path.key("timeout"), "must be longer than 0s"));
        }
        let tcp_timeout = raw.tcp_timeout.as_deref().map(|t| self.duration(&path.key("tcp_timeout"), t)).transpose()?;
        if tcp_timeout == Some(Duration::ZERO) {
            return Err(self.err(&path.key("tcp_timeout"), "must be longer than 0s"));
        }
        let overrides = NatOverrides {
            mapping,
            filtering,
            ports,
            port_range,
            timeout,
            hairpin: raw.hairpin,
            unsolicited,
            inbound_refreshes: raw.inbound_refreshes,
            blocks_udp: raw.blocks_udp,
            tcp_timeout,
            background_flows: raw.background_flows,
        };
        if preset == Preset::Open {
            // The open router translates nothing: these fields would be
            // silently ignored, which a user would not expect.
            let set = [
                ("mapping", raw.mapping.is_some()),
                ("filtering", raw.filtering.is_some()),
                ("ports", raw.ports.is_some()),
                ("port_delta", raw.port_delta.is_some()),
                ("port_range", raw.port_range.is_some()),
                ("timeout", raw.timeout.is_some()),
                ("hairpin", raw.hairpin.is_some()),
                ("unsolicited", raw.unsolicited.is_some()),
                ("inbound_refreshes", raw.inbound_refreshes.is_some()),
                ("tcp_timeout", raw.tcp_timeout.is_some()),
                ("background_flows", raw.background_flows.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, is_set)| *is_set) {
                return Err(self
                    .err(&path.key(field), "has no effect on preset \"open\", which neither translates nor filters"));
            }
        }
        Ok(NatDecl {
            name: raw.name.clone(),
            public_ips,
            preset,
            overrides,
            behind: raw.behind.clone(),
            line: self.line(&path),
        })
    }

    /// An optional value that must be one of a few names.
    fn choice<T>(
        &self,
        path: &FieldPath,
        field: &str,
        value: Option<&str>,
        parse: impl Fn(&str) -> Option<T>,
        names: &str,
    ) -> Result<Option<T>, ScenarioError> {
        value
            .map(|v| {
                parse(v).ok_or_else(|| {
                    self.err(&path.key(field), format!("unknown {field} {v:?}; expected one of {names}"))
                })
            })
            .transpose()
    }

    fn ports(&self, path: &FieldPath, raw: &RawNat, preset: Preset) -> Result<Option<PortPolicy>, ScenarioError> {
        if raw.port_delta == Some(0) {
            return Err(self.err(&path.key("port_delta"), "must not be 0"));
        }
        let preset_delta = match preset.spec("", Vec::new()).ports {
            PortPolicy::Sequential { delta } => Some(delta),
            _ => None,
        };
        let policy = match raw.ports.as_deref() {
            None => None,
            Some("preserve") => Some(PortPolicy::Preserve),
            Some("random") => Some(PortPolicy::Random),
            Some("sequential") => Some(PortPolicy::Sequential { delta: raw.port_delta.or(preset_delta).unwrap_or(1) }),
            Some(other) => {
                return Err(self.err(
                    &path.key("ports"),
                    format!("unknown ports {other:?}; expected one of preserve, sequential, random"),
                ))
            }
        };
        match (policy, raw.port_delta) {
            (_, None) | (Some(PortPolicy::Sequential { .. }), Some(_)) => Ok(policy),
            (None, Some(delta)) if preset_delta.is_some() => Ok(Some(PortPolicy::Sequential { delta })),
            (_, Some(_)) => Err(self.err(&path.key("port_delta"), "only applies with ports = \"sequential\"")),
        }
    }

    fn port_range(&self, path: &FieldPath, range: &[i64]) -> Result<(u16, u16), ScenarioError> {
        let bad = || self.err(path, format!("{range:?} is not [low, high] with 1 <= low <= high <= 65535"));
        let [lo, hi] = range else { return Err(bad()) };
        match (u16::try_from(*lo), u16::try_from(*hi)) {
            (Ok(lo), Ok(hi)) if lo >= 1 && lo <= hi => Ok((lo, hi)),
            _ => Err(bad()),
        }
    }

    /// Names unique, IPs unique, `behind` known and acyclic.
    fn check_nats(&self, nats: &[NatDecl], server: &ServerSpec) -> Result<(), ScenarioError> {
        let nat_path = |i: usize| FieldPath::default().key("nat").index(i);
        let mut names = BTreeMap::new();
        let mut ips = BTreeMap::new();
        for (i, nat) in nats.iter().enumerate() {
            if let Some(first) = names.insert(nat.name.as_str(), i) {
                return Err(self.err(
                    &nat_path(i).key("name"),
                    format!("duplicate NAT name {:?} (first used by nat[{first}])", nat.name),
                ));
            }
            for (j, ip) in nat.public_ips.iter().enumerate() {
                let field = nat_path(i).key("public_ips").index(j);
                let server_ips = [Some(server.addr), server.alt_addr];
                if server_ips.iter().flatten().any(|a| a.ip() == IpAddr::V4(*ip)) {
                    return Err(self.err(&field, format!("{ip} is the server's address")));
                }
                if let Some(owner) = ips.insert(*ip, nat.name.as_str()) {
                    return Err(self.err(&field, format!("{ip} is already a public IP of NAT {owner:?}")));
                }
            }
        }
        for (i, nat) in nats.iter().enumerate() {
            let Some(parent) = &nat.behind else { continue };
            let field = nat_path(i).key("behind");
            if !names.contains_key(parent.as_str()) {
                return Err(self
                    .err(&field, format!("unknown NAT {parent:?}; {}", known("NATs", nats.iter().map(|n| &n.name)))));
            }
            // Follow the chain; more steps than NATs means a loop.
            let mut chain = vec![nat.name.as_str()];
            let mut at = Some(parent.as_str());
            while let Some(name) = at {
                chain.push(name);
                if name == nat.name || chain.len() > nats.len() + 1 {
                    return Err(
                        self.err(&field, format!("NATs sit behind each other in a loop: {}", chain.join(" -> ")))
                    );
                }
                at = names.get(name).and_then(|&k| nats[k].behind.as_deref());
            }
        }
        Ok(())
    }

    fn peer(
        &self,
        i: usize,
        raw: &RawPeer,
        nats: &[NatDecl],
        nat_index: &BTreeMap<&str, usize>,
    ) -> Result<PeerSpec, ScenarioError> {
        let path = FieldPath::default().key("peer").index(i);
        if raw.name.is_empty() {
            return Err(self.err(&path.key("name"), "must not be empty"));
        }
        let addr: IpAddr = raw.addr.parse().map_err(|_| {
            self.err(
                &path.key("addr"),
                format!("{:?} is not an IP address (ports are chosen by the machine)", raw.addr),
            )
        })?;
        if let Some(behind) = &raw.behind {
            if !nat_index.contains_key(behind.as_str()) {
                return Err(self.err(
                    &path.key("behind"),
                    format!("unknown NAT {behind:?}; {}", known("NATs", nats.iter().map(|n| &n.name))),
                ));
            }
        }
        let link = raw.link.as_ref().map(|l| self.link(&path.key("link"), l)).transpose()?.unwrap_or_default();
        let config_path = path.key("config");
        let config = match &raw.config {
            None => ClientConfig::default(),
            Some(values) => ClientConfig {
                values: values.clone(),
                line: self.line(&config_path),
                key_lines: values.keys().map(|k| (k.clone(), self.line(&config_path.key(k)))).collect(),
            },
        };
        Ok(PeerSpec { name: raw.name.clone(), addr, behind: raw.behind.clone(), link, config, line: self.line(&path) })
    }

    fn link(&self, path: &FieldPath, raw: &RawLink) -> Result<LinkSpec, ScenarioError> {
        let duration = |field: &str, v: &Option<String>| {
            v.as_deref().map(|t| self.duration(&path.key(field), t)).transpose().map(Option::unwrap_or_default)
        };
        let probability = |field: &str, v: Option<f64>| match v {
            Some(p) if !(0.0..=1.0).contains(&p) => {
                Err(self.err(&path.key(field), format!("{p} is not a probability between 0 and 1")))
            }
            v => Ok(v.unwrap_or(0.0)),
        };
        let loss_burst = match raw.loss_burst {
            Some(b) if !(b >= 1.0 && b.is_finite()) => {
                return Err(
                    self.err(&path.key("loss_burst"), format!("{b} is not a mean burst length of at least 1 packet"))
                )
            }
            b => b,
        };
        let bandwidth = match raw.bandwidth.as_deref().map(parse_bandwidth) {
            None => None,
            Some(Ok(0)) => return Err(self.err(&path.key("bandwidth"), "must be more than 0bit")),
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => return Err(self.err(&path.key("bandwidth"), e.to_string())),
        };
        let buffer = match &raw.buffer {
            None => None,
            Some(value) => Some(self.buffer(&path.key("buffer"), value, bandwidth.zip(raw.bandwidth.as_deref()))?),
        };
        Ok(LinkSpec {
            latency: duration("latency", &raw.latency)?,
            jitter: duration("jitter", &raw.jitter)?,
            loss: probability("loss", raw.loss)?,
            loss_burst,
            duplicate: probability("duplicate", raw.duplicate)?,
            reorder: probability("reorder", raw.reorder)?,
            bandwidth,
            buffer,
        })
    }

    /// A link's `buffer` in bytes: `65536`, `"64KiB"`, or `"20ms"` (that
    /// long at the link's `bandwidth`, given here with its text, to name it
    /// in errors). A buffer needs a bandwidth: without one nothing queues,
    /// so a buffer there is a mistake, not a no-op.
    fn buffer(
        &self,
        path: &FieldPath,
        value: &toml::Value,
        bandwidth: Option<(u64, &str)>,
    ) -> Result<u64, ScenarioError> {
        let bytes = match value {
            toml::Value::Integer(n) => {
                u64::try_from(*n).map_err(|_| self.err(path, format!("{n} is not a number of bytes")))?
            }
            toml::Value::String(text) => match parse_buffer(text).map_err(|e| self.err(path, e))? {
                BufferText::Bytes(n) => n,
                BufferText::Time(time) => {
                    let Some((bits, name)) = bandwidth else {
                        return Err(self.err(
                            path,
                            format!("{text:?} is a time at the link's bandwidth, and the link sets no `bandwidth`"),
                        ));
                    };
                    let bytes = time.as_nanos() * u128::from(bits) / 8_000_000_000;
                    if bytes == 0 {
                        return Err(self.err(path, format!("{text:?} at {name} is less than one byte")));
                    }
                    u64::try_from(bytes).map_err(|_| self.err(path, format!("{text:?} at {name} is out of range")))?
                }
            },
            other => {
                return Err(self.err(
                    path,
                    format!(
                        "expected a number of bytes or a string such as \"64KiB\" or \"20ms\", found a {}",
                        other.type_str()
                    ),
                ))
            }
        };
        if bandwidth.is_none() {
            return Err(self.err(path, "needs the link's `bandwidth`: without one nothing queues"));
        }
        if bytes == 0 {
            return Err(self.err(path, "must be more than 0 bytes"));
        }
        Ok(bytes)
    }

    /// A `send_file`'s `size` in bytes: `40960` or `"8MiB"` (see
    /// [`parse_size`]).
    fn file_size(&self, path: &FieldPath, value: &toml::Value) -> Result<u64, ScenarioError> {
        match value {
            toml::Value::Integer(n) => {
                u64::try_from(*n).map_err(|_| self.err(path, format!("{n} is not a number of bytes")))
            }
            toml::Value::String(text) => parse_size(text).map_err(|e| self.err(path, e.to_string())),
            other => Err(self.err(
                path,
                format!("expected a number of bytes or a string such as \"8MiB\", found a {}", other.type_str()),
            )),
        }
    }

    /// Names unique; an `open` router's hosts use its public IPs; no two hosts
    /// share an address in one network.
    fn check_peers(
        &self,
        peers: &[PeerSpec],
        nats: &[NatDecl],
        nat_index: &BTreeMap<&str, usize>,
        server: &ServerSpec,
    ) -> Result<(), ScenarioError> {
        let mut names = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for (i, peer) in peers.iter().enumerate() {
            let path = FieldPath::default().key("peer").index(i);
            if let Some(first) = names.insert(peer.name.as_str(), i) {
                return Err(self.err(
                    &path.key("name"),
                    format!("duplicate peer name {:?} (first used by peer[{first}])", peer.name),
                ));
            }
            let nat = peer.behind.as_ref().and_then(|b| nat_index.get(b.as_str())).map(|&k| &nats[k]);
            if let Some(nat) = nat.filter(|n| n.preset == Preset::Open) {
                if !matches!(peer.addr, IpAddr::V4(v4) if nat.public_ips.contains(&v4)) {
                    return Err(self.err(
                        &path.key("addr"),
                        format!(
                            "{} is behind the open router {:?}, so it must be one of its public_ips",
                            peer.addr, nat.name
                        ),
                    ));
                }
            }
            if peer.behind.is_none() && peer.addr == server.addr.ip() {
                return Err(self.err(&path.key("addr"), format!("{} is the server's address", peer.addr)));
            }
            if let Some(first) = addrs.insert((peer.behind.as_deref(), peer.addr), i) {
                return Err(self.err(
                    &path.key("addr"),
                    format!("{} is already the address of peer {:?} in the same network", peer.addr, peers[first].name),
                ));
            }
        }
        Ok(())
    }

    fn event(&self, i: usize, raw: &RawEvent, duration: Duration, names: &Names<'_>) -> Result<Event, ScenarioError> {
        let Names { nats, nat_index, peers, peer_index } = *names;
        let path = FieldPath::default().key("event").index(i);
        let at = self.duration(&path.key("at"), &raw.at)?;
        if at > duration {
            return Err(self.err(
                &path.key("at"),
                format!("{} is after the end of the run (duration = \"{}\")", raw.at, format_duration(duration)),
            ));
        }
        let actions = [
            ("connect", raw.connect.is_some()),
            ("disconnect", raw.disconnect.is_some()),
            ("send_text", raw.send_text.is_some()),
            ("send_file", raw.send_file.is_some()),
            ("partition", raw.partition.is_some()),
            ("heal", raw.heal.is_some()),
            ("nat_reboot", raw.nat_reboot.is_some()),
            ("move_to", raw.move_to.is_some()),
            ("server_down", raw.server_down.is_some()),
            ("server_up", raw.server_up.is_some()),
            ("server_restart", raw.server_restart.is_some()),
            ("block_udp", raw.block_udp.is_some()),
            ("unblock_udp", raw.unblock_udp.is_some()),
        ];
        let mut given = actions.iter().filter(|(_, set)| *set).map(|(name, _)| *name);
        let Some(action) = given.next() else {
            return Err(self.err(&path, format!("no action; expected one of {EVENT_ACTIONS}")));
        };
        if let Some(second) = given.next() {
            return Err(self.err(
                &path.key(second),
                format!("an event does one thing, and this one already has `{action}`; split it into two events"),
            ));
        }
        let peer_names = || known("peers", peers.iter().map(|p| &p.name));
        let nat_names = || known("NATs", nats.iter().map(|n| &n.name));
        let peer_ref = |field: FieldPath, name: &str| {
            if peer_index.contains_key(name) {
                Ok(name.to_owned())
            } else {
                Err(self.err(&field, format!("unknown peer {name:?}; {}", peer_names())))
            }
        };
        let nat_ref = |field: FieldPath, name: &str| {
            if nat_index.contains_key(name) {
                Ok(name.to_owned())
            } else {
                Err(self.err(&field, format!("unknown NAT {name:?}; {}", nat_names())))
            }
        };
        let must_be_true = |field: &str, value: Option<bool>| {
            if value == Some(false) {
                return Err(
                    self.err(&path.key(field), format!("must be true (`{field} = true`); omit the event instead"))
                );
            }
            Ok(())
        };
        if action == "block_udp" || action == "unblock_udp" {
            let value = if action == "block_udp" { raw.block_udp } else { raw.unblock_udp };
            must_be_true(action, value)?;
            let target = match (raw.peer.as_deref(), raw.nat.as_deref()) {
                (Some(_), Some(_)) => {
                    return Err(self.err(
                        &path.key("nat"),
                        format!("{action} acts on a peer or on a NAT, not both; split it into two events"),
                    ))
                }
                (Some(peer), None) => Target::Peer(peer_ref(path.key("peer"), peer)?),
                (None, Some(nat)) => Target::Nat(nat_ref(path.key("nat"), nat)?),
                (None, None) => {
                    return Err(self.err(
                        &path,
                        format!("`{action}` needs `peer` (a peer's host) or `nat` (a NAT), whose UDP it acts on"),
                    ))
                }
            };
            let action =
                if action == "block_udp" { Action::BlockUdp { target } } else { Action::UnblockUdp { target } };
            return Ok(Event { at, action, line: self.line(&path) });
        }
        if raw.nat.is_some() {
            return Err(self.err(
                &path.key("nat"),
                format!("{action} takes no `nat`; only block_udp and unblock_udp act on a NAT this way"),
            ));
        }
        let server_action = match action {
            "server_down" => Some((Action::ServerDown, raw.server_down)),
            "server_up" => Some((Action::ServerUp, raw.server_up)),
            "server_restart" => Some((Action::ServerRestart, raw.server_restart)),
            _ => None,
        };
        if let Some((server_action, value)) = server_action {
            if raw.peer.is_some() {
                return Err(self.err(&path.key("peer"), format!("{action} acts on the server and takes no peer")));
            }
            must_be_true(action, value)?;
            return Ok(Event { at, action: server_action, line: self.line(&path) });
        }
        if action == "nat_reboot" {
            if raw.peer.is_some() {
                return Err(self.err(&path.key("peer"), "nat_reboot acts on a NAT and takes no peer"));
            }
            let nat = nat_ref(path.key("nat_reboot"), raw.nat_reboot.as_deref().unwrap_or_default())?;
            return Ok(Event { at, action: Action::NatReboot { nat }, line: self.line(&path) });
        }
        let Some(peer) = raw.peer.as_deref() else {
            return Err(self.err(&path, format!("`{action}` needs `peer`, the peer that acts")));
        };
        let peer = peer_ref(path.key("peer"), peer)?;
        let other_peer = |field: FieldPath, name: &str| {
            let name = peer_ref(field.clone(), name)?;
            if name == peer {
                return Err(self.err(&field, format!("{name:?} is the acting peer itself")));
            }
            Ok(name)
        };
        let action = match action {
            "connect" => Action::Connect {
                to: other_peer(path.key("connect"), raw.connect.as_deref().unwrap_or_default())?,
                peer,
            },
            "disconnect" => Action::Disconnect {
                from: other_peer(path.key("disconnect"), raw.disconnect.as_deref().unwrap_or_default())?,
                peer,
            },
            "send_text" => {
                // Invariant: `send_text` is the action found above.
                let msg = raw.send_text.as_ref().expect("send_text present");
                let to = other_peer(path.key("send_text").key("to"), &msg.to)?;
                Action::SendText { peer, to, text: msg.text.clone() }
            }
            "send_file" => {
                // Invariant: `send_file` is the action found above.
                let file = raw.send_file.as_ref().expect("send_file present");
                let field = path.key("send_file");
                let to = other_peer(field.key("to"), &file.to)?;
                let size = self.file_size(&field.key("size"), &file.size)?;
                let name = file.name.clone().unwrap_or_else(|| DEFAULT_FILE_NAME.to_owned());
                // The sender's client refuses such a name; saying so here
                // names the line.
                punchline_core::files::check_name(&name)
                    .map_err(|e| self.err(&field.key("name"), format!("{name:?} is refused: {e}")))?;
                Action::SendFile { peer, to, name, size }
            }
            "partition" => {
                must_be_true("partition", raw.partition)?;
                Action::Partition { peer }
            }
            "heal" => {
                must_be_true("heal", raw.heal)?;
                Action::Heal { peer }
            }
            _ => {
                Action::MoveTo { nat: nat_ref(path.key("move_to"), raw.move_to.as_deref().unwrap_or_default())?, peer }
            }
        };
        Ok(Event { at, action, line: self.line(&path) })
    }
}

/// A `buffer` string: a size, or a time at the link's bandwidth.
#[derive(Debug, PartialEq)]
enum BufferText {
    Bytes(u64),
    Time(Duration),
}

/// Parses a size as [`parse_size`] reads it (`"64KiB"`, `"1.5MB"`,
/// `"1500B"`), or a duration as [`parse_duration`] reads it (`"20ms"`).
/// The error is a phrase to follow the field's name.
fn parse_buffer(text: &str) -> Result<BufferText, String> {
    match parse_size(text) {
        Ok(bytes) => Ok(BufferText::Bytes(bytes)),
        Err(UnitError::NotANumber(..)) => {
            Err(format!("{text:?} is not a number followed by a unit; expected e.g. \"64KiB\", \"1.5MB\" or \"20ms\""))
        }
        Err(UnitError::UnknownUnit(..)) => match parse_duration(text) {
            Ok(time) => Ok(BufferText::Time(time)),
            Err(UnitError::UnknownUnit(..)) => Err(format!(
                "{text:?} has an unknown unit; expected a size ({SIZE_UNIT_NAMES}) or a time at the link's \
                 bandwidth (ns, us, ms, s, m, h)"
            )),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// `internet_hops` when the file does not say.
pub const DEFAULT_INTERNET_HOPS: u8 = 8;

/// The NATs and peers being validated, with their names' indexes.
#[derive(Clone, Copy)]
struct Names<'a> {
    nats: &'a [NatDecl],
    nat_index: &'a BTreeMap<&'a str, usize>,
    peers: &'a [PeerSpec],
    peer_index: &'a BTreeMap<&'a str, usize>,
}

/// Each name's position; the first wins (duplicates are refused elsewhere).
/// Keys borrowed (`&str`) while parsing, owned (`String`) in the engine.
pub(crate) fn name_index<'a, K: From<&'a str> + Ord>(names: impl Iterator<Item = &'a str>) -> BTreeMap<K, usize> {
    let mut index = BTreeMap::new();
    for (i, name) in names.enumerate() {
        index.entry(K::from(name)).or_insert(i);
    }
    index
}

fn known<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        format!("no {what} are declared")
    } else {
        format!("declared {what}: {}", names.join(", "))
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The offsets of a text's newlines, to find many lines quickly.
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex { newlines: text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i).collect() }
    }

    /// 1-based line of byte `offset`, as [`line_of`] counts it.
    fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&n| n < offset) + 1
    }
}

fn one_line(message: &str) -> String {
    message.trim().lines().map(str::trim).collect::<Vec<_>>().join("; ")
}

// ---------------------------------------------------------------------------
// Field paths and the spanned tree that maps them to lines.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `nat[0].public_ips[1]`.
#[derive(Clone, Debug, Default)]
struct FieldPath(Vec<Segment>);

impl FieldPath {
    fn key(&self, key: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The document as a tree of keys and values with their byte spans, so an
/// error's span can be turned into a field path and a path into a line.
/// Implicit tables (dotted keys, `[a.b]` parents) have no span of their own.
#[derive(Debug)]
struct SpannedNode {
    span: Option<Range<usize>>,
    node: Node,
}

#[derive(Debug)]
enum Node {
    Table(Vec<(SpannedKey, SpannedNode)>),
    Array(Vec<SpannedNode>),
    Leaf,
}

#[derive(Debug)]
struct SpannedKey {
    span: Option<Range<usize>>,
    name: String,
}

impl SpannedNode {
    /// The span of the value at `path` (or of its key, or of the nearest
    /// ancestor that has one).
    fn span_of(&self, path: &[Segment]) -> Option<Range<usize>> {
        let Some((first, rest)) = path.split_first() else { return self.span.clone() };
        let found = match (&self.node, first) {
            (Node::Table(entries), Segment::Key(k)) => entries
                .iter()
                .find(|(key, _)| &key.name == k)
                .and_then(|(key, value)| value.span_of(rest).or_else(|| key.span.clone())),
            (Node::Array(items), Segment::Index(i)) => items.get(*i).and_then(|item| item.span_of(rest)),
            _ => None,
        };
        found.or_else(|| self.span.clone())
    }

    /// True when `path` names a table.
    fn is_table_at(&self, path: &[Segment]) -> bool {
        let Some((first, rest)) = path.split_first() else { return matches!(self.node, Node::Table(_)) };
        match (&self.node, first) {
            (Node::Table(entries), Segment::Key(k)) => {
                entries.iter().find(|(key, _)| &key.name == k).is_some_and(|(_, v)| v.is_table_at(rest))
            }
            (Node::Array(items), Segment::Index(i)) => items.get(*i).is_some_and(|item| item.is_table_at(rest)),
            _ => false,
        }
    }

    /// The path of the deepest key or value whose span holds `pos`.
    fn path_at(&self, pos: usize) -> Vec<Segment> {
        let mut path = Vec::new();
        let mut node = self;
        'descend: loop {
            match &node.node {
                Node::Table(entries) => {
                    for (key, value) in entries {
                        if key.span.as_ref().is_some_and(|s| holds(s, pos)) {
                            path.push(Segment::Key(key.name.clone()));
                            return path;
                        }
                        if value.holds(pos) {
                            path.push(Segment::Key(key.name.clone()));
                            node = value;
                            continue 'descend;
                        }
                    }
                }
                Node::Array(items) => {
                    if let Some((i, item)) = items.iter().enumerate().find(|(_, item)| item.holds(pos)) {
                        path.push(Segment::Index(i));
                        node = item;
                        continue 'descend;
                    }
                }
                Node::Leaf => {}
            }
            return path;
        }
    }

    fn holds(&self, pos: usize) -> bool {
        match (&self.span, &self.node) {
            (Some(span), _) => holds(span, pos),
            (None, Node::Table(entries)) => {
                entries.iter().any(|(k, v)| k.span.as_ref().is_some_and(|s| holds(s, pos)) || v.holds(pos))
            }
            (None, Node::Array(items)) => items.iter().any(|item| item.holds(pos)),
            (None, Node::Leaf) => false,
        }
    }
}

fn holds(span: &Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

// The `toml` crate reports spans through `toml::Spanned`, which fails on
// values that have none (dotted keys). These impls speak the same protocol
// (serde_spanned 0.6, which toml 0.8 uses) but accept a value without a span.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];

/// Reads the rest of a spanned map once its start key has been read.
fn read_spanned<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A) -> Result<(Range<usize>, T), A::Error> {
    let start: usize = map.next_value()?;
    let _end_key: Option<String> = map.next_key()?;
    let end: usize = map.next_value()?;
    let _value_key: Option<String> = map.next_key()?;
    let value: T = map.next_value()?;
    Ok((start..end, value))
}

impl<'de> Deserialize<'de> for SpannedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = SpannedKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SpannedKey, E> {
                Ok(SpannedKey { span: None, name: s.to_owned() })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedKey, A::Error> {
                let _start_key: Option<String> = map.next_key()?;
                let (span, name) = read_spanned::<A, String>(&mut map)?;
                Ok(SpannedKey { span: Some(span), name })
            }
        }
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

/// The value inside a spanned wrapper: deserialised without asking for a span
/// again (which would recurse forever).
struct UnspannedNode(SpannedNode);

impl<'de> Deserialize<'de> for UnspannedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(UnspannedNode)
    }
}

struct NodeVisitor;

impl NodeVisitor {
    fn leaf<E>(self) -> Result<SpannedNode, E> {
        Ok(SpannedNode { span: None, node: Node::Leaf })
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = SpannedNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SpannedNode, E> {
        self.leaf()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SpannedNode, E> {
        self.leaf()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SpannedNode, E> {
        self.leaf()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SpannedNode, E> {
        self.leaf()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SpannedNode, E> {
        self.leaf()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SpannedNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(SpannedNode { span: None, node: Node::Array(items) })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<SpannedKey>()? {
            if entries.is_empty() && key.span.is_none() && key.name == SPANNED_START {
                let (span, UnspannedNode(inner)) = read_spanned(&mut map)?;
                return Ok(SpannedNode { span: Some(span), node: inner.node });
            }
            entries.push((key, map.next_value()?));
        }
        Ok(SpannedNode { span: None, node: Node::Table(entries) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_finds_the_line_counting_from_the_top_does() {
        let text = "a = 1\n\nb = 2\r\n# c\nlast";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 3 {
            assert_eq!(index.line_of(offset), line_of(text, offset), "offset {offset}");
        }
    }

    const MINIMAL: &str = r#"
duration = "10s"
[server]
addr = "203.0.113.10:3478"
"#;

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let s = Scenario::from_toml_str(MINIMAL, "min.toml").unwrap();
        assert_eq!((s.seed, s.duration, s.internet_hops), (None, Duration::from_secs(10), 8));
        assert_eq!(
            s.server,
            ServerSpec { addr: "203.0.113.10:3478".parse().unwrap(), alt_addr: None, store_latency: Duration::ZERO }
        );
        assert!(s.nats.is_empty() && s.peers.is_empty() && s.events.is_empty());
    }

    #[test]
    fn overrides_apply_on_top_of_the_preset() {
        // Given a linux NAT with a sequential port override and a short timeout,
        let text = format!(
            "{MINIMAL}\n[[nat]]\nname = \"n\"\npublic_ips = [\"198.51.100.1\", \"198.51.100.2\"]\npreset = \"linux\"\n\
             ports = \"sequential\"\nport_delta = -2\ntimeout = \"5s\"\nhairpin = true\n"
        );
        // when it is resolved,
        let spec = Scenario::from_toml_str(&text, "o.toml").unwrap().nat_spec(0);
        // then the overrides win and the rest is the preset's.
        let mut want = Preset::Linux.spec("n", vec![[198, 51, 100, 1].into(), [198, 51, 100, 2].into()]);
        want.ports = PortPolicy::Sequential { delta: -2 };
        want.timeout = Duration::from_secs(5);
        want.hairpin = true;
        assert_eq!(spec, want);
    }

    #[test]
    fn a_port_delta_alone_keeps_a_sequential_preset_sequential() {
        let text = format!(
            "{MINIMAL}\n[[nat]]\nname = \"n\"\npublic_ips = [\"198.51.100.1\"]\npreset = \"symmetric-sequential\"\nport_delta = 3\n"
        );
        let spec = Scenario::from_toml_str(&text, "d.toml").unwrap().nat_spec(0);
        assert_eq!(spec.ports, PortPolicy::Sequential { delta: 3 });
    }

    #[test]
    fn events_are_sorted_by_time_keeping_file_order_for_ties() {
        let text = format!(
            "{MINIMAL}\n[[peer]]\nname = \"a\"\naddr = \"192.0.2.1\"\n[[peer]]\nname = \"b\"\naddr = \"192.0.2.2\"\n\
             [[event]]\nat = \"2s\"\npeer = \"a\"\nheal = true\n\
             [[event]]\nat = \"1s\"\npeer = \"a\"\nconnect = \"b\"\n\
             [[event]]\nat = \"2s\"\npeer = \"b\"\npartition = true\n"
        );
        let s = Scenario::from_toml_str(&text, "e.toml").unwrap();
        let got: Vec<(Duration, &Action, usize)> = s.events.iter().map(|e| (e.at, &e.action, e.line)).collect();
        assert_eq!(
            got,
            [
                (Duration::from_secs(1), &Action::Connect { peer: "a".into(), to: "b".into() }, 16),
                (Duration::from_secs(2), &Action::Heal { peer: "a".into() }, 12),
                (Duration::from_secs(2), &Action::Partition { peer: "b".into() }, 20),
            ]
        );
    }

    #[test]
    fn client_config_keeps_its_values_and_lines_for_the_engine() {
        // Given a peer with a config table written with dotted keys,
        let text = format!(
            "{MINIMAL}\n[[peer]]\nname = \"a\"\naddr = \"192.0.2.1\"\nconfig.keepalive = \"25s\"\nconfig.opener_ttl = 3\n"
        );
        let s = Scenario::from_toml_str(&text, "c.toml").unwrap();
        // when the engine rejects a setting,
        let err = s.config_error(0, "opener_ttl", "unknown client setting");
        // then the message names the line of that setting.
        assert_eq!(s.peers[0].config.values.get("opener_ttl"), Some(&toml::Value::Integer(3)));
        assert_eq!(s.peers[0].config.key_lines.get("keepalive"), Some(&9));
        assert_eq!(err.to_string(), "c.toml:10: field `peer[0].config.opener_ttl`: unknown client setting");
    }

    #[test]
    fn buffer_strings_are_sizes_or_times() {
        // Given the forms a scenario author writes, when they are parsed,
        // then sizes are exact bytes and times are left for the bandwidth.
        let cases = [
            ("64KiB", BufferText::Bytes(65_536)),
            ("64kB", BufferText::Bytes(64_000)),
            ("1.5MB", BufferText::Bytes(1_500_000)),
            ("1500B", BufferText::Bytes(1500)),
            ("2GiB", BufferText::Bytes(2 << 30)),
            ("20ms", BufferText::Time(Duration::from_millis(20))),
            ("0.5s", BufferText::Time(Duration::from_millis(500))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_buffer(text), Ok(want), "{text}");
        }
        // and anything else is refused with a reason.
        for bad in ["", "KiB", "-1KiB", "1.KiB", ".5KiB", "1..5KiB", "1.5B", "64kb", "64 KiB", "lots", "64"] {
            assert!(parse_buffer(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_buffer("64KB").unwrap_err(),
            "\"64KB\" has an unknown unit; expected a size (B, kB, KiB, MB, MiB, GB, GiB) or a time at the link's \
             bandwidth (ns, us, ms, s, m, h)"
        );
        assert_eq!(parse_buffer("99999999999999999999GiB").unwrap_err(), "\"99999999999999999999GiB\" is out of range");
    }

    #[test]
    fn field_paths_print_like_toml_access() {
        let p = FieldPath::default().key("nat").index(2).key("public_ips").index(0);
        assert_eq!(p.to_string(), "nat[2].public_ips[0]");
    }
}
