//! Part 2 of the lab: every ordered pair of profiles, the real binaries in
//! the kernel lab against the simulator's run of the same presets.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::clients::{client_args, LISTEN_READY};
use super::host::Binaries;
use super::process::Spawned;
use super::topology::Site;
use super::{LabError, LabOptions};
use crate::matrix;

/// Pings the connecting side sends once connected.
const PINGS: u32 = 5;
/// `connect --timeout`: long enough for a punch attempt (4 s by default)
/// after the relay is up.
const CONNECT_TIMEOUT: &str = "20s";
/// How long `connect` may wait for a direct path: enough for a failed
/// birthday attempt (about 5 s), the retry backoff (5 s) and a second attempt,
/// as the simulator's 40 s runs allow retries too.
const DIRECT_WAIT: &str = "20s";

/// One ordered pair (`punchline-sim lab --json` → `pairs`).
#[derive(Clone, Debug, Serialize)]
pub struct PairRow {
    /// The connecting peer's profile.
    pub a: String,
    /// The listening peer's profile.
    pub b: String,
    /// The simulator's outcome (`direct`, `relay`, `relay-tcp`, `failed`, or `mixed d/r/t/f`
    /// when its seeds did not agree).
    pub sim: String,
    /// The kernel lab's outcome from `connect --json`.
    pub kernel: String,
    /// `sim == kernel`.
    pub agree: bool,
    /// The kernel run's time to the first usable path.
    pub connect_ms: Option<f64>,
    /// The kernel run's time to the direct path.
    pub direct_ms: Option<f64>,
    /// The kernel run's strategy.
    pub strategy: Option<String>,
    /// The simulator's strategy.
    pub sim_strategy: Option<String>,
    /// The simulator's median time to the first usable path.
    pub sim_connect_ms: Option<f64>,
    /// The simulator's median time to the direct path.
    pub sim_direct_ms: Option<f64>,
    /// The kernel run's median ping round trip.
    pub rtt_ms_p50: Option<f64>,
    /// Pings answered of those sent.
    pub pings_answered: Option<u64>,
    /// The listener reported itself online before the connect started.
    pub listener_online: bool,
    /// `connect`'s exit code (`null`: killed after its deadline).
    pub exit_code: Option<i32>,
    /// `connect`'s stderr when it produced no JSON (for diagnosis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs `connect` from `a`'s host to a `listen` on `b`'s host.
pub fn run_pair(a: &Site, b: &Site, bins: &Binaries, opts: &LabOptions, tag: &str) -> Result<PairRow, LabError> {
    let sim = matrix::run_cell(a.profile.preset(), b.profile.preset(), opts.sim_seeds.max(1));
    let sim_outcome = sim_outcome(&sim);

    let (user_a, user_b) = (format!("a-{tag}"), format!("b-{tag}"));
    let client = bins.client.to_string_lossy().into_owned();
    let listen = Spawned::start(
        &format!("listen {user_b}"),
        &b.host_ns,
        &client,
        &client_args(&user_b, opts, &["listen", "--json"]),
    )?;
    // `listen --json` prints `logged-in` once the server has accepted it
    // (its NAT discovery may still be running: the protocol must cope); a
    // peer that cannot log in prints `server-unreachable` or nothing, and
    // the wait ends on the bound.
    let event = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).ok().and_then(|j| j["event"].as_str().map(str::to_owned))
    };
    let first = listen.wait_for_line(LISTEN_READY, |l| {
        matches!(event(l).as_deref(), Some("logged-in" | "login-failed" | "server-unreachable"))
    });
    let listener_online = first.is_some_and(|l| event(&l).as_deref() == Some("logged-in"));
    let pings = PINGS.to_string();
    let connect = Spawned::start(
        &format!("connect {user_a}"),
        &a.host_ns,
        &client,
        &client_args(
            &user_a,
            opts,
            &[
                "connect",
                &user_b,
                "--pings",
                &pings,
                "--timeout",
                CONNECT_TIMEOUT,
                "--direct-wait",
                DIRECT_WAIT,
                "--json",
            ],
        ),
    )?;
    let (exit_code, lines, stderr) = connect.finish(Duration::from_secs(60));
    drop(listen);
    let json: Option<serde_json::Value> = lines.iter().rev().find_map(|l| serde_json::from_str(l).ok());
    let field = |k: &str| json.as_ref().and_then(|j| j.get(k).cloned()).filter(|v| !v.is_null());
    let kernel = field("outcome").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "failed".to_owned());
    Ok(PairRow {
        a: a.profile.name().to_owned(),
        b: b.profile.name().to_owned(),
        agree: sim_outcome == kernel,
        sim: sim_outcome,
        kernel,
        connect_ms: field("connect_ms").and_then(|v| v.as_f64()),
        direct_ms: field("direct_ms").and_then(|v| v.as_f64()),
        strategy: field("strategy").and_then(|v| v.as_str().map(str::to_owned)),
        sim_strategy: sim.strategy.clone(),
        sim_connect_ms: sim.connect_ms_p50,
        sim_direct_ms: sim.direct_ms_p50,
        rtt_ms_p50: field("rtt_ms_p50").and_then(|v| v.as_f64()),
        pings_answered: field("pings_answered").and_then(|v| v.as_u64()),
        listener_online,
        exit_code,
        error: json.is_none().then(|| {
            let e = stderr.trim();
            if e.is_empty() {
                "no JSON from connect".to_owned()
            } else {
                e.chars().take(400).collect()
            }
        }),
    })
}

