//! A file between two clients on loopback through `Client`'s file API,
//! with an in-memory "disk" on each side: the sender answers every
//! `FileRead` with `file_data` and the receiver every `FileWrite` with
//! `file_written`, both queued without waiting for the driver. Timeouts
//! only guard against hangs.

use std::future::Future;
use std::time::Duration;

use punchline_core::client::{FileDirection, FileFailure, FileSource};
use punchline_core::files::TreeBuilder;
use punchline_core::wire::frame::files::FileRefusal;
use punchline_smol::{BoundServer, Client, ClientConfig, ClientEvent, ServerConfig};

const GUARD: Duration = Duration::from_secs(30);

/// Fails the test instead of hanging it.
async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    smol::future::or(f, async {
        smol::Timer::after(GUARD).await;
        panic!("timed out waiting for {what}")
    })
    .await
}

/// `len` bytes that differ from group to group.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29) ^ ((i >> 14) as u8)).collect()
}

fn source(name: &str, bytes: &[u8]) -> FileSource {
    let mut tree = TreeBuilder::new(bytes.len() as u64);
    tree.update(bytes);
    let (root, manifest) = tree.finish().expect("the whole file");
    FileSource { name: name.to_owned(), size: bytes.len() as u64, root, manifest }
}

/// Runs `test` with logged-in alice and bob on a server of their own.
fn with_pair<F: Future<Output = ()>>(test: impl FnOnce(Client, Client) -> F) {
    smol::block_on(async {
        let config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), None);
        let bound = BoundServer::bind_config(config).expect("bind the server");
        let primary = bound.primary();
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let server = smol::spawn(bound.run(async move {
            let _ = stopped.recv().await;
        }));
        let any = "127.0.0.1:0".parse().expect("addr");
        let alice = Client::start(ClientConfig::new("alice", primary), any).await.expect("alice");
        let bob = Client::start(ClientConfig::new("bob", primary), any).await.expect("bob");
        guard("alice's login", alice.wait_logged_in()).await.expect("alice logs in");
        guard("bob's login", bob.wait_logged_in()).await.expect("bob logs in");
        test(alice.clone(), bob.clone()).await;
        alice.shutdown().await;
        bob.shutdown().await;
        let _ = stop.send(()).await;
        guard("the server to stop", server).await.expect("the server ran");
    });
}

#[test]
fn a_file_crosses_with_queued_answers() {
    with_pair(|alice, bob| async move {
        // Given 1 MiB and a bit offered by alice.
        let bytes = content((1 << 20) + 4321);
        let file = alice.send_file("bob", source("b.bin", &bytes)).await.expect("offer taken");

        // When alice serves reads from memory and bob writes into memory.
        let sender = {
            let (alice, bytes) = (alice.clone(), bytes.clone());
            smol::spawn(async move {
                loop {
                    match alice.next_event().await.expect("alice runs") {
                        ClientEvent::FileRead { file: f, offset, len } if f == file => {
                            let start = offset as usize;
                            alice.file_data(f, offset, bytes[start..start + len as usize].to_vec());
                        }
                        ClientEvent::FileCompleted { file: f, direction: FileDirection::Outgoing, .. } if f == file => {
                            return;
                        }
                        ClientEvent::FileFailed { failure, .. } => panic!("alice: {failure}"),
                        _ => {}
                    }
                }
            })
        };
        let mut received = vec![0u8; bytes.len()];
        let receiving = async {
            loop {
                match bob.next_event().await.expect("bob runs") {
                    ClientEvent::FileOffered { file, name, size, .. } => {
                        assert_eq!((name.as_str(), size), ("b.bin", bytes.len() as u64));
                        bob.accept_file(file, &[]).await;
                    }
                    ClientEvent::FileWrite { file, offset, data } => {
                        received[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                        bob.file_written(file, offset, Ok(()));
                    }
                    ClientEvent::FileCompleted { direction: FileDirection::Incoming, .. } => return,
                    ClientEvent::FileFailed { failure, .. } => panic!("bob: {failure}"),
                    _ => {}
                }
            }
        };
        guard("bob to receive the file", receiving).await;
        guard("alice to hear it completed", sender).await;

        // Then bob holds it byte for byte, and alice's transfer is over.
        assert!(received == bytes, "the received bytes differ");
        assert_eq!(alice.file_progress(file).await, None);
    });
}

#[test]
fn a_refusal_reaches_the_sender() {
    with_pair(|alice, bob| async move {
        let file = alice.send_file("bob", source("n.txt", b"hello")).await.expect("offer taken");
        let refusing = async {
            loop {
                if let Some(ClientEvent::FileOffered { file, .. }) = bob.next_event().await {
                    bob.refuse_file(file, FileRefusal::Busy).await;
                    return;
                }
            }
        };
        guard("the offer", refusing).await;
        let failure = guard("the refusal", async {
            loop {
                if let Some(ClientEvent::FileFailed { file: f, failure }) = alice.next_event().await {
                    assert_eq!(f, file);
                    return failure;
                }
            }
        })
        .await;
        assert_eq!(failure, FileFailure::Refused(FileRefusal::Busy));
    });
}
