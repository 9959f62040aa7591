//! `punchline-sim lab`: the real `punchline-server` and `punchline` binaries
//! behind real Linux NATs (network namespaces and nftables), compared pair by
//! pair with the simulator's presets (DESIGN §5, issue 6).
//!
//! The lab runs in these parts:
//! 1. **Kernel NAT measurements** ([`nat_check`]): behind each profile, the
//!    lab's own probe ([`probe`]) measures port preservation, mapping,
//!    filtering, what an unsolicited packet leaves behind and whether an
//!    opener TTL dies before the peer's NAT; `punchline nat-check` (and
//!    coturn's `turnutils_natdiscovery` when installed) must classify the NAT
//!    as the profile it was built as. `turnutils_natdiscovery` asks coturn's
//!    `turnserver` and `punchline-server` (RFC 5780 STUN answers), which
//!    must agree. Differences from the simulator preset are listed.
//! 2. **Pairs** ([`pairs`]): for every ordered pair of [`Profile::ALL`], a
//!    `listen` behind the second NAT and a `connect` from behind the first;
//!    the outcome is compared with [`crate::matrix::run_cell`] for the same
//!    presets.
//! 3. **A NAT reboot** ([`reboot`]): the connecting side's conntrack table
//!    flushed during a direct session; the real binaries must regain a
//!    direct path, as the simulator does under its `nat_reboot` event.
//! 4. **Same LAN** ([`lan`]): two hosts on one segment behind one
//!    `masquerade fully-random` NAT end direct over their host candidates,
//!    as `matrix --stress lan` predicts.
//! 5. **UDP blocked mid-session** ([`midblock`]): the connecting side's NAT
//!    starts dropping UDP during a direct session; the client moves to TCP
//!    within 5 s and the session goes on over the relay, as the simulator's
//!    `block_udp` event predicts.
//! 6. **A 64 MiB file** ([`files`], issue 22): `send-file` from behind one
//!    NAT to a `listen --accept-files` behind another, `linux` to `linux`
//!    and `linux` to `linux-random`; it must arrive verified (the BLAKE3
//!    roots of the file sent, of both ends' reports and of the file saved
//!    all equal), over the path the simulator predicts for the pair.
//! 7. **Cleanup** ([`cleanup`]): everything is removed on exit, on failure
//!    (`Drop`) and on Ctrl-C; `--keep` leaves the namespaces and prints how to
//!    remove them.
//!
//! `--only` picks some of parts 1 to 6 ([`Check`]); `--nat-only` and
//! `--no-pairs` are the two selections the lab had before it.
//!
//! `udp-blocked` drops every UDP packet, the server's relay included, and
//! passes TCP: a peer behind it logs in over TCP (issue 21), so every pair
//! with it ends `relay-tcp` in the kernel and in the simulator alike (the
//! `udp-blocked` preset).

pub mod cleanup;
pub mod cli;
pub mod clients;
pub mod files;
pub mod host;
pub mod lan;
pub mod midblock;
pub mod nat_check;
pub mod pairs;
pub mod probe;
pub mod process;
pub mod reboot;
pub mod topology;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::nat::Preset;
use host::Binaries;
use process::Spawned;
use topology::{Slot, Topology, ALT_SERVER, COTURN_PORT, SERVER};

/// A NAT the lab builds with nftables, named after the simulator preset it
/// must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Static `snat` plus `dnat` of everything to the one host.
    FullCone,
    /// `masquerade`.
    Linux,
    /// `masquerade fully-random`.
    LinuxRandom,
    /// Every UDP packet dropped (forwarded and to the router itself).
    UdpBlocked,
}

impl Profile {
    /// The lab's profiles, in table order.
    pub const ALL: [Profile; 4] = [Profile::FullCone, Profile::Linux, Profile::LinuxRandom, Profile::UdpBlocked];

    /// The simulator preset it is checked against.
    pub fn preset(self) -> Preset {
        match self {
            Profile::FullCone => Preset::FullCone,
            Profile::Linux => Preset::Linux,
            Profile::LinuxRandom => Preset::LinuxRandom,
            Profile::UdpBlocked => Preset::UdpBlocked,
        }
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        self.preset().name()
    }

