//! Both runtimes run the server's store on a thread of its own: a login is
//! answered while a commit is in flight, a text is acknowledged only after
//! the commit that holds it, and texts that arrive during a commit share the
//! next one (group commit).
//!
//! The commit's latency is injected through the store's interface: a
//! [`GatedStore`] holds each commit until the test opens its gate, so the
//! order of events is forced, not timed.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::messaging::{
    MemoryStore, MessageId, MessageStore, PutOutcome, StoreCompletion, StoreError, StoreRequest, StoredMessage,
};
use punchline_core::server::ServerConfig;
use punchline_core::wire::frame::{Frame, TextStatus};

/// A memory store whose every commit waits for a token on `gate`, and which
/// reports each batch's size on `batches` as its commit starts.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    gate: Receiver<()>,
    batches: Sender<usize>,
}

impl MessageStore for GatedStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.inner.begin()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        // The test dropping its sender opens the gate for good.
        let _ = self.gate.recv();
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback()
    }
    fn put(&mut self, m: &StoredMessage, max: usize) -> Result<PutOutcome, StoreError> {
        self.inner.put(m, max)
    }
    fn remove(&mut self, r: &str, s: &str, id: MessageId) -> Result<bool, StoreError> {
        self.inner.remove(r, s, id)
    }
    fn load_queue(&mut self, r: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError> {
        self.inner.load_queue(r, limit)
    }
    fn read_user(&mut self, u: &str) -> Result<Option<punchline_core::secure::PublicKey>, StoreError> {
        self.inner.read_user(u)
    }
    fn write_user(
        &mut self,
        u: &str,
        key: &punchline_core::secure::PublicKey,
    ) -> Result<punchline_core::secure::PublicKey, StoreError> {
        self.inner.write_user(u, key)
    }
    fn execute(&mut self, batch: Vec<StoreRequest>) -> Vec<StoreCompletion> {
        let _ = self.batches.send(batch.len());
        // The trait's own transaction, through the gated commit above.
        self.begin().expect("memory begin");
        let results: Vec<_> = batch.into_iter().map(|r| (r.id, self.apply(r.op))).collect();
        let committed = self.commit();
        results.into_iter().map(|(id, result)| StoreCompletion { id, result: committed.clone().and(result) }).collect()
    }
}

/// A user speaking raw frames over a loopback socket.
struct User {
    socket: UdpSocket,
    server: SocketAddr,
    token: u64,
}

impl User {
    fn new(server: SocketAddr) -> User {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a user socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        User { socket, server, token: 0 }
    }

    fn send(&self, frame: &Frame) {
        self.socket.send_to(&frame.encode(), self.server).expect("send to the server");
    }

    /// The next frame that `pick` accepts, within `limit` (a bound against
    /// hanging, not a timing assertion).
    fn expect<T>(&self, what: &str, limit: Duration, mut pick: impl FnMut(Frame) -> Option<T>) -> T {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                if let Some(found) = Frame::decode(&buf[..len]).ok().and_then(&mut pick) {
                    return found;
                }
            }
        }
        panic!("no {what} within {limit:?}");
    }

    /// Every frame that arrives within `span`.
    fn collect_for(&self, span: Duration) -> Vec<Frame> {
        let end = Instant::now() + span;
        let mut buf = [0u8; 2048];
        let mut frames = Vec::new();
        while Instant::now() < end {
            if let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                frames.extend(Frame::decode(&buf[..len]).ok());
            }
        }
        frames
    }

    /// Logs in, then proves the address with a keepalive (as a client
    /// does at once): the server touches the store for a user only then.
    fn login(&mut self, name: &str) {
        self.send(&Frame::Login { request: 1, user: name.into(), host_candidates: vec![] });
        self.token = self.expect("LoginOk", LIMIT, |f| match f {
            Frame::LoginOk { token, .. } => Some(token),
            _ => None,
        });
        self.send(&Frame::Keepalive { token: self.token, profile: Default::default() });
    }
}

const LIMIT: Duration = Duration::from_secs(10);

/// Which runtime serves.
#[derive(Clone, Copy, Debug)]
enum Runtime {
    Mio,
    Smol,
}

