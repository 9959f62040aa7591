//! Scenario files: every shipped example parses, and every kind of mistake is
//! rejected with one line naming the file, the line and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use punchline_core::nat::Strategy;
use punchline_sim::nat::{PortPolicy, Preset, Unsolicited};
use punchline_sim::oracle;
use punchline_sim::scenario::{Action, Scenario, Target};

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Scenario {
    Scenario::load(scenario_dir().join(name)).unwrap()
}

/// A valid file to which each test adds one mistake.
const BASE: &str = r#"duration = "10s"

[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"

[[nat]]
name = "home-a"
public_ips = ["198.51.100.1"]
preset = "port-restricted-cone"

[[peer]]
name = "alice"
addr = "10.0.0.2"
behind = "home-a"

[[peer]]
name = "bob"
addr = "192.0.2.20"
"#;

/// Line 20 is the first line after `BASE`.
const NEXT_LINE: usize = 20;

fn error(text: &str) -> String {
    match Scenario::from_toml_str(text, "scenarios/x.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn the_base_of_the_error_tests_is_valid() {
    let s = Scenario::from_toml_str(BASE, "scenarios/x.toml").unwrap();
    assert_eq!(s.peers.len(), 2);
    assert_eq!(BASE.lines().count() + 1, NEXT_LINE);
}

#[test]
fn every_example_scenario_parses_and_says_what_it_shows() {
    // Given every file in scenarios/,
    let files = examples();
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "birthday-linux-random.toml",
            "cgnat-nested.toml",
            "connect-early.toml",
            "file-partition.toml",
            "file-transfer.toml",
            "full-cone-pair.toml",
            "linux-late-start.toml",
            "lossy-link.toml",
            "messaging.toml",
            "nat-reboot-random-port.toml",
            "nat-reboot.toml",
            "path-breaks-and-recovers.toml",
            "peer-moves.toml",
            "predict-chatty-neighbour.toml",
            "roam-to-symmetric.toml",
            "same-lan-random.toml",
            "same-nat-no-hairpin.toml",
            "server-outage.toml",
            "steady-loss.toml",
            "symmetric-random-pair.toml",
            "udp-blocked-login.toml",
            "udp-blocked-mid-session.toml",
        ]
    );
    for file in files {
        // when each is loaded,
        let text = std::fs::read_to_string(&file).unwrap();
        let result = Scenario::load(&file);
        // then it parses, and opens with a comment saying what it shows.
        assert!(result.is_ok(), "{}", result.unwrap_err());
        assert!(text.starts_with("# "), "{} must start with a comment", file.display());
    }
}

#[test]
fn examples_resolve_to_the_devices_and_events_they_describe() {
    // The race of DESIGN §3: two conntrack NATs, bob's offer 400 ms late.
    let late = load("linux-late-start.toml");
    for i in 0..2 {
        let spec = late.nat_spec(i);
        assert_eq!((spec.unsolicited, spec.timeout), (Unsolicited::Track, Duration::from_secs(30)));
    }
    assert_eq!(late.peers[1].link.latency, Duration::from_millis(400));
    assert_eq!(late.events[0].action, Action::Connect { peer: "alice".into(), to: "bob".into() });

    // Bursty loss on alice's link.
    let lossy = load("lossy-link.toml");
    let link = &lossy.peers[0].link;
    assert_eq!((link.loss, link.loss_burst, link.bandwidth), (0.2, Some(3.0), Some(2_000_000)));

    // The CGNAT chain.
    let cgnat = load("cgnat-nested.toml");
    assert_eq!(cgnat.nat_spec(1).behind.as_deref(), Some("cgnat"));
    assert_eq!(cgnat.nat_spec(0).port_range, (10000, 60000));
    assert_eq!(cgnat.peers[0].config.values.get("opener_ttl"), Some(&toml::Value::Integer(3)));

    // Messaging: events in time order, carol offline from the start.
    let msg = load("messaging.toml");
    let first_two: Vec<&Action> = msg.events.iter().take(2).map(|e| &e.action).collect();
    assert_eq!(
        first_two,
        [&Action::Partition { peer: "carol".into() }, &Action::Connect { peer: "alice".into(), to: "bob".into() }]
    );
    assert_eq!(
        msg.events[2].action,
        Action::SendText { peer: "alice".into(), to: "bob".into(), text: "hi bob".into() }
    );

    // Same NAT with hairpinning turned off.
    assert!(!load("same-nat-no-hairpin.toml").nat_spec(0).hairpin);
}