    /// The nftables ruleset of the NAT router (`wan` faces the internet,
    /// `lan` the host).
    pub fn nft_rules(self, public: Ipv4Addr, host: Ipv4Addr) -> String {
        let (post, pre, filter) = match self {
            Profile::FullCone => (
                format!("oifname \"wan\" snat to {public}"),
                format!("iifname \"wan\" ip daddr {public} dnat to {host}"),
                "",
            ),
            Profile::Linux => ("oifname \"wan\" masquerade".to_owned(), String::new(), ""),
            Profile::LinuxRandom => ("oifname \"wan\" masquerade fully-random".to_owned(), String::new(), ""),
            Profile::UdpBlocked => (
                "oifname \"wan\" masquerade".to_owned(),
                String::new(),
                "chain forward { type filter hook forward priority filter; policy accept; meta l4proto udp drop; }\n  \
                 chain input { type filter hook input priority filter; policy accept; meta l4proto udp drop; }",
            ),
        };
        format!(
            "table ip punchline_lab {{\n  \
             chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; {post}; }}\n  \
             chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; {pre}; }}\n  {filter}\n}}\n"
        )
    }
}

/// One part of the lab, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Check {
    /// The kernel NAT measurements and `nat-check` ([`nat_check`]).
    Nats,
    /// Every ordered pair ([`pairs`]).
    Pairs,
    /// UDP blocked mid-session ([`midblock`]).
    UdpBlocks,
    /// The NAT reboots ([`reboot`]).
    Reboots,
    /// The same-LAN pair ([`lan`]).
    Lan,
    /// The 64 MiB file ([`files`]).
    Files,
}

impl Check {
    /// The checks that run the Punchline binaries' sessions (everything but
    /// the NAT measurements).
    pub const SESSIONS: [Check; 5] = [Check::Pairs, Check::UdpBlocks, Check::Reboots, Check::Lan, Check::Files];
}

/// What the lab was asked to do.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Leave the namespaces for inspection.
    pub keep: bool,
    /// `punchline-server` (default: next to the running executable).
    pub server_bin: Option<PathBuf>,
    /// `punchline` (default: next to the running executable).
    pub client_bin: Option<PathBuf>,
    /// Passed to both binaries as `--runtime`.
    pub runtime: Option<String>,
    /// Only the kernel NAT measurements and `nat-check` (when the binaries
    /// are there): no pairs, no reboot or same-LAN checks, and no binaries
    /// needed.
    pub nat_only: bool,
    /// Everything but the ordered pairs: the NAT measurements, the reboot,
    /// same-LAN, UDP-block and file checks.
    pub no_pairs: bool,
    /// Only these parts (empty: as `nat_only` and `no_pairs` say).
    pub only: Vec<Check>,
    /// Simulator seeds per pair.
    pub sim_seeds: u32,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl LabOptions {
    /// Whether this run includes `check`.
    pub fn runs(&self, check: Check) -> bool {
        if self.nat_only {
            check == Check::Nats
        } else if !self.only.is_empty() {
            self.only.contains(&check)
        } else {
            !(self.no_pairs && check == Check::Pairs)
        }
    }

    /// Whether this run starts any session of the binaries (and so needs
    /// them, and `conntrack`).
    pub fn runs_sessions(&self) -> bool {
        Check::SESSIONS.iter().any(|c| self.runs(*c))
    }
}

/// Why the lab could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Root, a tool or a binary is missing.
    #[error("the lab needs:\n  - {}", .0.join("\n  - "))]
    Missing(Vec<String>),
    /// A command the lab ran failed.
    #[error("{0}")]
    Command(String),
}

/// The lab's report (`punchline-sim lab --json`).
#[derive(Clone, Debug, Serialize)]
pub struct LabReport {
    /// The namespace suffix this run used.
    pub suffix: String,
    /// Behind each profile: what the kernel did and how it was classified.
    pub nats: Vec<nat_check::NatRow>,
    /// NAT rows where `nat-check` did not name the profile.
    pub nat_mismatches: u32,
    /// Every ordered pair.
    pub pairs: Vec<pairs::PairRow>,
    /// The NAT reboot checks.
    pub reboots: Vec<reboot::RebootRow>,
    /// The same-LAN checks.
    pub lan: Vec<lan::LanRow>,
    /// The mid-session UDP blocks.
    pub udp_blocks: Vec<midblock::BlockRow>,
    /// The 64 MiB file transfers.
    pub files: Vec<files::FileRow>,
    /// Pairs, reboot, same-LAN, UDP-block and file checks where the
    /// simulator and the kernel disagree (a file that did not arrive
    /// verified counts as one).
    pub disagreements: u32,
}

