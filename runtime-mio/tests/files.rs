//! A file between two clients on loopback through `ClientHandle`'s file
//! API, with an in-memory "disk" on each side: the sender answers every
//! `FileRead` with `file_data` and the receiver every `FileWrite` with
//! `file_written`, both fire-and-forget.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::client::{ClientConfig, ClientEvent, FileDirection, FileFailure, FileSource};
use punchline_core::files::TreeBuilder;
use punchline_core::server::ServerConfig;
use punchline_core::wire::frame::files::FileRefusal;
use punchline_mio::{ClientHandle, ServerRunner};

/// Only keeps a hang from blocking the run forever.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

/// `len` bytes that differ from group to group.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13) ^ ((i >> 14) as u8)).collect()
}

fn source(name: &str, bytes: &[u8]) -> FileSource {
    let mut tree = TreeBuilder::new(bytes.len() as u64);
    tree.update(bytes);
    let (root, manifest) = tree.finish().expect("the whole file");
    FileSource { name: name.to_owned(), size: bytes.len() as u64, root, manifest }
}

/// Logged-in alice and bob on a server of their own.
fn pair() -> (ClientHandle, ClientHandle, punchline_mio::ShutdownHandle, thread::JoinHandle<std::io::Result<()>>) {
    let runner = ServerRunner::bind_config(ServerConfig::new(addr("127.0.0.1:0"), None)).expect("server binds");
    let primary = runner.local_addrs()[0].1;
    let shutdown = runner.shutdown_handle();
    let server = thread::spawn(move || runner.run(|_| {}));
    let alice = ClientHandle::start(ClientConfig::new("alice", primary), addr("127.0.0.1:0")).expect("alice");
    let bob = ClientHandle::start(ClientConfig::new("bob", primary), addr("127.0.0.1:0")).expect("bob");
    for client in [&alice, &bob] {
        let deadline = Instant::now() + HANG_GUARD;
        while !matches!(client.next_event(deadline - Instant::now()), Some(ClientEvent::LoggedIn { .. })) {
            assert!(Instant::now() < deadline, "no login");
        }
    }
    (alice, bob, shutdown, server)
}

#[test]
fn a_file_crosses_with_fire_and_forget_answers() {
    // Given alice and bob logged in, and 1 MiB and a bit to send.
    let (alice, bob, shutdown, server) = pair();
    let bytes = content((1 << 20) + 777);
    let file = alice.send_file("bob", source("a.bin", &bytes)).expect("running").expect("offer taken");

    // When each side's driver answers from memory, without waiting.
    let mut received = vec![0u8; bytes.len()];
    let (mut sent, mut got) = (false, false);
    let deadline = Instant::now() + HANG_GUARD;
    while !(sent && got) {
        assert!(Instant::now() < deadline, "the transfer did not finish");
        while let Ok(event) = alice.events().try_recv() {
            match event {
                ClientEvent::FileRead { file: f, offset, len } if f == file => {
                    let start = offset as usize;
                    alice.file_data(f, offset, bytes[start..start + len as usize].to_vec()).expect("running");
                }
                ClientEvent::FileCompleted { file: f, direction: FileDirection::Outgoing, .. } if f == file => {
                    sent = true;
                }
                ClientEvent::FileFailed { failure, .. } => panic!("alice: {failure}"),
                _ => {}
            }
        }
        if let Some(event) = bob.next_event(Duration::from_millis(5)) {
            match event {
                ClientEvent::FileOffered { file, name, size, .. } => {
                    assert_eq!((name.as_str(), size), ("a.bin", bytes.len() as u64));
                    bob.accept_file(file, Vec::new()).expect("running");
                }
                ClientEvent::FileWrite { file, offset, data } => {
                    received[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    bob.file_written(file, offset, Ok(())).expect("running");
                }
                ClientEvent::FileCompleted { direction: FileDirection::Incoming, .. } => got = true,
                ClientEvent::FileFailed { failure, .. } => panic!("bob: {failure}"),
                _ => {}
            }
        }
    }

    // Then bob holds it byte for byte, and alice's transfer is over.
    assert!(received == bytes, "the received bytes differ");
    assert_eq!(alice.file_progress(file).expect("running"), None);
    alice.shutdown().expect("alice stops");
    bob.shutdown().expect("bob stops");
    shutdown.shutdown();
    server.join().expect("server thread").expect("server ran");
}

#[test]
fn a_refusal_reaches_the_sender() {
    let (alice, bob, shutdown, server) = pair();
    let file = alice.send_file("bob", source("n.txt", b"hello")).expect("running").expect("offer taken");
    let deadline = Instant::now() + HANG_GUARD;
    let failure = loop {
        assert!(Instant::now() < deadline, "no answer");
        if let Some(ClientEvent::FileOffered { file, .. }) = bob.next_event(Duration::from_millis(5)) {
            bob.refuse_file(file, FileRefusal::Declined).expect("running");
        }
        if let Ok(ClientEvent::FileFailed { file: f, failure }) = alice.events().try_recv() {
            assert_eq!(f, file);
            break failure;
        }
    };
    assert_eq!(failure, FileFailure::Refused(FileRefusal::Declined));
    drop((alice, bob));
    shutdown.shutdown();
    server.join().expect("server thread").expect("server ran");
}