#[test]
fn the_oracle_agrees_with_what_the_two_peer_examples_expect() {
    let pair = |name: &str| {
        let s = load(name);
        oracle::expect(Some(&s.nat_spec(0)), Some(&s.nat_spec(1)))
    };
    let cone = pair("full-cone-pair.toml");
    assert_eq!((cone.direct, cone.strategy), (true, Strategy::Punch));
    let relayed = pair("symmetric-random-pair.toml");
    assert_eq!((relayed.direct, relayed.strategy), (false, Strategy::RelayOnly));
    let birthday = pair("birthday-linux-random.toml");
    assert_eq!((birthday.direct, birthday.strategy), (true, Strategy::Birthday));
    let predict = pair("predict-chatty-neighbour.toml");
    assert_eq!((predict.direct, predict.strategy), (true, Strategy::Predict));
    let linux = pair("linux-late-start.toml");
    assert_eq!((linux.direct, linux.strategy), (true, Strategy::Punch));
}

#[test]
fn unknown_field_names_give_file_line_and_field() {
    assert_eq!(
        error(&BASE.replacen("duration", "sede = 3\nduration", 1)),
        "scenarios/x.toml:1: field `sede`: unknown field `sede`, expected one of `seed`, `duration`, \
         `internet_hops`, `server`, `nat`, `peer`, `event`"
    );
    assert_eq!(
        error(&BASE.replacen("preset = \"port-restricted-cone\"", "preset = \"port-restricted-cone\"\ncolour = 1", 1)),
        "scenarios/x.toml:11: field `nat[0].colour`: unknown field `colour`, expected one of `name`, `public_ips`, \
         `preset`, `mapping`, `filtering`, `ports`, `port_delta`, `port_range`, `timeout`, `hairpin`, \
         `unsolicited`, `inbound_refreshes`, `blocks_udp`, `tcp_timeout`, `behind`, `background_flows`"
    );
    let link_fields =
        "expected one of `latency`, `jitter`, `loss`, `loss_burst`, `duplicate`, `reorder`, `bandwidth`, `buffer`";
    assert_eq!(
        error(&with("link = { latency = \"5ms\", lost = 0.1 }\n")),
        format!("scenarios/x.toml:{NEXT_LINE}: field `peer[1].link.lost`: unknown field `lost`, {link_fields}")
    );
    assert_eq!(
        error(&with("link.latency = \"5ms\"\nlink.lost = 0.1\n")),
        format!("scenarios/x.toml:{}: field `peer[1].link.lost`: unknown field `lost`, {link_fields}", NEXT_LINE + 1)
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nwhen = 2\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].when`: unknown field `when`, expected one of `at`, `peer`, \
             `connect`, `disconnect`, `send_text`, `send_file`, `partition`, `heal`, `nat_reboot`, `move_to`, \
             `server_down`, `server_up`, `server_restart`, `nat`, `block_udp`, `unblock_udp`",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nsend_text = { to = \"bob\", txt = \"hi\" }\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].send_text.txt`: unknown field `txt`, expected `to` or `text`",
            NEXT_LINE + 4
        )
    );
}

