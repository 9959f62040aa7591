//! The server's store as a request with a commit latency
//! (`[server] store_latency`): every text is acknowledged only after the
//! commit that holds it, texts that arrive while a commit is in flight share
//! the next one, and nothing is lost or shown twice, over several seeds.

use std::time::Duration;

use punchline_sim::engine::Simulation;
use punchline_sim::report::{Messages, Report};
use punchline_sim::scenario::Scenario;

/// Alice (public) writes `count` texts, one every `every_ms`, to carol, whose
/// link is cut from 0.5 s to 5 s: the server still counts her online, so it
/// forwards each committed text and answers alice `Stored` after its
/// `delivered_wait` (500 ms) has passed without carol's acknowledgement.
const DELIVERED_WAIT: Duration = Duration::from_millis(500);
fn scenario(store_latency: &str, count: u64, every_ms: u64) -> String {
    let mut text = format!(
        r#"
duration = "30s"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"
store_latency = "{store_latency}"

[[peer]]
name = "alice"
addr = "192.0.2.20"
link = {{ latency = "10ms" }}

[[peer]]
name = "carol"
addr = "192.0.2.30"
link = {{ latency = "10ms" }}

[[event]]
at = "500ms"
peer = "carol"
partition = true

[[event]]
at = "5s"
peer = "carol"
heal = true
"#
    );
    for k in 0..count {
        let at = 1000 + k * every_ms;
        text += &format!(
            "\n[[event]]\nat = \"{at}ms\"\npeer = \"alice\"\nsend_text = {{ to = \"carol\", text = \"t{k}\" }}\n"
        );
    }
    text
}

fn run(text: &str, seed: u64) -> (Report, Vec<String>) {
    let scenario = Scenario::from_toml_str(text, "store-latency").expect("scenario parses");
    let mut sim = Simulation::new(scenario, Some(seed)).expect("scenario is valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace)
}

/// The time of a trace line, from its leading "  1234.567ms".
fn at(line: &str) -> Duration {
    let ms: f64 = line.trim_start().split("ms").next().unwrap().parse().expect("a trace line starts with its time");
    Duration::from_secs_f64(ms / 1000.0)
}

/// (message id, when) of trace lines.
type Timed = Vec<(String, Duration)>;

/// Departure of each TextSend from alice and of each TextAck from the
/// server, by message id.
fn sends_and_acks(trace: &[String]) -> (Timed, Timed) {
    let id_after =
        |line: &str, word: &str| line.split(word).nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let sends = trace
        .iter()
        .filter(|l| l.contains("alice") && l.contains("-> 203.0.113.10:3478 TextSend "))
        .map(|l| (id_after(l, "TextSend "), at(l)))
        .collect();
    let acks = trace
        .iter()
        .filter(|l| l.contains("server 203.0.113.10:3478 ->") && l.contains(" TextAck "))
        .map(|l| (id_after(l, "TextAck "), at(l)))
        .collect();
    (sends, acks)
}

#[test]
fn given_a_slow_store_then_each_text_is_acknowledged_after_its_commit_and_delivered_once() {
    for seed in 1..=4 {
        // Given a store that takes 50 ms per commit and ten texts 2 ms apart,
        let (report, trace) = run(&scenario("50ms", 10, 2), seed);
        // then every text is acknowledged and shown exactly once,
        assert_eq!(
            report.messages,
            Messages { sent: 10, acknowledged: 10, delivered: 10, duplicated: 0, lost: 0 },
            "seed {seed}"
        );
        let (sends, acks) = sends_and_acks(&trace);
        assert_eq!(acks.len(), 10, "seed {seed}: one acknowledgement per text: {acks:?}");
        // no acknowledgement leaves before its commit finished and the
        // delivered wait after it passed (the send leaves alice 10 ms
        // before it reaches the server),
        for (id, acked) in &acks {
            let (_, sent) = sends.iter().find(|(s, _)| s == id).expect("every ack answers a send");
            let earliest = *sent + Duration::from_millis(10 + 50) + DELIVERED_WAIT;
            assert!(*acked >= earliest, "seed {seed}: {id} acked at {acked:?}, sent {sent:?}");
        }
        // and the ten texts, arriving within 18 ms, share two commits: the
        // first alone (the store was idle), the rest together.
        let mut commit_times: Vec<Duration> = acks.iter().map(|(_, t)| *t).collect();
        commit_times.dedup();
        assert_eq!(commit_times.len(), 2, "seed {seed}: {acks:?}");
    }
}

#[test]
fn given_no_store_latency_then_a_text_is_acknowledged_in_the_instant_it_arrives() {
    // The default: a request completes where a synchronous call returned.
    let (report, trace) = run(&scenario("0ms", 3, 100), 1);
    assert_eq!(report.messages.acknowledged, 3);
    let (sends, acks) = sends_and_acks(&trace);
    for (id, acked) in &acks {
        let (_, sent) = sends.iter().find(|(s, _)| s == id).expect("every ack answers a send");
        assert_eq!(*acked, *sent + Duration::from_millis(10) + DELIVERED_WAIT, "{id}: committed on arrival");
    }
}

#[test]
fn given_a_malformed_store_latency_then_the_scenario_is_refused_naming_the_field() {
    let error = Scenario::from_toml_str(&scenario("soon", 1, 1), "bad").expect_err("not a duration");
    assert!(error.to_string().contains("store_latency"), "{error}");
}
