//! Part 1 of the lab: behind each profile, measure the kernel's NAT with the
//! lab's probe, ask `punchline nat-check` (and coturn's
//! `turnutils_natdiscovery`, against coturn's `turnserver` and against
//! `punchline-server`'s RFC 5780 STUN answers) to classify it, and list
//! where the kernel differs from the simulator preset.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use punchline_core::client::ClientConfig;
use serde::Serialize;

use super::host::Binaries;
use super::probe::Measurement;
use super::process::{run_in, Spawned};
use super::topology::{self, Slot, Topology, ALT_SERVER, COTURN_PORT, SERVER};
use super::{LabError, Profile};
use crate::nat::{PortPolicy, Unsolicited};

/// What the NAT checks need from the lab.
pub struct Env<'a> {
    /// punchline-sim itself (for `lab-probe`).
    pub me: &'a str,
    /// The server's probe echo sockets.
    pub echo: [SocketAddr; 3],
    /// The Punchline binaries, unless `--nat-only`.
    pub binaries: Option<&'a Binaries>,
    /// `--runtime` for the client.
    pub runtime: Option<&'a str>,
    /// A coturn `turnserver` is running on the server.
    pub coturn: bool,
    /// coturn's `turnutils_natdiscovery` is installed: with the binaries,
    /// it asks `punchline-server` too.
    pub natdiscovery: bool,
}

/// One profile's NAT, measured and classified.
#[derive(Clone, Debug, Serialize)]
pub struct NatRow {
    /// The profile the NAT was built as.
    pub profile: String,
    /// The lab probe's measurements.
    pub measured: Measurement,
    /// `net.netfilter.nf_conntrack_udp_timeout` in the NAT (unreplied flows), s.
    pub udp_timeout_s: Option<u64>,
    /// `net.netfilter.nf_conntrack_udp_timeout_stream` (replied flows), s.
    pub udp_timeout_stream_s: Option<u64>,
    /// `punchline nat-check --json`'s `preset` (`null` when it gave none).
    pub nat_check: Option<String>,
    /// Its whole JSON answer.
    pub nat_check_json: Option<serde_json::Value>,
    /// coturn's mapping and filtering classification
    /// (`turnutils_natdiscovery -m -f` against coturn's `turnserver`).
    pub coturn: Option<String>,
    /// The same tool's classification against `punchline-server`'s STUN
    /// answers (RFC 5780); `null` when not run.
    pub punchline_stun: Option<String>,
    /// `nat-check` named the profile (`null`: not run, `--nat-only`).
    pub classified_as_built: Option<bool>,
    /// Where the kernel differs from the simulator preset.
    pub differences: Vec<String>,
}

/// Measures and classifies one profile (a fresh site 1, plus a site 2 whose
/// NAT router itself runs the far end of the TTL check).
pub fn check(topo: &mut Topology, profile: Profile, env: &Env<'_>) -> Result<NatRow, LabError> {
    let site = topo.add_site(Slot::One, profile)?;
    let far = topo.add_site(Slot::Two, Profile::Linux)?;
    let result = check_sites(&site, &far, profile, env);
    topo.remove_site(site);
    topo.remove_site(far);
    result
}

