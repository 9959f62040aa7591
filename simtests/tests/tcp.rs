//! The TCP fallback in the simulator (issue 21): peers behind a UDP
//! firewall log in over TCP and end on the relay over TCP; a block in the
//! middle of a session moves the client to TCP within 5 s and back once UDP
//! passes, without losing or repeating a text; loss on a connection shows
//! as delay, every byte in order; a NAT reboot kills a connection and the
//! client recovers; a SYN that cannot reach the server fails the connect
//! after its retries.

use punchline_sim::engine::Simulation;
use punchline_sim::matrix;
use punchline_sim::nat::Preset;
use punchline_sim::report::{Outcome, Report};
use punchline_sim::scenario::Scenario;

fn run(text: &str, seed: Option<u64>) -> (Report, String) {
    let scenario = Scenario::from_toml_str(text, "tcp test").expect("the test's scenario is valid");
    let mut sim = Simulation::new(scenario, seed).expect("valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace.join("\n"))
}

/// The time (ms) of each trace line containing `needle`.
fn times_of(trace: &str, needle: &str) -> Vec<f64> {
    trace
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.trim_start().split("ms ").next()?.parse().ok())
        .collect()
}

fn first(trace: &str, needle: &str) -> Option<f64> {
    times_of(trace, needle).first().copied()
}

/// Alice behind `alice_nat` (with `alice_link`), bob behind a
/// port-restricted cone, 20 ms links; `events` after the peers.
fn pair(duration: &str, alice_nat: &str, alice_link: &str, events: &str) -> String {
    format!(
        r#"
duration = "{duration}"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"

[[nat]]
name = "home-a"
public_ips = ["198.51.100.1"]
preset = "{alice_nat}"

[[nat]]
name = "home-b"
public_ips = ["198.51.100.6"]
preset = "port-restricted-cone"

[[peer]]
name = "alice"
addr = "10.0.0.2"
behind = "home-a"
link = {alice_link}

[[peer]]
name = "bob"
addr = "10.0.1.2"
behind = "home-b"
link = {{ latency = "20ms", jitter = "2ms" }}

[[event]]
at = "3s"
peer = "alice"
connect = "bob"
{events}
"#
    )
}

const PLAIN_LINK: &str = r#"{ latency = "20ms", jitter = "2ms" }"#;

fn event(at: &str, body: &str) -> String {
    format!("\n[[event]]\nat = \"{at}\"\n{body}\n")
}

fn text(at: &str, from: &str, to: &str, n: u32) -> String {
    event(at, &format!("peer = \"{from}\"\nsend_text = {{ to = \"{to}\", text = \"text {n}\" }}"))
}

#[test]
fn every_udp_blocked_pair_ends_on_the_relay_over_tcp_on_every_seed() {
    // Given a peer behind the UDP firewall facing each preset, either way
    // round, over three seeds,
    for other in Preset::ALL {
        for (a, b) in [(Preset::UdpBlocked, other), (other, Preset::UdpBlocked)] {
            // when the matrix's scenario runs,
            let cell = matrix::run_cell(a, b, 3);
            // then every run ends on the relay over TCP, as the oracle says,
            // with no failed run and not one probe answered.
            assert_eq!((cell.relay_tcp, cell.direct, cell.relay, cell.failed), (3, 0, 0, 0), "{a} / {b}: {cell:?}");
            assert_eq!(cell.expected, "relay-tcp");
            assert!(cell.agrees(), "{a} / {b}");
            // The relay is usable within one round trip of the connect,
            // as over UDP (the blocked side logged in long before).
            assert!(cell.connect_ms_p50.is_some_and(|ms| ms < 60.0), "{a} / {b}: {cell:?}");
        }
    }
}

/// A direct session, a block of alice's UDP at 15 s (on her NAT, or on her
/// host), unblocked at 45 s; texts both ways while blocked. A run shorter
/// than 95 s leaves out what comes after its end.
fn block_scenario(duration_s: u32, target: &str) -> String {
    let events = [
        (10, text("10s", "alice", "bob", 1)),
        (15, event("15s", &format!("{target}\nblock_udp = true"))),
        (22, text("22s", "bob", "alice", 2)),
        (30, text("30s", "alice", "bob", 3)),
        (45, event("45s", &format!("{target}\nunblock_udp = true"))),
        (85, text("85s", "bob", "alice", 4)),
    ];
    let events: String = events.into_iter().filter(|(at, _)| *at < duration_s).map(|(_, e)| e).collect();
    pair(&format!("{duration_s}s"), "port-restricted-cone", PLAIN_LINK, &events)
}

