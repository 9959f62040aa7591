//! `punchline-sim`: the deterministic network and NAT simulator of Punchline
//! (DESIGN §4): core machines as hosts, RFC 4787 NAT devices (and RFC 5382
//! for TCP), links with delay and loss, TCP connections to the server where
//! UDP is blocked, scheduled faults, scenario files, an oracle, and the
//! `run` / `matrix` / `files` command line.
//!
//! Everything is deterministic: one seed drives every random choice through
//! a tree of child generators, events are totally ordered by (time, sequence
//! number), and nothing reads a clock or lets a hash map's order reach an
//! output (the NAT's lookup tables are hashed, deterministically).

mod addr;
pub mod describe;
pub mod duration;
pub mod engine;
mod fast_map;
pub mod file_sweep;
pub mod lab;
pub mod link;
pub mod matrix;
pub mod nat;
pub mod oracle;
pub mod report;
pub mod rng;
pub mod scenario;
mod small_map;
