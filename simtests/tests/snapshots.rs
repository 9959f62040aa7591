//! `insta` snapshots of the `--trace` output of the example scenarios, each
//! with its expected outcome asserted explicitly, and the proof that the model
//! captures the poisoned-port race of DESIGN §3 ("Open before you probe").
//!
//! Every trace here is well under 300 KB, so each snapshot is the full trace,
//! exactly as `punchline-sim run <file> --trace` prints it.

use std::path::{Path, PathBuf};

use punchline_sim::engine::Simulation;
use punchline_sim::report::{Connection, Outcome, PeerPath, Report};
use punchline_sim::scenario::Scenario;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(format!("{name}.toml"))
}

fn run(scenario: Scenario) -> (Report, Vec<String>) {
    let mut sim = Simulation::new(scenario, None).expect("scenario is valid");
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace)
}

/// Runs an example scenario; returns its report, its only connection and its
/// trace as `--trace` prints it.
fn run_example(name: &str) -> (Report, Connection, String) {
    let scenario = Scenario::load(scenario_path(name)).expect("example parses");
    let (report, trace) = run(scenario);
    assert_eq!(report.connections.len(), 1, "{name}: one connect event");
    let conn = report.connections[0].clone();
    (report, conn, trace.join("\n"))
}

fn count(trace: &str, needle: &str) -> usize {
    trace.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn full_cone_pair() {
    let (_, c, trace) = run_example("full-cone-pair");
    insta::assert_snapshot!("full-cone-pair", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    assert_eq!(c.strategy.as_deref(), Some("punch"));
    assert!(c.direct_ms.is_some());
    assert_eq!(c.fallbacks, 0);
    assert_eq!(count(&trace, "failed"), 0);
}

#[test]
fn symmetric_random_pair() {
    let (_, c, trace) = run_example("symmetric-random-pair");
    insta::assert_snapshot!("symmetric-random-pair", trace);
    assert_eq!(c.outcome, Outcome::Relay);
    assert_eq!(c.strategy.as_deref(), Some("relay-only"));
    assert!(c.connect_ms.is_some(), "the relay is usable");
    assert_eq!(c.direct_ms, None);
    assert_eq!((c.probes_from, c.probes_to), (0, 0), "no probe is wasted on a hopeless pair");
    assert_eq!(count(&trace, " Probe"), 0);
    assert_eq!(count(&trace, " Opener"), 0);
}

#[test]
fn predict_chatty_neighbour() {
    let (_, c, trace) = run_example("predict-chatty-neighbour");
    insta::assert_snapshot!("predict-chatty-neighbour", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    assert_eq!(c.strategy.as_deref(), Some("predict"));
    assert_eq!(c.fallbacks, 0);
    // The neighbours really were taking ports, and bob announced a window.
    assert!(count(&trace, "neighbours opened") > 0);
    assert_eq!(count(&trace, "Relay[Prediction"), 1, "one attempt, one announcement");
    assert_eq!(count(&trace, "attempt 0 failed"), 0, "direct on the first attempt");
}

/// Birthday probing's trace is too long for a readable snapshot (hundreds of
/// openers and probes); its shape is asserted instead.
#[test]
fn birthday_linux_random() {
    let (_, c, trace) = run_example("birthday-linux-random");
    assert_eq!(c.outcome, Outcome::Direct);
    assert_eq!(c.strategy.as_deref(), Some("birthday"));
    // Given bob behind the random NAT, then bob asked for a pool of 256
    // sockets and sent a TTL-3 opener from each to alice's public address,
    // and every one of them died in the internet, never reaching alice's NAT;
    assert_eq!(count(&trace, "bob: asks for 256 socket(s)"), 1);
    assert_eq!(count(&trace, "ttl=3 Opener"), 256);
    assert_eq!(count(&trace, "internet: TTL 2 expired 198.51.100.6:"), 256);
    // alice probed random ports within the budget, and bob released every
    // pool socket but the one that carries the path (plus, earlier, the NAT
    // discovery's filtering socket).
    assert!(c.probes_from > 0 && c.probes_from <= 1024 + 16, "{} probes", c.probes_from);
    assert_eq!(count(&trace, "bob: releases socket"), 255 + 1);
}

#[test]
fn path_breaks_and_recovers() {
    let (_, c, trace) = run_example("path-breaks-and-recovers");
    insta::assert_snapshot!("path-breaks-and-recovers", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    // The relay was cut too: the session stayed, and no side fell back.
    assert_eq!(c.fallbacks, 0, "{c:?}");
    assert!(count(&trace, "Relay[Ping") >= 1, "the quiet path made alice ask the relay");
    assert_eq!(count(&trace, "fell back to relay"), 0);
}

#[test]
fn nat_reboot() {
    let (_, c, trace) = run_example("nat-reboot");
    insta::assert_snapshot!("nat-reboot", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    assert_eq!(c.fallbacks, 2, "each side fell back once: {c:?}");
    assert_eq!(count(&trace, "event: NAT "), 1);
    assert!(count(&trace, ": path direct via") >= 4, "direct again after the reboot");
}

#[test]
fn peer_moves() {
    let (_, c, trace) = run_example("peer-moves");
    insta::assert_snapshot!("peer-moves", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    assert_eq!(count(&trace, " moves behind "), 1);
    // Bob followed alice to her new address without leaving the path.
    assert_eq!(c.fallbacks, 0, "{c:?}");
    assert_eq!(count(&trace, ": path direct via"), 3, "both direct, then bob's end at alice's new address");
    assert!(trace.contains("bob: session") && trace.contains("path direct via socket 0 to 198.51.100.20:4000"));
}

#[test]
fn same_nat_no_hairpin() {
    let (_, c, trace) = run_example("same-nat-no-hairpin");
    insta::assert_snapshot!("same-nat-no-hairpin", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    // Without hairpinning the only direct path is between host candidates.
    assert!(trace.contains("alice: session") && trace.contains("path direct via socket 0 to 10.0.0.3:4000"));
    assert!(trace.contains("bob: session") && trace.contains("path direct via socket 0 to 10.0.0.2:4000"));
}

#[test]
fn linux_late_start() {
    let (_, c, trace) = run_example("linux-late-start");
    insta::assert_snapshot!("linux-late-start", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    assert!(c.direct_ms.is_some());
    assert_eq!(count(&trace, "attempt 0 failed"), 0, "direct on the first attempt");
    // Both sides sent their low-TTL openers, and they died in the network.
    assert!(count(&trace, "ttl=3 Opener") >= 2);
    assert!(count(&trace, "internet: TTL ") >= 2);
    // No peer packet ever left conntrack state in the other peer's NAT.
    let poisoned = peer_to_peer_tracks(&trace);
    assert!(poisoned.is_empty(), "unsolicited peer packets tracked: {poisoned:#?}");
}

// The issue 19 families, one example each: the event happened, the report
// tells the truth about both peers, and the outcome is the one the
// scenario's header promises.

/// The report never says `direct` unless both peers are on the direct path,
/// and `paths` names both peers.
fn assert_honest(name: &str, c: &Connection) {
    let paths: Vec<(&str, PeerPath)> = c.paths.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(paths.len(), 2, "{name}: {c:?}");
    assert!(c.paths.contains_key(&c.from) && c.paths.contains_key(&c.to), "{name}: {c:?}");
    let both_direct = c.paths.values().all(|p| *p == PeerPath::Direct);
    assert_eq!(c.outcome == Outcome::Direct, both_direct, "{name}: {c:?}");
    assert!(c.disagree_ms >= 0.0, "{name}: {c:?}");
}

#[test]
fn connect_early() {
    let (_, c, trace) = run_example("connect-early");
    insta::assert_snapshot!("connect-early", trace);
    assert_honest("connect-early", &c);
    assert_eq!(count(&trace, "event: alice connects to bob"), 1);
    assert!(trace.lines().any(|l| l.trim_start().starts_with("100.000ms event: alice connects to bob")));
    // Usable within one server round trip (about 40 ms) plus 10 ms, while
    // NAT discovery still runs; direct once the strategy is chosen.
    assert!(c.connect_ms.is_some_and(|ms| ms <= 50.0), "{c:?}");
    assert!(trace.contains("strategy pending)"), "the offer came before the profiles");
    assert_eq!(c.outcome, Outcome::Direct, "{c:?}");
}

#[test]
fn nat_reboot_random_port() {
    let (_, c, trace) = run_example("nat-reboot-random-port");
    insta::assert_snapshot!("nat-reboot-random-port", trace);
    assert_honest("nat-reboot-random-port", &c);
    assert_eq!(count(&trace, "event: NAT home-a reboots"), 1);
    assert!(c.direct_ms.is_some(), "direct before the reboot: {c:?}");
    // Bob followed alice to her new port: no side ever fell back.
    assert_eq!((c.outcome, c.fallbacks), (Outcome::Direct, 0), "{c:?}");
    assert!(count(&trace, "bob: session") >= 3, "bob's path moved to alice's new address");
}

#[test]
fn steady_loss() {
    let (_, c, trace) = run_example("steady-loss");
    insta::assert_snapshot!("steady-loss", trace);
    assert_honest("steady-loss", &c);
    assert!(count(&trace, "link alice: lost") > 0 && count(&trace, "link bob: lost") > 0, "both links lose");
    assert!(c.direct_ms.is_some(), "a direct path forms: {c:?}");
    // Lossy is not dead: not one fallback in the minute.
    assert_eq!((c.outcome, c.fallbacks), (Outcome::Direct, 0), "{c:?}");
}

#[test]
fn same_lan_random() {
    let (_, c, trace) = run_example("same-lan-random");
    insta::assert_snapshot!("same-lan-random", trace);
    assert_honest("same-lan-random", &c);
    // One NAT, both peers behind it.
    assert!(trace.contains("nat office: map 10.0.0.2:4000") && trace.contains("nat office: map 10.0.0.3:4000"));
    // Direct over the LAN, between the host candidates, although the
    // strategy is relay-only.
    assert_eq!((c.outcome, c.strategy.as_deref()), (Outcome::Direct, Some("relay-only")), "{c:?}");
    assert!(trace.contains("alice: session") && trace.contains("path direct via socket 0 to 10.0.0.3:4000"));
    assert!(trace.contains("bob: session") && trace.contains("path direct via socket 0 to 10.0.0.2:4000"));
}

#[test]
fn roam_to_symmetric() {
    let (_, c, trace) = run_example("roam-to-symmetric");
    insta::assert_snapshot!("roam-to-symmetric", trace);
    assert_honest("roam-to-symmetric", &c);
    assert_eq!(count(&trace, "event: alice moves behind mobile"), 1);
    assert!(c.direct_ms.is_some(), "direct from home before the move: {c:?}");
    // The new NAT was measured and the strategy chosen again: birthday
    // probing opens a direct path from the carrier's network.
    assert!(trace.contains("alice: session") && trace.contains("strategy chosen: birthday"));
    assert_eq!((c.outcome, c.strategy.as_deref()), (Outcome::Direct, Some("birthday")), "{c:?}");
}

#[test]
fn server_outage() {
    let (report, c, trace) = run_example("server-outage");
    insta::assert_snapshot!("server-outage", trace);
    assert_honest("server-outage", &c);
    assert_eq!(count(&trace, "event: the server's link is cut"), 1);
    assert_eq!(count(&trace, "event: the server's link is restored"), 1);
    assert!(count(&trace, "server: link down, lost") > 0, "the outage drops datagrams");
    // Given a direct session when the server goes away, then it survives
    // the 30 s and every text sent meanwhile is delivered once.
    assert_eq!(c.outcome, Outcome::Direct);
    assert_eq!(c.fallbacks, 0);
    let m = report.messages;
    assert_eq!((m.sent, m.delivered, m.duplicated, m.lost), (4, 4, 0, 0), "{m:?}");
}

// The TCP fallback (issue 21): a login over TCP behind a UDP firewall, and
// a session that moves to TCP when UDP is cut mid-way and back after.

/// The time of the first trace line containing `needle`, in ms.
fn time_of(trace: &str, needle: &str) -> Option<f64> {
    let line = trace.lines().find(|l| l.contains(needle))?;
    line.trim_start().split("ms ").next()?.parse().ok()
}

#[test]
fn udp_blocked_login() {
    let (report, c, trace) = run_example("udp-blocked-login");
    insta::assert_snapshot!("udp-blocked-login", trace);
    assert_honest("udp-blocked-login", &c);
    // Given alice behind a UDP firewall: her Hello over UDP dies there, her
    // client opens a TCP connection 300 ms in, and logs in over it one
    // round trip after the handshake;
    assert!(trace.contains("nat hotel: drop 10.0.0.2:4000 -> 203.0.113.10:3478 (UDP blocked, outbound)"));
    assert!(trace.contains("   300.000ms alice: asks for a TCP connection to 203.0.113.10:3478"));
    assert!(trace.contains("alice 10.0.0.2:49152 => 203.0.113.10:3478 tcp write 157 bytes [Hello[Login alice]]"));
    let logged_in = time_of(&trace, "alice: logged in as 198.51.100.1:49152").expect("alice logs in over TCP");
    assert!(logged_in < 400.0, "{logged_in} ms");
    assert_eq!(count(&trace, "alice: reaches the server over tcp"), 1);
    // then the session is on the relay over TCP, both texts are delivered
    // once, and alice is still on TCP at the end, bob on UDP.
    assert_eq!((c.outcome, c.direct_ms), (Outcome::RelayTcp, None), "{c:?}");
    assert_eq!(c.path_pair(), "relay/relay");
    let m = report.messages;
    assert_eq!((m.sent, m.delivered, m.duplicated, m.lost), (2, 2, 0, 0), "{m:?}");
    let transports: Vec<(&str, &str)> = report.peers.iter().map(|p| (p.name.as_str(), p.transport.as_str())).collect();
    assert_eq!(transports, [("alice", "tcp"), ("bob", "udp")]);
    assert_eq!((report.streams.opened, report.streams.accepted, report.streams.failed), (1, 1, 0));
}

#[test]
fn udp_blocked_mid_session() {
    let (report, c, trace) = run_example("udp-blocked-mid-session");
    insta::assert_snapshot!("udp-blocked-mid-session", trace);
    assert_honest("udp-blocked-mid-session", &c);
    // Given a direct session when alice's NAT starts dropping UDP at 15 s,
    assert!(time_of(&trace, "alice: session").is_some() && c.direct_ms.is_some());
    assert_eq!(time_of(&trace, "event: NAT home-a blocks UDP"), Some(15_000.0));
    // then alice reaches the server over TCP within 5 s,
    let to_tcp = time_of(&trace, "alice: reaches the server over tcp").expect("alice moves to TCP");
    assert!((15_000.0..20_000.0).contains(&to_tcp), "{to_tcp} ms");
    // the session falls back to the relay (over TCP on alice's side),
    assert!(time_of(&trace, "alice: session cd1ee6dc1e1e7d64: fell back to relay").is_some_and(|t| t > 15_000.0));
    assert!(trace.contains("alice: text a7bf5ee72e65f0d30000000000000001 from bob"), "a text over the relay-tcp");
    // and once UDP passes again at 45 s, she is back on UDP within 30 s,
    // with the TCP connection closed, and the session direct again;
    let to_udp = time_of(&trace, "alice: reaches the server over udp").expect("alice moves back to UDP");
    assert!((45_000.0..75_000.0).contains(&to_udp), "{to_udp} ms");
    assert!(time_of(&trace, "alice: closes TCP connection").is_some_and(|t| t >= to_udp));
    assert_eq!(c.outcome, Outcome::Direct, "{c:?}");
    assert!(count(&trace, "alice: session cd1ee6dc1e1e7d64: path direct via") >= 2, "direct before and after");
    // and not one text was lost or shown twice.
    let m = report.messages;
    assert_eq!((m.sent, m.delivered, m.duplicated, m.lost), (4, 4, 0, 0), "{m:?}");
    assert!(report.peers.iter().all(|p| p.transport == "udp"));
}

/// NAT `track` lines (an unsolicited inbound packet left conntrack state)
/// whose source is a peer (one of the two NATs' public addresses), not the
/// server.
fn peer_to_peer_tracks(trace: &str) -> Vec<&str> {
    trace.lines().filter(|l| l.contains(": track 198.51.100.1:") || l.contains(": track 198.51.100.6:")).collect()
}

/// DESIGN §3 race proof: the same scenario with openers skipped on both sides
/// is poisoned and does not go direct; the unmodified one (above) does.
#[test]
fn linux_late_start_without_openers_is_poisoned() {
    let text = std::fs::read_to_string(scenario_path("linux-late-start")).unwrap();
    assert_eq!(text.matches("[[peer]]\n").count(), 2);
    // A `config` key right after the table header; a second `config` in the
    // same table would be a parse error, so this cannot silently do nothing.
    let variant = text.replace("[[peer]]\n", "[[peer]]\nconfig = { skip_openers = true }\n");
    let scenario = Scenario::from_toml_str(&variant, "linux-late-start (skip_openers)").expect("variant parses");
    for p in &scenario.peers {
        assert_eq!(p.config.values.get("skip_openers").and_then(|v| v.as_bool()), Some(true), "{}", p.name);
    }
    let (report, trace) = run(scenario);
    let trace = trace.join("\n");
    let c = &report.connections[0];
    assert_ne!(c.outcome, Outcome::Direct, "{c:?}");
    assert_eq!(c.direct_ms, None, "never direct within the run: {c:?}");
    assert_eq!(trace.lines().filter(|l| l.ends_with(" Opener")).count(), 0, "no openers were sent");
    assert!(count(&trace, "attempt 0 failed") >= 1, "the first attempt fails");
    assert_eq!(count(&trace, ": path direct via"), 0);
    // The mechanism: alice's early probe is tracked by bob's NAT, bob's
    // packets then leave from another port and alice's NAT drops them.
    assert!(trace.contains("nat home-b: track 198.51.100.1:4000 -> 198.51.100.6:4000"), "bob's NAT is poisoned");
    assert!(trace.contains("nat home-b: 198.51.100.6:4000 -> 198.51.100.1:4000 is held by a tracked entry"));
}

#[test]
fn file_transfer() {
    let (report, c, trace) = run_example("file-transfer");
    insta::assert_snapshot!("file-transfer", trace);
    // Given a send_file with no session, the offer opened one, listed as a
    // connect's, which went direct;
    assert_eq!((c.from.as_str(), c.to.as_str(), c.outcome), ("alice", "bob", Outcome::Direct));
    assert!(c.connect_ms.is_some_and(|t| t < 200.0), "{c:?}");
    // the 40 KiB arrived byte for byte, having moved from the relay to the
    // direct path on the way;
    let [f] = &report.files[..] else { panic!("one file: {:?}", report.files) };
    assert_eq!((f.from.as_str(), f.to.as_str(), f.size, f.name.as_str()), ("alice", "bob", 40 * 1024, "file.bin"));
    assert!(f.verified && f.failure.is_none(), "{f:?}");
    assert_eq!(f.received, f.size);
    assert_eq!(f.paths, [PeerPath::Relay, PeerPath::Direct]);
    let (accepted, completed) = (f.accepted_ms.expect("accepted"), f.completed_ms.expect("completed"));
    assert!(accepted < completed, "{f:?}");
    assert!(f.goodput_mbps.is_some_and(|g| g > 0.0));
    // and the trace shows the three groups written and both completions.
    assert_eq!(count(&trace, "bob: file1: write"), 3);
    assert_eq!(count(&trace, "file1 completed"), 2);
    assert_eq!(count(&trace, "that were not sent"), 0);
}

#[test]
fn file_partition() {
    let (report, c, trace) = run_example("file-partition");
    insta::assert_snapshot!("file-partition", trace);
    assert_eq!(c.outcome, Outcome::Direct);
    let [f] = &report.files[..] else { panic!("one file: {:?}", report.files) };
    // Given bob's link cut from 3.5 s to 33.5 s in the middle of the
    // transfer (some groups written before the cut, not all),
    let cut = time_of(&trace, "event: bob's link is cut").expect("the cut");
    let written_before = trace.lines().take_while(|l| !l.contains("event: bob's link is cut"));
    let written_before = written_before.filter(|l| l.contains("bob: file1: write")).count();
    assert!((1..8).contains(&written_before), "{written_before} of 8 groups before the cut");
    // then the transfer outlived the cut, on the same session, and
    // completed after it, verified, resuming by itself soon after the heal
    // (what was left takes about 0.7 s at 1 Mbit/s).
    assert_eq!(count(&trace, "file1 failed"), 0);
    assert!(f.verified && f.failure.is_none(), "{f:?}");
    let done = 3_000.0 + f.completed_ms.expect("completed");
    assert!(done > cut + 30_000.0 && done < cut + 30_000.0 + 5_000.0, "completed at {done} ms: {f:?}");
    assert_eq!(count(&trace, "session 5ee142c5eeb0181d closed"), 0);
}

/// Every datagram is in the trace, the clients' first `Login`s (sent while
/// the world is built) included, and `--mermaid` draws them too.
#[test]
fn every_example_trace_starts_with_each_peers_first_login() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")).expect("examples") {
        let path = entry.expect("an entry").path();
        let scenario = Scenario::load(&path).expect("example parses");
        let peers: Vec<String> = scenario.peers.iter().map(|p| p.name.clone()).collect();
        let mut sim = Simulation::new(scenario, None).expect("scenario is valid");
        sim.keep_trace(true);
        sim.keep_arrows(true);
        let (_, trace, arrows) = sim.run();
        for peer in &peers {
            let login = format!(" Hello[Login {peer}]");
            let first = trace.iter().position(|l| l.contains(&login));
            assert!(
                first.is_some_and(|i| trace[i].trim_start().starts_with("0.000ms")),
                "{}: no Login from {peer} at 0 ms: {:?}",
                path.display(),
                &trace[..trace.len().min(4)]
            );
            assert!(
                arrows.iter().any(|a| a.from == *peer && a.at.is_zero()),
                "{}: no arrow from {peer}",
                path.display()
            );
        }
    }
}