impl LabReport {
    /// True when every pair agreed and every NAT was classified right.
    pub fn success(&self) -> bool {
        self.disagreements == 0 && self.nat_mismatches == 0
    }

    /// The tables a person reads.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.nats.is_empty() {
            let _ = writeln!(out, "Lab {} (no kernel NAT measurements):", self.suffix);
        } else {
            let _ = writeln!(out, "Kernel NATs (lab {}):", self.suffix);
            out.push_str(&nat_check::table(&self.nats));
        }
        if !self.pairs.is_empty() {
            out.push('\n');
            out.push_str(&pairs::table(&self.pairs));
        }
        if !self.reboots.is_empty() {
            out.push('\n');
            out.push_str(&reboot::table(&self.reboots));
        }
        if !self.lan.is_empty() {
            out.push('\n');
            out.push_str(&lan::table(&self.lan));
        }
        if !self.udp_blocks.is_empty() {
            out.push('\n');
            out.push_str(&midblock::table(&self.udp_blocks));
        }
        if !self.files.is_empty() {
            out.push('\n');
            out.push_str(&files::table(&self.files));
        }
        let _ = writeln!(
            out,
            "\ndisagreements: {} pair(s), {} reboot check(s), {} same-LAN check(s), {} UDP block(s), \
             {} file(s), {} NAT classification(s)",
            self.pairs.iter().filter(|r| !r.agree).count(),
            self.reboots.iter().filter(|r| !r.agree).count(),
            self.lan.iter().filter(|r| !r.agree).count(),
            self.udp_blocks.iter().filter(|r| !r.agree).count(),
            self.files.iter().filter(|r| !r.agree).count(),
            self.nat_mismatches
        );
        out
    }
}

