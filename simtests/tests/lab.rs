//! The kernel NAT lab (`punchline-sim lab`, DESIGN §5). It needs root with
//! `ip` (iproute2) and `nft` (nftables), so every test here is
//! `#[ignore]`d: `cargo test -p punchline-sim --test lab -- --ignored` runs
//! them (as `.ci/run` does), and each fails, naming what is missing, on a
//! machine without them. The pair run builds the `punchline-server` and
//! `punchline` binaries it drives with cargo, into this target directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use punchline_sim::lab::{host, LabError};
use serde_json::Value;

const SIM: &str = env!("CARGO_BIN_EXE_punchline-sim");

/// Fails the test, naming what is missing, unless the lab can run here: an
/// ignored test that was asked to run must not pass without running.
/// `sessions`: the test runs the binaries' sessions (and so needs
/// `conntrack` too), not only `--nat-only`.
fn require_machine(sessions: bool) {
    match host::check_machine(sessions) {
        Ok(()) => {}
        Err(LabError::Missing(missing)) => panic!("this test needs {}", missing.join(", ")),
        Err(e) => panic!("{e}"),
    }
}

/// Builds `punchline-server` and `punchline` beside `punchline-sim` (a no-op
/// when they are up to date): the lab looks for them there.
fn build_binaries() {
    let dir = Path::new(SIM).parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "punchline-server", "-p", "punchline-client"]);
    if dir.file_name().is_some_and(|d| d == "release") {
        build.arg("--release");
    }
    let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo runs");
    assert!(status.success(), "building punchline-server and punchline failed");
    for binary in ["punchline-server", "punchline"] {
        let path = dir.join(format!("{binary}{}", std::env::consts::EXE_SUFFIX));
        assert!(path.is_file(), "no {binary} binary at {}", path.display());
    }
}

fn lab_namespaces(suffix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.ends_with(&format!("-{suffix}")))
        .map(str::to_owned)
        .collect()
}

/// The run's own directories left in the temporary directory (the server's
/// store, the clients' keys, the file check's files).
fn lab_dirs(suffix: &str) -> Vec<String> {
    let prefix = format!("punchline-lab-{suffix}-");
    std::fs::read_dir(std::env::temp_dir())
        .expect("the temporary directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn run_lab(args: &[&str]) -> (Option<i32>, Value, String) {
    let child = Command::new(SIM).arg("lab").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let suffix = format!("pl{}", child.id());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("lab printed no JSON ({e}); stderr:\n{stderr}"));
    (out.status.code(), json, suffix)
}

