//! File transfer on disk (issue 22): the driver side of the core's file
//! API (`punchline_core::client::file_api`), which reads and writes no
//! file itself.
//!
//! - [`send`]: `punchline send-file PEER PATH`: hashes the file once,
//!   offers it, answers the core's reads from the file;
//! - [`receive`]: what `punchline listen --accept-files DIR` does with
//!   offers: refuses or accepts them (naming what a partial already holds),
//!   writes verified groups, checks the whole file and moves it into place;
//! - [`partial`]: the partial file and its state beside it, for a resume;
//! - [`progress`]: progress bars on a terminal, progress lines in JSON.

pub mod partial;
pub mod progress;
pub mod receive;
pub mod send;

use punchline_core::client::PathKind;
use punchline_core::files::Hash;
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};

/// The root as 64 lowercase hex digits.
pub fn hex(root: &Hash) -> String {
    root.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path's name in output lines: `direct`, `relay` (or `relay-tcp`
/// when the relay rides TCP), as `connect --json` names it.
pub fn path_name(path: PathKind, relay_tcp: bool) -> &'static str {
    crate::commands::path_name(matches!(path, PathKind::Direct { .. }), relay_tcp)
}

/// A refusal's name in JSON lines.
pub fn refusal_name(reason: FileRefusal) -> &'static str {
    match reason {
        FileRefusal::NotAccepting => "not-accepting",
        FileRefusal::Declined => "declined",
        FileRefusal::BadName => "bad-name",
        FileRefusal::NoSpace => "no-space",
        FileRefusal::Busy => "busy",
    }
}

/// An abort's name in JSON lines.
pub fn abort_name(reason: FileAbort) -> &'static str {
    match reason {
        FileAbort::Cancelled => "cancelled",
        FileAbort::ReadFailed => "read-failed",
        FileAbort::DiskFull => "disk-full",
        FileAbort::WriteFailed => "write-failed",
        FileAbort::VerificationFailed => "verification-failed",
    }
}

/// Megabits per second, rounded to a tenth.
pub fn mbps(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    (bytes as f64 * 8.0 / seconds / 1e6 * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_prints_as_64_lowercase_hex_digits() {
        let mut root = [0u8; 32];
        root[0] = 0xab;
        root[31] = 0x01;
        let text = hex(&root);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00") && text.ends_with("0001"), "{text}");
    }

    #[test]
    fn megabits_per_second_of_bytes_over_seconds() {
        assert_eq!(mbps(125_000_000, 1.0), 1000.0);
        assert_eq!(mbps(1_000_000, 2.0), 4.0);
        assert_eq!(mbps(1_000_000, 0.0), 0.0);
    }
}
