//! Part 3 of the lab: a NAT reboot in the middle of a direct session (issue
//! 19), the kernel against the simulator's `nat_reboot` event.
//!
//! A Linux NAT "reboots" here as its conntrack table is flushed (`conntrack
//! -F` in the NAT's namespace): every mapping is gone, as after a power
//! cycle, while the rules stay. The next packet through it makes a new
//! mapping; behind `masquerade` it keeps the port when the host's packet
//! comes first, and moves when the peer's packet came first and left an
//! unreplied entry on it (see `LAB.md`, "Unsolicited packets");
//! `masquerade fully-random` always picks a new random port.
//!
//! The check, for each of [`CASES`]: a `listen` behind the second NAT, a
//! `connect` from behind the first with pings every [`PING_INTERVAL`] for
//! about 20 s; once the listener reports `path-direct`, the lab waits
//! [`DIRECT_BEFORE_FLUSH`] and flushes the **connecting** side's NAT. Its
//! own mapping moving is what the listener, the side whose events the lab
//! reads as they happen, can see: a `path-direct` to the connector's new
//! address (a rebinding followed), or a `path-fell-back` then a
//! `path-direct` (a new punch).
//!
//! **Regained** means what the simulator's report means by `outcome:
//! direct`: both peers on a direct path at the end — `connect`'s final
//! `outcome` is `direct` and the listener's last path event is
//! `path-direct`. `regained_ms` is the time from the flush to the
//! listener's first `path-direct` after it; none when the listener saw no
//! change at all (the port was kept, the path never broke: `kept`).
//!
//! The simulator runs the same presets under [`Stress::Reboot`], with the
//! seeds whose [`matrix::reboot_plan`] reboots the connecting side's NAT
//! (`nat-1`), and its `outcome` is the prediction; `sim_regained_ms` is the
//! median time from its reboot to the listener's (`peer-2`'s) first direct
//! path after it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clients::{self, Listener, PathChange};
use super::host::Binaries;
use super::process::run_in;
use super::topology::Site;
use super::{LabError, LabOptions, Profile};
use crate::engine::Simulation;
use crate::matrix::{self, Stress};
use crate::report::Outcome;

/// The pairs whose connecting side's NAT is flushed: `masquerade`, which
/// may keep the port, facing `masquerade`; `masquerade fully-random`, which
/// never does, facing `masquerade` (a `birthday` pair); and `masquerade`
/// facing `fully-random`.
pub const CASES: [(Profile, Profile); 3] =
    [(Profile::Linux, Profile::Linux), (Profile::LinuxRandom, Profile::Linux), (Profile::Linux, Profile::LinuxRandom)];

/// Pings `connect` sends, one per [`PING_INTERVAL`]: about 20 s of session
/// after the direct path, time for a fallback (3 s or more) and a new
/// punch after the flush.
const PINGS: u32 = 100;
/// Time between pings.
const PING_INTERVAL: &str = "200ms";
/// `connect --timeout` and `--direct-wait` (as for the pairs).
const CONNECT_LIMIT: &str = "20s";
/// From `connect`'s start to the listener's first `path-direct`: NAT
/// discovery (about 3 s behind a filtering NAT) and a birthday attempt.
const DIRECT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the session runs direct before the flush.
pub const DIRECT_BEFORE_FLUSH: Duration = Duration::from_secs(2);
/// The most `connect` may take in all: the wait for a direct path, the
/// pings, the last answers.
const CONNECT_BOUND: Duration = Duration::from_secs(90);

