//! `punchline-sim files`: issue 22's simulator targets for file transfer,
//! measured over several seeds, each against its bound.
//!
//! Every scenario is built here (two or three peers, `send_file` events)
//! and run untraced, piece by piece ([`Simulation::run_until`]) so that
//! the receivers' progress can be sampled, until every transfer has
//! completed or failed. The links: every access link has 5 ms of latency,
//! so a path's base round trip is 20 ms, direct or through the relay (the
//! simulated internet adds none); the receiver's link is the bottleneck
//! (its `bandwidth` both ways, a `buffer` of one bandwidth-delay product,
//! and the `loss` of the loss targets both ways), the senders' links are
//! unlimited.
//!
//! | target | scenario | figure (median over seeds) | bound |
//! |---|---|---|---|
//! | throughput | public peers, direct before the offer; 100 Mbit/s, 250 kB buffer, 0 % loss; 64 MiB | goodput | ≥ 90 % of 100 Mbit/s |
//! | loss 0.1 %, loss 1 % | the same, with random loss on the bottleneck; 32 MiB | goodput | ≥ 90 % of the Mathis bound MSS/RTT·√(1.5/p), MSS = 1024 B (content per packet), RTT = 20 ms |
//! | fairness | two senders to one receiver through its 100 Mbit/s link, offered together; 64 MiB each | Jain's index of the two goodputs while both are under way | ≥ 0.95 |
//! | fairness ratio | the same runs | slower / faster goodput | ≥ 0.8 (within 20 %) |
//! | migration | `linux` NATs, the receiver's with random ports; the offer opens the session (relay, then direct); the receiver's NAT reboots at 5 s, the path falls back to the relay and goes direct again; 20 Mbit/s, 32 MiB | runs verified that went direct, relay, direct | every run |
//! | interruption | public peers, sessions timing out after 60 s; the receiver's link cut for 30 s mid-transfer; 20 Mbit/s, 32 MiB | runs that completed verified | every run |
//!
//! The goodput is the report's (`FileTransfer::goodput_mbps`): content bytes
//! over the time from the sender's `FileAccepted` to the receiver's
//! `FileCompleted`, so slow start counts. For fairness each transfer's
//! goodput is taken over the time both are under way, from the later
//! acceptance to the first completion, from the receiver's verified bytes
//! sampled every [`SAMPLE`] (the one that finishes last has the link alone
//! at its end, which says nothing about sharing). Both controllers are the
//! core's NewReno, so this is also the "competing TCP-like flow" check.
//!
//! `--quick` keeps every scenario and bound but moves less data: 16 MiB
//! per fairness transfer, 8 MiB at 0.1 % loss, 4 MiB at 1 %, and 8 MiB at
//! 5 Mbit/s for migration and interruption (so their events still fall
//! mid-transfer). The throughput run keeps its 64 MiB: slow start's
//! overshoot (about 460 packets dropped at the tail of the 250 kB buffer,
//! then a recovery) weighs too much on a smaller file to say anything
//! about the steady state (16 MiB gives 86.7 Mbit/s where 64 MiB gives
//! 90.6).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::engine::Simulation;
use crate::report::{FileTransfer, PeerPath};
use crate::scenario::Scenario;

/// How often a run's transfers are sampled.
pub const SAMPLE: Duration = Duration::from_millis(10);
/// The paths' base round trip: four access links of 5 ms.
pub const RTT: Duration = Duration::from_millis(20);
/// The content bytes of one data packet (the Mathis bound's MSS).
pub const MSS: u64 = 1024;
/// The bottleneck of the throughput, loss and fairness targets.
pub const BOTTLENECK_BPS: u64 = 100_000_000;

/// The sweep's settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Seeds per target (from 1).
    pub seeds: u32,
    /// Less data per run (see the module docs).
    pub quick: bool,
    /// Threads the runs share.
    pub threads: usize,
}

/// The sweep's result (`punchline-sim files --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Seeds per target.
    pub seeds: u32,
    /// One per target, in the order of the module docs.
    pub targets: Vec<TargetResult>,
    /// Targets not met.
    pub unmet: u32,
    /// Wall-clock ms of all runs together (on however many threads).
    pub wall_ms: f64,
}

/// One target: its figure, its bound, and the runs behind them.
#[derive(Clone, Debug, Serialize)]
pub struct TargetResult {
    /// Its name.
    pub target: String,
    /// What was run.
    pub setup: String,
    /// The median of the runs' figures (for `runs` targets: how many runs
    /// passed).
    pub figure: f64,
    /// The figure's unit.
    pub unit: String,
    /// The least figure that meets the target.
    pub bound: f64,
    /// `figure >= bound`.
    pub met: bool,
    /// Each seed's run.
    pub runs: Vec<RunResult>,
}