/// The simulator's outcome for a cell: the one every seed reached, or
/// `mixed direct/relay/failed` counts.
pub fn sim_outcome(cell: &matrix::Cell) -> String {
    if cell.direct == cell.runs {
        "direct".to_owned()
    } else if cell.relay == cell.runs {
        "relay".to_owned()
    } else if cell.relay_tcp == cell.runs {
        "relay-tcp".to_owned()
    } else if cell.failed == cell.runs {
        "failed".to_owned()
    } else {
        format!("mixed {}/{}/{}/{}", cell.direct, cell.relay, cell.relay_tcp, cell.failed)
    }
}

/// The pair table: one line per ordered pair.
pub fn table(rows: &[PairRow]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut out = format!(
        "{:<13} {:<13} {:<10} {:<10} {:<6} {:<10} {:>10} {:>10} {:>12}\n",
        "connecting", "listening", "sim", "kernel", "agree", "strategy", "connect_ms", "direct_ms", "sim_direct"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<13} {:<13} {:<10} {:<10} {:<6} {:<10} {:>10} {:>10} {:>12}",
            r.a,
            r.b,
            r.sim,
            r.kernel,
            if r.agree { "yes" } else { "NO" },
            r.strategy.as_deref().unwrap_or("-"),
            ms(r.connect_ms),
            ms(r.direct_ms),
            ms(r.sim_direct_ms),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    connect: {e}");
        }
    }
    out.push_str(
        "connect_ms, direct_ms: the kernel run, from the start of `punchline connect` (login and NAT discovery \
         included); sim_direct: the simulator's median from its connect event (20 ms access links)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Profile;

    #[test]
    fn the_simulator_puts_every_udp_blocked_pair_on_the_tcp_relay_and_agrees_with_itself_elsewhere() {
        // Given every ordered pair of lab profiles, run in the simulator,
        for a in Profile::ALL {
            for b in Profile::ALL {
                let cell = matrix::run_cell(a.preset(), b.preset(), 3);
                let outcome = sim_outcome(&cell);
                // then a udp-blocked side logs in over TCP and the pair ends
                // on the relay over TCP, and every other pair ends the same
                // way on every seed.
                if a == Profile::UdpBlocked || b == Profile::UdpBlocked {
                    assert_eq!(outcome, "relay-tcp", "{} -> {}", a.name(), b.name());
                } else {
                    assert!(!outcome.starts_with("mixed"), "{} -> {}: {outcome}", a.name(), b.name());
                    eprintln!("{} -> {}: {outcome}", a.name(), b.name());
                }
            }
        }
    }
}
