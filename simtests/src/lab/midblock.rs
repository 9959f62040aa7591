//! Part 4 of the lab: UDP blocked in the middle of a direct session (issue
//! 21), the kernel against the simulator's `block_udp` event.
//!
//! A network "starts dropping UDP" here as an nftables table that drops
//! every UDP packet the connecting side's NAT forwards or receives is added
//! while the session runs; conntrack entries stay, the packets die. The
//! client must notice (its direct path goes quiet, then the server does),
//! move to TCP within 5 s, and keep the session on the relay over TCP,
//! losing nothing: every ping `connect` sends is answered.
//!
//! The check, for each of [`CASES`]: a `listen` behind the second NAT, a
//! `connect` from behind the first with pings every [`PING_INTERVAL`]; once
//! the listener reports `path-direct`, the lab waits [`DIRECT_BEFORE_BLOCK`]
//! and blocks UDP at the **connecting** side's NAT. The listener, whose
//! events the lab reads as they come, sees its peer move: a
//! `relay-transport-changed` to `tcp` (`moved_ms` is the time from the block
//! to it) and a `path-fell-back`.
//!
//! The kernel's outcome is `connect`'s (`relay-tcp` when it ended on the
//! relay over TCP); the simulator's is the same pair of presets with a
//! `block_udp` event on the connecting side's NAT ([`simulate`]).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clients::{self, Listener, PathChange};
use super::host::Binaries;
use super::process::run_with_input;
use super::topology::Site;
use super::{LabError, LabOptions, Profile};
use crate::engine::Simulation;
use crate::report::Outcome;
use crate::scenario::Scenario;

/// The pairs whose connecting side loses UDP: `masquerade` facing
/// `masquerade`, and a full cone facing `masquerade`.
pub const CASES: [(Profile, Profile); 2] = [(Profile::Linux, Profile::Linux), (Profile::FullCone, Profile::Linux)];

/// Pings `connect` sends, one per [`PING_INTERVAL`]: about 20 s of session,
/// most of it after the block.
const PINGS: u32 = 100;
/// Time between pings.
const PING_INTERVAL: &str = "200ms";
/// `connect --timeout` and `--direct-wait`.
const CONNECT_LIMIT: &str = "20s";
/// From `connect`'s start to the listener's first `path-direct`.
const DIRECT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the session runs direct before UDP is blocked.
pub const DIRECT_BEFORE_BLOCK: Duration = Duration::from_secs(2);
/// The most `connect` may take in all.
const CONNECT_BOUND: Duration = Duration::from_secs(90);
/// The nftables table that blocks UDP through (and to) a NAT router.
const BLOCK_UDP: &str = "table ip punchline_block {\n  \
     chain forward { type filter hook forward priority filter - 10; policy accept; meta l4proto udp drop; }\n  \
     chain input { type filter hook input priority filter - 10; policy accept; meta l4proto udp drop; }\n}\n";

