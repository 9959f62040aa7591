//! The data plane of bulk transfers: loss recovery and congestion control
//! after QUIC's (RFC 9002), for packets a session sends in bulk.
//!
//! It knows nothing of files. A session's bulk sender numbers its packets,
//! paces them and learns what arrived; what a packet carried is the
//! sender's own description `M` (a file chunk, say), handed back when the
//! packet is acknowledged or lost. The receiver only records packet numbers
//! and says when to acknowledge them.
//!
//! - Sender: [`Recovery`] is the ledger of packets in flight (RFC 9002 §6:
//!   loss detection by packet and time thresholds, the probe timeout with
//!   backoff, persistent congestion §7.6). It owns an [`RttEstimator`]
//!   (§5), a [`Controller`] (§7: [`NewReno`], behind a small trait with room
//!   for a LEDBAT background mode) and a [`Pacer`] (§7.7).
//! - Receiver: [`AckTracker`] records the packet numbers received as ranges
//!   and decides when an acknowledgement is due (RFC 9000 §13.2); it builds
//!   [`AckRanges`], which travel to the sender. An [`AckRanges`] decoded
//!   from the wire is hostile: drop it unless [`AckRanges::is_valid`].
//!
//! Packet numbers are never reused: a lost packet's contents go out again
//! in a new packet, so every acknowledgement is unambiguous. A path change
//! ([`Recovery::reset_path`], RFC 9000 §9.4) forgets what was in flight
//! without counting it lost, and starts the window, the RTT and the pacer
//! afresh; late acknowledgements from the old path are ignored.
//!
//! Everything is pure and deterministic: time is always an argument (any
//! [`Moment`](crate::Moment): an `Instant` in a driver, a `Duration` since
//! an epoch in tests), no clock is read, nothing is random, and no hash
//! map is iterated.
//!
//! # Example: one sender, one receiver, a perfect network
//!
//! ```
//! use std::time::Duration;
//! use punchline_core::transfer::{AckTracker, NewReno, Recovery};
//!
//! // Virtual time, a `Duration` since an epoch; a driver passes `Instant`s
//! // (the default), which the core never reads itself.
//! let mut now = Duration::ZERO;
//! let mut sender: Recovery<&str, Duration> = Recovery::new(Box::new(NewReno::default()), 1200);
//! let mut receiver = AckTracker::<Duration>::new();
//!
//! // The sender sends while the window and the pacer allow.
//! for chunk in ["a", "b", "c"] {
//!     assert!(sender.can_send(1200) && sender.send_time(now, 1200).is_none());
//!     let pn = sender.next_pn();
//!     sender.on_sent(now, pn, 1200, chunk);
//!     // ... the packet, carrying `pn`, crosses the network in 10 ms ...
//!     assert!(receiver.on_received(now + Duration::from_millis(10), pn), "not a duplicate");
//! }
//!
//! // The receiver acknowledges when due (here at once: two or more arrived).
//! now += Duration::from_millis(10);
//! assert!(receiver.ack_due().is_some_and(|due| due <= now));
//! let ack = receiver.take_ack(now).unwrap();
//! // ... and the acknowledgement crosses back in 10 ms.
//! now += Duration::from_millis(10);
//! let outcome = sender.on_ack(now, &ack);
//! assert_eq!(outcome.acked, ["a", "b", "c"]);
//! assert!(outcome.lost.is_empty());
//! assert_eq!(sender.rtt().latest(), Duration::from_millis(20));
//! assert_eq!(sender.timeout(), None); // nothing in flight, no timer
//! ```

mod ack;
mod cc;
mod pacer;
mod recovery;
mod rtt;
#[cfg(test)]
mod sim_tests;

pub use ack::{
    AckRanges, AckTracker, ACK_ELICITING_THRESHOLD, MAX_ACK_DELAY, MAX_ACK_ELICITING_THRESHOLD, MAX_ACK_RANGES,
};
pub use cc::{Controller, NewReno, NewRenoConfig, DEFAULT_MAX_DATAGRAM};
pub use pacer::{Pacer, BURST_INTERVAL, MAX_BURST_PACKETS, MIN_BURST_PACKETS};
pub use recovery::{
    AckOutcome, Recovery, RecoveryStats, TimeoutOutcome, MAX_PACKET_THRESHOLD, MAX_PTO, MAX_TIME_THRESHOLD_EIGHTHS,
    PACKET_THRESHOLD, PERSISTENT_CONGESTION_THRESHOLD, PTO_PROBES, TIME_THRESHOLD_EIGHTHS,
};
pub use rtt::{RttEstimator, GRANULARITY, INITIAL_RTT};
