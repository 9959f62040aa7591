//! `punchline-sim matrix`: every ordered pair of NAT presets over several
//! seeds, compared with the oracle; with `--stress NAME`, the same sweep
//! under one family of real-world trouble ([`Stress`]).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::Serialize;

use crate::engine::Simulation;
use crate::nat::Preset;
use crate::oracle;
use crate::report::Outcome;
use crate::rng::Rng;
use crate::scenario::Scenario;

/// The presets the matrix crosses (DESIGN §4): all nine, `udp-blocked`
/// included since the simulator carries TCP (issue 21): its row and column
/// end `relay-tcp`.
pub const MATRIX_PRESETS: [Preset; 9] = Preset::MATRIX;

/// One cell: preset `a` (the connecting peer) against preset `b`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// The connecting peer's NAT.
    pub a: String,
    /// The other peer's NAT.
    pub b: String,
    /// What the oracle expects: `direct`, `relay`, or `relay-tcp` (a side's
    /// UDP is blocked: the relay rides TCP there).
    pub expected: String,
    /// The strategy of the first run's session (the same in every run).
    pub strategy: Option<String>,
    /// Runs made.
    pub runs: u32,
    /// Runs that ended direct.
    pub direct: u32,
    /// Runs that ended on the relay, over UDP both ways.
    pub relay: u32,
    /// Runs that ended on the relay with a side on TCP.
    pub relay_tcp: u32,
    /// Runs that failed.
    pub failed: u32,
    /// Median time to the first usable path.
    pub connect_ms_p50: Option<f64>,
    /// Median time to the first direct path, over runs that went direct.
    pub direct_ms_p50: Option<f64>,
    /// Slowest time to the first direct path.
    pub direct_ms_max: Option<f64>,
    /// Median probes sent per run, both peers together.
    pub probes_p50: Option<f64>,
    /// Most probes sent in one run, both peers together.
    pub probes_max: u64,
    /// Fallbacks to the relay over all the cell's runs, both peers'.
    pub fallbacks: u32,
    /// The longest time, in one run, that one peer was on the direct path
    /// and the other was not (the report's `disagree_ms`).
    pub disagree_ms_max: f64,
    /// Texts acknowledged and never shown, over all runs (only when the
    /// family sends texts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Texts shown twice, over all runs (only when the family sends texts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicated: Option<u64>,
    /// The family the cell ran under (the document names it once).
    #[serde(skip)]
    pub stress: Option<Stress>,
}

/// The share of runs a birthday-probing cell must take direct (issue 4: 95
/// of 100). Birthday probing is probabilistic by nature (98 % per attempt
/// with the defaults, and failed attempts are retried); every other strategy
/// must go direct in every run.
pub const BIRTHDAY_DIRECT_PERCENT: u32 = 95;

impl Cell {
    /// True when the runs match the oracle: no failed run, no text lost or
    /// shown twice; for `direct`, every run direct (birthday probing: at
    /// least [`BIRTHDAY_DIRECT_PERCENT`] of them, the rest on the relay);
    /// for `relay`, every run on the relay without a single probe sent
    /// (under `roam`, probes before the move are fair: the pair was another
    /// one then); for `relay-tcp`, every run on the relay over TCP.
    pub fn agrees(&self) -> bool {
        if self.failed != 0 || self.lost.unwrap_or(0) != 0 || self.duplicated.unwrap_or(0) != 0 {
            return false;
        }
        if self.expected == "relay-tcp" {
            return self.relay_tcp == self.runs;
        }
        if self.expected != "direct" {
            let probes_ok = self.stress == Some(Stress::Roam) || self.probes_max == 0;
            return self.relay == self.runs && probes_ok;
        }
        if self.strategy.as_deref() == Some("birthday") {
            self.direct * 100 >= BIRTHDAY_DIRECT_PERCENT * self.runs
        } else {
            self.direct == self.runs
        }
    }
}

/// The matrix (`punchline-sim matrix --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Matrix {
    /// The family of trouble the sweep ran under (`--stress NAME`); absent
    /// for the plain matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress: Option<Stress>,
    /// Seeds per cell.
    pub seeds: u32,
    /// Cells that disagree with the oracle or had a failed run.
    pub mismatches: u32,
    /// Every ordered pair, row by row.
    pub cells: Vec<Cell>,
}

