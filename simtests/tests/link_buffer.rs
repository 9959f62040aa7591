//! A link's bounded queue (`buffer`) in a whole run: the packets it drops at
//! the tail are traced as such and counted in the report, the protocol
//! still gets every text through, and a link without a buffer reports
//! nothing new.

use punchline_sim::engine::Simulation;
use punchline_sim::report::{Report, TailDrops};
use punchline_sim::scenario::Scenario;

/// Alice sits on a 64 kbit/s uplink (a 100-byte datagram takes 12.5 ms),
/// `alice_link` says the rest; she connects to bob and sends him five texts
/// at once.
fn scenario(alice_link: &str) -> String {
    let mut text = format!(
        r#"
duration = "20s"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"

[[peer]]
name = "alice"
addr = "192.0.2.10"
link = {{ latency = "10ms", bandwidth = "64kbit"{alice_link} }}

[[peer]]
name = "bob"
addr = "192.0.2.20"
link = {{ latency = "10ms" }}

[[event]]
at = "1s"
peer = "alice"
connect = "bob"
"#
    );
    for k in 0..5 {
        text +=
            &format!("\n[[event]]\nat = \"3s\"\npeer = \"alice\"\nsend_text = {{ to = \"bob\", text = \"t{k}\" }}\n");
    }
    text
}

fn run(text: &str, seed: u64) -> (Report, Vec<String>) {
    let scenario = Scenario::from_toml_str(text, "link-buffer").expect("scenario parses");
    let mut sim = Simulation::new(scenario, Some(seed)).expect("scenario is valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace)
}

fn drops_of(report: &Report, peer: &str) -> TailDrops {
    report.peers.iter().find(|p| p.name == peer).expect("peer in the report").tail_drops
}

#[test]
fn a_full_buffer_drops_are_traced_counted_and_recovered_from() {
    for seed in 1..=4 {
        // Given alice's uplink holding 50 ms of its bandwidth (400 bytes),
        let (report, trace) = run(&scenario(", buffer = \"50ms\""), seed);
        // when her bursts (discovery, probes, five texts) overflow it,
        let traced = trace.iter().filter(|l| l.contains("link alice: queue full, dropped")).count() as u64;
        let alice = drops_of(&report, "alice");
        // then each drop on her uplink is a trace line and a count, none on
        // her downlink (as fast as its sender) nor on bob's unbounded link,
        assert!(alice.up > 0, "seed {seed}: no tail drop");
        assert_eq!(alice.up, traced, "seed {seed}");
        assert_eq!((alice.down, drops_of(&report, "bob")), (0, TailDrops::default()), "seed {seed}");
        // and the texts still all arrive, once.
        let m = report.messages;
        assert_eq!((m.sent, m.delivered, m.duplicated, m.lost), (5, 5, 0, 0), "seed {seed}: {m:?}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["peers"][0]["tail_drops"], serde_json::json!({ "up": alice.up, "down": 0 }));
    }
}

#[test]
fn without_a_buffer_the_report_has_no_tail_drops() {
    // Given the same run with alice's queue unbounded,
    let (report, trace) = run(&scenario(""), 1);
    // then nothing is dropped at the tail, and the JSON has no such key.
    assert!(report.peers.iter().all(|p| p.tail_drops == TailDrops::default()));
    assert!(!trace.iter().any(|l| l.contains("queue full")));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("tail_drops"), "{json}");
}