/// One mid-session block (`punchline-sim lab --json` → `udp_blocks`).
#[derive(Clone, Debug, Serialize)]
pub struct BlockRow {
    /// The connecting peer's profile: its NAT starts dropping UDP.
    pub a: String,
    /// The listening peer's profile.
    pub b: String,
    /// The simulator's outcome (`relay-tcp` expected, or `mixed …`).
    pub sim: String,
    /// The kernel's: `connect`'s outcome, or `never-direct` when no direct
    /// path came before the block (nothing was checked).
    pub kernel: String,
    /// `sim == kernel`.
    pub agree: bool,
    /// Ms from the block to the listener's `relay-transport-changed` to
    /// `tcp`: the connector moved to TCP (the bound is 5 s).
    pub moved_ms: Option<f64>,
    /// The simulator's median ms from its block to the connector's move.
    pub sim_moved_ms: Option<f64>,
    /// `connect --json`'s `transport` at the end.
    pub transport: Option<String>,
    /// Pings sent and answered: none may be lost across the move.
    pub pings_sent: Option<u64>,
    /// See `pings_sent`.
    pub pings_answered: Option<u64>,
    /// `connect`'s exit code (`null`: killed after its deadline).
    pub exit_code: Option<i32>,
    /// `connect`'s stderr when it produced no JSON, or why the block failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs one check: `connect` from `a`'s host to a `listen` on `b`'s, and
/// UDP blocked at `a`'s NAT once the session is direct.
pub fn run_block(a: &Site, b: &Site, bins: &Binaries, opts: &LabOptions, tag: &str) -> Result<BlockRow, LabError> {
    let sim = simulate(a.profile, b.profile, opts.sim_seeds.max(1));
    let (user_a, user_b) = (format!("ua-{tag}"), format!("ub-{tag}"));
    let mut listener = Listener::start(&b.host_ns, &user_b, bins, opts)?;
    let pings = PINGS.to_string();
    let flags =
        ["--pings", &pings, "--interval", PING_INTERVAL, "--timeout", CONNECT_LIMIT, "--direct-wait", CONNECT_LIMIT];
    let connect = clients::start_connect(&a.host_ns, &user_a, &user_b, &flags, bins, opts)?;
    let started = Instant::now();

    let mut block_error = None;
    let blocked_at = match listener.wait_direct(started + DIRECT_DEADLINE) {
        Some(_) => {
            listener.read_until(Instant::now() + DIRECT_BEFORE_BLOCK);
            match run_with_input("ip", &["netns", "exec", &a.nat_ns, "nft", "-f", "-"], Some(BLOCK_UDP)) {
                Ok(_) => Some(Instant::now()),
                Err(e) => {
                    block_error = Some(e.to_string());
                    None
                }
            }
        }
        None => None,
    };
    let run = clients::finish_connect(connect, CONNECT_BOUND);
    listener.read_pending();

    let moved = blocked_at.and_then(|t| {
        listener
            .events()
            .iter()
            .find(|e| e.at >= t && matches!(&e.change, PathChange::RelayTransport { transport } if transport == "tcp"))
            .map(|e| clients::ms_between(t, e.at))
    });
    let kernel = if blocked_at.is_none() { "never-direct".to_owned() } else { run.outcome() };
    let field_u64 = |k: &str| run.field(k).and_then(|v| v.as_u64());
    Ok(BlockRow {
        a: a.profile.name().to_owned(),
        b: b.profile.name().to_owned(),
        agree: sim.outcome == kernel,
        sim: sim.outcome,
        kernel,
        moved_ms: moved,
        sim_moved_ms: sim.moved_ms_p50,
        transport: run.field("transport").and_then(|v| v.as_str().map(str::to_owned)),
        pings_sent: field_u64("pings_sent"),
        pings_answered: field_u64("pings_answered"),
        exit_code: run.exit_code,
        error: run.error().or(block_error),
    })
}

/// The simulator's prediction for a UDP block at `a`'s NAT.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBlock {
    /// The outcome every seed reached, or `mixed d/r/t/f` (direct, relay,
    /// relay-tcp, failed).
    pub outcome: String,
    /// The median ms from the block to `peer-1`'s move to TCP.
    pub moved_ms_p50: Option<f64>,
}

/// When the simulated block comes: well after the pair went direct.
const SIM_BLOCK_AT_MS: u64 = 15_000;

/// The scenario [`simulate`] runs: `a` and `b` as the matrix places them, a
/// connect at 1 s, pings both ways as texts would go, and UDP blocked at
/// `nat-1` (`a`'s NAT) at 15 s.
pub fn block_scenario(a: Profile, b: Profile, seed: u64) -> Scenario {
    let side = |i: u8, p: Profile| {
        format!(
            "[[nat]]\nname = \"nat-{i}\"\npublic_ips = [\"198.51.100.{i}\"]\npreset = \"{}\"\n\n\
             [[peer]]\nname = \"peer-{i}\"\naddr = \"10.0.{i}.2\"\nbehind = \"nat-{i}\"\n\
             link = {{ latency = \"20ms\", jitter = \"3ms\" }}\n\n",
            p.name()
        )
    };
    let text = format!(
        "seed = {seed}\nduration = \"45s\"\n\n[server]\naddr = \"203.0.113.10:3478\"\nalt_addr = \"203.0.113.11:3479\"\n\n\
         {}{}\
         [[event]]\nat = \"1s\"\npeer = \"peer-1\"\nconnect = \"peer-2\"\n\n\
         [[event]]\nat = \"{SIM_BLOCK_AT_MS}ms\"\nnat = \"nat-1\"\nblock_udp = true\n",
        side(1, a),
        side(2, b)
    );
    Scenario::from_toml_str(&text, &format!("lab block_udp {}-{}", a.name(), b.name()))
        .expect("the lab's own scenario is valid")
}

