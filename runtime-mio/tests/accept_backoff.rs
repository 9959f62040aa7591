//! Out of file descriptors: accepting pauses instead of spinning, and
//! resumes by itself. Alone in its test binary, because it lowers the
//! process's own limit on open files (with util-linux's `prlimit`).
#![cfg(target_os = "linux")]

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use punchline_core::{Machine, SocketId, Transmit};
use punchline_mio::{Endpoint, Role, Sockets};

/// Counts the connections it is handed.
#[derive(Default)]
struct Acceptor {
    accepted: Vec<SocketId>,
}

impl Machine for Acceptor {
    type Event = ();
    fn handle_datagram(&mut self, _: Instant, _: SocketId, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl Role for Acceptor {
    fn driver_event(&mut self, _: Instant, _: (), _: &mut Sockets) -> Option<()> {
        None
    }
    fn stream_accepted(&mut self, _: Instant, conn: SocketId, _: SocketAddr) {
        self.accepted.push(conn);
    }
}

/// This process's limit on open files, `SOFT:HARD`, as `prlimit` says it.
fn open_files_limit() -> String {
    let pid = std::process::id().to_string();
    let args = ["--pid", &pid, "--nofile", "--raw", "--noheadings", "--output=SOFT,HARD"];
    match Command::new("prlimit").args(args).output() {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(":")
        }
        other => panic!("this test needs util-linux's `prlimit`: {other:?}"),
    }
}

/// Sets this process's limit on open files (`SOFT:HARD`). Spawning
/// `prlimit` takes two descriptors (a pipe).
fn set_open_files_limit(limit: &str) {
    let pid = std::process::id().to_string();
    let status = Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={limit}")]).status();
    assert!(status.expect("prlimit runs").success(), "prlimit could not set the limit");
}

fn open_files() -> usize {
    // The directory's own descriptor is counted too: one spare.
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

#[test]
fn out_of_file_descriptors_accepting_pauses_then_resumes_by_itself() {
    // Given a listener and eight connections waiting in its backlog.
    let mut endpoint = Endpoint::new(Acceptor::default(), Vec::new()).expect("endpoint");
    let addr = endpoint.listen_tcp("127.0.0.1:0".parse().expect("addr")).expect("listen");
    let _peers: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).expect("connect")).collect();

    // When the process may open only about two more files (and two more
    // are held, to be freed for spawning `prlimit` again).
    let original = open_files_limit();
    let hard = original.split(':').nth(1).expect("soft:hard").to_owned();
    let spares = [std::fs::File::open("/dev/null").expect("open"), std::fs::File::open("/dev/null").expect("open")];
    set_open_files_limit(&format!("{}:{hard}", open_files() + 2));
    let deadline = Instant::now() + Duration::from_secs(30);
    while endpoint.tcp_counters().stats().accept_paused == 0 {
        assert!(Instant::now() < deadline, "accepting never ran out: {:?}", endpoint.tcp_counters().stats());
        endpoint.turn(Some(Instant::now() + Duration::from_millis(10)), &mut |_| {}).expect("turn");
    }

    // Then accepting paused with connections left in the backlog.
    let paused = endpoint.tcp_counters().stats();
    assert!(paused.accepted < 8, "{paused:?}");
    assert_eq!(endpoint.machine().accepted.len() as u64, paused.accepted);

    // When descriptors are available again (no new connection arrives to
    // raise a readiness event).
    drop(spares);
    set_open_files_limit(&original);

    // Then the endpoint takes the rest of the backlog by itself.
    while endpoint.machine().accepted.len() < 8 {
        assert!(Instant::now() < deadline, "the backlog was left waiting: {:?}", endpoint.tcp_counters().stats());
        endpoint.turn(Some(Instant::now() + Duration::from_millis(10)), &mut |_| {}).expect("turn");
    }
    assert_eq!(endpoint.tcp_counters().stats().accepted, 8);
}
