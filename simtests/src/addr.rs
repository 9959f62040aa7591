//! Fast `Display` of socket addresses for trace lines.
//!
//! Every packet puts several addresses in the trace, and the trace is
//! formatted (to be hashed) even when it is not printed, so the standard
//! library's general formatting (`Ipv4Addr` goes through a scratch buffer and
//! padding logic, each octet through `pad_integral`) was a large share of an
//! engine run. [`Addr`] writes the same text in one `write_str`.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

/// Displays a socket address exactly as `SocketAddr`'s own `Display` does.
#[derive(Clone, Copy)]
pub(crate) struct Addr(pub(crate) SocketAddr);

impl From<SocketAddrV4> for Addr {
    fn from(a: SocketAddrV4) -> Addr {
        Addr(SocketAddr::V4(a))
    }
}

impl Addr {
    /// Writes the address as `Display` does (without padding), IPv4 in one
    /// `write_str`.
    pub(crate) fn write_to<W: fmt::Write + ?Sized>(self, out: &mut W) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(v4) => {
                let mut buf = [0u8; 21]; // "255.255.255.255:65535"
                let mut len = 0;
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        buf[len] = b'.';
                        len += 1;
                    }
                    len += write_decimal(&mut buf[len..], u32::from(octet));
                }
                buf[len] = b':';
                len += 1;
                len += write_decimal(&mut buf[len..], u32::from(v4.port()));
                // Only ASCII digits, dots and a colon were written.
                out.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
            }
            other => write!(out, "{other}"),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Width, fill and precision flags keep the standard path, which
        // pads the whole address.
        if f.width().is_none() && f.precision().is_none() {
            self.write_to(f)
        } else {
            fmt::Display::fmt(&self.0, f)
        }
    }
}

/// Writes `n` (at most 99999) in decimal at the start of `out`; returns the
/// number of digits.
fn write_decimal(out: &mut [u8], mut n: u32) -> usize {
    let mut digits = [0u8; 5];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        out[i] = digits[count - 1 - i];
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    #[test]
    fn the_text_is_the_standard_librarys() {
        // Given addresses with one- to three-digit octets, extreme ports and
        // an IPv6 address,
        let mut cases: Vec<SocketAddr> = vec![
            "0.0.0.0:0".parse().unwrap(),
            "255.255.255.255:65535".parse().unwrap(),
            "10.0.0.2:4000".parse().unwrap(),
            "198.51.100.1:9".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 443, 0, 0)),
        ];
        for i in 0..=255u8 {
            cases.push(SocketAddr::from((Ipv4Addr::new(i, 255 - i, i / 3, i / 7), u16::from(i) * 257)));
        }
        for a in cases {
            // when displayed, then the text is exactly std's, padded or not.
            assert_eq!(Addr(a).to_string(), a.to_string());
            assert_eq!(format!("{:>24}", Addr(a)), format!("{a:>24}"));
        }
    }
}