#[test]
fn a_send_file_takes_a_size_with_or_without_a_unit_and_a_default_name() {
    // Given send_file events written the ways the README shows,
    let event = |body: &str| format!("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nsend_file = {{ {body} }}\n");
    let action =
        |body: &str| Scenario::from_toml_str(&with(&event(body)), "scenarios/x.toml").unwrap().events[0].action.clone();
    let file =
        |name: &str, size: u64| Action::SendFile { peer: "alice".into(), to: "bob".into(), name: name.into(), size };
    // when they are parsed, then each is the file it says.
    assert_eq!(action("to = \"bob\", size = \"8MiB\""), file("file.bin", 8 << 20));
    assert_eq!(action("to = \"bob\", size = \"1.5MB\", name = \"a.jpg\""), file("a.jpg", 1_500_000));
    assert_eq!(action("to = \"bob\", size = 40960"), file("file.bin", 40_960));
    // And each mistake is named with its field and line.
    let field = |f: &str| format!("scenarios/x.toml:{}: field `event[0].send_file{f}`", NEXT_LINE + 4);
    let cases = [
        (
            "to = \"bob\", size = \"8MB/s\"",
            ".size",
            "\"8MB/s\" has an unknown unit; expected one of B, kB, KiB, MB, MiB, GB, GiB",
        ),
        ("to = \"bob\", size = \"1.5B\"", ".size", "\"1.5B\" is not a whole number of bytes"),
        ("to = \"bob\", size = -1", ".size", "-1 is not a number of bytes"),
        ("to = \"bob\", size = 1.5", ".size", "expected a number of bytes or a string such as \"8MiB\", found a float"),
        ("to = \"carol\", size = 1", ".to", "unknown peer \"carol\"; declared peers: alice, bob"),
        ("to = \"alice\", size = 1", ".to", "\"alice\" is the acting peer itself"),
        (
            "to = \"bob\", size = 1, name = \"../x\"",
            ".name",
            "\"../x\" is refused: the file name contains a path separator (\"/\" or \"\\\")",
        ),
    ];
    for (body, f, message) in cases {
        assert_eq!(error(&with(&event(body))), format!("{}: {message}", field(f)), "{body}");
    }
    assert_eq!(
        error(&with(&event("to = \"bob\""))),
        format!("scenarios/x.toml:{}: field `event[0].send_file.size`: required but missing", NEXT_LINE + 4)
    );
}

#[test]
fn bad_durations_and_bandwidths_name_the_field() {
    assert_eq!(
        error(&BASE.replacen("\"10s\"", "\"10 s\"", 1)),
        "scenarios/x.toml:1: field `duration`: \"10 s\" has an unknown unit; expected one of ns, us, ms, s, m, h"
    );
    assert_eq!(
        error(&BASE.replacen("\"10s\"", "\"soon\"", 1)),
        "scenarios/x.toml:1: field `duration`: \"soon\" is not a number followed by a unit; \
         expected e.g. \"250ms\", \"30s\", \"1.5s\", \"2m\""
    );
    assert_eq!(
        error(&with("link = { jitter = \"2\" }\n")),
        format!(
            "scenarios/x.toml:{NEXT_LINE}: field `peer[1].link.jitter`: \"2\" has an unknown unit; \
             expected one of ns, us, ms, s, m, h"
        )
    );
    assert_eq!(
        error(&with("link = { bandwidth = \"10MB\" }\n")),
        format!(
            "scenarios/x.toml:{NEXT_LINE}: field `peer[1].link.bandwidth`: \"10MB\" has an unknown unit; \
             expected one of bit, kbit, Mbit, Gbit"
        )
    );
    assert_eq!(
        error(&BASE.replacen("preset = \"port-restricted-cone\"", "preset = \"linux\"\ntimeout = \"0s\"", 1)),
        "scenarios/x.toml:11: field `nat[0].timeout`: must be longer than 0s"
    );
    assert_eq!(
        error(&BASE.replacen("\"10s\"", "\"0s\"", 1)),
        "scenarios/x.toml:1: field `duration`: must be longer than 0s"
    );
}

#[test]
fn an_unknown_preset_lists_the_valid_ones() {
    assert_eq!(
        error(&BASE.replacen("\"port-restricted-cone\"", "\"cone\"", 1)),
        "scenarios/x.toml:10: field `nat[0].preset`: unknown preset \"cone\"; expected one of open, full-cone, \
         restricted-cone, port-restricted-cone, symmetric-sequential, symmetric-random, linux, linux-random, \
         udp-blocked"
    );
}

#[test]
fn an_event_does_exactly_one_thing() {
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nconnect = \"bob\"\ndisconnect = \"bob\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].disconnect`: an event does one thing, and this one already has \
             `connect`; split it into two events",
            NEXT_LINE + 5
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0]`: no action; expected one of connect, disconnect, send_text, \
             send_file, partition, heal, nat_reboot, move_to, server_down, server_up, server_restart, block_udp, \
             unblock_udp",
            NEXT_LINE + 1
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\npartition = false\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].partition`: must be true (`partition = true`); omit the event instead",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nconnect = \"bob\"\n")),
        format!("scenarios/x.toml:{}: field `event[0]`: `connect` needs `peer`, the peer that acts", NEXT_LINE + 1)
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nnat_reboot = \"home-a\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].peer`: nat_reboot acts on a NAT and takes no peer",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"11s\"\nnat_reboot = \"home-a\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].at`: 11s is after the end of the run (duration = \"10s\")",
            NEXT_LINE + 2
        )
    );
}