/// One run of a target's scenario.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// The run's figure for its target (for `runs` targets: 1 when it
    /// passed, else 0).
    pub figure: f64,
    /// The report's files.
    pub files: Vec<FileTransfer>,
    /// Packets the receiver's downlink dropped for a full buffer.
    pub tail_drops: u64,
    /// Simulated ms of the run (until every transfer ended).
    pub simulated_ms: f64,
    /// Wall-clock ms the run took (the only figure that varies run to run).
    pub wall_ms: f64,
    /// Interruption: ms from the heal to the next verified group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after_heal_ms: Option<f64>,
    /// Fairness: each transfer's goodput while both were under way, Mbit/s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_mbps: Vec<f64>,
}

/// The scenarios the targets run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Throughput,
    Loss(f64),
    Fairness,
    Migration,
    Interruption,
    /// Jitter on every link, which reorders packets: not one of the
    /// issue's targets, ours (loss detection must not mistake reordering
    /// for loss).
    Jitter,
}

const KINDS: [Kind; 7] = [
    Kind::Throughput,
    Kind::Loss(0.001),
    Kind::Loss(0.01),
    Kind::Fairness,
    Kind::Migration,
    Kind::Interruption,
    Kind::Jitter,
];

/// The jitter target's jitter, on every link (each packet crosses four).
const JITTER: &str = "3ms";

/// When the interruption's cut starts and how long it lasts.
const CUT_AT: Duration = Duration::from_secs(8);
const CUT_FOR: Duration = Duration::from_secs(30);

/// What one run gave: the report's files, the receiver's verified bytes of
/// each file at every sample, and the counts around them.
struct Observed {
    files: Vec<FileTransfer>,
    samples: Vec<(Duration, Vec<u64>)>,
    tail_drops: u64,
    simulated: Duration,
    wall: Duration,
}

/// The Mathis bound in Mbit/s: MSS/RTT·√(1.5/p) (Mathis, Semke, Mahdavi,
/// Ott, "The Macroscopic Behavior of the TCP Congestion Avoidance
/// Algorithm", 1997), for [`MSS`] and [`RTT`].
pub fn mathis_mbps(loss: f64) -> f64 {
    (MSS * 8) as f64 / RTT.as_secs_f64() * (1.5 / loss).sqrt() / 1e6
}

/// Jain's fairness index of `rates`: (Σx)² / (n·Σx²), 1 when all are equal.
pub fn jain(rates: &[f64]) -> f64 {
    let sum: f64 = rates.iter().sum();
    let squares: f64 = rates.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (rates.len() as f64 * squares)
}

/// Runs every target over `options.seeds` seeds.
pub fn run(options: Options, mut progress: impl FnMut(usize, usize)) -> Sweep {
    let seeds = options.seeds.max(1);
    let jobs: Vec<(Kind, u64)> = KINDS.iter().flat_map(|&k| (1..=u64::from(seeds)).map(move |s| (k, s))).collect();
    let total = jobs.len();
    let next = AtomicUsize::new(0);
    let (done_tx, done_rx) = mpsc::channel();
    let mut observed: Vec<Option<Observed>> = (0..total).map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..options.threads.clamp(1, total) {
            let done_tx = done_tx.clone();
            let (jobs, next) = (&jobs, &next);
            scope.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(kind, seed)) = jobs.get(k) else { break };
                if done_tx.send((k, observe(kind, options.quick, seed))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        for (finished, (k, o)) in done_rx.iter().enumerate() {
            observed[k] = Some(o);
            progress(finished + 1, total);
        }
    });
    let wall: Duration = observed.iter().flatten().map(|o| o.wall).sum();
    let mut runs = jobs.iter().zip(observed).map(|(&(kind, seed), o)| (kind, seed, o.expect("every run ran")));
    let mut targets = Vec::new();
    for kind in KINDS {
        let mine: Vec<(u64, Observed)> = runs.by_ref().take(seeds as usize).map(|(_, s, o)| (s, o)).collect();
        targets.extend(judge(kind, options.quick, mine));
    }
    let unmet = targets.iter().filter(|t| !t.met).count() as u32;
    let wall_ms = (wall.as_secs_f64() * 1e6).round() / 1000.0;
    Sweep { quick: options.quick, seeds, targets, unmet, wall_ms }
}