#[test]
fn a_block_mid_session_moves_alice_to_tcp_within_five_seconds_and_back_without_losing_a_text() {
    for target in ["nat = \"home-a\"", "peer = \"alice\""] {
        for seed in 1..=5 {
            // Given a direct session whose UDP is blocked at 15 s,
            let (report, trace) = run(&block_scenario(95, target), Some(seed));
            let case = format!("{target}, seed {seed}");
            let c = &report.connections[0];
            assert!(first(&trace, "path direct via").is_some_and(|t| t < 15_000.0), "{case}: direct first");
            // then alice reaches the server over TCP within 5 s of the block,
            let to_tcp = first(&trace, "alice: reaches the server over tcp").expect("alice moves to TCP");
            assert!(to_tcp > 15_000.0 && to_tcp - 15_000.0 <= 5_000.0, "{case}: {to_tcp} ms");
            // back over UDP within 30 s of the unblock (her next UDP check),
            let to_udp = first(&trace, "alice: reaches the server over udp").expect("alice moves back");
            assert!(to_udp > 45_000.0 && to_udp - 45_000.0 <= 30_000.0, "{case}: {to_udp} ms");
            // direct again at the end, and every text shown exactly once.
            assert_eq!(c.outcome, Outcome::Direct, "{case}: {c:?}");
            let m = report.messages;
            assert_eq!((m.sent, m.delivered, m.duplicated, m.lost), (4, 4, 0, 0), "{case}: {m:?}");
            assert!(report.peers.iter().all(|p| p.transport == "udp"), "{case}: {:?}", report.peers);
        }
    }
}

#[test]
fn while_udp_is_blocked_the_session_is_on_the_relay_over_tcp() {
    // Given the same block, with the run ending at 40 s, while it holds,
    for target in ["nat = \"home-a\"", "peer = \"alice\""] {
        let (report, trace) = run(&block_scenario(40, target), Some(3));
        // then the session is on the relay with alice on TCP: relay-tcp,
        let c = &report.connections[0];
        assert_eq!((c.outcome, c.path_pair().as_str()), (Outcome::RelayTcp, "relay/relay"), "{target}: {c:?}");
        let alice = report.peers.iter().find(|p| p.name == "alice").expect("alice");
        assert_eq!(alice.transport, "tcp");
        // and the texts sent meanwhile went through the server.
        assert_eq!(report.messages.delivered, 3, "{target}");
        assert!(trace.contains("acknowledged: Delivered via Server"), "{target}");
    }
    // A block on the host drops its UDP both ways, traced as such.
    let (_, trace) = run(&block_scenario(40, "peer = \"alice\""), Some(3));
    assert_eq!(count(&trace, "event: alice's UDP is blocked (TCP passes)"), 1);
    assert!(count(&trace, "alice: UDP blocked, dropped 10.0.0.2:4000 -> ") > 0, "her own sends");
    assert!(count(&trace, "alice: UDP blocked, dropped 198.51.100.6:4000 -> 10.0.0.2:4000") > 0, "bob's probes");
}

fn count(trace: &str, needle: &str) -> usize {
    trace.lines().filter(|l| l.contains(needle)).count()
}

/// `(time ms, bytes)` of each line of `who` matching `what` (`tcp write` or
/// `tcp read`) on the connection `local` ⇄ `remote` (as `who` names them).
fn transfers(trace: &str, prefix: &str, what: &str) -> Vec<(f64, u64)> {
    trace
        .lines()
        .filter(|l| l.contains(prefix) && l.contains(what) && !l.contains("dropped"))
        .filter_map(|l| {
            let at: f64 = l.trim_start().split("ms ").next()?.parse().ok()?;
            let bytes = l.split(what).nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((at, bytes))
        })
        .collect()
}

