//! Text messages in the simulator: through partitions, 20 % loss and a path
//! switch from direct to relay and back, over several seeds — every message
//! acknowledged and shown to its recipient, none shown twice.

use punchline_sim::engine::Simulation;
use punchline_sim::report::{Messages, Outcome, Report};
use punchline_sim::scenario::Scenario;

const SEEDS: std::ops::RangeInclusive<u64> = 1..=6;

/// Two peers behind port-restricted cones; `link` is both peers' link table,
/// `events` the `[[event]]` tables after the peers.
fn scenario(duration: &str, link: &str, events: &str) -> String {
    format!(
        r#"
duration = "{duration}"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"

[[nat]]
name = "home-a"
public_ips = ["198.51.100.1"]
preset = "port-restricted-cone"

[[nat]]
name = "home-b"
public_ips = ["198.51.100.6"]
preset = "port-restricted-cone"

[[peer]]
name = "alice"
addr = "10.0.0.2"
behind = "home-a"
link = {link}

[[peer]]
name = "bob"
addr = "10.0.1.2"
behind = "home-b"
link = {link}
{events}
"#
    )
}

/// `count` texts from `from` to `to`, one every `every_ms` from `start_ms`.
fn texts(from: &str, to: &str, start_ms: u64, every_ms: u64, count: u64) -> String {
    (0..count)
        .map(|k| {
            let at = start_ms + k * every_ms;
            format!(
                "\n[[event]]\nat = \"{at}ms\"\npeer = \"{from}\"\nsend_text = {{ to = \"{to}\", text = \"{from} {k}\" }}\n"
            )
        })
        .collect()
}

fn event(at: &str, peer: &str, action: &str) -> String {
    format!("\n[[event]]\nat = \"{at}\"\npeer = \"{peer}\"\n{action}\n")
}

fn run(text: &str, seed: u64) -> (Report, Vec<String>) {
    let scenario = Scenario::from_toml_str(text, "messaging-test").expect("scenario parses");
    let mut sim = Simulation::new(scenario, Some(seed)).expect("scenario is valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace)
}

/// Every one of `sent` texts acknowledged and shown exactly once.
fn assert_all_delivered_once(m: Messages, sent: u64, seed: u64) {
    assert_eq!(
        m,
        Messages { sent, acknowledged: sent, delivered: sent, duplicated: 0, lost: 0 },
        "seed {seed}: every text acknowledged and shown exactly once"
    );
}

#[test]
fn given_partitions_on_both_sides_then_every_text_arrives_once() {
    // Given alice writing to bob every 500 ms for 15 s, no session between
    // them, while bob is cut off from 3 s to 9 s and alice from 11 s to 14 s.
    let mut events = texts("alice", "bob", 1000, 500, 30);
    events += &texts("bob", "alice", 1250, 1000, 15);
    events += &event("3s", "bob", "partition = true");
    events += &event("9s", "bob", "heal = true");
    events += &event("11s", "alice", "partition = true");
    events += &event("14s", "alice", "heal = true");
    let text = scenario("60s", r#"{ latency = "20ms", jitter = "3ms" }"#, &events);
    for seed in SEEDS {
        // When the run ends, then all 45 were acknowledged and shown once.
        let (report, trace) = run(&text, seed);
        assert_all_delivered_once(report.messages, 45, seed);
        // And the partitions mattered: some texts waited in the server's store.
        assert!(trace.iter().any(|l| l.contains("acknowledged: Stored")), "seed {seed}: nothing was stored");
    }
}

#[test]
fn given_20_percent_loss_then_every_text_arrives_once_over_server_and_session() {
    // Given 20 % loss on both links, texts before the session is direct
    // (server path) and after it went direct (session stream). They start
    // once bob's first login has surely completed: until then his name is
    // bound to no key, and a text to it is refused as to an unknown user.
    let mut events = event("1s", "alice", "connect = \"bob\"");
    events += &texts("alice", "bob", 2500, 400, 20);
    events += &texts("bob", "alice", 15_000, 300, 20);
    let text = scenario("120s", r#"{ latency = "30ms", jitter = "5ms", loss = 0.2 }"#, &events);
    let mut direct_acks = 0;
    for seed in SEEDS {
        let (report, trace) = run(&text, seed);
        assert_all_delivered_once(report.messages, 40, seed);
        // Lost datagrams were really lost (the loss is not a no-op).
        assert!(trace.iter().any(|l| l.contains(": lost ")), "seed {seed}: no loss happened");
        direct_acks += trace.iter().filter(|l| l.contains("acknowledged: Delivered via Direct")).count();
    }
    // Over the seeds, the session's direct path carried texts too.
    assert!(direct_acks > 0, "no text was acknowledged over a direct path");
}

#[test]
fn given_a_path_switch_from_direct_to_relay_and_back_then_every_text_arrives_once() {
    // Given a direct session whose path dies when bob's NAT reboots at 10 s
    // (every mapping gone: both fall back to the relay), then goes direct
    // again from fresh mappings; texts flow both ways all along.
    let mut events = event("1s", "alice", "connect = \"bob\"");
    events += &texts("alice", "bob", 4000, 700, 30);
    events += &texts("bob", "alice", 4300, 900, 24);
    events += "\n[[event]]\nat = \"10s\"\nnat_reboot = \"home-b\"\n";
    // Bob's NAT gives each new mapping a random port, so after the reboot
    // his packets leave from ports alice's NAT filters.
    let cone = "name = \"home-b\"\npublic_ips = [\"198.51.100.6\"]\npreset = \"port-restricted-cone\"\n";
    let template = scenario("60s", r#"{ latency = "20ms", jitter = "2ms" }"#, &events);
    assert!(template.contains(cone), "the template names bob's NAT so");
    let text = template.replacen(cone, &format!("{cone}ports = \"random\"\n"), 1);
    for seed in SEEDS {
        let (report, trace) = run(&text, seed);
        // Then the session fell back and came back to direct...
        let c = &report.connections[0];
        assert!(c.fallbacks >= 1, "seed {seed}: no fallback happened: {c:?}");
        assert_eq!(c.outcome, Outcome::Direct, "seed {seed}: {c:?}");
        // ... texts went over the direct path, and over the server while it
        // was broken ...
        let via =
            |path: &str| trace.iter().filter(|l| l.contains(&format!("acknowledged: Delivered via {path}"))).count();
        assert!(via("Direct") > 0, "seed {seed}: no direct acknowledgement");
        assert!(
            trace.iter().any(|l| l.contains("acknowledged: Stored") || l.contains("Delivered via Server")),
            "seed {seed}: nothing went through the server"
        );
        // ... and every one was shown exactly once.
        assert_all_delivered_once(report.messages, 54, seed);
    }
}