#[test]
fn server_events_parse_and_act_on_the_server_alone() {
    // Given a cut, a restore and a restart of the server, written in any
    // order,
    let text = with(
        "\n[[event]]\nat = \"5s\"\nserver_up = true\n\n[[event]]\nat = \"2s\"\nserver_down = true\n\
         \n[[event]]\nat = \"8s\"\nserver_restart = true\n",
    );
    // when the file is parsed,
    let s = Scenario::from_toml_str(&text, "scenarios/x.toml").expect("valid");
    // then they are in time order, with their lines.
    let got: Vec<(Duration, &Action, usize)> = s.events.iter().map(|e| (e.at, &e.action, e.line)).collect();
    assert_eq!(
        got,
        [
            (Duration::from_secs(2), &Action::ServerDown, NEXT_LINE + 5),
            (Duration::from_secs(5), &Action::ServerUp, NEXT_LINE + 1),
            (Duration::from_secs(8), &Action::ServerRestart, NEXT_LINE + 9),
        ]
    );
}

#[test]
fn server_events_refuse_a_peer_false_and_a_second_action() {
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nserver_down = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].peer`: server_down acts on the server and takes no peer",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nserver_restart = false\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].server_restart`: must be true (`server_restart = true`); omit the \
             event instead",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nserver_down = true\nserver_up = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].server_up`: an event does one thing, and this one already has \
             `server_down`; split it into two events",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nserver_up = \"yes\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].server_up`: invalid type: string \"yes\", expected a boolean",
            NEXT_LINE + 3
        )
    );
}

#[test]
fn udp_block_events_act_on_a_peer_or_a_nat() {
    // Given blocks and unblocks on a peer and on a NAT,
    let text = with(
        "\n[[event]]\nat = \"2s\"\npeer = \"alice\"\nblock_udp = true\n\
         \n[[event]]\nat = \"3s\"\nnat = \"home-a\"\nblock_udp = true\n\
         \n[[event]]\nat = \"4s\"\npeer = \"alice\"\nunblock_udp = true\n\
         \n[[event]]\nat = \"5s\"\nnat = \"home-a\"\nunblock_udp = true\n",
    );
    // when the file is parsed,
    let s = Scenario::from_toml_str(&text, "scenarios/x.toml").expect("valid");
    // then each names what it acts on.
    let got: Vec<&Action> = s.events.iter().map(|e| &e.action).collect();
    assert_eq!(
        got,
        [
            &Action::BlockUdp { target: Target::Peer("alice".into()) },
            &Action::BlockUdp { target: Target::Nat("home-a".into()) },
            &Action::UnblockUdp { target: Target::Peer("alice".into()) },
            &Action::UnblockUdp { target: Target::Nat("home-a".into()) },
        ]
    );
}

