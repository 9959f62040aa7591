//! The machine's own addresses, announced as host candidates.
//!
//! The client's primary socket is usually bound to the unspecified address,
//! so its local address names no interface. Peers on the same LAN reach each
//! other only through their private addresses (DESIGN §3, "Host candidates
//! always"), so the client announces the addresses of its interfaces that
//! are up, of the primary socket's family, loopback left out; the core caps
//! how many it sends.

use std::net::{IpAddr, SocketAddr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// The addresses of the interfaces that are up, of `bind`'s family, when
/// `bind` is the unspecified address (a bound address is announced as it
/// is). Errors leave the list empty: host candidates are an optimisation.
pub fn host_addresses(bind: SocketAddr) -> Vec<IpAddr> {
    if !bind.ip().is_unspecified() {
        return Vec::new();
    }
    let Ok(interfaces) = getifaddrs() else { return Vec::new() };
    let mut found = Vec::new();
    for interface in interfaces {
        if !interface.flags.contains(InterfaceFlags::IFF_UP) || interface.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let Some(address) = interface.address else { continue };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip.is_ipv4() == bind.is_ipv4() && !ip.is_loopback() && !found.contains(&ip) {
            found.push(ip);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_address_needs_no_interface_list() {
        assert!(host_addresses("127.0.0.1:0".parse().expect("address")).is_empty());
    }

    #[test]
    fn interface_addresses_are_of_the_socket_family_and_never_loopback() {
        for ip in host_addresses("0.0.0.0:0".parse().expect("address")) {
            assert!(ip.is_ipv4() && !ip.is_loopback(), "{ip}");
        }
    }
}