fn nat<'a>(report: &'a Value, profile: &str) -> &'a Value {
    report["nats"].as_array().unwrap().iter().find(|n| n["profile"] == profile).expect("every profile measured")
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn the_kernel_nats_measure_as_their_presets_and_the_lab_leaves_nothing_behind() {
    require_machine(false);
    // Given the lab's topology, when it measures each NAT with its own probe,
    let (code, report, suffix) = run_lab(&["--nat-only", "--json"]);
    // then masquerade preserves ports with endpoint-independent mapping and
    // port-restricted filtering, fully-random is symmetric with random ports,
    // the static NAT is a full cone, and nothing passes udp-blocked;
    let row = |p: &str| {
        let m = &nat(&report, p)["measured"];
        (m["port_preserved"].clone(), m["mapping"].clone(), m["filtering"].clone())
    };
    let ei = Value::from("endpoint-independent");
    let apd = Value::from("address-and-port-dependent");
    assert_eq!(row("full-cone"), (Value::Bool(true), ei.clone(), ei.clone()));
    assert_eq!(row("linux"), (Value::Bool(true), ei.clone(), apd.clone()));
    assert_eq!(row("linux-random"), (Value::Bool(false), apd.clone(), apd.clone()));
    assert_eq!(nat(&report, "udp-blocked")["measured"]["reflexive"], Value::Null);
    // an unsolicited packet moves masquerade's port, not the static NAT's,
    assert_ne!(nat(&report, "linux")["measured"]["poisoned_first_flow_port"], 4100);
    assert_eq!(nat(&report, "full-cone")["measured"]["poisoned_first_flow_port"], 4100);
    // the opener TTL dies between the NATs and one more hop arrives,
    for p in ["full-cone", "linux", "linux-random"] {
        let m = &nat(&report, p)["measured"];
        assert_eq!(
            (&m["opener_ttl_arrived"], &m["opener_ttl_plus_one_arrived"]),
            (&Value::Bool(false), &Value::Bool(true)),
            "{p}"
        );
    }
    // and the lab ran no pair and exited normally (0, or 1 when the binaries
    // exist and nat-check misclassified a NAT: the pair test checks that),
    // and every namespace with the lab's suffix is gone.
    assert_eq!(report["pairs"].as_array().map(Vec::len), Some(0));
    let expected_code = if report["nat_mismatches"] == 0 { 0 } else { 1 };
    assert_eq!(code, Some(expected_code));
    assert_eq!(report["suffix"], suffix.as_str());
    assert_eq!(lab_namespaces(&suffix), Vec::<String>::new());
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn ctrl_c_removes_every_namespace_of_the_lab() {
    require_machine(false);
    // Given a lab that has built its topology,
    let mut child = Command::new(SIM)
        .args(["lab", "--nat-only", "-v"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let suffix = format!("pl{}", child.id());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let up = lines.by_ref().map_while(Result::ok).find(|l| l.contains("measuring"));
    assert!(up.is_some(), "the lab never started measuring");
    assert!(!lab_namespaces(&suffix).is_empty(), "the lab's namespaces exist while it runs");
    // when it gets Ctrl-C,
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    // then it exits 130 and leaves no namespace with its suffix.
    assert_eq!(status.code(), Some(130));
    assert_eq!(lab_namespaces(&suffix), Vec::<String>::new());
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn keep_leaves_the_namespaces_and_says_how_to_remove_them() {
    require_machine(false);
    // Given a lab run with --keep,
    let (code, _, suffix) = run_lab(&["--nat-only", "--keep", "--json"]);
    assert_eq!(code, Some(0));
    // then its internet and server namespaces are still there,
    let kept = lab_namespaces(&suffix);
    for role in ["r1", "r2", "srv"] {
        assert!(kept.contains(&format!("{role}-{suffix}")), "{role} kept: {kept:?}");
    }
    // and once removed as the hint says, nothing is left.
    for ns in &kept {
        assert!(Command::new("ip").args(["netns", "del", ns]).status().unwrap().success());
    }
    assert_eq!(lab_namespaces(&suffix), Vec::<String>::new());
}

#[test]
#[ignore = "needs root, iproute2, nftables and conntrack"]
fn every_pair_agrees_with_the_simulator_in_the_kernel_lab() {
    require_machine(true);
    build_binaries();
    // Given the real binaries behind every ordered pair of kernel NATs (the
    // NAT measurements too; the other checks are the next test's, so that
    // `.ci/run` runs each once),
    let (code, report, suffix) = run_lab(&["--only", "nats,pairs", "--json"]);
    assert_eq!(report["reboots"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["files"].as_array().map(Vec::len), Some(0));
    let pairs = report["pairs"].as_array().unwrap();
    let outcome = |a: &str, b: &str| {
        let p = pairs.iter().find(|p| p["a"] == a && p["b"] == b).expect("every pair ran");
        (p["kernel"].as_str().unwrap().to_owned(), p["sim"].as_str().unwrap().to_owned())
    };
    // then each kernel outcome is the simulator's,
    assert_eq!(pairs.len(), 16);
    for p in pairs {
        assert_eq!(p["kernel"], p["sim"], "{} -> {}: {p}", p["a"], p["b"]);
    }
    // in particular the outcomes issue 6 names,
    assert_eq!(outcome("linux", "linux").0, "direct");
    assert_eq!(outcome("linux-random", "linux-random").0, "relay");
    for other in ["full-cone", "linux", "linux-random"] {
        assert_eq!(outcome("full-cone", other).0, "direct", "full-cone -> {other}");
        assert_eq!(outcome(other, "full-cone").0, "direct", "{other} -> full-cone");
        // A udp-blocked side logs in over TCP, and the relay joins them
        // over it (issue 21).
        assert_eq!(outcome("udp-blocked", other).0, "relay-tcp");
        assert_eq!(outcome(other, "udp-blocked").0, "relay-tcp");
    }
    assert_eq!(outcome("udp-blocked", "udp-blocked").0, "relay-tcp");
    // every NAT is classified as built, the lab exits 0, and cleans up.
    assert_eq!((report["disagreements"].as_u64(), report["nat_mismatches"].as_u64()), (Some(0), Some(0)));
    assert_eq!(code, Some(0));
    assert_eq!(lab_namespaces(&suffix), Vec::<String>::new());
}

#[test]
#[ignore = "needs root, iproute2, nftables and conntrack"]
fn after_a_nat_reboot_on_one_lan_when_udp_is_blocked_and_for_a_64_mib_file_the_kernel_does_as_the_simulator_predicts() {
    require_machine(true);
    build_binaries();
    // Given the real binaries in direct sessions behind kernel NATs, when
    // the lab flushes the connecting side's conntrack table in the middle
    // of each, puts two hosts on one segment behind one fully-random NAT,
    // blocks UDP mid-session, and sends a 64 MiB file across two NAT pairs,
    let (code, report, suffix) = run_lab(&["--no-pairs", "--json"]);
    // then no ordered pair ran,
    assert_eq!(report["pairs"].as_array().map(Vec::len), Some(0));
    // every reboot case ends with both peers direct, as in the simulator,
    let reboots = report["reboots"].as_array().unwrap();
    assert_eq!(reboots.len(), 3);
    for r in reboots {
        let case = format!("{} -> {}: {r}", r["a"], r["b"]);
        assert_eq!((&r["sim"], &r["kernel"]), (&Value::from("direct"), &Value::from("direct")), "{case}");
        assert_eq!((&r["connector"], &r["listener"]), (&Value::from("direct"), &Value::from("direct")), "{case}");
        assert_ne!(r["after_flush"], "lost", "{case}");
        // and no ping is lost across the reboot;
        assert_eq!(r["pings_answered"], r["pings_sent"], "{case}");
    }
    // a fully-random NAT gives the rebooted side a new port, and the
    // listener follows it to the new address.
    let random = reboots.iter().find(|r| r["a"] == "linux-random").expect("a fully-random reboot case");
    assert_ne!(random["remote_before"], random["remote_after"], "{random}");
    assert!(random["regained_ms"].is_number(), "{random}");
    // The two LAN peers behind masquerade fully-random end direct, over the
    // connector's host address on the segment, as the simulator says;
    let lan = report["lan"].as_array().unwrap();
    assert_eq!(lan.len(), 1);
    let row = &lan[0];
    let direct = Value::from("direct");
    assert_eq!(row["nat"], "linux-random");
    assert_eq!((&row["sim"], &row["kernel"]), (&direct, &direct), "{row}");
    assert_eq!(row["remote"].as_str().and_then(|r| r.split(':').next()), Some("10.0.1.2"), "{row}");
    // UDP blocked at the connecting side's NAT in the middle of a direct
    // session: the client moved to TCP (how fast is a figure for LAB.md,
    // not an assertion on wall-clock time), the session ended on the relay
    // over TCP as the simulator predicts, and no ping was lost;
    let blocks = report["udp_blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    for r in blocks {
        let case = format!("{} -> {}: {r}", r["a"], r["b"]);
        let relay_tcp = Value::from("relay-tcp");
        assert_eq!((&r["sim"], &r["kernel"]), (&relay_tcp, &relay_tcp), "{case}");
        assert_eq!(r["transport"], "tcp", "{case}");
        assert!(r["moved_ms"].is_number(), "{case}");
        assert_eq!(r["pings_answered"], r["pings_sent"], "{case}");
    }
    // a 64 MiB file from behind masquerade to behind masquerade and to
    // behind masquerade fully-random arrives verified: send-file exits 0,
    // its done line and the listener's file line name the file's BLAKE3
    // root, and the saved file hashes to it; it ends on the path the
    // simulator predicts for the pair, direct (goodput is a figure for
    // LAB.md, not an assertion);
    let files = report["files"].as_array().unwrap();
    let cases: Vec<(&str, &str)> = files.iter().map(|r| (r["a"].as_str().unwrap(), r["b"].as_str().unwrap())).collect();
    assert_eq!(cases, [("linux", "linux"), ("linux", "linux-random")]);
    for r in files {
        let case = format!("{} -> {}: {r}", r["a"], r["b"]);
        assert_eq!(r["size"], 64 << 20, "{case}");
        assert_eq!((&r["verified"], &r["exit_code"]), (&Value::Bool(true), &Value::from(0)), "{case}");
        assert_eq!(r["root"].as_str().map(str::len), Some(64), "{case}");
        let direct = Value::from("direct");
        assert_eq!((&r["sim"], &r["kernel"]), (&direct, &direct), "{case}");
        assert_eq!(r["agree"], true, "{case}");
    }
    // the lab counts no disagreement, exits 0, and leaves nothing behind:
    // no namespace, no directory (the 64 MiB files included).
    assert_eq!(report["disagreements"], 0);
    assert_eq!(code, Some(0));
    assert_eq!(lab_namespaces(&suffix), Vec::<String>::new());
    assert_eq!(lab_dirs(&suffix), Vec::<String>::new());
}

#[test]
#[ignore = "needs root, nftables, coturn"]
fn natdiscovery_classifies_each_kernel_nat_alike_against_punchline_server_and_turnserver() {
    require_machine(false);
    assert!(
        host::coturn_available(),
        "this test needs coturn's turnserver and turnutils_natdiscovery (apt-get install -y coturn)"
    );
    build_binaries();
    // Given punchline-server and coturn's turnserver side by side on the
    // lab's server, each with an alternate IP and port (RFC 5780), when
    // coturn's turnutils_natdiscovery classifies each kernel NAT against
    // both,
    let (_, report, suffix) = run_lab(&["--nat-only", "--json"]);
    for profile in ["full-cone", "linux", "linux-random", "udp-blocked"] {
        let row = nat(&report, profile);
        let (ours, theirs) = (&row["punchline_stun"], &row["coturn"]);
        eprintln!("{profile}: punchline-server {ours}, turnserver {theirs}");
        // then it names the same mapping and filtering against both,
        assert!(theirs.is_string(), "{profile}: no classification against turnserver: {row}");
        assert_eq!(ours, theirs, "{profile}: {row}");
        // and, where UDP passes, the ones the lab's own probe measured.
        let m = &row["measured"];
        let probe = match (m["mapping"].as_str(), m["filtering"].as_str()) {
            (Some(mapping), Some(filtering)) => format!("{mapping} mapping / {filtering} filtering"),
            _ => "no answer".to_owned(),
        };
        assert_eq!(ours.as_str(), Some(probe.as_str()), "{profile}: {row}");
    }
    // And the lab leaves nothing behind.
    assert_eq!(lab_namespaces(&suffix), Vec::<String>::new());
}