#[test]
fn udp_block_events_refuse_no_target_two_targets_unknown_names_and_false() {
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nblock_udp = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0]`: `block_udp` needs `peer` (a peer's host) or `nat` (a NAT), whose \
             UDP it acts on",
            NEXT_LINE + 1
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nnat = \"home-a\"\nunblock_udp = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].nat`: unblock_udp acts on a peer or on a NAT, not both; split it \
             into two events",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nnat = \"hotel\"\nblock_udp = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].nat`: unknown NAT \"hotel\"; declared NATs: home-a",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"carol\"\nblock_udp = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].peer`: unknown peer \"carol\"; declared peers: alice, bob",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nnat = \"home-a\"\nblock_udp = false\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].block_udp`: must be true (`block_udp = true`); omit the event \
             instead",
            NEXT_LINE + 4
        )
    );
    // `nat` belongs to these two events only.
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\nnat = \"home-a\"\nserver_down = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].nat`: server_down takes no `nat`; only block_udp and unblock_udp \
             act on a NAT this way",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nblock_udp = true\nunblock_udp = true\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].unblock_udp`: an event does one thing, and this one already has \
             `block_udp`; split it into two events",
            NEXT_LINE + 5
        )
    );
}

#[test]
fn unknown_references_list_what_is_declared() {
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"carol\"\nconnect = \"bob\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].peer`: unknown peer \"carol\"; declared peers: alice, bob",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nconnect = \"carol\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].connect`: unknown peer \"carol\"; declared peers: alice, bob",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nsend_text = { to = \"alice\", text = \"me\" }\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].send_text.to`: \"alice\" is the acting peer itself",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("\n[[event]]\nat = \"1s\"\npeer = \"alice\"\nmove_to = \"cafe\"\n")),
        format!(
            "scenarios/x.toml:{}: field `event[0].move_to`: unknown NAT \"cafe\"; declared NATs: home-a",
            NEXT_LINE + 4
        )
    );
    assert_eq!(
        error(&with("behind = \"home-b\"\n")),
        format!("scenarios/x.toml:{NEXT_LINE}: field `peer[1].behind`: unknown NAT \"home-b\"; declared NATs: home-a")
    );
}

#[test]
fn nat_declarations_are_checked_for_consistency() {
    let nat = |extra: &str| {
        with(&format!("\n[[nat]]\nname = \"b\"\npublic_ips = [\"198.51.100.6\"]\npreset = \"linux\"\n{extra}"))
    };
    let extra_line = NEXT_LINE + 5;
    assert_eq!(
        error(&nat("behind = \"c\"\n[[nat]]\nname = \"c\"\npublic_ips = [\"198.51.100.7\"]\npreset = \"full-cone\"\nbehind = \"b\"\n")),
        format!("scenarios/x.toml:{extra_line}: field `nat[1].behind`: NATs sit behind each other in a loop: b -> c -> b")
    );
    assert_eq!(
        error(&nat("behind = \"b\"\n")),
        format!("scenarios/x.toml:{extra_line}: field `nat[1].behind`: NATs sit behind each other in a loop: b -> b")
    );
    assert_eq!(
        error(&with("\n[[nat]]\nname = \"home-a\"\npublic_ips = [\"198.51.100.6\"]\npreset = \"linux\"\n")),
        format!(
            "scenarios/x.toml:{}: field `nat[1].name`: duplicate NAT name \"home-a\" (first used by nat[0])",
            NEXT_LINE + 2
        )
    );
    assert_eq!(
        error(&with("\n[[nat]]\nname = \"b\"\npublic_ips = [\"198.51.100.1\"]\npreset = \"linux\"\n")),
        format!(
            "scenarios/x.toml:{}: field `nat[1].public_ips[0]`: 198.51.100.1 is already a public IP of NAT \"home-a\"",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&BASE.replacen("[\"198.51.100.1\"]", "[]", 1)),
        "scenarios/x.toml:9: field `nat[0].public_ips`: needs at least one address"
    );
    assert_eq!(
        error(&BASE.replacen("[\"198.51.100.1\"]", "[\"198.51.100.1\", \"2001:db8::1\"]", 1)),
        "scenarios/x.toml:9: field `nat[0].public_ips[1]`: \"2001:db8::1\" is not an IPv4 address"
    );
    assert_eq!(
        error(&nat("port_range = [2000, 1000]\n")),
        format!(
            "scenarios/x.toml:{extra_line}: field `nat[1].port_range`: [2000, 1000] is not [low, high] with \
             1 <= low <= high <= 65535"
        )
    );
    assert_eq!(
        error(&nat("port_delta = 2\n")),
        format!("scenarios/x.toml:{extra_line}: field `nat[1].port_delta`: only applies with ports = \"sequential\"")
    );
    assert_eq!(
        error(&nat("mapping = \"cone\"\n")),
        format!(
            "scenarios/x.toml:{extra_line}: field `nat[1].mapping`: unknown mapping \"cone\"; expected one of \
             endpoint-independent, address-dependent, address-and-port-dependent"
        )
    );
    assert_eq!(
        error(&nat("hairpin = \"yes\"\n")),
        format!(
            "scenarios/x.toml:{extra_line}: field `nat[1].hairpin`: invalid type: string \"yes\", expected a boolean"
        )
    );
    assert_eq!(
        error(&with("\n[[nat]]\nname = \"lan\"\npublic_ips = [\"198.51.100.9\"]\npreset = \"open\"\nfiltering = \"endpoint-independent\"\n")),
        format!(
            "scenarios/x.toml:{extra_line}: field `nat[1].filtering`: has no effect on preset \"open\", which \
             neither translates nor filters"
        )
    );
}