/// One reboot check (`punchline-sim lab --json` → `reboots`).
#[derive(Clone, Debug, Serialize)]
pub struct RebootRow {
    /// The connecting peer's profile: its NAT is the one flushed.
    pub a: String,
    /// The listening peer's profile.
    pub b: String,
    /// The simulator's outcome with `a`'s NAT rebooting (`direct`, `relay`,
    /// `failed`, or `mixed d/r/f`).
    pub sim: String,
    /// The kernel's: `direct` when both peers ended direct, `relay` when
    /// the session lived but not both were direct, `failed` when `connect`
    /// failed, `never-direct` when no direct path came before the flush (so
    /// nothing was checked).
    pub kernel: String,
    /// `sim == kernel`.
    pub agree: bool,
    /// What the listener saw after the flush: `kept` (nothing changed),
    /// `rebound` (a direct path to the connector's new address, without a
    /// fallback), `re-punched` (a fallback, then a direct path), `lost`
    /// (not direct at the end), or `-` when there was no flush.
    pub after_flush: String,
    /// Ms from the flush to the listener's first `path-direct` after it.
    pub regained_ms: Option<f64>,
    /// Ms from the flush to the listener's first `path-fell-back` after it.
    pub fell_back_ms: Option<f64>,
    /// The simulator's median ms from the reboot to the listener's first
    /// direct path after it (`null`: the listener saw no new direct path
    /// in any seed, the path was kept).
    pub sim_regained_ms: Option<f64>,
    /// The connector's address on the direct path before the flush, and on
    /// the last one after it (as the listener saw them).
    pub remote_before: Option<String>,
    /// See `remote_before`.
    pub remote_after: Option<String>,
    /// The connector's final path (`connect --json`'s `outcome`).
    pub connector: String,
    /// The listener's final path.
    pub listener: String,
    /// The connector's own count of fallbacks.
    pub connector_fallbacks: Option<u64>,
    /// Pings sent and answered: none may be lost across the reboot.
    pub pings_sent: Option<u64>,
    /// See `pings_sent`.
    pub pings_answered: Option<u64>,
    /// `connect`'s exit code (`null`: killed after its deadline).
    pub exit_code: Option<i32>,
    /// `connect`'s stderr when it produced no JSON, or why the flush failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs one reboot check: `connect` from `a`'s host to a `listen` on `b`'s,
/// and `a`'s NAT flushed once the session is direct.
pub fn run_reboot(a: &Site, b: &Site, bins: &Binaries, opts: &LabOptions, tag: &str) -> Result<RebootRow, LabError> {
    let sim = simulate(a.profile, b.profile, opts.sim_seeds.max(1));
    let (user_a, user_b) = (format!("ra-{tag}"), format!("rb-{tag}"));
    let mut listener = Listener::start(&b.host_ns, &user_b, bins, opts)?;
    let pings = PINGS.to_string();
    let flags =
        ["--pings", &pings, "--interval", PING_INTERVAL, "--timeout", CONNECT_LIMIT, "--direct-wait", CONNECT_LIMIT];
    let connect = clients::start_connect(&a.host_ns, &user_a, &user_b, &flags, bins, opts)?;
    let started = Instant::now();

    let before = listener.wait_direct(started + DIRECT_DEADLINE);
    let mut flush_error = None;
    let flushed_at = match &before {
        Some(_) => {
            listener.read_until(Instant::now() + DIRECT_BEFORE_FLUSH);
            match run_in(&a.nat_ns, "conntrack", &["-F"]) {
                Ok(_) => Some(Instant::now()),
                Err(e) => {
                    flush_error = Some(e.to_string());
                    None
                }
            }
        }
        None => None,
    };
    let run = clients::finish_connect(connect, CONNECT_BOUND);
    listener.read_pending();

    let after: Vec<_> = match flushed_at {
        Some(t) => listener.events().iter().filter(|e| e.at >= t).cloned().collect(),
        None => Vec::new(),
    };
    let first_direct = after.iter().find(|e| matches!(e.change, PathChange::Direct { .. }));
    let first_fallback = after.iter().find(|e| e.change == PathChange::FellBack);
    let since_flush = |e: Option<&clients::PathEvent>| flushed_at.zip(e).map(|(t, e)| clients::ms_between(t, e.at));
    let connector = run.outcome();
    let listener_path = listener.path();
    let both_direct = connector == "direct" && listener_path == "direct";
    let kernel = if before.is_none() || flushed_at.is_none() {
        "never-direct"
    } else if connector == "failed" {
        "failed"
    } else if both_direct {
        "direct"
    } else {
        "relay"
    };
    let after_flush = match (flushed_at, both_direct, first_fallback, first_direct) {
        (None, ..) => "-",
        (Some(_), false, ..) => "lost",
        (Some(_), true, Some(_), _) => "re-punched",
        (Some(_), true, None, Some(_)) => "rebound",
        (Some(_), true, None, None) => "kept",
    };
    let remote = |e: &clients::PathEvent| match &e.change {
        PathChange::Direct { remote } => Some(remote.clone()),
        _ => None,
    };
    let field_u64 = |k: &str| run.field(k).and_then(|v| v.as_u64());
    Ok(RebootRow {
        a: a.profile.name().to_owned(),
        b: b.profile.name().to_owned(),
        agree: sim.outcome == kernel,
        sim: sim.outcome,
        kernel: kernel.to_owned(),
        after_flush: after_flush.to_owned(),
        regained_ms: since_flush(first_direct),
        fell_back_ms: since_flush(first_fallback),
        sim_regained_ms: sim.regained_ms_p50,
        remote_before: before.as_ref().and_then(remote),
        remote_after: after.iter().rev().find_map(remote).or_else(|| before.as_ref().and_then(remote)),
        connector,
        listener: listener_path.to_owned(),
        connector_fallbacks: field_u64("fallbacks"),
        pings_sent: field_u64("pings_sent"),
        pings_answered: field_u64("pings_answered"),
        exit_code: run.exit_code,
        error: run.error().or(flush_error),
    })
}

/// The simulator's prediction for a reboot of `a`'s NAT.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReboot {
    /// The outcome every seed reached, or `mixed d/r/f`.
    pub outcome: String,
    /// The median ms from the reboot to `peer-2`'s first direct path after it.
    pub regained_ms_p50: Option<f64>,
}

