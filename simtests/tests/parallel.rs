//! A big world runs its parts on two threads, window by window (see
//! `engine::parallel`). What runs where must never change what happens:
//! one thread, two threads, or one event at a time across the whole world
//! give the same report and the same trace, byte for byte.

use std::fmt::Write as _;
use std::path::Path;

use punchline_sim::engine::{Simulation, PARALLEL_MIN_PEERS};
use punchline_sim::scenario::Scenario;

/// How a run is executed.
#[derive(Clone, Copy, Debug)]
enum Mode {
    OneThread,
    TwoThreads,
    EventByEvent,
}

const MODES: [Mode; 3] = [Mode::OneThread, Mode::TwoThreads, Mode::EventByEvent];

/// The JSON report and the trace of `scenario` run in `mode`.
fn run(scenario: &Scenario, seed: Option<u64>, mode: Mode) -> (String, Vec<String>) {
    let mut sim = Simulation::new(scenario.clone(), seed).expect("valid scenario");
    sim.keep_trace(true);
    match mode {
        Mode::OneThread => sim.set_threads(1),
        Mode::TwoThreads => sim.set_threads(2),
        Mode::EventByEvent => sim.set_event_by_event(true),
    }
    let (report, trace, _) = sim.run();
    (serde_json::to_string_pretty(&report).unwrap(), trace)
}

/// Asserts that every mode gives what one thread gives.
fn assert_same_in_every_mode(name: &str, scenario: &Scenario, seed: Option<u64>) {
    let (json, trace) = run(scenario, seed, Mode::OneThread);
    assert!(!trace.is_empty(), "{name}: a trace was kept");
    for mode in MODES {
        let (other_json, other_trace) = run(scenario, seed, mode);
        if let Some(i) = trace.iter().zip(&other_trace).position(|(a, b)| a != b) {
            panic!("{name} {mode:?}: trace differs at line {}:\n  {}\n  {}", i + 1, trace[i], other_trace[i]);
        }
        assert_eq!(trace.len(), other_trace.len(), "{name} {mode:?}: trace length");
        assert_eq!(json, other_json, "{name} {mode:?}: report");
    }
}

#[test]
fn every_example_gives_the_same_bytes_on_one_thread_two_or_event_by_event() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    assert!(files.len() >= 7, "the examples are there: {files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = Scenario::load(&file).unwrap();
        for seed in [None, Some(3)] {
            assert_same_in_every_mode(&name, &scenario, seed);
        }
    }
}

/// A world big enough to run on two threads by default, with every kind of
/// link condition, NAT and scheduled event, and traffic between peers of
/// different groups: `peers` peers in pairs `(k, peers - 1 - k)`, behind NATs
/// of every preset (some behind one shared CGNAT), texting and connecting.
fn busy_world(peers: usize) -> Scenario {
    Scenario::from_toml_str(&busy_world_text(peers), "busy world").expect("the busy world is valid")
}

/// The scenario file of [`busy_world`].
fn busy_world_text(peers: usize) -> String {
    let presets = ["full-cone", "restricted-cone", "port-restricted-cone", "symmetric-sequential", "linux"];
    let mut text = String::from(
        "seed = 11\nduration = \"12s\"\n\n[server]\naddr = \"203.0.113.10:3478\"\nalt_addr = \"203.0.113.11:3479\"\n\n\
         [[nat]]\nname = \"cgnat\"\npublic_ips = [\"198.51.100.100\", \"198.51.100.101\"]\n\
         preset = \"port-restricted-cone\"\nhairpin = true\n\n",
    );
    for i in 0..peers {
        let preset = presets[i % presets.len()];
        // Every seventh home NAT sits behind the CGNAT.
        let (public, behind) = if i % 7 == 3 {
            (format!("100.64.{}.{}", i / 250, i % 250 + 1), "behind = \"cgnat\"\n")
        } else {
            (format!("198.18.{}.{}", i / 250, i % 250 + 1), "")
        };
        let link = match i % 4 {
            0 => "{ latency = \"20ms\", jitter = \"3ms\" }",
            1 => "{ latency = \"35ms\", jitter = \"10ms\", loss = 0.05, duplicate = 0.02 }",
            2 => "{ latency = \"15ms\", reorder = 0.1, bandwidth = \"2Mbit\" }",
            _ => "{ latency = \"25ms\", jitter = \"5ms\", loss = 0.1, loss_burst = 3.0 }",
        };
        let _ = write!(
            text,
            "[[nat]]\nname = \"nat-{i}\"\npublic_ips = [\"{public}\"]\npreset = \"{preset}\"\n{behind}\n\
             [[peer]]\nname = \"peer-{i}\"\naddr = \"10.{}.{}.2\"\nbehind = \"nat-{i}\"\nlink = {link}\n\n",
            i / 250,
            i % 250
        );
    }
    for k in 0..peers / 2 {
        let (a, b) = (k, peers - 1 - k);
        let _ = write!(
            text,
            "[[event]]\nat = \"1s\"\npeer = \"peer-{a}\"\nconnect = \"peer-{b}\"\n\n\
             [[event]]\nat = \"2s\"\npeer = \"peer-{b}\"\nsend_text = {{ to = \"peer-{a}\", text = \"hello {a}\" }}\n\n"
        );
    }
    text += "[[event]]\nat = \"4s\"\npeer = \"peer-1\"\npartition = true\n\n\
             [[event]]\nat = \"6s\"\npeer = \"peer-1\"\nheal = true\n\n\
             [[event]]\nat = \"5s\"\nnat_reboot = \"nat-2\"\n\n\
             [[event]]\nat = \"7s\"\npeer = \"peer-5\"\nmove_to = \"nat-9\"\n\n\
             [[event]]\nat = \"8s\"\npeer = \"peer-6\"\ndisconnect = \"peer-73\"\n\n";
    text
}

#[test]
fn a_busy_world_gives_the_same_bytes_on_one_thread_two_or_event_by_event() {
    // Given a world that runs on two threads by default,
    let scenario = busy_world(80);
    let sim = Simulation::new(scenario.clone(), None).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(sim.threads(), if cores >= 2 { 2 } else { 1 }, "{PARALLEL_MIN_PEERS} peers or more: two threads");
    assert!(!sim.lookahead().is_zero(), "every link has a minimum delay");
    // when it runs in every mode, with several seeds, then every run gives
    // the same bytes,
    for seed in [1, 2, 3] {
        assert_same_in_every_mode("busy world", &scenario, Some(seed));
    }
    // and the world did cross the groups: texts were delivered.
    let (json, _) = run(&scenario, Some(1), Mode::TwoThreads);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["messages"]["sent"], 40);
    assert!(report["messages"]["delivered"].as_u64().unwrap() > 30, "{}", report["messages"]);
    assert!(report["connections"].as_array().unwrap().len() == 40);
}

#[test]
fn a_world_with_an_instant_link_runs_event_by_event_whatever_it_is_asked() {
    // Given a big world where one link has no delay at all,
    let text = busy_world_text(80).replacen(
        "link = { latency = \"20ms\", jitter = \"3ms\" }",
        "link = { latency = \"0ms\" }",
        1,
    );
    let scenario = Scenario::from_toml_str(&text, "instant link").unwrap();
    let mut sim = Simulation::new(scenario.clone(), None).unwrap();
    assert!(sim.lookahead().is_zero());
    // when asked for two threads, then it uses one, and gives the same bytes
    // as event by event.
    sim.set_threads(2);
    assert_eq!(sim.threads(), 1);
    assert_same_in_every_mode("instant link", &scenario, Some(4));
}
