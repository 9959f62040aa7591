//! The lab's network: namespaces joined by veth pairs.
//!
//! ```text
//!  host1 ─ nat1 ─ r1 ══ r2 ─ nat2 ─ host2
//!  10.0.1.2  192.0.2.2   │   192.0.2.18  10.0.2.2
//!                       srv 203.0.113.10 and .11
//! ```
//!
//! A LAN site ([`Topology::add_lan_site`]) puts a second host, `host1b` at
//! 10.0.1.3, on `host1`'s segment: the NAT router bridges both.
//!
//! `r1` and `r2` are the internet: two routers between any two NATs, so a
//! packet leaving a host with TTL 3 (the client's default `opener_ttl`)
//! crosses its own NAT (TTL 2) and `r1` (TTL 1) and dies in `r2`, before the
//! peer's NAT, as DESIGN §3 requires of an opener; TTL 4 arrives. The server
//! namespace has two addresses, for RFC 5780 behaviour discovery. Each NAT
//! router namespace runs the nftables rules of its [`Profile`]; each site is
//! built fresh for a pair, so no conntrack state carries over.
//!
//! Addresses come from the documentation ranges (RFC 5737) and 10/8, and
//! exist only inside the lab's own namespaces; every name carries the lab's
//! suffix (`pl<pid>`), so two labs never collide.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::cleanup;
use super::process::{run, run_in, run_with_input};
use super::{LabError, Profile};

/// The server's primary address (punchline-server `--listen`).
pub const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 3478);
/// The server's alternate address (`--alt-listen`): another IP and port.
pub const ALT_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 11), 3479);
/// coturn's STUN port on both server addresses (its alternate port is +1).
pub const COTURN_PORT: u16 = 3480;
/// Hops between two NATs: both internet routers.
pub const ROUTERS_BETWEEN_NATS: u8 = 2;

/// One of the two client sites: site 1 hangs off `r1`, site 2 off `r2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The connecting side.
    One,
    /// The listening side.
    Two,
}

impl Slot {
    fn index(self) -> u8 {
        match self {
            Slot::One => 1,
            Slot::Two => 2,
        }
    }

    fn router(self) -> &'static str {
        match self {
            Slot::One => "r1",
            Slot::Two => "r2",
        }
    }

    /// The NAT's public address.
    pub fn public_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 2 + 16 * (self.index() - 1))
    }

    fn router_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 1 + 16 * (self.index() - 1))
    }

    /// The host's private address.
    pub fn host_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, self.index(), 2)
    }

    /// The private address of a LAN site's second host, on the first
    /// host's segment.
    pub fn neighbour_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, self.index(), 3)
    }
}

/// A client site: a host namespace behind a NAT router namespace.
#[derive(Clone, Debug)]
pub struct Site {
    /// Where it hangs.
    pub slot: Slot,
    /// The NAT profile its router runs.
    pub profile: Profile,
    /// The host's namespace.
    pub host_ns: String,
    /// The NAT router's namespace.
    pub nat_ns: String,
    /// A LAN site's second host ([`Topology::add_lan_site`]): on the first
    /// host's segment, behind the same NAT; `None` for a one-host site.
    pub neighbour_ns: Option<String>,
}

/// The lab's namespaces; dropping it removes them (unless kept).
pub struct Topology {
    suffix: String,
    keep: bool,
    namespaces: Vec<String>,
}

impl Topology {
    /// Builds the internet (`r1`, `r2`) and the server namespace.
    pub fn create(suffix: &str, keep: bool) -> Result<Topology, LabError> {
        let mut t = Topology { suffix: suffix.to_owned(), keep, namespaces: Vec::new() };
        for role in ["r1", "r2", "srv"] {
            t.add_namespace(role)?;
        }
        let (r1, r2, srv) = (t.ns("r1"), t.ns("r2"), t.ns("srv"));
        veth(&r1, "core", &r2, "core")?;
        addr(&r1, "198.51.100.1/30", "core")?;
        addr(&r2, "198.51.100.2/30", "core")?;
        veth(&r2, "server", &srv, "eth0")?;
        addr(&r2, "203.0.113.1/24", "server")?;
        addr(&srv, &format!("{}/24", SERVER.ip()), "eth0")?;
        addr(&srv, &format!("{}/24", ALT_SERVER.ip()), "eth0")?;
        run("ip", &["-n", &srv, "route", "add", "default", "via", "203.0.113.1"])?;
        run("ip", &["-n", &r1, "route", "add", "default", "via", "198.51.100.2"])?;
        run("ip", &["-n", &r2, "route", "add", "192.0.2.0/28", "via", "198.51.100.1"])?;
        for r in [&r1, &r2] {
            forwarding(r)?;
        }
        Ok(t)
    }

    /// The full name of a lab namespace role (`r1` → `r1-pl1234`).
    pub fn ns(&self, role: &str) -> String {
        format!("{role}-{}", self.suffix)
    }

    /// Every namespace the lab has now.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Builds a site in `slot` behind a NAT of `profile`.
    pub fn add_site(&mut self, slot: Slot, profile: Profile) -> Result<Site, LabError> {
        let i = slot.index();
        let host_ns = self.add_namespace(&format!("host{i}"))?;
        let nat_ns = self.add_nat(slot, profile)?;
        veth(&nat_ns, "lan", &host_ns, "eth0")?;
        addr(&nat_ns, &format!("10.0.{i}.1/24"), "lan")?;
        lan_host(&host_ns, slot.host_ip(), i)?;
        Ok(Site { slot, profile, host_ns, nat_ns, neighbour_ns: None })
    }

