//! The server's outage events (issue 19): `server_down` cuts its link,
//! `server_up` restores it, `server_restart` replaces the machine and keeps
//! the store. What the simulator promises, seen from the trace and the
//! report.

use std::time::Duration;

use punchline_sim::engine::Simulation;
use punchline_sim::report::Report;
use punchline_sim::scenario::Scenario;

/// Alice and carol, public hosts on 10 ms links; `extra` adds `[server]`
/// settings, `events` the `[[event]]` tables.
fn scenario(extra: &str, events: &str) -> Scenario {
    let text = format!(
        r#"
duration = "60s"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"
{extra}

[[peer]]
name = "alice"
addr = "192.0.2.20"
link = {{ latency = "10ms" }}

[[peer]]
name = "carol"
addr = "192.0.2.30"
link = {{ latency = "10ms" }}
{events}
"#
    );
    Scenario::from_toml_str(&text, "server_events").expect("valid")
}

fn event(at: &str, body: &str) -> String {
    format!("\n[[event]]\nat = \"{at}\"\n{body}\n")
}

fn run(scenario: Scenario) -> (Report, Vec<String>) {
    let mut sim = Simulation::new(scenario, None).expect("valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace)
}

/// A trace line's time.
fn at(line: &str) -> Duration {
    let ms: f64 = line.trim_start().split("ms").next().and_then(|t| t.parse().ok()).expect("a timed line");
    Duration::from_secs_f64(ms / 1000.0)
}

fn between(trace: &[String], from: Duration, to: Duration) -> Vec<&String> {
    trace.iter().filter(|l| (from..to).contains(&at(l))).collect()
}

#[test]
fn a_cut_link_drops_every_datagram_to_and_from_the_server_until_it_is_restored() {
    // Given two logged-in clients, when the server's link is cut from 2 s
    // to 40 s,
    let events = event("2s", "server_down = true") + &event("40s", "server_up = true");
    let (_, trace) = run(scenario("", &events));
    let (down, up) = (Duration::from_secs(2), Duration::from_secs(40));
    let during = between(&trace, down, up);
    // then while it is cut, the clients' datagrams to the server (their
    // keepalives, at least) are lost at its link, and the server hears
    // nothing and answers nothing;
    let lost_to =
        during.iter().filter(|l| l.contains("server: link down, lost 192.0.2.") && l.contains("-> 203.0.113."));
    assert!(lost_to.count() >= 2, "{during:#?}");
    for (k, line) in during.iter().enumerate() {
        if line.contains(" server 203.0.113.") {
            let next = during.get(k + 1).map_or("", |l| l.as_str());
            assert!(next.contains("server: link down, lost 203.0.113."), "{line} went out: {next}");
        }
    }
    assert!(!during.iter().any(|l| l.contains("server: UserOnline")));
    // and once restored, datagrams reach it and its answers go out again.
    let after = between(&trace, up, Duration::from_secs(60));
    assert!(after.iter().any(|l| l.contains(" server 203.0.113.")), "{after:#?}");
    assert!(!after.iter().any(|l| l.contains("link down")), "{after:#?}");
    assert_eq!(trace.iter().filter(|l| l.contains("event: the server's link is cut")).count(), 1);
    assert_eq!(trace.iter().filter(|l| l.contains("event: the server's link is restored")).count(), 1);
}

#[test]
fn a_restart_forgets_the_logins_and_keeps_the_stored_texts() {
    // Given carol cut off from 0.5 s to 5 s and a text from alice to her at
    // 1 s, which the server stores,
    let events = event("500ms", "peer = \"carol\"\npartition = true")
        + &event("1s", "peer = \"alice\"\nsend_text = { to = \"carol\", text = \"kept\" }")
        + &event("3s", "server_restart = true")
        + &event("5s", "peer = \"carol\"\nheal = true");
    // when the server restarts at 3 s, before carol is back,
    let (report, trace) = run(scenario("", &events));
    // then the restart is in the trace, with nothing in flight in the store,
    assert_eq!(
        trace.iter().filter(|l| l.contains("event: the server restarts (memory lost, store kept; 0 store")).count(),
        1,
        "{trace:#?}"
    );
    // the new server knows no one until they log in again,
    let restart = Duration::from_secs(3);
    let online_again = between(&trace, restart, Duration::from_secs(60));
    let online_again: Vec<_> = online_again.iter().filter(|l| l.contains("server: UserOnline")).collect();
    assert!(online_again.iter().any(|l| l.contains("\"alice\"")), "alice logs in again: {online_again:?}");
    assert!(online_again.iter().any(|l| l.contains("\"carol\"")), "carol logs in again: {online_again:?}");
    // and the text it had stored reaches carol, once.
    let m = report.messages;
    assert_eq!((m.sent, m.acknowledged, m.delivered, m.duplicated, m.lost), (1, 1, 1, 0, 0), "{m:?}");
}

#[test]
fn a_restart_during_a_commit_lets_the_commit_land_and_answers_no_one() {
    // Given a store that takes 100 ms per commit, and alice's text to
    // carol (cut off) reaching the server at 1.01 s, so its commit is in
    // flight until 1.11 s,
    let events = event("500ms", "peer = \"carol\"\npartition = true")
        + &event("1s", "peer = \"alice\"\nsend_text = { to = \"carol\", text = \"in flight\" }")
        + &event("1050ms", "server_restart = true")
        + &event("5s", "peer = \"carol\"\nheal = true");
    // when the server restarts at 1.05 s,
    let (report, trace) = run(scenario("store_latency = \"100ms\"", &events));
    // then the commit in flight is said to land unanswered,
    assert!(
        trace
            .iter()
            .any(|l| l.contains("1 store request(s) in flight commit unanswered, 0 not yet submitted are lost")),
        "{trace:#?}"
    );
    // and whatever the clients do about it, no text is lost or shown twice.
    let m = report.messages;
    assert_eq!((m.sent, m.duplicated, m.lost), (1, 0, 0), "{m:?}");
}