#[test]
fn peer_declarations_are_checked_for_consistency() {
    assert_eq!(
        error(&with("link = { loss = 1.5 }\n")),
        format!("scenarios/x.toml:{NEXT_LINE}: field `peer[1].link.loss`: 1.5 is not a probability between 0 and 1")
    );
    assert_eq!(
        error(&with("link = { loss = 0.2, loss_burst = 0.5 }\n")),
        format!(
            "scenarios/x.toml:{NEXT_LINE}: field `peer[1].link.loss_burst`: 0.5 is not a mean burst length of at \
             least 1 packet"
        )
    );
    assert_eq!(
        error(&with("\n[[peer]]\nname = \"alice\"\naddr = \"10.0.0.3\"\n")),
        format!(
            "scenarios/x.toml:{}: field `peer[2].name`: duplicate peer name \"alice\" (first used by peer[0])",
            NEXT_LINE + 2
        )
    );
    assert_eq!(
        error(&with("\n[[peer]]\nname = \"carol\"\naddr = \"10.0.0.2\"\nbehind = \"home-a\"\n")),
        format!(
            "scenarios/x.toml:{}: field `peer[2].addr`: 10.0.0.2 is already the address of peer \"alice\" in the \
             same network",
            NEXT_LINE + 3
        )
    );
    assert_eq!(
        error(&BASE.replacen("\"192.0.2.20\"", "\"192.0.2.20:4000\"", 1)),
        "scenarios/x.toml:19: field `peer[1].addr`: \"192.0.2.20:4000\" is not an IP address (ports are chosen by \
         the machine)"
    );
    assert_eq!(
        error(&BASE.replacen("\"203.0.113.10:3478\"", "\"203.0.113.10\"", 1)),
        "scenarios/x.toml:4: field `server.addr`: \"203.0.113.10\" is not an IP address and port like \
         \"203.0.113.10:3478\""
    );
}

#[test]
fn a_link_buffer_is_bytes_or_a_time_at_the_link_bandwidth() {
    // Given each form of `buffer` on a link with a bandwidth,
    let buffer_of = |value: &str| {
        let text = with(&format!("link = {{ bandwidth = \"100Mbit\", buffer = {value} }}\n"));
        Scenario::from_toml_str(&text, "scenarios/x.toml").unwrap().peers[1].link.buffer
    };
    // when the file is parsed, then each gives the bytes the queue holds:
    // 20 ms at 100 Mbit/s is 2,000,000 bits, 250,000 bytes.
    assert_eq!(buffer_of("\"20ms\""), Some(250_000));
    assert_eq!(buffer_of("\"64KiB\""), Some(65_536));
    assert_eq!(buffer_of("\"1.5MB\""), Some(1_500_000));
    assert_eq!(buffer_of("3000"), Some(3000));
    // and a link that says nothing keeps the unbounded queue.
    let plain = Scenario::from_toml_str(&with("link = { bandwidth = \"100Mbit\" }\n"), "scenarios/x.toml").unwrap();
    assert_eq!(plain.peers[1].link.buffer, None);
}