/// Starts a server on `runtime` over `store`; returns its address and a
/// function that stops it.
fn start(runtime: Runtime, store: GatedStore) -> (SocketAddr, Box<dyn FnOnce()>) {
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), None);
    match runtime {
        Runtime::Mio => {
            let runner = punchline_mio::ServerRunner::bind_config_with_store(config, Box::new(store)).unwrap();
            let addr = runner.local_addrs()[0].1;
            let stop = runner.shutdown_handle();
            let thread = thread::spawn(move || runner.run(|_| {}));
            (
                addr,
                Box::new(move || {
                    stop.shutdown();
                    thread.join().unwrap().unwrap();
                }),
            )
        }
        Runtime::Smol => {
            let bound = punchline_smol::BoundServer::bind_config_with_store(config, Box::new(store)).unwrap();
            let addr = bound.primary();
            let (tx, rx) = smol::channel::bounded::<()>(1);
            let thread = thread::spawn(move || {
                smol::block_on(bound.run(async move {
                    let _ = rx.recv().await;
                }))
            });
            (
                addr,
                Box::new(move || {
                    let _ = tx.try_send(());
                    thread.join().unwrap().unwrap();
                }),
            )
        }
    }
}

fn login_answered_during_a_held_commit_and_texts_acknowledged_after_theirs(runtime: Runtime) {
    // Given a server whose store holds every commit until the test opens it,
    let (gate, gate_rx) = mpsc::channel();
    let (batches_tx, batches) = mpsc::channel();
    let store = GatedStore { inner: MemoryStore::new(), gate: gate_rx, batches: batches_tx };
    let (server, stop) = start(runtime, store);
    let mut alice = User::new(server);
    let mut bob = User::new(server);

    // when alice logs in, her login's storage (her user record, her queue)
    // is a commit now held in flight;
    alice.login("alice");
    let first = batches.recv_timeout(LIMIT).expect("alice's login reaches the store");
    assert!((1..=2).contains(&first), "{first}");

    // then bob's login is answered all the same: no datagram waits for the disk.
    bob.login("bob");

    // When alice sends bob a hundred texts while that commit is held,
    let ids: Vec<MessageId> = (1..=100).map(|seq| MessageId { conversation: 9, seq }).collect();
    for &id in &ids {
        alice.send(&Frame::TextSend { token: alice.token, id, to: "bob".into(), text: format!("t{}", id.seq) });
    }
    // then none is acknowledged, or forwarded, before its commit,
    let early = alice.collect_for(Duration::from_millis(300));
    assert!(!early.iter().any(|f| matches!(f, Frame::TextAck { .. })), "{early:?}");
    assert!(!bob.collect_for(Duration::from_millis(10)).iter().any(|f| matches!(f, Frame::TextDeliver { .. })));

    // and when the store commits, whatever waited went into few
    // transactions, not one per text (the rest of alice's login, bob's and
    // the hundred puts),
    drop(gate);
    let mut batch_sizes = Vec::new();
    while first + batch_sizes.iter().sum::<usize>() < 2 + 2 + 100 {
        batch_sizes.push(batches.recv_timeout(LIMIT).expect("the rest reaches the store"));
    }
    assert!(batch_sizes.len() <= 4, "the requests that waited share commits: {batch_sizes:?}");

    // and bob receives every text, and alice hears each acknowledged.
    for _ in &ids {
        let (from, id) = bob.expect("a delivery", LIMIT, |f| match f {
            Frame::TextDeliver { from, id, .. } => Some((from, id)),
            _ => None,
        });
        bob.send(&Frame::TextDeliverAck { token: bob.token, from, id });
    }
    let mut acked = Vec::new();
    while acked.len() < ids.len() {
        acked.push(alice.expect("an acknowledgement", LIMIT, |f| match f {
            Frame::TextAck { id, status } => Some((id, status)),
            _ => None,
        }));
    }
    let distinct: std::collections::BTreeSet<MessageId> = acked.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), ids.len(), "every text acknowledged: {acked:?}");
    assert!(acked.iter().all(|(_, s)| matches!(s, TextStatus::Delivered | TextStatus::Stored)));
    stop();
}

#[test]
fn mio_answers_a_login_during_a_held_commit_and_acknowledges_texts_after_theirs() {
    login_answered_during_a_held_commit_and_texts_acknowledged_after_theirs(Runtime::Mio);
}

#[test]
fn smol_answers_a_login_during_a_held_commit_and_acknowledges_texts_after_theirs() {
    login_answered_during_a_held_commit_and_texts_acknowledged_after_theirs(Runtime::Smol);
}