fn check_sites(
    site: &topology::Site,
    far: &topology::Site,
    profile: Profile,
    env: &Env<'_>,
) -> Result<NatRow, LabError> {
    let opener_ttl = ClientConfig::new("lab", SERVER.into()).opener_ttl;
    let far_echo = topology::endpoint(far.slot.public_ip(), 6000);
    let far_args: Vec<String> = vec!["lab-probe".into(), "echo".into(), far_echo.to_string()];
    let peer_echo = Spawned::start("far echo", &far.nat_ns, env.me, &far_args)?;
    if peer_echo.wait_for_line(Duration::from_secs(10), |l| l == "ready").is_none() {
        return Err(LabError::Command(format!("far echo did not start: {}", peer_echo.stderr())));
    }
    let mut args = vec!["lab-probe".to_owned(), "measure".to_owned(), "--ttl".to_owned(), opener_ttl.to_string()];
    args.extend(["--peer".to_owned(), topology::endpoint(far.slot.public_ip(), 6000).to_string()]);
    for e in env.echo {
        args.extend(["--echo".to_owned(), e.to_string()]);
    }
    let probe = Spawned::start("probe measure", &site.host_ns, env.me, &args)?;
    let (_, lines, _) = probe.finish(Duration::from_secs(60));
    let measured: Measurement = lines.iter().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_default();
    drop(peer_echo);

    let timeout = |key: &str| topology::sysctl(&site.nat_ns, key).ok().and_then(|v| v.parse().ok());
    let mut row = NatRow {
        profile: profile.name().to_owned(),
        udp_timeout_s: timeout("net.netfilter.nf_conntrack_udp_timeout"),
        udp_timeout_stream_s: timeout("net.netfilter.nf_conntrack_udp_timeout_stream"),
        measured,
        nat_check: None,
        nat_check_json: None,
        coturn: None,
        punchline_stun: None,
        classified_as_built: None,
        differences: Vec::new(),
    };
    row.differences = differences(profile, &row, opener_ttl);

    if let Some(b) = env.binaries {
        let mut args = vec![
            "--server".to_owned(),
            SERVER.to_string(),
            "--alt-server".to_owned(),
            ALT_SERVER.to_string(),
            "--user".to_owned(),
            format!("natcheck-{}", profile.name()),
        ];
        if let Some(rt) = env.runtime {
            args.extend(["--runtime".to_owned(), rt.to_owned()]);
        }
        args.extend(["nat-check".to_owned(), "--json".to_owned()]);
        let p = Spawned::start("nat-check", &site.host_ns, &b.client.to_string_lossy(), &args)?;
        let (_, lines, _) = p.finish(Duration::from_secs(60));
        let json: Option<serde_json::Value> = lines.iter().rev().find_map(|l| serde_json::from_str(l).ok());
        row.nat_check = json.as_ref().and_then(|j| j.get("preset")?.as_str().map(str::to_owned));
        row.classified_as_built = Some(classifies_as(profile, json.as_ref()));
        row.nat_check_json = json;
    }
    if env.coturn {
        row.coturn = Some(natdiscovery(site, COTURN_PORT));
    }
    if env.natdiscovery && env.binaries.is_some() {
        row.punchline_stun = Some(natdiscovery(site, SERVER.port()));
    }
    Ok(row)
}

/// `turnutils_natdiscovery -m -f` from the site's host against the STUN
/// server on the server's primary IP at `port`, reduced to its
/// classification (see [`coturn_classification`]).
fn natdiscovery(site: &topology::Site, port: u16) -> String {
    let (port, ip) = (port.to_string(), SERVER.ip().to_string());
    let out = run_in(&site.host_ns, "timeout", &["20", "turnutils_natdiscovery", "-m", "-f", "-p", &port, &ip])
        .unwrap_or_default();
    coturn_classification(&out)
}

/// Whether `nat-check --json`'s answer describes `profile`: it names the
/// preset, or it measured the preset's RFC 4787 mapping, filtering and port
/// allocation under another preset's name. A client cannot tell `linux` from
/// `port-restricted-cone` (they differ only in conntrack tracking and
/// timeouts), nor `linux-random` from `symmetric-random`. Behind
/// `udp-blocked` the client logs in over TCP (issue 21) and says so:
/// `transport` `tcp`, `preset` `udp-blocked`.
pub fn classifies_as(profile: Profile, json: Option<&serde_json::Value>) -> bool {
    let field = |k: &str| json.and_then(|j| j.get(k)?.as_str());
    if profile == Profile::UdpBlocked {
        return field("preset") == Some(profile.name()) && field("transport") == Some("tcp");
    }
    let spec = profile.preset().spec(profile.name(), vec![]);
    let ports = match spec.ports {
        PortPolicy::Preserve => "preserve",
        PortPolicy::Sequential { .. } => "sequential",
        PortPolicy::Random => "random",
    };
    field("preset") == Some(profile.name())
        || (field("mapping") == Some(spec.mapping.name())
            && field("filtering") == Some(spec.filtering.name())
            && field("ports") == Some(ports))
}