/// Runs the lab.
pub fn run(opts: &LabOptions) -> Result<LabReport, LabError> {
    let sessions = opts.runs_sessions();
    host::check_machine(sessions)?;
    // The NAT measurements alone run nat-check too when the binaries are
    // there; any session check needs them, and stops the lab here without.
    let located = Binaries::locate(opts.server_bin.clone(), opts.client_bin.clone());
    let binaries = if sessions { Some(located?) } else { located.ok() };
    let me =
        std::env::current_exe().map_err(|e| LabError::Command(format!("cannot find punchline-sim itself: {e}")))?;
    let me = me.to_string_lossy().into_owned();
    cleanup::install_signal_handler(opts.keep);
    let suffix = format!("pl{}", std::process::id());
    let log = |msg: &str| {
        if opts.verbose {
            eprintln!("lab: {msg}");
        }
    };
    let mut topo = Topology::create(&suffix, opts.keep)?;
    let srv = topo.ns("srv");
    log(&format!("topology up: {}", topo.namespaces().join(" ")));

    // The lab's own echo on the server, three sockets (see `probe`).
    let echo_addrs = [
        topology::endpoint(*SERVER.ip(), 5000),
        topology::endpoint(*SERVER.ip(), 5001),
        topology::endpoint(*ALT_SERVER.ip(), 5000),
    ];
    let echo_args: Vec<String> = ["lab-probe".to_owned(), "echo".to_owned()]
        .into_iter()
        .chain(echo_addrs.iter().map(|a| a.to_string()))
        .collect();
    // Only the NAT measurements use the echo and coturn.
    let echo = if opts.runs(Check::Nats) {
        let echo = Spawned::start("probe echo", &srv, &me, &echo_args)?;
        ready(&echo, |l| l == "ready")?;
        Some(echo)
    } else {
        None
    };

    // coturn leaves its pid file behind when stopped; the run removes it.
    let pidfile = TempPath::new(std::env::temp_dir().join(format!("punchline-lab-{suffix}-turnserver.pid")));
    let coturn = if !opts.runs(Check::Nats) {
        None
    } else if host::coturn_available() {
        let args: Vec<String> = [
            "-n",
            "-v",
            "--no-auth",
            "--stun-only",
            "--no-tcp",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--simple-log",
            "--log-file",
            "stdout",
            "--listening-ip",
            &SERVER.ip().to_string(),
            "--listening-ip",
            &ALT_SERVER.ip().to_string(),
            "--listening-port",
            &COTURN_PORT.to_string(),
            "--alt-listening-port",
            &(COTURN_PORT + 1).to_string(),
            "--pidfile",
            &pidfile.0.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t = Spawned::start("turnserver", &srv, "turnserver", &args)?;
        // coturn (with -v) logs each UDP listener it opens: two addresses
        // times two ports.
        let opened = std::cell::Cell::new(0);
        let all_open = |l: &str| {
            opened.set(opened.get() + u32::from(l.contains("UDP listener opened on")));
            opened.get() == 4
        };
        match t.wait_for_line(Duration::from_secs(10), all_open) {
            Some(_) => Some(t),
            None => {
                eprintln!(
                    "lab: turnserver did not report its listeners; coturn column skipped. stderr: {}",
                    t.stderr()
                );
                None
            }
        }
    } else {
        eprintln!("lab: coturn (turnserver, turnutils_natdiscovery) not installed; coturn column skipped");
        None
    };

    // The server's message store lives in a directory of this run's own,
    // removed when the run ends.
    let data = TempPath::new(std::env::temp_dir().join(format!("punchline-lab-{suffix}-data")));
    // So do the clients' identity keys and pinned server keys: the lab
    // never touches the user's own.
    let home = TempPath::new(std::env::temp_dir().join(format!("punchline-lab-{suffix}-home")));
    process::set_client_home(&home.0);
    let server = match &binaries {
        Some(b) => {
            let mut args = vec![
                "--listen".to_owned(),
                SERVER.to_string(),
                "--alt-listen".to_owned(),
                ALT_SERVER.to_string(),
                "--data".to_owned(),
                data.0.to_string_lossy().into_owned(),
            ];
            if let Some(rt) = &opts.runtime {
                args.extend(["--runtime".to_owned(), rt.clone()]);
            }
            let s = Spawned::start("punchline-server", &srv, &b.server.to_string_lossy(), &args)?;
            let wanted = SERVER.to_string();
            if s.wait_for_line(Duration::from_secs(10), |l| l.contains(&wanted)).is_none() {
                return Err(LabError::Command(format!(
                    "punchline-server did not print its listen address {wanted} within 10 s; stderr: {}",
                    s.stderr()
                )));
            }
            Some(s)
        }
        None => None,
    };

    let env = nat_check::Env {
        me: &me,
        echo: echo_addrs,
        binaries: binaries.as_ref(),
        runtime: opts.runtime.as_deref(),
        coturn: coturn.is_some(),
        natdiscovery: host::coturn_available(),
    };
    let mut nats = Vec::new();
    for profile in Profile::ALL.into_iter().filter(|_| opts.runs(Check::Nats)) {
        log(&format!("measuring {}", profile.name()));
        nats.push(nat_check::check(&mut topo, profile, &env)?);
    }
    let nat_mismatches = nats.iter().filter(|n| n.classified_as_built == Some(false)).count() as u32;

    let mut rows = Vec::new();
    if let (Some(b), true) = (&binaries, opts.runs(Check::Pairs)) {
        for (i, (a, bp)) in Profile::ALL.iter().flat_map(|a| Profile::ALL.iter().map(move |b| (*a, *b))).enumerate() {
            log(&format!("pair {} -> {}", a.name(), bp.name()));
            let site_a = topo.add_site(Slot::One, a)?;
            let site_b = topo.add_site(Slot::Two, bp)?;
            let row = pairs::run_pair(&site_a, &site_b, b, opts, &format!("{suffix}-{i}"))?;
            // The reboot checks reuse the slots: --keep leaves the same-LAN
            // site, the last one built.
            topo.remove_site(site_a);
            topo.remove_site(site_b);
            rows.push(row);
        }
    }
    let (mut reboots, mut lan, mut udp_blocks, mut file_rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if let Some(b) = &binaries {
        for (i, (a, bp)) in midblock::CASES.into_iter().enumerate().filter(|_| opts.runs(Check::UdpBlocks)) {
            log(&format!("UDP block {} -> {}: {}'s NAT drops UDP mid-session", a.name(), bp.name(), a.name()));
            let site_a = topo.add_site(Slot::One, a)?;
            let site_b = topo.add_site(Slot::Two, bp)?;
            let row = midblock::run_block(&site_a, &site_b, b, opts, &format!("{suffix}-{i}"))?;
            topo.remove_site(site_a);
            topo.remove_site(site_b);
            udp_blocks.push(row);
        }
        for (i, (a, bp)) in reboot::CASES.into_iter().enumerate().filter(|_| opts.runs(Check::Reboots)) {
            log(&format!("reboot {} -> {}: flushing {}'s conntrack", a.name(), bp.name(), a.name()));
            let site_a = topo.add_site(Slot::One, a)?;
            let site_b = topo.add_site(Slot::Two, bp)?;
            let row = reboot::run_reboot(&site_a, &site_b, b, opts, &format!("{suffix}-{i}"))?;
            topo.remove_site(site_a);
            topo.remove_site(site_b);
            reboots.push(row);
        }
        // --keep leaves the last site built for inspection: the same-LAN
        // one, or the last file check's pair when the file checks run.
        let files_run = opts.runs(Check::Files);
        for (i, profile) in lan::PROFILES.into_iter().enumerate().filter(|_| opts.runs(Check::Lan)) {
            log(&format!("same LAN behind {}", profile.name()));
            let site = topo.add_lan_site(Slot::One, profile)?;
            let row = lan::run_lan(&site, b, opts, &format!("{suffix}-{i}"))?;
            if !(opts.keep && !files_run && i + 1 == lan::PROFILES.len()) {
                topo.remove_site(site);
            }
            lan.push(row);
        }
        for (i, (a, bp)) in files::CASES.into_iter().enumerate().filter(|_| files_run) {
            log(&format!("file {} -> {}: {} MiB", a.name(), bp.name(), files::FILE_SIZE >> 20));
            let site_a = topo.add_site(Slot::One, a)?;
            let site_b = topo.add_site(Slot::Two, bp)?;
            let row = files::run_file(&site_a, &site_b, b, opts, &format!("{suffix}-{i}"))?;
            if !(opts.keep && i + 1 == files::CASES.len()) {
                topo.remove_site(site_a);
                topo.remove_site(site_b);
            }
            file_rows.push(row);
        }
    }
    let disagreements = (rows.iter().filter(|r| !r.agree).count()
        + reboots.iter().filter(|r| !r.agree).count()
        + lan.iter().filter(|r| !r.agree).count()
        + udp_blocks.iter().filter(|r| !r.agree).count()
        + file_rows.iter().filter(|r| !r.agree).count()) as u32;
    drop(server);
    drop(coturn);
    drop(pidfile);
    drop(echo);
    drop(topo);
    Ok(LabReport {
        suffix,
        nats,
        nat_mismatches,
        pairs: rows,
        reboots,
        lan,
        udp_blocks,
        files: file_rows,
        disagreements,
    })
}

fn ready(p: &Spawned, wanted: impl Fn(&str) -> bool) -> Result<(), LabError> {
    match p.wait_for_line(Duration::from_secs(10), wanted) {
        Some(_) => Ok(()),
        None => Err(LabError::Command(format!("{} did not become ready: {}", p.name, p.stderr()))),
    }
}

/// A file or directory of the run's own, which something the lab starts
/// creates: removed when dropped, and on Ctrl-C.
struct TempPath(PathBuf);

impl TempPath {
    fn new(path: PathBuf) -> TempPath {
        cleanup::register(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        cleanup::remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nat_only_and_no_pairs_select_the_parts_that_run() {
        let with = |f: fn(&mut LabOptions)| {
            let mut o = LabOptions::default();
            f(&mut o);
            [Check::Nats, Check::Pairs, Check::UdpBlocks, Check::Reboots, Check::Lan, Check::Files]
                .into_iter()
                .filter(|c| o.runs(*c))
                .collect::<Vec<_>>()
        };
        // Given no selection, every part runs;
        assert_eq!(with(|_| {}).len(), 6);
        // --nat-only runs the measurements alone, and so no session;
        assert_eq!(with(|o| o.nat_only = true), [Check::Nats]);
        assert!(!LabOptions { nat_only: true, ..LabOptions::default() }.runs_sessions());
        // --no-pairs runs all but the pairs;
        assert_eq!(with(|o| o.no_pairs = true).len(), 5);
        assert!(!with(|o| o.no_pairs = true).contains(&Check::Pairs));
        // --only runs what it names, and needs the binaries for a session.
        assert_eq!(with(|o| o.only = vec![Check::Files]), [Check::Files]);
        assert_eq!(with(|o| o.only = vec![Check::Pairs, Check::Nats]), [Check::Nats, Check::Pairs]);
        assert!(LabOptions { only: vec![Check::Files], ..LabOptions::default() }.runs_sessions());
        assert!(!LabOptions { only: vec![Check::Nats], ..LabOptions::default() }.runs_sessions());
    }
}