#[test]
fn a_bad_link_buffer_names_the_field_and_the_reason() {
    let field = format!("scenarios/x.toml:{NEXT_LINE}: field `peer[1].link.buffer`");
    // A time, or any buffer, without a bandwidth to fill it:
    assert_eq!(
        error(&with("link = { latency = \"5ms\", buffer = \"20ms\" }\n")),
        format!("{field}: \"20ms\" is a time at the link's bandwidth, and the link sets no `bandwidth`")
    );
    assert_eq!(
        error(&with("link = { buffer = \"64KiB\" }\n")),
        format!("{field}: needs the link's `bandwidth`: without one nothing queues")
    );
    // negative, empty, garbage, a float, a unit that is neither size nor time:
    let cases = [
        ("-3000", "-3000 is not a number of bytes".to_string()),
        ("0", "must be more than 0 bytes".to_string()),
        (
            "\"-20ms\"",
            "\"-20ms\" is not a number followed by a unit; expected e.g. \"64KiB\", \"1.5MB\" or \"20ms\"".to_string(),
        ),
        (
            "\"lots\"",
            "\"lots\" is not a number followed by a unit; expected e.g. \"64KiB\", \"1.5MB\" or \"20ms\"".to_string(),
        ),
        ("1.5", "expected a number of bytes or a string such as \"64KiB\" or \"20ms\", found a float".to_string()),
        (
            "\"64KB\"",
            "\"64KB\" has an unknown unit; expected a size (B, kB, KiB, MB, MiB, GB, GiB) or a time at the link's \
             bandwidth (ns, us, ms, s, m, h)"
                .to_string(),
        ),
        ("\"1.5B\"", "\"1.5B\" is not a whole number of bytes".to_string()),
        ("\"0ms\"", "\"0ms\" at 100Mbit is less than one byte".to_string()),
    ];
    for (value, message) in cases {
        assert_eq!(
            error(&with(&format!("link = {{ bandwidth = \"100Mbit\", buffer = {value} }}\n"))),
            format!("{field}: {message}"),
            "buffer = {value}"
        );
    }
}

#[test]
fn missing_fields_and_broken_toml_are_reported_with_their_line() {
    assert_eq!(
        error(&BASE.replacen("duration = \"10s\"", "seed = 1", 1)),
        "scenarios/x.toml:1: field `duration`: required but missing"
    );
    assert_eq!(
        error(&BASE.replacen("name = \"home-a\"\n", "", 1)),
        "scenarios/x.toml:7: field `nat[0].name`: required but missing"
    );
    assert_eq!(error(&BASE.replacen("\"10s\"", "\"10s", 1)), "scenarios/x.toml:1: invalid TOML: invalid basic string");
}

#[test]
fn a_missing_file_is_named_in_the_error() {
    let err = Scenario::load("scenarios/does-not-exist.toml").unwrap_err().to_string();
    assert_eq!(err, "scenarios/does-not-exist.toml: cannot read: No such file or directory (os error 2)");
}

#[test]
fn overrides_in_a_file_reach_the_resolved_spec() {
    let text = BASE.replacen(
        "preset = \"port-restricted-cone\"",
        "preset = \"symmetric-sequential\"\nport_delta = 4\nport_range = [2000, 3000]\nunsolicited = \"track\"\n\
         tcp_timeout = \"10m\"",
        1,
    );
    let spec = Scenario::from_toml_str(&text, "x.toml").unwrap().nat_spec(0);
    let mut want = Preset::SymmetricSequential.spec("home-a", vec![[198, 51, 100, 1].into()]);
    want.ports = PortPolicy::Sequential { delta: 4 };
    want.port_range = (2000, 3000);
    want.unsolicited = Unsolicited::Track;
    want.tcp_timeout = Duration::from_secs(600);
    assert_eq!(spec, want);
    // A zero TCP timeout is refused like a zero UDP one.
    let zero = BASE.replacen("preset = \"port-restricted-cone\"", "preset = \"linux\"\ntcp_timeout = \"0s\"", 1);
    assert_eq!(error(&zero), "scenarios/x.toml:11: field `nat[0].tcp_timeout`: must be longer than 0s");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Hostile input never panics: arbitrary text is rejected or accepted.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Scenario::from_toml_str(&text, "fuzz.toml");
    }

    /// Nor does a real example with a slice cut out of it, and every error
    /// names the file.
    #[test]
    fn damaged_examples_never_panic(index in 0usize..10, start in 0usize..4000, len in 0usize..40) {
        let files = examples();
        let text = std::fs::read_to_string(&files[index % files.len()]).unwrap();
        let start = start.min(text.len());
        let end = (start + len).min(text.len());
        if text.is_char_boundary(start) && text.is_char_boundary(end) {
            let damaged = format!("{}{}", &text[..start], &text[end..]);
            if let Err(e) = Scenario::from_toml_str(&damaged, "damaged.toml") {
                prop_assert!(e.to_string().starts_with("damaged.toml:"), "{}", e);
                prop_assert_eq!(e.to_string().lines().count(), 1);
            }
        }
    }
}