/// The scenario of `kind` for `seed`.
fn scenario(kind: Kind, quick: bool, seed: u64) -> Scenario {
    let mib = |full: u64, quick_mib: u64| if quick { quick_mib } else { full };
    let public = |name: &str, host: u8, link: &str, config: &str| {
        format!(
            "[[peer]]\nname = \"{name}\"\naddr = \"192.0.2.{host}\"\nlink = {{ latency = \"5ms\"{link} }}\n{config}\n"
        )
    };
    let event = |at: &str, peer: &str, body: &str| format!("[[event]]\nat = \"{at}\"\npeer = \"{peer}\"\n{body}\n\n");
    let send = |at: &str, from: &str, size_mib: u64| {
        event(at, from, &format!("send_file = {{ to = \"bob\", size = \"{size_mib}MiB\" }}"))
    };
    // One bandwidth-delay product at the bottleneck: 20 ms of it.
    let bottleneck = |bandwidth: &str, loss: f64| {
        let loss = if loss > 0.0 { format!(", loss = {loss}") } else { String::new() };
        format!(", bandwidth = \"{bandwidth}\", buffer = \"20ms\"{loss}")
    };
    let slow = if quick { "5Mbit" } else { "20Mbit" };
    let (duration, body) = match kind {
        Kind::Throughput | Kind::Loss(_) => {
            let (loss, size) = match kind {
                Kind::Loss(p) if p >= 0.005 => (p, mib(32, 4)),
                Kind::Loss(p) => (p, mib(32, 8)),
                // Not less even when quick: slow start's overshoot weighs on
                // a small file (16 MiB: 86.7 Mbit/s, where 64 MiB gives 90.6).
                _ => (0.0, 64),
            };
            let hosts = public("alice", 10, "", "") + &public("bob", 20, &bottleneck("100Mbit", loss), "");
            ("600s", hosts + &event("1s", "alice", "connect = \"bob\"") + &send("3s", "alice", size))
        }
        Kind::Fairness => {
            let hosts = public("alice", 10, "", "")
                + &public("carol", 30, "", "")
                + &public("bob", 20, &bottleneck("100Mbit", 0.0), "");
            let connects = event("1s", "alice", "connect = \"bob\"") + &event("1s", "carol", "connect = \"bob\"");
            let size = mib(64, 16);
            ("300s", hosts + &connects + &send("3s", "alice", size) + &send("3s", "carol", size))
        }
        Kind::Migration => {
            let nat = |name: &str, ip: &str, extra: &str| {
                format!("[[nat]]\nname = \"{name}\"\npublic_ips = [\"{ip}\"]\npreset = \"linux\"\n{extra}\n")
            };
            let peer = |name: &str, addr: &str, behind: &str, link: &str| {
                format!(
                    "[[peer]]\nname = \"{name}\"\naddr = \"{addr}\"\nbehind = \"{behind}\"\nlink = {{ latency = \"5ms\"{link} }}\n\n"
                )
            };
            let world = nat("home-a", "198.51.100.1", "")
                + &nat("home-b", "198.51.100.6", "ports = \"random\"\n")
                + &peer("alice", "10.0.0.2", "home-a", "")
                + &peer("bob", "10.0.1.2", "home-b", &bottleneck(slow, 0.0));
            let reboot = "[[event]]\nat = \"5s\"\nnat_reboot = \"home-b\"\n\n";
            ("300s", world + &send("1s", "alice", mib(32, 8)) + reboot)
        }
        Kind::Jitter => {
            let jitter = format!(", jitter = \"{JITTER}\"");
            let hosts =
                public("alice", 10, &jitter, "") + &public("bob", 20, &(jitter.clone() + &bottleneck(slow, 0.0)), "");
            ("300s", hosts + &event("1s", "alice", "connect = \"bob\"") + &send("3s", "alice", mib(16, 4)))
        }
        Kind::Interruption => {
            // A cut shorter than the session's timeout pauses the transfer
            // (issue 22); the default timeout is exactly 30 s.
            let config = "config = { session_timeout = \"60s\" }\n";
            let hosts = public("alice", 10, "", config) + &public("bob", 20, &bottleneck(slow, 0.0), config);
            let cut = event(&format!("{}s", CUT_AT.as_secs()), "bob", "partition = true")
                + &event(&format!("{}s", (CUT_AT + CUT_FOR).as_secs()), "bob", "heal = true");
            ("300s", hosts + &event("1s", "alice", "connect = \"bob\"") + &send("3s", "alice", mib(32, 8)) + &cut)
        }
    };
    let text = format!(
        "seed = {seed}\nduration = \"{duration}\"\n\n[server]\naddr = \"203.0.113.10:3478\"\nalt_addr = \"203.0.113.11:3479\"\n\n{body}"
    );
    Scenario::from_toml_str(&text, &format!("files {kind:?}")).expect("the sweep's own scenarios are valid")
}