/// A family of trouble the matrix sweeps over every preset pair (issue 19,
/// `punchline-sim matrix --stress NAME`). Each is the plain matrix's
/// scenario (two peers behind their NATs, 20 ms ± 3 ms access links) with
/// one change; see [`stress_scenario`] for the exact times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stress {
    /// Connect 100 ms after the start, while NAT discovery still runs.
    Early,
    /// A NAT reboot on a seeded side at a seeded moment of a direct
    /// session.
    Reboot,
    /// 15 % loss on both access links.
    Loss,
    /// Both peers behind one NAT of the row's preset; the oracle is always
    /// `direct` (host candidates on one link need no traversal).
    Lan,
    /// The connecting peer starts behind a `linux` NAT and moves mid-session
    /// behind the row's preset; the cell's own oracle applies after the
    /// move.
    Roam,
    /// The server's link is cut for 30 s during a direct session, with texts
    /// sent both ways while it is down.
    Outage,
}

impl Stress {
    /// Every family, in the order `--stress all` runs them.
    pub const ALL: [Stress; 6] =
        [Stress::Early, Stress::Reboot, Stress::Loss, Stress::Lan, Stress::Roam, Stress::Outage];

    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Stress::Early => "early",
            Stress::Reboot => "reboot",
            Stress::Loss => "loss",
            Stress::Lan => "lan",
            Stress::Roam => "roam",
            Stress::Outage => "outage",
        }
    }

    /// Whether the family runs the cell `a` against `b`: `lan` puts both
    /// peers behind `a`'s NAT, so it runs the diagonal only; `early` skips
    /// the `udp-blocked` column: a peer behind it is online only once its
    /// login over TCP is in (300 ms, then a round trip), so a connect to it
    /// at 100 ms is rightly refused (the server has never seen it), which is
    /// not what the family is about.
    pub fn runs_cell(self, a: Preset, b: Preset) -> bool {
        match self {
            Stress::Lan => a == b,
            Stress::Early => b != Preset::UdpBlocked,
            _ => true,
        }
    }
}

