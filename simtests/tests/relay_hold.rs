//! A client with `punch = false` holds its sessions on the relay: whatever
//! the NATs, and whatever its peer tries, the path never goes direct, it
//! sends no opener or probe, and the session carries its texts over the
//! relay.

use punchline_sim::engine::Simulation;
use punchline_sim::report::Outcome;
use punchline_sim::scenario::Scenario;

const PRESETS: [&str; 4] = ["full-cone", "port-restricted-cone", "linux", "symmetric-random"];

fn scenario(preset_a: &str, preset_b: &str, punch_a: bool, punch_b: bool) -> String {
    format!(
        r#"
duration = "30s"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"

[[nat]]
name = "home-a"
public_ips = ["198.51.100.1"]
preset = "{preset_a}"

[[nat]]
name = "home-b"
public_ips = ["198.51.100.6"]
preset = "{preset_b}"

[[peer]]
name = "alice"
addr = "10.0.0.2"
behind = "home-a"
link = {{ latency = "20ms" }}
config = {{ punch = {punch_a} }}

[[peer]]
name = "bob"
addr = "10.0.1.2"
behind = "home-b"
link = {{ latency = "20ms" }}
config = {{ punch = {punch_b} }}

[[event]]
at = "1s"
peer = "alice"
connect = "bob"

[[event]]
at = "8s"
peer = "alice"
send_text = {{ to = "bob", text = "over the relay" }}
"#
    )
}

/// Trace lines of datagrams `who` sent whose description contains `kind`.
fn sent(trace: &[String], who: &str, kind: &str) -> usize {
    trace.iter().filter(|l| l.contains(&format!("ms {who} ")) && l.contains(" -> ") && l.contains(kind)).count()
}

#[test]
fn given_one_side_that_does_not_punch_then_every_pair_stays_on_the_relay() {
    for a in PRESETS {
        for b in PRESETS {
            for (punch_a, punch_b) in [(false, true), (true, false)] {
                for seed in 1..=2 {
                    let text = scenario(a, b, punch_a, punch_b);
                    let scenario = Scenario::from_toml_str(&text, "relay-hold").expect("scenario parses");
                    let mut sim = Simulation::new(scenario, Some(seed)).expect("valid");
                    sim.keep_trace(true);
                    let (report, trace, _) = sim.run();
                    let c = &report.connections[0];
                    let case = format!("{a} x {b}, punch {punch_a}/{punch_b}, seed {seed}");
                    assert_eq!(c.outcome, Outcome::Relay, "{case}: {c:?}");
                    assert!(c.connect_ms.is_some(), "{case}: the relay is usable");
                    assert_eq!(c.direct_ms, None, "{case}");
                    let silent = if punch_a { "bob" } else { "alice" };
                    assert_eq!(sent(&trace, silent, " Opener"), 0, "{case}: {silent} sent an opener");
                    assert_eq!(sent(&trace, silent, " Probe "), 0, "{case}: {silent} sent a probe");
                    assert_eq!(sent(&trace, silent, " ProbeAck"), 0, "{case}: {silent} answered a probe");
                    assert_eq!(report.messages.delivered, 1, "{case}: the text went through");
                }
            }
        }
    }
}

#[test]
fn given_both_sides_punching_then_a_cone_pair_goes_direct() {
    // The control: the same world with both punching ends direct.
    let text = scenario("full-cone", "port-restricted-cone", true, true);
    let scenario = Scenario::from_toml_str(&text, "relay-hold").expect("scenario parses");
    let mut sim = Simulation::new(scenario, Some(1)).expect("valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    assert_eq!(report.connections[0].outcome, Outcome::Direct);
    // And the trace patterns above do find what a punching side sends.
    for who in ["alice", "bob"] {
        assert!(sent(&trace, who, " Opener") > 0, "{who} sent no opener");
        assert!(sent(&trace, who, " Probe ") > 0, "{who} sent no probe");
        assert!(sent(&trace, who, " ProbeAck") > 0, "{who} answered no probe");
    }
}