/// Runs `kind`'s scenario for `seed` until every transfer has ended,
/// sampling the receivers' progress.
fn observe(kind: Kind, quick: bool, seed: u64) -> Observed {
    let started = std::time::Instant::now();
    let scenario = scenario(kind, quick, seed);
    let end = scenario.duration;
    let receiver = scenario.peer_index("bob").expect("every sweep scenario has bob");
    let mut sim = Simulation::new(scenario, None).expect("the sweep's scenarios build");
    sim.skip_trace();
    let mut samples = Vec::new();
    let mut at = Duration::ZERO;
    loop {
        at = (at + SAMPLE).min(end);
        sim.run_until(at);
        let files = sim.files();
        samples.push((at, files.iter().map(|f| f.received).collect()));
        let ended = |f: &FileTransfer| f.completed_ms.is_some() || f.failure.is_some();
        if at >= end || (!files.is_empty() && files.iter().all(ended)) {
            break;
        }
    }
    let report = sim.report();
    Observed {
        files: report.files,
        samples,
        tail_drops: report.peers[receiver].tail_drops.down,
        simulated: at,
        wall: started.elapsed(),
    }
}

/// The median of `values` (the upper one of an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// A verified transfer's goodput, else 0.
fn goodput(f: &FileTransfer) -> f64 {
    if f.verified {
        f.goodput_mbps.unwrap_or(0.0)
    } else {
        0.0
    }
}

/// Each transfer's goodput in Mbit/s while all were under way: from the
/// last acceptance to the first completion, by the samples.
fn shared_rates(o: &Observed) -> Vec<f64> {
    let ms = |t: Option<f64>| t.map(|t| Duration::from_secs_f64(t / 1000.0));
    // Each file's times are from its own event; every sweep file's event is
    // at 3 s.
    let offset = Duration::from_secs(3);
    let accepted = o.files.iter().map(|f| ms(f.accepted_ms)).collect::<Option<Vec<_>>>();
    let completed = o.files.iter().map(|f| ms(f.completed_ms)).collect::<Option<Vec<_>>>();
    let (Some(accepted), Some(completed)) = (accepted, completed) else { return vec![0.0; o.files.len()] };
    let from = offset + accepted.into_iter().max().unwrap_or_default();
    let to = offset + completed.into_iter().min().unwrap_or_default();
    // The last sample at or before each end.
    let at = |t: Duration| o.samples.iter().rev().find(|(s, _)| *s <= t).map(|(_, r)| r.clone());
    let (Some(first), Some(last)) = (at(from), at(to)) else { return vec![0.0; o.files.len()] };
    let span = to.saturating_sub(from).as_secs_f64();
    if span == 0.0 {
        return vec![0.0; o.files.len()];
    }
    first.iter().zip(&last).map(|(a, b)| (b - a) as f64 * 8.0 / span / 1e6).collect()
}

/// Whether the sender's paths went direct, then relay, then direct.
fn migrated(f: &FileTransfer) -> bool {
    let mut want = [PeerPath::Direct, PeerPath::Relay, PeerPath::Direct].into_iter().peekable();
    for p in &f.paths {
        if want.peek() == Some(p) {
            want.next();
        }
    }
    want.peek().is_none()
}

/// Ms from the heal to the first sample with more verified bytes.
fn resumed_after_heal(o: &Observed) -> Option<f64> {
    let heal = CUT_AT + CUT_FOR;
    let before = o.samples.iter().rev().find(|(t, _)| *t <= heal)?.1.first().copied()?;
    let after = o.samples.iter().find(|(t, r)| *t > heal && r.first().is_some_and(|&b| b > before))?;
    Some((after.0 - heal).as_secs_f64() * 1000.0)
}