#[test]
fn loss_on_a_connection_shows_as_delay_and_every_byte_arrives_once_in_order() {
    // Given alice behind the UDP firewall on a link losing 20 % each way,
    // writing bursts of three texts at once,
    let bursts: String = (0..10u32)
        .flat_map(|k| (0..3).map(move |j| text(&format!("{}s", 5 + 5 * k), "alice", "bob", 3 * k + j)))
        .collect();
    let lossy = r#"{ latency = "20ms", jitter = "2ms", loss = 0.2 }"#;
    let (report, trace) = run(&pair("60s", "udp-blocked", lossy, &bursts), Some(2));
    // (on her first connection, from 10.0.0.2:49152, seen by the server as
    // 198.51.100.1:49152),
    let writes = transfers(&trace, "alice 10.0.0.2:49152 => 203.0.113.10:3478", "tcp write ");
    let reads = transfers(&trace, "server 203.0.113.10:3478 <= 198.51.100.1:49152", "tcp read ");
    assert!(writes.len() > 30, "{} writes", writes.len());
    // then the server reads only whole writes, in order, never one twice:
    // every read ends where a write ends,
    let mut ends = Vec::new();
    let mut total = 0;
    for (_, len) in &writes {
        total += len;
        ends.push(total);
    }
    let mut read_total = 0;
    let mut longest = 0;
    for (at, len) in &reads {
        read_total += len;
        let k =
            ends.iter().position(|e| *e == read_total).unwrap_or_else(|| panic!("a read at {at} ms ends mid-write"));
        longest = longest.max(k + 1 - ends.iter().position(|e| *e > read_total - len).unwrap_or(k));
    }
    // some reads carry several writes at once: those held back behind a
    // lost one (head-of-line blocking),
    assert!(longest >= 2, "no read ever carried more than one write");
    // and a write whose segment the link lost is read no sooner than one
    // RTO (200 ms at least) after it was written, by its retransmission.
    let lines: Vec<&str> = trace.lines().collect();
    let mut k = 0;
    let mut lost_writes = 0;
    for (i, line) in lines.iter().enumerate() {
        let written =
            line.contains("alice 10.0.0.2:49152 => 203.0.113.10:3478 tcp write ") && !line.contains("dropped");
        if !written {
            continue;
        }
        let lost = lines.get(i + 1).is_some_and(|next| {
            next.contains("link alice: lost tcp 10.0.0.2:49152 -> 203.0.113.10:3478 [PSH-ACK]")
                && next.split("ms ").next() == line.split("ms ").next()
        });
        let (written_at, end) = (writes[k].0, ends[k]);
        k += 1;
        if !lost {
            continue;
        }
        lost_writes += 1;
        let mut seen = 0;
        if let Some((read_at, _)) = reads.iter().find(|(_, len)| {
            seen += len;
            seen >= end
        }) {
            assert!(*read_at >= written_at + 200.0, "lost write at {written_at} ms read at {read_at} ms");
        }
    }
    assert!(lost_writes > 0, "the link lost some writes");
    // Nothing the texts carried was lost or shown twice.
    let m = report.messages;
    assert_eq!((m.duplicated, m.lost), (0, 0), "{m:?}");
    assert!(report.streams.retransmissions > 0);
}

