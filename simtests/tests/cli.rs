//! The `punchline-sim` command line (issue 3): `run` and `matrix` as a
//! script sees them, with stderr not a terminal (so no progress indicator).

use std::path::Path;
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_punchline-sim"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("punchline-sim runs")
}

#[test]
fn run_json_has_the_documented_keys_and_stderr_stays_quiet() {
    // Given an example scenario, when run with --json (stderr is a pipe),
    let out = sim(&["run", "scenarios/full-cone-pair.toml", "--json"]);
    // then it succeeds, prints one JSON object with the keys, and
    // writes no progress to stderr.
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(report["seed"].is_u64());
    assert_eq!(report["trace_hash"].as_str().map(str::len), Some(16));
    let c = &report["connections"][0];
    for key in ["from", "to", "outcome", "strategy", "connect_ms", "direct_ms", "fallbacks"] {
        assert!(c.get(key).is_some(), "connection key {key}: {c}");
    }
    assert_eq!(c["outcome"], "direct");
}

#[test]
fn run_threads_changes_nothing_and_refuses_what_it_cannot_do() {
    // Given an example scenario, when run on one thread and on two,
    let one = sim(&["run", "scenarios/messaging.toml", "--json", "--trace", "--threads", "1"]);
    let two = sim(&["run", "scenarios/messaging.toml", "--json", "--trace", "--threads", "2"]);
    // then both succeed with the same bytes,
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    assert_eq!(one.stdout, two.stdout);
    // and a thread count it does not offer is refused with a message.
    let three = sim(&["run", "scenarios/messaging.toml", "--threads", "3"]);
    assert_eq!(three.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&three.stderr).contains("--threads"), "{}", String::from_utf8_lossy(&three.stderr));
}

#[test]
fn run_quiet_is_accepted_and_changes_nothing() {
    let loud = sim(&["run", "scenarios/full-cone-pair.toml", "--json"]);
    let quiet = sim(&["run", "scenarios/full-cone-pair.toml", "--json", "--quiet"]);
    assert!(quiet.status.success(), "{}", String::from_utf8_lossy(&quiet.stderr));
    assert_eq!(loud.stdout, quiet.stdout);
}

#[test]
fn a_bad_file_exits_2_naming_it() {
    let out = sim(&["run", "scenarios/no-such-file.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.toml"));
}

#[test]
fn the_matrix_agrees_with_the_oracle_and_says_so_in_json() {
    // Given one seed per cell, when the matrix runs,
    let out = sim(&["matrix", "--seeds", "1", "--json", "--quiet"]);
    // then it exits 0 with no mismatch over all 81 ordered pairs of the
    // nine presets,
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(m["seeds"], 1);
    assert_eq!(m["mismatches"], 0);
    let cells = m["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 81);
    // every cell counts its runs on the relay over TCP next to the others,
    // and the udp-blocked row and column are relay-tcp, every run of them.
    for c in cells {
        for key in ["direct", "relay", "relay_tcp", "failed"] {
            assert!(c[key].is_u64(), "cell key {key}: {c}");
        }
        let blocked = c["a"] == "udp-blocked" || c["b"] == "udp-blocked";
        assert_eq!(c["expected"] == "relay-tcp", blocked, "{c}");
        assert_eq!(c["relay_tcp"], if blocked { 1 } else { 0 }, "{c}");
    }
    assert_eq!(cells.iter().filter(|c| c["expected"] == "relay-tcp").count(), 17);
    // The grid shows the row and the column.
    let grid = sim(&["matrix", "--seeds", "1", "--quiet"]);
    let text = String::from_utf8_lossy(&grid.stdout);
    let row = text.lines().find(|l| l.starts_with("udp-blocked")).expect("a udp-blocked row");
    assert_eq!(row.matches("relay-tcp").count(), 9, "{row}");
    assert!(text.lines().next().is_some_and(|header| header.trim_end().ends_with("udp-blocked")), "{text}");
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    // Given a long trace piped to a reader that takes a few bytes and goes
    // away (`punchline-sim run ... --trace | head -c 100`),
    let mut child = Command::new(env!("CARGO_BIN_EXE_punchline-sim"))
        .args(["run", "scenarios/birthday-linux-random.toml", "--trace"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("punchline-sim runs");
    let mut head = [0u8; 100];
    child.stdout.take().expect("piped").read_exact(&mut head).expect("the trace starts");
    // (the pipe is closed here, with most of the trace unread)
    let out = child.wait_with_output().expect("it ends");
    // then it ends successfully, without a word on stderr (no panic).
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_stress_sweep_names_its_family_and_counts_texts_fallbacks_and_disagreement() {
    // Given one seed per cell, when the outage family runs with --json,
    let out = sim(&["matrix", "--stress", "outage", "--seeds", "1", "--json", "--quiet"]);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // then the document names the family, and every cell counts its
    // fallbacks and the texts it lost or showed twice;
    assert_eq!(m["stress"], "outage");
    let cells = m["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 81);
    for c in cells {
        for key in ["fallbacks", "connect_ms_p50", "disagree_ms_max", "lost", "duplicated"] {
            assert!(c.get(key).is_some(), "cell key {key}: {c}");
        }
    }
    // and the exit status says whether every cell agreed.
    assert_eq!(out.status.success(), m["mismatches"] == 0, "{}", m["mismatches"]);
}

#[test]
fn the_lan_family_runs_the_diagonal_and_the_plain_matrix_names_no_family() {
    let lan = sim(&["matrix", "--stress", "lan", "--seeds", "1", "--json", "--quiet"]);
    let m: serde_json::Value = serde_json::from_slice(&lan.stdout).expect("JSON");
    let cells = m["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 9);
    assert!(cells.iter().all(|c| c["a"] == c["b"] && c["expected"] == "direct" && c.get("lost").is_none()));
    let plain = sim(&["matrix", "--seeds", "1", "--json", "--quiet"]);
    let m: serde_json::Value = serde_json::from_slice(&plain.stdout).expect("JSON");
    assert!(m.get("stress").is_none());
    // `early` leaves out the udp-blocked column: a peer whose login goes
    // over TCP is not online yet at 100 ms.
    let early = sim(&["matrix", "--stress", "early", "--seeds", "1", "--json", "--quiet"]);
    let m: serde_json::Value = serde_json::from_slice(&early.stdout).expect("JSON");
    let cells = m["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 72);
    assert!(cells.iter().all(|c| c["b"] != "udp-blocked"));
    assert_eq!(cells.iter().filter(|c| c["a"] == "udp-blocked" && c["expected"] == "relay-tcp").count(), 8);
    // An unknown family is refused with the list of names.
    let bad = sim(&["matrix", "--stress", "flood"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("outage"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn stress_all_prints_one_document_per_family_in_order() {
    let out = sim(&["matrix", "--stress", "all", "--seeds", "1", "--json", "--quiet"]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = all.as_array().expect("an array").iter().filter_map(|m| m["stress"].as_str()).collect();
    assert_eq!(names, ["early", "reboot", "loss", "lan", "roam", "outage"]);
}