    /// Builds a site in `slot` with two hosts on one LAN segment behind a
    /// NAT of `profile`: the NAT router bridges `lan1` (to `host{i}`,
    /// [`Slot::host_ip`]) and `lan2` (to `host{i}b`, [`Slot::neighbour_ip`])
    /// into its `lan` bridge, so the hosts reach each other at layer 2,
    /// never through the NAT. A full cone forwards everything to the first
    /// host.
    pub fn add_lan_site(&mut self, slot: Slot, profile: Profile) -> Result<Site, LabError> {
        let i = slot.index();
        let host_ns = self.add_namespace(&format!("host{i}"))?;
        let neighbour_ns = self.add_namespace(&format!("host{i}b"))?;
        let nat_ns = self.add_nat(slot, profile)?;
        run("ip", &["-n", &nat_ns, "link", "add", "dev", "lan", "type", "bridge"])?;
        run("ip", &["-n", &nat_ns, "link", "set", "dev", "lan", "up"])?;
        addr(&nat_ns, &format!("10.0.{i}.1/24"), "lan")?;
        for (port, ns, ip) in [("lan1", &host_ns, slot.host_ip()), ("lan2", &neighbour_ns, slot.neighbour_ip())] {
            veth(&nat_ns, port, ns, "eth0")?;
            run("ip", &["-n", &nat_ns, "link", "set", "dev", port, "master", "lan"])?;
            lan_host(ns, ip, i)?;
        }
        Ok(Site { slot, profile, host_ns, nat_ns, neighbour_ns: Some(neighbour_ns) })
    }

    /// Removes a site (its namespaces, and with them its veths and conntrack).
    pub fn remove_site(&mut self, site: Site) {
        // The kernel dismantles a deleted namespace asynchronously, and with
        // it the veth toward the router; delete the router's end now so that
        // the next site can reuse its name at once.
        let router = self.ns(site.slot.router());
        let _ = run("ip", &["-n", &router, "link", "del", "dev", &format!("site{}", site.slot.index())]);
        for ns in [Some(site.host_ns), site.neighbour_ns, Some(site.nat_ns)].into_iter().flatten() {
            cleanup::delete_namespace(&ns);
            self.namespaces.retain(|n| *n != ns);
        }
    }

    /// The NAT router of a site: its `wan` toward the slot's internet
    /// router, its rules; the LAN side is the caller's.
    fn add_nat(&mut self, slot: Slot, profile: Profile) -> Result<String, LabError> {
        let i = slot.index();
        let nat_ns = self.add_namespace(&format!("nat{i}"))?;
        let router = self.ns(slot.router());
        let site_dev = format!("site{i}");
        veth(&router, &site_dev, &nat_ns, "wan")?;
        addr(&router, &format!("{}/28", slot.router_ip()), &site_dev)?;
        addr(&nat_ns, &format!("{}/28", slot.public_ip()), "wan")?;
        run("ip", &["-n", &nat_ns, "route", "add", "default", "via", &slot.router_ip().to_string()])?;
        forwarding(&nat_ns)?;
        let rules = profile.nft_rules(slot.public_ip(), slot.host_ip());
        run_with_input("ip", &["netns", "exec", &nat_ns, "nft", "-f", "-"], Some(&rules))?;
        Ok(nat_ns)
    }

    fn add_namespace(&mut self, role: &str) -> Result<String, LabError> {
        let name = self.ns(role);
        cleanup::create_namespace(&name).map_err(LabError::Command)?;
        self.namespaces.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "dev", "lo", "up"])?;
        Ok(name)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.keep {
            cleanup::print_removal_hint(&self.namespaces);
            return;
        }
        for ns in self.namespaces.iter().rev() {
            cleanup::delete_namespace(ns);
        }
    }
}

/// The socket address string of an IPv4 endpoint.
pub fn endpoint(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// Reads one of the namespace's sysctls (conntrack timeouts are per netns).
pub fn sysctl(ns: &str, key: &str) -> Result<String, LabError> {
    Ok(run_in(ns, "sysctl", &["-n", key])?.trim().to_owned())
}

fn veth(ns_a: &str, dev_a: &str, ns_b: &str, dev_b: &str) -> Result<(), LabError> {
    // Created inside the namespaces: interface names never touch the root
    // namespace, so they need no suffix. `dev` before every name: `ip`
    // would read a bare `a` as `address`.
    run("ip", &["-n", ns_a, "link", "add", "dev", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b])?;
    run("ip", &["-n", ns_a, "link", "set", "dev", dev_a, "up"])?;
    run("ip", &["-n", ns_b, "link", "set", "dev", dev_b, "up"])?;
    Ok(())
}

/// A host's address on site `i`'s segment and its default route via the NAT.
fn lan_host(ns: &str, ip: Ipv4Addr, i: u8) -> Result<(), LabError> {
    addr(ns, &format!("{ip}/24"), "eth0")?;
    run("ip", &["-n", ns, "route", "add", "default", "via", &format!("10.0.{i}.1")]).map(drop)
}

fn addr(ns: &str, cidr: &str, dev: &str) -> Result<(), LabError> {
    run("ip", &["-n", ns, "addr", "add", cidr, "dev", dev]).map(drop)
}

fn forwarding(ns: &str) -> Result<(), LabError> {
    run_in(ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]).map(drop)
}