#[test]
fn at_15_percent_loss_a_lost_segment_on_a_tcp_login_is_retransmitted_and_no_text_is_lost() {
    // Given the loss matrix's port-restricted-cone to open pair on seed 49,
    // where peer-2's UDP login loses packets so it logs in over TCP, and
    // the server's segments to it are lost and retransmitted through the
    // session (once the RTO was stretched to seconds by RTT "samples" of
    // segments held behind a retransmission, and a segment lost at 35 s
    // was not sent again before the end: a text was lost),
    let scenario = matrix::stress_scenario(Some(matrix::Stress::Loss), Preset::PortRestrictedCone, Preset::Open, 49);
    let mut sim = Simulation::new(scenario, None).expect("valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    let trace = trace.join("\n");
    // when the session runs its 70 s with four texts both ways,
    // then the server did retransmit to peer-2 over its connection,
    assert!(count(&trace, "server 203.0.113.10:3478 => 198.51.100.2:49152 tcp retransmits") > 0);
    // and every text is delivered, none lost or shown twice.
    let m = report.messages;
    assert_eq!((m.sent, m.delivered, m.lost, m.duplicated), (4, 4, 0, 0), "{m:?}");
}

#[test]
fn a_nat_reboot_kills_the_connection_at_both_ends_and_the_client_recovers() {
    // Given alice logged in over TCP through the UDP firewall, in a
    // session with bob, when the firewall reboots at 20 s,
    let events = [
        text("5s", "alice", "bob", 1),
        event("20s", "nat_reboot = \"home-a\""),
        text("60s", "bob", "alice", 2),
        text("65s", "alice", "bob", 3),
    ];
    let (report, trace) = run(&pair("90s", "udp-blocked", PLAIN_LINK, &events.concat()), Some(21));
    // then the connection's segments die at the NAT both ways,
    assert!(
        count(&trace, "nat home-a: drop tcp 10.0.0.2:49152 -> 203.0.113.10:3478 [PSH-ACK] (no mapping, and not a SYN)")
            > 0
    );
    assert!(count(&trace, "nat home-a: drop tcp 203.0.113.10:3478 -> 198.51.100.1:49152") > 0);
    // the server's end gives up after its retransmissions (and its machine
    // is told), alice's client closes its own,
    assert_eq!(count(&trace, "server: tcp connection 4 gave up: its data went unacknowledged"), 1);
    let closed = first(&trace, "alice: closes TCP connection 1").expect("the client gives up on it");
    // and opens a new connection, through a new mapping, that the server
    // accepts,
    let second = times_of(&trace, "alice: opens tcp connection");
    assert!(second.len() >= 2 && second[1] >= closed, "{second:?}");
    assert_eq!(count(&trace, "nat home-a: map tcp 10.0.0.2:49153 -> 198.51.100.1:49153"), 1);
    assert!(first(&trace, "server: tcp connection 5 accepted from 198.51.100.1:49153").is_some_and(|t| t > 20_000.0));
    // so the texts after the reboot are delivered, once, and the session
    // ends on the relay over TCP.
    let m = report.messages;
    assert_eq!((m.sent, m.delivered, m.duplicated, m.lost), (3, 3, 0, 0), "{m:?}");
    assert_eq!(report.connections[0].outcome, Outcome::RelayTcp);
    assert_eq!((report.streams.opened, report.streams.accepted), (2, 2));
}

#[test]
fn a_syn_that_cannot_reach_the_server_is_sent_three_times_and_the_connect_fails_seven_seconds_later() {
    // Given alice behind the UDP firewall while the server's link is cut
    // from the start until 20 s,
    let events = [event("0s", "server_down = true"), event("20s", "server_up = true")];
    let (report, trace) = run(&pair("40s", "udp-blocked", r#"{ latency = "20ms" }"#, &events.concat()), Some(1));
    // then her first connection's SYN goes at 300 ms, 1.3 s and 3.3 s, and
    // the connect fails 4 s after the last;
    assert_eq!(first(&trace, "alice: opens tcp connection 1 "), Some(300.0));
    assert_eq!(times_of(&trace, "alice 10.0.0.2:49152 => 203.0.113.10:3478 tcp retransmits SYN"), [1_300.0, 3_300.0]);
    assert_eq!(
        first(&trace, "alice: tcp connection 1 to 203.0.113.10:3478 failed: no answer to its SYN"),
        Some(7_300.0)
    );
    // her client keeps trying, and once the server is back a connection
    // opens and she logs in over it.
    let logged_in = first(&trace, "alice: logged in as 198.51.100.1:").expect("alice logs in");
    assert!(logged_in > 20_000.0, "{logged_in}");
    assert!(report.streams.failed >= 2, "{:?}", report.streams);
    let alice = report.peers.iter().find(|p| p.name == "alice").expect("alice");
    assert_eq!((alice.logged_in, alice.transport.as_str()), (true, "tcp"));
}

#[test]
fn a_closed_connection_is_seen_closed_at_the_other_end_one_way_later() {
    // Given bob on a 400 ms one-way link (linux-late-start): his login over
    // UDP is slower than the 300 ms happy-eyeballs delay, so his client
    // opens a TCP connection too, and closes it once UDP answers,
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/linux-late-start.toml"))
        .expect("the example");
    let (_, trace) = run(&text, None);
    let closed = first(&trace, "bob: closes TCP connection 1").expect("bob closes it");
    // then the server sees it closed one way (400 ms) later, by its FIN.
    assert_eq!(first(&trace, "server: tcp connection 4 closed by the client (FIN)"), Some(closed + 400.0));
}