/// `turnutils_natdiscovery -m -f` output → `mapping / filtering`.
pub fn coturn_classification(out: &str) -> String {
    let find = |what: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix("NAT with ")?.strip_suffix(&format!(" {what}!")).map(str::to_owned))
            .map(|s| s.to_lowercase().replace(" and ", "-and-").replace(' ', "-"))
    };
    match (find("Mapping"), find("Filtering")) {
        (None, None) => "no answer".to_owned(),
        (m, f) => {
            format!("{} mapping / {} filtering", m.as_deref().unwrap_or("unknown"), f.as_deref().unwrap_or("unknown"))
        }
    }
}

fn differences(profile: Profile, row: &NatRow, opener_ttl: u8) -> Vec<String> {
    let spec = profile.preset().spec(profile.name(), vec![]);
    let m = &row.measured;
    let mut out = Vec::new();
    if spec.blocks_udp {
        if m.reflexive.is_some() {
            out.push("UDP passes, but the preset blocks it".to_owned());
        }
        return out;
    }
    if m.reflexive.is_none() {
        out.push("no answer from the server's echo: UDP does not pass".to_owned());
        return out;
    }
    let preserves = spec.ports == PortPolicy::Preserve;
    if m.port_preserved.is_some_and(|p| p != preserves) {
        out.push(format!("port preservation: kernel {:?}, preset {preserves}", m.port_preserved));
    }
    if m.mapping.as_deref() != Some(spec.mapping.name()) {
        out.push(format!("mapping: kernel {:?}, preset {}", m.mapping, spec.mapping.name()));
    }
    if m.filtering.as_deref() != Some(spec.filtering.name()) {
        out.push(format!("filtering: kernel {:?}, preset {}", m.filtering, spec.filtering.name()));
    }
    if m.unsolicited_reached_host == Some(true) {
        out.push(
            "an unsolicited packet to a port with no mapping reached the host (static dnat forwards everything); \
             the preset drops it (no mapping), which changes no pair's outcome"
                .to_owned(),
        );
    }
    if preserves {
        let displaced = m.poisoned_first_flow_port.is_some_and(|p| p != 4100);
        let tracks = spec.unsolicited == Unsolicited::Track;
        if displaced != tracks {
            out.push(format!(
                "unsolicited packet: kernel {} the port (4100 -> {:?}), preset {}",
                if displaced { "displaced" } else { "kept" },
                m.poisoned_first_flow_port,
                if tracks { "tracks and displaces" } else { "leaves nothing" }
            ));
        }
        if displaced && tracks && m.poisoned_next_flow_port != m.poisoned_first_flow_port {
            // The preset follows conntrack's `find_appropriate_src`: an
            // endpoint displaced by an unsolicited entry keeps its new port
            // for its later flows.
            out.push(format!(
                "after an unsolicited packet to a fresh port, the endpoint's first flow moved to {:?} but its next \
                 flow to another destination left from {:?}; the preset reuses the moved port",
                m.poisoned_first_flow_port, m.poisoned_next_flow_port
            ));
        }
        if m.established_then_poisoned_port.is_some_and(|p| p == 4200) == tracks {
            out.push(format!(
                "established mapping then unsolicited packet: kernel gave {:?} toward the poker",
                m.established_then_poisoned_port
            ));
        }
    }
    let preset_timeout = spec.timeout.as_secs();
    if let Some(t) = row.udp_timeout_s.filter(|t| *t != preset_timeout) {
        out.push(format!("unreplied UDP flows live {t} s in the kernel, {preset_timeout} s in the preset"));
    }
    if let Some(t) = row.udp_timeout_stream_s.filter(|t| *t != preset_timeout) {
        out.push(format!(
            "replied UDP flows (a reply, and traffic after 2 s) live {t} s in the kernel, {preset_timeout} s in the preset"
        ));
    }
    if m.opener_ttl_arrived != Some(false) || m.opener_ttl_plus_one_arrived != Some(true) {
        out.push(format!(
            "topology: TTL {opener_ttl} reached the peer: {:?}, TTL {} reached it: {:?} (want false, true)",
            m.opener_ttl_arrived,
            opener_ttl + 1,
            m.opener_ttl_plus_one_arrived
        ));
    }
    out
}