/// Runs `seeds` seeds of [`block_scenario`].
pub fn simulate(a: Profile, b: Profile, seeds: u32) -> SimBlock {
    let mut counts = [0u32; 4];
    let mut moved = Vec::new();
    for seed in 0..u64::from(seeds) {
        let mut sim = Simulation::new(block_scenario(a, b, seed), None).expect("the lab's own scenario is valid");
        sim.keep_trace(true);
        let (report, trace, _) = sim.run();
        let i = match report.connections.first().map(|c| c.outcome) {
            Some(Outcome::Direct) => 0,
            Some(Outcome::Relay) => 1,
            Some(Outcome::RelayTcp) => 2,
            Some(Outcome::Failed) | None => 3,
        };
        counts[i] += 1;
        moved.extend(moved_in_trace(&trace, "peer-1"));
    }
    let names = ["direct", "relay", "relay-tcp", "failed"];
    let outcome = match counts.iter().position(|c| *c == seeds) {
        Some(i) => names[i].to_owned(),
        None => format!("mixed {}/{}/{}/{}", counts[0], counts[1], counts[2], counts[3]),
    };
    moved.sort_by(f64::total_cmp);
    SimBlock { outcome, moved_ms_p50: (!moved.is_empty()).then(|| moved[moved.len() / 2]) }
}

/// Ms from the simulated block to `peer`'s move to TCP, read from a trace
/// (`<t>ms <peer>: reaches the server over tcp`).
fn moved_in_trace(trace: &[String], peer: &str) -> Option<f64> {
    let time = |line: &str| line.trim_start().split_once("ms ").and_then(|(t, _)| t.parse::<f64>().ok());
    let moved = format!("{peer}: reaches the server over tcp");
    let line = trace.iter().find(|l| l.contains(&moved) && time(l).is_some_and(|t| t >= SIM_BLOCK_AT_MS as f64))?;
    Some(time(line)? - SIM_BLOCK_AT_MS as f64)
}

/// The mid-session block table.
pub fn table(rows: &[BlockRow]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut out = format!(
        "UDP blocked at the connecting side's NAT {} s into a direct session\n\
         {:<13} {:<13} {:<10} {:<12} {:<6} {:>9} {:>9} {:>9}\n",
        DIRECT_BEFORE_BLOCK.as_secs(),
        "connecting",
        "listening",
        "sim",
        "kernel",
        "agree",
        "moved_ms",
        "sim_moved",
        "pings"
    );
    for r in rows {
        let pings = match (r.pings_answered, r.pings_sent) {
            (Some(a), Some(s)) => format!("{a}/{s}"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<13} {:<13} {:<10} {:<12} {:<6} {:>9} {:>9} {:>9}",
            r.a,
            r.b,
            r.sim,
            r.kernel,
            if r.agree { "yes" } else { "NO" },
            ms(r.moved_ms),
            ms(r.sim_moved_ms),
            pings,
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    {e}");
        }
    }
    out.push_str("moved_ms: from the block to the listener's relay-transport-changed to tcp (at most 5000)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_to_move_is_read_from_the_block_to_the_peers_move_to_tcp() {
        // Given a trace where peer-1 moved to TCP after the block,
        let trace: Vec<String> = [
            "    300.000ms peer-1: reaches the server over tcp",
            "  15000.000ms event: nat-1 blocks UDP",
            "  18712.500ms peer-1: reaches the server over tcp",
        ]
        .map(String::from)
        .to_vec();
        // then the time is from the block to that move, not an earlier one.
        let t = moved_in_trace(&trace, "peer-1").expect("moved");
        assert!((t - 3712.5).abs() < 1e-6, "{t}");
        assert_eq!(moved_in_trace(&trace, "peer-2"), None);
    }
}
