//! The ping protocol the CLI speaks over session data.
//!
//! Application messages on a session are opaque bytes to the core; `punchline
//! connect` and `punchline listen` agree on two ASCII messages:
//!
//! - `ping:<seq>` — asks for an answer; `<seq>` is a decimal `u64`;
//! - `pong:<seq>` — the answer, echoing the same `<seq>`.
//!
//! Anything else is ordinary data: `listen` prints it and answers nothing.
//! Round-trip times are measured by the pinger from its own clock; nothing
//! else travels.

/// One message of the ping protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// `ping:<seq>`
    Ping(u64),
    /// `pong:<seq>`
    Pong(u64),
}

impl Ping {
    /// The bytes on the wire.
    pub fn encode(self) -> Vec<u8> {
        match self {
            Ping::Ping(seq) => format!("ping:{seq}").into_bytes(),
            Ping::Pong(seq) => format!("pong:{seq}").into_bytes(),
        }
    }

    /// Parses a message; `None` for anything that is not exactly a ping or a
    /// pong.
    pub fn decode(data: &[u8]) -> Option<Ping> {
        let text = std::str::from_utf8(data).ok()?;
        let (kind, seq) = text.split_once(':')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq = seq.parse().ok()?;
        match kind {
            "ping" => Some(Ping::Ping(seq)),
            "pong" => Some(Ping::Pong(seq)),
            _ => None,
        }
    }

    /// The answer to a ping.
    pub fn answer(self) -> Option<Ping> {
        match self {
            Ping::Ping(seq) => Some(Ping::Pong(seq)),
            Ping::Pong(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_and_pongs_round_trip() {
        assert_eq!(Ping::Ping(7).encode(), b"ping:7");
        assert_eq!(Ping::decode(b"ping:7"), Some(Ping::Ping(7)));
        assert_eq!(Ping::decode(b"pong:18446744073709551615"), Some(Ping::Pong(u64::MAX)));
        assert_eq!(Ping::Ping(3).answer(), Some(Ping::Pong(3)));
    }

    #[test]
    fn anything_else_is_data() {
        for data in [&b"ping:"[..], b"ping:+1", b"ping:1 ", b"pong:-1", b"hello", b"ping:99999999999999999999", b"\xff"]
        {
            assert_eq!(Ping::decode(data), None, "{data:?}");
        }
    }
}