/// The NAT table.
pub fn table(rows: &[NatRow]) -> String {
    let mut out = format!(
        "{:<13} {:<22} {:<10} {:<28} {:<28} {:<14} {:<14} {}\n",
        "profile", "reflexive", "preserves", "mapping", "filtering", "nat-check", "timeouts", "coturn"
    );
    for r in rows {
        let m = &r.measured;
        let _ = writeln!(
            out,
            "{:<13} {:<22} {:<10} {:<28} {:<28} {:<14} {:<14} {}",
            r.profile,
            m.reflexive.map_or("-".to_owned(), |a| a.to_string()),
            m.port_preserved.map_or("-".to_owned(), |p| p.to_string()),
            m.mapping.as_deref().unwrap_or("-"),
            m.filtering.as_deref().unwrap_or("-"),
            match (r.classified_as_built, &r.nat_check) {
                (None, _) => "not run".to_owned(),
                (Some(ok), name) => format!("{}{}", if ok { "" } else { "!" }, name.as_deref().unwrap_or("none")),
            },
            match (r.udp_timeout_s, r.udp_timeout_stream_s) {
                (Some(a), Some(b)) => format!("{a}s/{b}s"),
                _ => "-".to_owned(),
            },
            r.coturn.as_deref().unwrap_or("-"),
        );
        if let Some(ours) = &r.punchline_stun {
            let agrees = r.coturn.as_ref().is_none_or(|theirs| theirs == ours);
            let _ = writeln!(
                out,
                "    turnutils_natdiscovery against punchline-server: {}{ours}",
                if agrees { "" } else { "!" }
            );
        }
        for d in &r.differences {
            let _ = writeln!(out, "    differs from preset: {d}");
        }
    }
    out.push_str(
        "timeouts: unreplied/replied conntrack UDP timeouts; ! marks a nat-check that named another profile,\n\
         or a classification against punchline-server's STUN answers that is not the one against turnserver\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nat_check_answers_classify_by_name_or_by_the_measured_triple() {
        // Given nat-check answers as punchline prints them,
        let masquerade = json!({"mapping": "endpoint-independent", "filtering": "address-and-port-dependent",
            "ports": "preserve", "preset": "port-restricted-cone", "reflexive": "192.0.2.2:4000"});
        let unmeasured_ports = json!({"mapping": "address-and-port-dependent",
            "filtering": "address-and-port-dependent", "ports": null, "preset": "symmetric-sequential",
            "reflexive": "192.0.2.2:49044"});
        let random = json!({"mapping": "address-and-port-dependent", "filtering": "address-and-port-dependent",
            "ports": "random", "preset": "symmetric-random", "reflexive": "192.0.2.2:49044"});
        // then masquerade's triple is `linux` under its cone name, unmeasured
        // ports are not `linux-random`, random ones are, and `udp-blocked` is
        // a login over TCP that says so (silence is a failure).
        assert!(classifies_as(Profile::Linux, Some(&masquerade)));
        assert!(!classifies_as(Profile::FullCone, Some(&masquerade)));
        assert!(!classifies_as(Profile::LinuxRandom, Some(&unmeasured_ports)));
        assert!(classifies_as(Profile::LinuxRandom, Some(&random)));
        let over_tcp = json!({"mapping": null, "filtering": null, "ports": null, "preset": "udp-blocked",
            "transport": "tcp", "reflexive": "192.0.2.2:49044"});
        assert!(classifies_as(Profile::UdpBlocked, Some(&over_tcp)));
        assert!(!classifies_as(Profile::UdpBlocked, None));
        assert!(!classifies_as(Profile::UdpBlocked, Some(&masquerade)));
    }

    #[test]
    fn coturn_output_reduces_to_mapping_and_filtering() {
        let out = "-= Mapping Behavior Discovery =-\nNAT with Endpoint Independent Mapping!\n\
                   -= Filtering Behavior Discovery =-\nNAT with Address and Port Dependent Filtering!\n";
        assert_eq!(coturn_classification(out), "endpoint-independent mapping / address-and-port-dependent filtering");
        assert_eq!(coturn_classification("timeout\n"), "no answer");
    }
}