/// The target rows of `kind`'s runs.
fn judge(kind: Kind, quick: bool, runs: Vec<(u64, Observed)>) -> Vec<TargetResult> {
    let size = |o: &Observed| o.files.first().map_or(0, |f| f.size);
    let mib = |bytes: u64| bytes >> 20;
    let result = |o: Observed, seed: u64, figure: f64| RunResult {
        seed,
        figure,
        tail_drops: o.tail_drops,
        simulated_ms: o.simulated.as_secs_f64() * 1000.0,
        wall_ms: (o.wall.as_secs_f64() * 1e6).round() / 1000.0,
        resumed_after_heal_ms: None,
        shared_mbps: Vec::new(),
        files: o.files,
    };
    let size_mib = runs.first().map_or(0, |(_, o)| mib(size(o)));
    let bottleneck = BOTTLENECK_BPS as f64 / 1e6;
    let row = |target: &str, setup: String, unit: &str, bound: f64, runs: Vec<RunResult>, counted: bool| {
        let figures: Vec<f64> = runs.iter().map(|r| r.figure).collect();
        let figure = if counted { figures.iter().sum() } else { median(&figures) };
        let figure = (figure * 1000.0).round() / 1000.0;
        TargetResult {
            target: target.to_owned(),
            setup,
            figure,
            unit: unit.to_owned(),
            bound: (bound * 1000.0).round() / 1000.0,
            met: figure >= bound,
            runs,
        }
    };
    match kind {
        Kind::Throughput => {
            let results = runs.into_iter().map(|(s, o)| (goodput(&o.files[0]), s, o)).map(|(g, s, o)| result(o, s, g));
            let setup = format!("{bottleneck} Mbit/s bottleneck, 20 ms RTT, 250 kB buffer, 0 % loss, {size_mib} MiB");
            vec![row("throughput", setup, "Mbit/s", 0.9 * bottleneck, results.collect(), false)]
        }
        Kind::Loss(p) => {
            let results = runs.into_iter().map(|(s, o)| (goodput(&o.files[0]), s, o)).map(|(g, s, o)| result(o, s, g));
            let bound = 0.9 * mathis_mbps(p);
            let setup = format!(
                "{bottleneck} Mbit/s bottleneck, 20 ms RTT, {}% random loss both ways; Mathis bound {:.2} Mbit/s \
                 (MSS 1024 B); {size_mib} MiB",
                p * 100.0,
                mathis_mbps(p)
            );
            vec![row(&format!("loss {}%", p * 100.0), setup, "Mbit/s", bound, results.collect(), false)]
        }
        Kind::Fairness => {
            let mut jains = Vec::new();
            let mut ratios = Vec::new();
            for (seed, o) in runs {
                let rates = shared_rates(&o);
                let verified = o.files.iter().all(|f| f.verified);
                let j = if verified { jain(&rates) } else { 0.0 };
                let max = rates.iter().copied().fold(0.0, f64::max);
                let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let ratio = if verified && max > 0.0 { min / max } else { 0.0 };
                let rounded: Vec<f64> = rates.iter().map(|r| (r * 1000.0).round() / 1000.0).collect();
                let mut run = result(o, seed, j);
                run.shared_mbps = rounded;
                let mut ratio_run = run.clone();
                ratio_run.figure = ratio;
                ratio_run.files.clear();
                jains.push(run);
                ratios.push(ratio_run);
            }
            let setup = format!("two senders, one receiver's {bottleneck} Mbit/s link, 20 ms RTT, {size_mib} MiB each");
            vec![
                row("fairness: Jain's index", setup.clone(), "index", 0.95, jains, false),
                row("fairness: slower/faster", setup, "ratio", 0.8, ratios, false),
            ]
        }
        Kind::Migration => {
            let results = runs.into_iter().map(|(s, o)| {
                let pass = o.files.first().is_some_and(|f| f.verified && migrated(f));
                result(o, s, f64::from(u8::from(pass)))
            });
            let results: Vec<RunResult> = results.collect();
            let n = results.len() as f64;
            let setup = format!(
                "linux NATs; relay, direct, NAT reboot at 5 s (relay), direct again; {}, {size_mib} MiB",
                if quick { "5 Mbit/s" } else { "20 Mbit/s" }
            );
            vec![row("migration", setup, "runs verified via direct>relay>direct", n, results, true)]
        }
        Kind::Interruption => {
            let results = runs.into_iter().map(|(s, o)| {
                let at_cut = o.samples.iter().rev().find(|(t, _)| *t <= CUT_AT).and_then(|(_, r)| r.first().copied());
                let mid = at_cut.is_some_and(|b| b > 0 && b < size(&o));
                let pass = mid && o.files.first().is_some_and(|f| f.verified);
                let resumed = resumed_after_heal(&o).map(|ms| (ms * 1000.0).round() / 1000.0);
                let mut run = result(o, s, f64::from(u8::from(pass)));
                run.resumed_after_heal_ms = resumed;
                run
            });
            let results: Vec<RunResult> = results.collect();
            let n = results.len() as f64;
            let setup = format!(
                "the receiver's link cut for 30 s mid-transfer (8 s to 38 s), session timeout 60 s; {}, {size_mib} MiB",
                if quick { "5 Mbit/s" } else { "20 Mbit/s" }
            );
            vec![row("interruption", setup, "runs verified after the cut", n, results, true)]
        }
        Kind::Jitter => {
            let results = runs.into_iter().map(|(s, o)| {
                let g = o.files.first().map_or(0.0, goodput);
                result(o, s, g)
            });
            let link = if quick { 5.0 } else { 20.0 };
            let setup = format!(
                "{link} Mbit/s bottleneck, 20 ms RTT, {JITTER} of jitter on every link (reordering), {size_mib} MiB; \
                 bound: half the link"
            );
            vec![row("jitter", setup, "Mbit/s", 0.5 * link, results.collect(), false)]
        }
    }
}

