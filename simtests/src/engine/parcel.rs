//! A packet as a pending event holds it: 56 bytes instead of a [`Packet`]'s
//! 104, so an event carrying one fits a single cache line.
//!
//! In a simulation of a thousand hosts an event is read long after it was
//! written, when its slot is cold: every line of it is a miss. Two IPv4
//! endpoints take 12 bytes, against 64 for two `SocketAddr`s (each sized for
//! IPv6). Any other pair of endpoints is boxed, which costs IPv6 scenarios an
//! allocation per hop.

use std::net::{SocketAddr, SocketAddrV4};

use bytes::Bytes;

use crate::nat::{Packet, Proto};

/// A [`Packet`], compactly.
#[derive(Clone, Debug)]
pub(super) struct Parcel {
    endpoints: Endpoints,
    ttl: u8,
    /// Two bytes, in what was the struct's padding.
    proto: Proto,
    payload: Bytes,
}

#[derive(Clone, Debug)]
enum Endpoints {
    V4 {
        src: SocketAddrV4,
        dst: SocketAddrV4,
    },
    /// IPv6, or one endpoint of each family.
    Other(Box<(SocketAddr, SocketAddr)>),
}

impl From<Packet> for Parcel {
    fn from(p: Packet) -> Parcel {
        let endpoints = match (p.src, p.dst) {
            (SocketAddr::V4(src), SocketAddr::V4(dst)) => Endpoints::V4 { src, dst },
            (src, dst) => Endpoints::Other(Box::new((src, dst))),
        };
        Parcel { endpoints, ttl: p.ttl, proto: p.proto, payload: p.payload }
    }
}

impl From<Parcel> for Packet {
    fn from(p: Parcel) -> Packet {
        let (src, dst) = match p.endpoints {
            Endpoints::V4 { src, dst } => (SocketAddr::V4(src), SocketAddr::V4(dst)),
            Endpoints::Other(pair) => *pair,
        };
        Packet { src, dst, ttl: p.ttl, payload: p.payload, proto: p.proto }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::TcpFlags;

    fn packet(src: &str, dst: &str, ttl: u8, payload: &'static [u8]) -> Packet {
        Packet::udp(src.parse().unwrap(), dst.parse().unwrap(), ttl, Bytes::from_static(payload))
    }

    #[test]
    fn every_packet_comes_back_as_it_went_in() {
        // Given packets between IPv4 endpoints, IPv6 ones and one of each,
        let packets = [
            packet("10.0.0.2:4000", "198.51.100.7:3478", 64, b"a"),
            packet("[2001:db8::1]:4000", "[2001:db8::2%3]:5000", 1, b"bc"),
            packet("10.0.0.2:4000", "[2001:db8::2]:5000", 0, b""),
            packet("[::ffff:10.0.0.2]:1", "10.0.0.3:2", 255, b"d"),
            Packet {
                proto: Proto::Tcp(TcpFlags::SYN.with(TcpFlags::ACK)),
                ..packet("10.0.0.2:50000", "1.2.3.4:5", 64, b"")
            },
        ];
        for p in packets {
            // when each is parcelled and unpacked,
            let back = Packet::from(Parcel::from(p.clone()));
            // then it is the same packet.
            assert_eq!(back, p);
        }
    }

    #[test]
    fn a_parcel_is_small_enough_for_an_event_to_fit_a_cache_line() {
        // The engine's events add a tag and a host index to a parcel.
        assert!(std::mem::size_of::<Parcel>() <= 56, "{} bytes", std::mem::size_of::<Parcel>());
    }
}
