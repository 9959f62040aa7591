//! A server out of file descriptors backs off instead of spinning on its
//! listener. A test binary of its own: it lowers the whole process's
//! descriptor limit (with util-linux's `prlimit`), which would starve any
//! test running beside it.

#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::TcpStream;
use std::time::Duration;

use punchline_smol::{BoundServer, ServerConfig};

const GUARD: Duration = Duration::from_secs(30);

/// Waits (polling) until `check` holds; fails the test after [`GUARD`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    smol::future::or(
        async {
            while !check() {
                smol::Timer::after(Duration::from_millis(10)).await;
            }
        },
        async {
            smol::Timer::after(GUARD).await;
            panic!("timed out waiting for {what}")
        },
    )
    .await
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// Sets this process's soft limit on open descriptors.
fn limit_descriptors(soft: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={soft}:"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit failed");
}

#[test]
fn a_server_out_of_descriptors_backs_off_and_accepts_again_when_some_are_free() {
    smol::block_on(async {
        // Given a server listening on TCP, 20 connections waiting in its
        // backlog, and a process left with two free descriptors (and 30
        // more held in reserve)
        let mut bound = BoundServer::bind_config(ServerConfig::new("127.0.0.1:0".parse().unwrap(), None)).unwrap();
        let tcp = bound.listen_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let counters = bound.tcp_counters();
        let clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(tcp).expect("connect")).collect();
        let reserve: Vec<File> = (0..30).map(|_| File::open("/dev/null").unwrap()).collect();
        limit_descriptors(open_descriptors() + 2);

        // When the server runs
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let serving = smol::spawn(bound.run(async move {
            let _ = stopped.recv().await;
        }));

        // Then it accepts what it can, and fails to accept the rest
        until("an accept to fail", || counters.get().accept_errors >= 1).await;
        assert!(counters.get().opened < 20, "{:?}", counters.get());

        // When descriptors are free again
        drop(reserve);

        // Then it accepts every waiting connection, having retried only a
        // few times meanwhile (paused 10 ms, then twice as long each time,
        // instead of retrying the backlog at once, thousands of times)
        until("every connection to be accepted", || counters.get().opened == 20).await;
        let tcp = counters.get();
        assert!(tcp.accept_errors <= 16, "{tcp:?}");
        let _ = stop.send(()).await;
        serving.await.expect("the server ran");
        drop(clients);
    });
}