impl Sweep {
    /// The table a person reads.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<24} {:>10} {:>10} {:<4} {}\n",
            "target", "figure", "bound", "met", "per seed (goodput Mbit/s, retransmitted; or figure)"
        );
        for t in &self.targets {
            let per_seed: Vec<String> = t
                .runs
                .iter()
                .map(|r| match (t.unit.as_str(), r.files.first()) {
                    ("Mbit/s", Some(f)) => format!("{:.2} ({} rtx)", r.figure, f.retransmitted),
                    _ => {
                        let mut s = format!("{:.3}", r.figure);
                        if !r.shared_mbps.is_empty() {
                            let rates: Vec<String> = r.shared_mbps.iter().map(|x| format!("{x:.1}")).collect();
                            s.push_str(&format!(" ({} Mbit/s)", rates.join("/")));
                        }
                        if let Some(ms) = r.resumed_after_heal_ms {
                            s.push_str(&format!(" (resumed {ms:.0} ms after the heal)"));
                        }
                        s
                    }
                })
                .collect();
            out.push_str(&format!(
                "{:<24} {:>10} {:>10} {:<4} {}\n",
                t.target,
                format!("{:.3}", t.figure),
                format!("{:.3}", t.bound),
                if t.met { "yes" } else { "NO" },
                per_seed.join(", ")
            ));
            out.push_str(&format!("{:<24} {}; figure in {}\n", "", t.setup, t.unit));
        }
        out.push_str(&format!(
            "\n{} seed(s) per target{}; {} of {} targets met; {:.1} s of runs\n",
            self.seeds,
            if self.quick { ", --quick" } else { "" },
            self.targets.len() as u32 - self.unmet,
            self.targets.len(),
            self.wall_ms / 1000.0
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_the_textbook_figures() {
        // MSS/RTT = 1024 B / 20 ms = 409.6 kbit/s; √(1.5/0.01) = 12.247.
        assert!((mathis_mbps(0.01) - 5.0165).abs() < 1e-3, "{}", mathis_mbps(0.01));
        assert!((mathis_mbps(0.001) - 15.864).abs() < 1e-3, "{}", mathis_mbps(0.001));
        assert_eq!(jain(&[3.0, 3.0]), 1.0);
        assert!((jain(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((jain(&[60.0, 40.0]) - 10_000.0 / 10_400.0).abs() < 1e-12);
    }

    #[test]
    fn every_target_builds_a_valid_scenario_both_ways() {
        for kind in KINDS {
            for quick in [false, true] {
                let s = scenario(kind, quick, 1);
                assert!(s.events.iter().any(|e| matches!(e.action, crate::scenario::Action::SendFile { .. })));
            }
        }
    }

    #[test]
    fn a_migration_is_direct_then_relay_then_direct_in_that_order() {
        let file = |paths: Vec<PeerPath>| FileTransfer {
            from: "a".into(),
            to: "b".into(),
            size: 1,
            completed_ms: None,
            goodput_mbps: None,
            retransmitted: 0,
            verified: true,
            name: "f".into(),
            root: String::new(),
            accepted_ms: None,
            resumed: 0,
            received: 0,
            paths,
            failure: None,
        };
        use PeerPath::{Direct, Relay};
        assert!(migrated(&file(vec![Relay, Direct, Relay, Direct])));
        assert!(!migrated(&file(vec![Relay, Direct])));
        assert!(!migrated(&file(vec![Direct, Relay])));
    }
}