impl fmt::Display for Stress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Stress`] family.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stress family {0:?}; expected one of early, reboot, loss, lan, roam, outage, all")]
pub struct UnknownStress(pub String);

impl FromStr for Stress {
    type Err = UnknownStress;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stress::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| UnknownStress(s.to_owned()))
    }
}

/// The scenario the matrix runs for one pair and seed: two peers behind
/// their NATs, 20 ms ± 3 ms access links, a connect at 3 s (after NAT
/// discovery), 40 s in all.
pub fn pair_scenario(a: Preset, b: Preset, seed: u64) -> Scenario {
    stress_scenario(None, a, b, seed)
}

/// A seeded choice of the `reboot` family: which side's NAT reboots (1 or
/// 2) and when (ms from the start, in 15-25 s, a direct session's middle
/// for a connect at 1 s).
pub fn reboot_plan(seed: u64) -> (u8, u64) {
    let mut rng = Rng::new(seed).fork(0x002e_b007);
    let side = 1 + rng.below(2) as u8;
    (side, 15_000 + rng.below(10_000))
}

/// The scenario of one pair and seed under `stress` (`None`: the plain
/// matrix's, [`pair_scenario`]):
///
/// | family | NATs | connect | then | duration |
/// |---|---|---|---|---|
/// | plain | `a`, `b` | 3 s | - | 40 s |
/// | `early` | `a`, `b` | 100 ms | - | 40 s |
/// | `reboot` | `a`, `b` | 1 s | [`reboot_plan`]: one side's NAT reboots at 15-25 s; texts 0.5, 1.5, 2.5, 3.5 s after | 60 s |
/// | `loss` | `a`, `b`; 15 % loss on both access links | 10 s | texts at 20, 30, 40, 50 s | 70 s |
/// | `lan` | one NAT of preset `a`, both peers behind it | 3 s | - | 40 s |
/// | `roam` | `linux`, `a`, `b`; peer-1 starts behind the `linux` one | 3 s | 15 s: peer-1 moves behind `a`; texts at 15.5-18.5 s | 60 s |
/// | `outage` | `a`, `b` | 3 s | 15 s server down; texts at 20, 25, 30, 35 s, alternating sides; 45 s server up | 90 s |
///
/// An outage moves clients to TCP (2.5 s of server silence over UDP),
/// and whichever transport answers first when the server is back carries
/// them; a client on TCP asks again over UDP 30 s later. The `outage` runs
/// last 90 s so that every client that can is back on UDP at the end.
pub fn stress_scenario(stress: Option<Stress>, a: Preset, b: Preset, seed: u64) -> Scenario {
    let loss = if stress == Some(Stress::Loss) { ", loss = 0.15" } else { "" };
    let nat = |name: &str, public: &str, p: Preset| {
        format!("[[nat]]\nname = \"{name}\"\npublic_ips = [{public}]\npreset = \"{}\"\n\n", p.name())
    };
    let peer = |i: u8, addr: &str, behind: &str| {
        format!(
            "[[peer]]\nname = \"peer-{i}\"\naddr = \"{addr}\"\nbehind = \"{behind}\"\nlink = {{ latency = \"20ms\", jitter = \"3ms\"{loss} }}\n\n"
        )
    };
    // A peer behind the `open` router is a public host: its address is the
    // router's public one.
    let addr = |p: Preset, i: u8, host: u8| {
        if p == Preset::Open {
            format!("198.51.100.{}", i + host - 2)
        } else {
            format!("10.0.{i}.{host}")
        }
    };
    let side = |p: Preset, i: u8| {
        nat(&format!("nat-{i}"), &format!("\"198.51.100.{i}\""), p) + &peer(i, &addr(p, i, 2), &format!("nat-{i}"))
    };
    let (a, b) = (a, b);
    let hosts = match stress {
        Some(Stress::Lan) => {
            let public = if a == Preset::Open { "\"198.51.100.1\", \"198.51.100.2\"" } else { "\"198.51.100.1\"" };
            nat("nat-1", public, a) + &peer(1, &addr(a, 1, 2), "nat-1") + &peer(2, &addr(a, 1, 3), "nat-1")
        }
        Some(Stress::Roam) => {
            nat("start", "\"198.51.100.20\"", Preset::Linux)
                + &peer(1, &addr(a, 1, 2), "start")
                + &nat("nat-1", "\"198.51.100.1\"", a)
                + &side(b, 2)
        }
        _ => side(a, 1) + &side(b, 2),
    };
    let event = |at: &str, body: &str| format!("[[event]]\nat = \"{at}\"\n{body}\n");
    let connect = |at: &str| event(at, "peer = \"peer-1\"\nconnect = \"peer-2\"");
    // Texts both ways, in the thick of the trouble: none may be lost or
    // shown twice (the cell's oracle).
    let text = |at_ms: u64, from: u8, to: u8, n: u8| {
        event(
            &format!("{at_ms}ms"),
            &format!("peer = \"peer-{from}\"\nsend_text = {{ to = \"peer-{to}\", text = \"text {n}\" }}"),
        )
    };
    let texts_from = |start_ms: u64, step_ms: u64| -> String {
        (0..4u8).map(|n| text(start_ms + u64::from(n) * step_ms, 1 + n % 2, 2 - n % 2, n + 1)).collect()
    };
    let (duration, events) = match stress {
        None | Some(Stress::Lan) => ("40s", connect("3s")),
        Some(Stress::Early) => ("40s", connect("100ms")),
        // A login can take several seconds at 15 % loss (four lost in a row
        // puts it at 7.5 s), and a connect to a user the server has never
        // seen is rightly refused: the family is about the session, so it
        // connects once both are in and watches it for 60 s.
        Some(Stress::Loss) => ("70s", connect("10s") + &texts_from(20_000, 10_000)),
        Some(Stress::Reboot) => {
            let (side, at) = reboot_plan(seed);
            let reboot = event(&format!("{at}ms"), &format!("nat_reboot = \"nat-{side}\""));
            ("60s", connect("1s") + &reboot + &texts_from(at + 500, 1_000))
        }
        Some(Stress::Roam) => {
            let moves = event("15s", "peer = \"peer-1\"\nmove_to = \"nat-1\"");
            ("60s", connect("3s") + "\n" + &moves + &texts_from(15_500, 1_000))
        }
        Some(Stress::Outage) => {
            let events = [connect("3s"), event("15s", "server_down = true"), texts_from(20_000, 5_000)];
            ("90s", events.join("\n") + &event("45s", "server_up = true"))
        }
    };
    let text = format!(
        "seed = {seed}\nduration = \"{duration}\"\n\n[server]\naddr = \"203.0.113.10:3478\"\nalt_addr = \"203.0.113.11:3479\"\n\n{hosts}{events}"
    );
    let family = stress.map_or(String::new(), |s| format!(" --stress {s}"));
    Scenario::from_toml_str(&text, &format!("matrix{family} {}-{}", a.name(), b.name()))
        .expect("the matrix's own scenarios are valid")
}

/// Runs one cell of the plain matrix over `seeds` seeds.
pub fn run_cell(a: Preset, b: Preset, seeds: u32) -> Cell {
    run_stress_cell(None, a, b, seeds)
}

/// Runs one cell under `stress` over `seeds` seeds.
pub fn run_stress_cell(stress: Option<Stress>, a: Preset, b: Preset, seeds: u32) -> Cell {
    let expectation = oracle::expect_presets(a, b);
    // Two peers behind one NAT reach each other over their host candidates,
    // whatever the NAT does (see `oracle`).
    let expected = if stress == Some(Stress::Lan) { Outcome::Direct } else { expectation.outcome() };
    let mut cell = Cell {
        a: a.name().into(),
        b: b.name().into(),
        expected: expected.name().into(),
        strategy: None,
        runs: 0,
        direct: 0,
        relay: 0,
        relay_tcp: 0,
        failed: 0,
        connect_ms_p50: None,
        direct_ms_p50: None,
        direct_ms_max: None,
        probes_p50: None,
        probes_max: 0,
        fallbacks: 0,
        disagree_ms_max: 0.0,
        lost: None,
        duplicated: None,
        stress,
    };
    let (mut connect, mut direct, mut probes) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..seeds as u64 {
        let mut sim = Simulation::new(stress_scenario(stress, a, b, seed), None).expect("valid scenario");
        sim.skip_trace();
        let (report, _, _) = sim.run();
        let c = report.connections.into_iter().next().expect("one connect event");
        cell.runs += 1;
        match c.outcome {
            Outcome::Direct => cell.direct += 1,
            Outcome::Relay => cell.relay += 1,
            Outcome::RelayTcp => cell.relay_tcp += 1,
            Outcome::Failed => cell.failed += 1,
        }
        if cell.strategy.is_none() {
            cell.strategy = c.strategy;
        }
        connect.extend(c.connect_ms);
        let sent = c.probes_from + c.probes_to;
        cell.probes_max = cell.probes_max.max(sent);
        probes.push(sent as f64);
        if c.outcome == Outcome::Direct {
            direct.extend(c.direct_ms);
        }
        cell.fallbacks += c.fallbacks;
        cell.disagree_ms_max = cell.disagree_ms_max.max(c.disagree_ms);
        let m = report.messages;
        if m.sent > 0 {
            *cell.lost.get_or_insert(0) += m.lost;
            *cell.duplicated.get_or_insert(0) += m.duplicated;
        }
    }
    cell.connect_ms_p50 = median(&mut connect);
    cell.direct_ms_p50 = median(&mut direct);
    cell.direct_ms_max = direct.iter().copied().reduce(f64::max);
    cell.probes_p50 = median(&mut probes);
    cell
}

/// Runs every cell of the plain matrix; `progress` is called after each.
pub fn run(seeds: u32, progress: impl FnMut(usize, usize)) -> Matrix {
    run_stress(None, seeds, progress)
}

/// Runs every cell under `stress` (`None`: the plain matrix), on as many
/// threads as the machine has cores (at most [`MAX_THREADS`]); `progress`
/// is called after each cell. The cells are independent runs, each
/// deterministic, and are put back in row order: the result is the same on
/// any number of threads.
pub fn run_stress(stress: Option<Stress>, seeds: u32, progress: impl FnMut(usize, usize)) -> Matrix {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    run_stress_on(stress, seeds, threads, progress)
}

/// The most threads [`run_stress`] uses.
pub const MAX_THREADS: usize = 8;

/// [`run_stress`] on `threads` threads.
pub fn run_stress_on(
    stress: Option<Stress>,
    seeds: u32,
    threads: usize,
    mut progress: impl FnMut(usize, usize),
) -> Matrix {
    let pairs: Vec<(Preset, Preset)> = MATRIX_PRESETS
        .into_iter()
        .flat_map(|a| MATRIX_PRESETS.map(|b| (a, b)))
        .filter(|&(a, b)| stress.is_none_or(|s| s.runs_cell(a, b)))
        .collect();
    let total = pairs.len();
    let next = AtomicUsize::new(0);
    let (done_tx, done_rx) = mpsc::channel();
    let mut cells: Vec<Option<Cell>> = vec![None; total];
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, total.max(1)) {
            let done_tx = done_tx.clone();
            let (pairs, next) = (&pairs, &next);
            scope.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(a, b)) = pairs.get(k) else { break };
                if done_tx.send((k, run_stress_cell(stress, a, b, seeds))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        for (finished, (k, cell)) in done_rx.iter().enumerate() {
            cells[k] = Some(cell);
            progress(finished + 1, total);
        }
    });
    let cells: Vec<Cell> = cells.into_iter().map(|c| c.expect("every cell ran")).collect();
    let mismatches = cells.iter().filter(|c| !c.agrees()).count() as u32;
    Matrix { stress, seeds, mismatches, cells }
}

impl Matrix {
    /// The grid a person reads at a glance.
    pub fn grid(&self) -> String {
        let width = 22;
        let mut out = format!("{:<22}", "connecting \\ other");
        for b in MATRIX_PRESETS {
            out.push_str(&format!("{:<width$}", b.name()));
        }
        out.push('\n');
        for a in MATRIX_PRESETS {
            out.push_str(&format!("{:<22}", a.name()));
            for b in MATRIX_PRESETS {
                let Some(c) = self.cells.iter().find(|c| c.a == a.name() && c.b == b.name()) else {
                    // `lan` runs the diagonal only.
                    out.push_str(&format!("{:<width$}", "-"));
                    continue;
                };
                let mark = if c.agrees() { "" } else { "!" };
                let text = if c.direct == c.runs {
                    format!("{mark}direct {:.0}ms", c.direct_ms_p50.unwrap_or(0.0))
                } else if c.relay == c.runs {
                    format!("{mark}relay")
                } else if c.relay_tcp == c.runs {
                    format!("{mark}relay-tcp {:.0}ms", c.connect_ms_p50.unwrap_or(0.0))
                } else {
                    format!("{mark}d{}/r{}/t{}/f{}", c.direct, c.relay, c.relay_tcp, c.failed)
                };
                out.push_str(&format!("{text:<width$}"));
            }
            out.push('\n');
        }
        if let Some(stress) = self.stress {
            out.insert_str(0, &format!("stress: {stress} ({})\n", stress_summary(stress)));
        }
        out.push_str(&format!(
            "\n{} seeds per cell; time to direct (relay-tcp: to the first usable path) is the median; ! marks a \
             disagreement with the oracle. mismatches: {}\n",
            self.seeds, self.mismatches
        ));
        if self.stress.is_some() {
            let fallbacks: u32 = self.cells.iter().map(|c| c.fallbacks).sum();
            let disagree = self.cells.iter().map(|c| c.disagree_ms_max).fold(0.0, f64::max);
            out.push_str(&format!(
                "fallbacks: {fallbacks} in all; longest disagreement between peers: {disagree:.0}ms\n"
            ));
            let lost: u64 = self.cells.iter().filter_map(|c| c.lost).sum();
            let duplicated: u64 = self.cells.iter().filter_map(|c| c.duplicated).sum();
            if self.cells.iter().any(|c| c.lost.is_some()) {
                out.push_str(&format!("texts: {lost} lost, {duplicated} duplicated\n"));
            }
        }
        out
    }
}

/// One line on what a family does, above its grid.
fn stress_summary(stress: Stress) -> &'static str {
    match stress {
        Stress::Early => "connect at 100 ms",
        Stress::Reboot => "one side's NAT reboots 15-25 s into a session opened at 1 s",
        Stress::Loss => "15 % loss on both access links",
        Stress::Lan => "both peers behind one NAT of the row's preset: the diagonal only; expected direct",
        Stress::Roam => "the connecting peer starts behind linux and moves behind the row's NAT at 15 s",
        Stress::Outage => "the server is down from 15 s to 45 s; four texts sent while it is down",
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_scenario_is_the_one_the_matrix_always_ran() {
        // The plain matrix's scenario must not change with the families.
        let s = pair_scenario(Preset::Linux, Preset::Open, 3);
        assert_eq!(s.duration, std::time::Duration::from_secs(40));
        assert_eq!(s.nats.len(), 2);
        assert_eq!(s.peers[1].addr.to_string(), "198.51.100.2");
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].at, std::time::Duration::from_secs(3));
    }

    #[test]
    fn every_family_builds_a_valid_scenario_for_every_cell_it_runs() {
        for stress in Stress::ALL {
            for a in MATRIX_PRESETS {
                for b in MATRIX_PRESETS.into_iter().filter(|&b| stress.runs_cell(a, b)) {
                    // (stress_scenario panics on an invalid one)
                    let s = stress_scenario(Some(stress), a, b, 7);
                    assert_eq!(s.peers.len(), 2, "{stress} {a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn the_reboot_plan_is_seeded_and_in_the_session() {
        let plans: Vec<(u8, u64)> = (0..40).map(reboot_plan).collect();
        assert_eq!(plans, (0..40).map(reboot_plan).collect::<Vec<_>>());
        assert!(plans.iter().all(|&(side, at)| (1..=2).contains(&side) && (15_000..25_000).contains(&at)));
        assert!(plans.iter().any(|p| p.0 == 1) && plans.iter().any(|p| p.0 == 2), "either side");
    }

    #[test]
    fn cells_come_back_in_row_order_on_any_number_of_threads() {
        let one = run_stress_on(Some(Stress::Early), 1, 1, |_, _| {});
        let two = run_stress_on(Some(Stress::Early), 1, 2, |_, _| {});
        assert_eq!(one, two);
    }
}
