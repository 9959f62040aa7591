//! Engine benchmarks (issue 3): packet events per second with 2, 100 and
//! 1,000 hosts, and how many times faster than real time a two-peer-plus-
//! server 60 s scenario runs.
//!
//! Run with `cargo bench -p punchline-sim --bench engine`. Throughput is
//! reported as packet events (each step of a datagram the engine schedules
//! as an event, plus each datagram the server sends: the engine's
//! `packet_events` counter, defined in `simtests/README.md`) per second of
//! wall time. Every run of a scenario
//! is deterministic, so the event count comes from one warm-up run.
//!
//! Each run is measured twice: `run_15s` hashes the trace as
//! `punchline-sim run` does, `run_15s_untraced` skips it as the matrix does
//! ([`Simulation::skip_trace`]). Both use the engine's default threads: two
//! for the 100- and 1,000-host worlds on a two-core machine, one for two
//! hosts (see `simtests/README.md`, Parallel runs).
//! `run_15s_untraced_one_thread` runs the 1,000-host world on one thread,
//! the baseline the two threads are measured against in the same run.
//!
//! `build` benchmarks only construct the `Simulation` (parsing excluded), a
//! baseline to read the `run` figures against.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use punchline_sim::engine::Simulation;
use punchline_sim::matrix::pair_scenario;
use punchline_sim::nat::Preset;
use punchline_sim::scenario::Scenario;

/// The allocator `punchline-sim` runs with (see `src/main.rs`), so these
/// figures are the binary's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated time each many-host run covers.
const MANY_HOSTS_RUN: Duration = Duration::from_secs(15);
/// Simulated time of the small scenario.
const SMALL_RUN: Duration = Duration::from_secs(60);

/// A scenario with `n` peers, each behind its own full-cone NAT with its own
/// public IP in 198.18.0.0/15, a server with an alternate address, and peer
/// `2k` connecting to peer `2k + 1` at 3 s.
fn many_hosts(n: usize) -> Scenario {
    let mut text = String::from(
        "seed = 1\nduration = \"20s\"\n\n[server]\naddr = \"203.0.113.10:3478\"\nalt_addr = \"203.0.113.11:3479\"\n\n",
    );
    for i in 0..n {
        let public = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let private = format!("10.{}.{}.2", i / 250, i % 250);
        text += &format!(
            "[[nat]]\nname = \"nat-{i}\"\npublic_ips = [\"{public}\"]\npreset = \"full-cone\"\n\n\
             [[peer]]\nname = \"peer-{i}\"\naddr = \"{private}\"\nbehind = \"nat-{i}\"\n\
             link = {{ latency = \"20ms\", jitter = \"3ms\" }}\n\n"
        );
    }
    for k in 0..n / 2 {
        text += &format!("[[event]]\nat = \"3s\"\npeer = \"peer-{}\"\nconnect = \"peer-{}\"\n\n", 2 * k, 2 * k + 1);
    }
    Scenario::from_toml_str(&text, &format!("bench {n} hosts")).expect("the bench's scenario is valid")
}

/// The small scenario: the matrix's full-cone pair, run for 60 s.
fn small() -> Scenario {
    pair_scenario(Preset::FullCone, Preset::FullCone, 1)
}

/// Packet events of one run of `scenario` to `end` (deterministic).
fn count_events(scenario: &Scenario, end: Duration) -> u64 {
    let mut sim = Simulation::new(scenario.clone(), None).expect("valid scenario");
    sim.run_until(end);
    sim.packet_events
}

/// Runs `scenario` to `end` and returns the wall time of `run_until` alone.
fn timed_run(scenario: &Scenario, end: Duration) -> Duration {
    timed(scenario, end, true)
}

/// As [`timed_run`], hashing the trace only when `traced`.
fn timed(scenario: &Scenario, end: Duration, traced: bool) -> Duration {
    timed_on(scenario, end, traced, None)
}

/// As [`timed`], on `threads` threads (None: the engine's default).
fn timed_on(scenario: &Scenario, end: Duration, traced: bool, threads: Option<usize>) -> Duration {
    let mut sim = Simulation::new(scenario.clone(), None).expect("valid scenario");
    if !traced {
        sim.skip_trace();
    }
    if let Some(threads) = threads {
        sim.set_threads(threads);
    }
    let start = Instant::now();
    sim.run_until(black_box(end));
    let elapsed = start.elapsed();
    black_box(sim.packet_events);
    elapsed
}

fn packet_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet_events");
    group.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    let mut built = Vec::new();
    for n in [2, 100, 1000] {
        let scenario = many_hosts(n);
        let events = count_events(&scenario, MANY_HOSTS_RUN);
        eprintln!("packet_events/{n} hosts: {events} packet events in {MANY_HOSTS_RUN:?} simulated");
        group.throughput(Throughput::Elements(events));
        group.bench_with_input(BenchmarkId::new("run_15s", n), &scenario, |b, s| {
            b.iter_custom(|iters| (0..iters).map(|_| timed_run(s, MANY_HOSTS_RUN)).sum())
        });
        group.bench_with_input(BenchmarkId::new("run_15s_untraced", n), &scenario, |b, s| {
            b.iter_custom(|iters| (0..iters).map(|_| timed(s, MANY_HOSTS_RUN, false)).sum())
        });
        if n == 1000 {
            group.bench_with_input(BenchmarkId::new("run_15s_untraced_one_thread", n), &scenario, |b, s| {
                b.iter_custom(|iters| (0..iters).map(|_| timed_on(s, MANY_HOSTS_RUN, false, Some(1))).sum())
            });
        }
        built.push((n, scenario));
    }
    group.finish();

    // Baseline: building the world only (no throughput: nothing is sent).
    let mut group = c.benchmark_group("build");
    group.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    for (n, scenario) in &built {
        group.bench_with_input(BenchmarkId::new("hosts", n), scenario, |b, s| {
            b.iter(|| Simulation::new(black_box(s.clone()), None).expect("valid scenario"))
        });
    }
    group.finish();
}

fn small_scenario(c: &mut Criterion) {
    let scenario = small();
    let events = count_events(&scenario, SMALL_RUN);

    // A quick separate measurement of the real-time ratio, printed once.
    let mut times: Vec<Duration> = (0..31).map(|_| timed_run(&scenario, SMALL_RUN)).collect();
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "small scenario (2 peers + server, {SMALL_RUN:?} simulated, {events} packet events): \
         median {median:?} per run = {:.0}x real time",
        SMALL_RUN.as_secs_f64() / median.as_secs_f64()
    );

    let mut group = c.benchmark_group("small_scenario");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(events));
    group.bench_function("run_60s", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_run(&scenario, SMALL_RUN)).sum())
    });
    group.finish();

    let mut group = c.benchmark_group("build");
    group.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    group.bench_function("small_scenario", |b| {
        b.iter(|| Simulation::new(black_box(scenario.clone()), None).expect("valid scenario"))
    });
    group.finish();
}

criterion_group!(benches, packet_events, small_scenario);
criterion_main!(benches);
