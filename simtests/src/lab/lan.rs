//! Part 4 of the lab: two peers on one LAN segment behind one NAT (issue
//! 19, "host candidates always"), the kernel against the simulator's
//! `lan` stress family.
//!
//! Behind `masquerade fully-random` the NAT maps every flow to a random
//! port and does not hairpin, so the peers' reflexive addresses are of no
//! use to each other and the strategy is `relay-only`; yet each client
//! announces its interfaces' private addresses as host candidates and
//! probes the peer's when both share a public IP or a subnet, and the two
//! hosts reach each other on the segment without the NAT. The simulator's
//! oracle for the family is `direct` for every preset.
//!
//! **Direct** here means both peers on a direct path at the end
//! (`connect`'s `outcome` and the listener's last path event), and that
//! path runs over the LAN: the listener's `remote` is the connector's
//! private address.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clients::{self, Listener, PathChange};
use super::host::Binaries;
use super::pairs::sim_outcome;
use super::topology::Site;
use super::{LabError, LabOptions, Profile};
use crate::matrix::{self, Stress};

/// The NATs two LAN peers sit behind.
pub const PROFILES: [Profile; 1] = [Profile::LinuxRandom];

/// Pings `connect` sends once the wait for a direct path is over.
const PINGS: u32 = 5;
/// `connect --timeout` and `--direct-wait` (as for the pairs).
const CONNECT_LIMIT: &str = "20s";
/// The most `connect` may take in all.
const CONNECT_BOUND: Duration = Duration::from_secs(60);
/// After `connect` ends, how long the listener's last lines may take.
const LAST_LINES: Duration = Duration::from_millis(300);

/// One same-LAN check (`punchline-sim lab --json` → `lan`).
#[derive(Clone, Debug, Serialize)]
pub struct LanRow {
    /// The NAT's profile.
    pub nat: String,
    /// The simulator's outcome (`matrix --stress lan`).
    pub sim: String,
    /// The kernel's: `direct` when both peers ended direct over the LAN,
    /// `relay` when the session lived otherwise, `failed` when `connect`
    /// failed.
    pub kernel: String,
    /// `sim == kernel`.
    pub agree: bool,
    /// The connector's address on the listener's last direct path.
    pub remote: Option<String>,
    /// `remote` is the connector's private (host) address.
    pub over_lan: bool,
    /// The connector's final path (`connect --json`'s `outcome`).
    pub connector: String,
    /// The listener's final path.
    pub listener: String,
    /// The kernel run's strategy.
    pub strategy: Option<String>,
    /// The simulator's strategy.
    pub sim_strategy: Option<String>,
    /// The kernel run's time to the first usable path, from `connect`'s start.
    pub connect_ms: Option<f64>,
    /// The kernel run's time to the direct path, from `connect`'s start.
    pub direct_ms: Option<f64>,
    /// The simulator's median time to the direct path, from its connect.
    pub sim_direct_ms: Option<f64>,
    /// Pings answered of those sent.
    pub pings_answered: Option<u64>,
    /// `connect`'s exit code (`null`: killed after its deadline).
    pub exit_code: Option<i32>,
    /// `connect`'s stderr when it produced no JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs `connect` from a LAN site's first host to a `listen` on its second
/// (`site` from [`super::topology::Topology::add_lan_site`]).
pub fn run_lan(site: &Site, bins: &Binaries, opts: &LabOptions, tag: &str) -> Result<LanRow, LabError> {
    let neighbour = site.neighbour_ns.as_deref().ok_or_else(|| LabError::Command("not a LAN site".into()))?;
    let preset = site.profile.preset();
    let sim = matrix::run_stress_cell(Some(Stress::Lan), preset, preset, opts.sim_seeds.max(1));
    let (user_a, user_b) = (format!("la-{tag}"), format!("lb-{tag}"));
    let mut listener = Listener::start(neighbour, &user_b, bins, opts)?;
    let pings = PINGS.to_string();
    let flags = ["--pings", &pings, "--timeout", CONNECT_LIMIT, "--direct-wait", CONNECT_LIMIT];
    let connect = clients::start_connect(&site.host_ns, &user_a, &user_b, &flags, bins, opts)?;
    let run = clients::finish_connect(connect, CONNECT_BOUND);
    listener.read_until(Instant::now() + LAST_LINES);

    let remote = listener.events().iter().rev().find_map(|e| match &e.change {
        PathChange::Direct { remote } => Some(remote.clone()),
        _ => None,
    });
    let host_ip = site.slot.host_ip().to_string();
    let over_lan = remote.as_deref().and_then(|r| r.rsplit_once(':')).is_some_and(|(ip, _)| ip == host_ip);
    let connector = run.outcome();
    let listener_path = listener.path();
    let kernel = if connector == "failed" {
        "failed"
    } else if connector == "direct" && listener_path == "direct" && over_lan {
        "direct"
    } else {
        "relay"
    };
    let sim_outcome = sim_outcome(&sim);
    Ok(LanRow {
        nat: site.profile.name().to_owned(),
        agree: sim_outcome == kernel,
        sim: sim_outcome,
        kernel: kernel.to_owned(),
        remote,
        over_lan,
        connector,
        listener: listener_path.to_owned(),
        strategy: run.field("strategy").and_then(|v| v.as_str().map(str::to_owned)),
        sim_strategy: sim.strategy.clone(),
        connect_ms: run.field("connect_ms").and_then(|v| v.as_f64()),
        direct_ms: run.field("direct_ms").and_then(|v| v.as_f64()),
        sim_direct_ms: sim.direct_ms_p50,
        pings_answered: run.field("pings_answered").and_then(|v| v.as_u64()),
        exit_code: run.exit_code,
        error: run.error(),
    })
}

/// The same-LAN table.
pub fn table(rows: &[LanRow]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut out = format!(
        "Same LAN: two hosts on one segment behind one NAT\n\
         {:<13} {:<10} {:<10} {:<6} {:<11} {:<18} {:>10} {:>10} {:>12}\n",
        "nat", "sim", "kernel", "agree", "strategy", "remote", "connect_ms", "direct_ms", "sim_direct"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<13} {:<10} {:<10} {:<6} {:<11} {:<18} {:>10} {:>10} {:>12}",
            r.nat,
            r.sim,
            r.kernel,
            if r.agree { "yes" } else { "NO" },
            r.strategy.as_deref().unwrap_or("-"),
            r.remote.as_deref().unwrap_or("-"),
            ms(r.connect_ms),
            ms(r.direct_ms),
            ms(r.sim_direct_ms),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    connect: {e}");
        }
    }
    out.push_str(
        "remote: the connector's address on the listener's direct path (its host address when over the LAN)\n",
    );
    out
}