/// Runs `seeds` seeds of [`matrix::stress_scenario`] under
/// [`Stress::Reboot`] for `a` facing `b`, taking the seeds whose plan
/// reboots `nat-1` (`a`'s NAT, the connecting side's), as the lab does.
pub fn simulate(a: Profile, b: Profile, seeds: u32) -> SimReboot {
    let (mut direct, mut relay, mut failed) = (0u32, 0u32, 0u32);
    let mut regained = Vec::new();
    for seed in (0u64..).filter(|s| matrix::reboot_plan(*s).0 == 1).take(seeds as usize) {
        let scenario = matrix::stress_scenario(Some(Stress::Reboot), a.preset(), b.preset(), seed);
        let mut sim = Simulation::new(scenario, None).expect("the matrix's own scenarios are valid");
        sim.keep_trace(true);
        let (report, trace, _) = sim.run();
        match report.connections.first().map(|c| c.outcome) {
            Some(Outcome::Direct) => direct += 1,
            Some(Outcome::Relay | Outcome::RelayTcp) => relay += 1,
            Some(Outcome::Failed) | None => failed += 1,
        }
        regained.extend(regained_in_trace(&trace, "nat-1", "peer-2"));
    }
    let outcome = if direct == seeds {
        "direct".to_owned()
    } else if relay == seeds {
        "relay".to_owned()
    } else if failed == seeds {
        "failed".to_owned()
    } else {
        format!("mixed {direct}/{relay}/{failed}")
    };
    regained.sort_by(f64::total_cmp);
    SimReboot { outcome, regained_ms_p50: (!regained.is_empty()).then(|| regained[regained.len() / 2]) }
}

/// Ms from `nat`'s reboot to `peer`'s first direct path after it, read from
/// a simulator trace (`<t>ms event: NAT <nat> reboots`, then `<t>ms <peer>:
/// session …: path direct …`).
fn regained_in_trace(trace: &[String], nat: &str, peer: &str) -> Option<f64> {
    let time = |line: &str| line.trim_start().split_once("ms ").and_then(|(t, _)| t.parse::<f64>().ok());
    let reboot = format!("event: NAT {nat} reboots");
    let mut lines = trace.iter().skip_while(|l| !l.contains(&reboot));
    let rebooted_at = time(lines.next()?)?;
    let direct = format!("{peer}: session ");
    let regained = lines.find(|l| l.contains(&direct) && l.contains(": path direct"))?;
    Some(time(regained)? - rebooted_at)
}

/// The reboot table.
pub fn table(rows: &[RebootRow]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut out = format!(
        "NAT reboot: the connecting side's conntrack flushed {} s into a direct session\n\
         {:<13} {:<13} {:<10} {:<12} {:<6} {:<11} {:>11} {:>12} {:>9}\n",
        DIRECT_BEFORE_FLUSH.as_secs(),
        "connecting",
        "listening",
        "sim",
        "kernel",
        "agree",
        "after",
        "regained_ms",
        "sim_regained",
        "pings"
    );
    for r in rows {
        let pings = match (r.pings_answered, r.pings_sent) {
            (Some(a), Some(s)) => format!("{a}/{s}"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<13} {:<13} {:<10} {:<12} {:<6} {:<11} {:>11} {:>12} {:>9}",
            r.a,
            r.b,
            r.sim,
            r.kernel,
            if r.agree { "yes" } else { "NO" },
            r.after_flush,
            ms(r.regained_ms),
            ms(r.sim_regained_ms),
            pings,
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    {e}");
        }
    }
    out.push_str(
        "regained_ms: from the flush to the listener's next path-direct (kept: the path never broke); \
         sim_regained: the simulator's median from its nat_reboot\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_ends_direct_after_the_connecting_side_reboots_in_every_lab_case() {
        // Given each reboot case in the simulator, with nat-1 rebooting,
        for (a, b) in CASES {
            let sim = simulate(a, b, 3);
            // then it ends direct;
            assert_eq!(sim.outcome, "direct", "{} -> {}", a.name(), b.name());
            // a fully-random NAT moves the connector, so the listener goes
            // direct again to its new address.
            if a == Profile::LinuxRandom {
                assert!(sim.regained_ms_p50.is_some(), "{} -> {}", a.name(), b.name());
            }
        }
    }

    #[test]
    fn the_time_to_regain_is_read_from_the_reboot_to_the_peers_next_direct_path() {
        // Given a trace with a direct path before and after a reboot,
        let trace: Vec<String> = [
            "  3735.682ms peer-2: session 0a: path direct via socket 0 to 198.51.100.1:4000",
            " 20000.000ms event: NAT nat-1 reboots",
            " 22815.675ms peer-2: session 0a: fell back to relay",
            " 28015.516ms peer-1: session 0a: path direct via socket 2 to 198.51.100.6:40002",
            " 28017.781ms peer-2: session 0a: path direct via socket 3 to 198.51.100.1:40001",
        ]
        .map(String::from)
        .to_vec();
        // then the time is from the reboot to peer-2's next direct path,
        let t = regained_in_trace(&trace, "nat-1", "peer-2").expect("regained");
        assert!((t - 8017.781).abs() < 1e-6, "{t}");
        // and there is none without a reboot of that NAT.
        assert_eq!(regained_in_trace(&trace, "nat-2", "peer-2"), None);
    }
}
