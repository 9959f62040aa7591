//! Both runtimes run the server's store on a thread of its own: a login
//! whose name's key the server knows is answered while a commit is in
//! flight, a text is acknowledged only after the commit that holds it, and
//! texts that arrive during a commit share the next one (group commit).
//!
//! The commit's latency is injected through the store's interface: a
//! [`GatedStore`], once closed, holds each commit until the test opens its
//! gate, so the order of events is forced, not timed.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::messaging::{
    MemoryStore, MessageId, MessageStore, PutOutcome, StoreCompletion, StoreError, StoreRequest, StoredMessage,
};
use punchline_core::secure::{ChannelEnd, HelloSent, PublicKey, StaticKey};
use punchline_core::server::ServerConfig;
use punchline_core::wire::channel as layout;
use punchline_core::wire::frame::{Frame, TextStatus};

/// A memory store that, once `closed`, makes every commit wait for a token
/// on `gate`, and which reports each batch's size on `batches` as its
/// commit starts.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    closed: Arc<AtomicBool>,
    gate: Receiver<()>,
    batches: Sender<usize>,
}

impl MessageStore for GatedStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.inner.begin()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        // The test dropping its sender opens the gate for good.
        if self.closed.load(Ordering::SeqCst) {
            let _ = self.gate.recv();
        }
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

/// A user speaking the protocol by hand over a loopback socket: a real
/// handshake (its key derived from its name, the server's fetched with a
/// key request), then frames sealed in the channel.
struct User {
    socket: UdpSocket,
    server: SocketAddr,
    token: u64,
    channel: Option<ChannelEnd>,
}

impl User {
    fn new(server: SocketAddr) -> User {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a user socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        User { socket, server, token: 0, channel: None }
    }

    fn send(&self, frame: &Frame) {
        let sealed = self.channel.as_ref().expect("logged in").seal(&frame.encode()).expect("sealed");
        self.socket.send_to(&sealed, self.server).expect("send to the server");
    }

    /// The next datagram within `limit`.
    fn receive(&self, limit: Duration) -> Option<Vec<u8>> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                return Some(buf[..len].to_vec());
            }
        }
        None
    }

    /// The frame sealed in `datagram`, if it opens in our channel.
    fn open(&mut self, datagram: &[u8]) -> Option<Frame> {
        let plain = self.channel.as_mut()?.open(datagram)?;
        Frame::decode(&plain).ok()
    }

    /// The next frame that `pick` accepts, within `limit` (a bound against
    /// hanging, not a timing assertion).
    fn expect<T>(&mut self, what: &str, limit: Duration, mut pick: impl FnMut(Frame) -> Option<T>) -> T {
        let end = Instant::now() + limit;
        while let Some(datagram) = self.receive(end.saturating_duration_since(Instant::now())) {
            if let Some(found) = self.open(&datagram).and_then(&mut pick) {
                return found;
            }
        }
        panic!("no {what} within {limit:?}");
    }

    /// Every frame that arrives within `span`.
    fn collect_for(&mut self, span: Duration) -> Vec<Frame> {
        let end = Instant::now() + span;
        let mut frames = Vec::new();
        while let Some(datagram) = self.receive(end.saturating_duration_since(Instant::now())) {
            frames.extend(self.open(&datagram));
        }
        frames
    }

    /// Logs in, then proves the address with a keepalive (as a client does
    /// at once): the server touches the store for a user only then.
    fn login(&mut self, name: &str) {
        self.socket.send_to(&layout::key_request(1), self.server).expect("send");
        let reply = self.receive(LIMIT).expect("a key reply");
        let (_, key) = layout::parse_key_reply(&reply).expect("a key reply");
        let identity = StaticKey::derive(3.into(), name);
        let login = Frame::Login { request: 1, user: name.into(), host_candidates: vec![] }.encode();
        // A fresh seed for each login, as a real client's generator moves
        // on: the same Hello twice would be a replay, and dropped.
        let seed = u64::from(self.socket.local_addr().expect("bound").port());
        let (hello, datagram) = HelloSent::start(&identity, &PublicKey(key), &login, None, seed.into());
        self.socket.send_to(&datagram, self.server).expect("send");
        let welcome = self.receive(LIMIT).expect("a welcome");
        let (payload, finished) = hello.finish(&welcome).expect("the welcome authenticates");
        let Ok(Frame::LoginOk { token, .. }) = Frame::decode(&payload) else { panic!("refused: {payload:?}") };
        self.token = token;
        self.channel = finished.into_channel(token);
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
    // Given a server over a store the test can close, and alice and bob
    // logged in (their names now bound to their keys),
    let (gate, gate_rx) = mpsc::channel();
    let (batches_tx, batches) = mpsc::channel();
    let closed = Arc::new(AtomicBool::new(false));
    let store = GatedStore { inner: MemoryStore::new(), closed: closed.clone(), gate: gate_rx, batches: batches_tx };
    let (server, stop) = start(runtime, store);
    let mut alice = User::new(server);
    let mut bob = User::new(server);
    alice.login("alice");
    bob.login("bob");
    let _ = alice.collect_for(Duration::from_millis(200));
    let _ = bob.collect_for(Duration::from_millis(10));
    while batches.try_recv().is_ok() {}

    // when the store closes and alice's first text is a commit held in flight,
    closed.store(true, Ordering::SeqCst);
    let ids: Vec<MessageId> = (1..=101).map(|seq| MessageId { conversation: 9, seq }).collect();
    let text = |id: MessageId| Frame::TextSend {
        token: alice.token,
        id,
        to: "bob".into(),
        sealed: format!("t{}", id.seq).into_bytes(),
    };
    alice.send(&text(ids[0]));
    let first = batches.recv_timeout(LIMIT).expect("alice's text reaches the store");
    assert_eq!(first, 1);

    // then bob, logging in again from another socket, is answered all the
    // same: his key is known, and no datagram waits for the disk.
    let mut bob = User::new(server);
    bob.login("bob");

    // When alice sends bob a hundred more texts while that commit is held,
    for &id in &ids[1..] {
        alice.send(&text(id));
    }
    // then none is acknowledged, or forwarded, before its commit,
    let early = alice.collect_for(Duration::from_millis(300));
    assert!(!early.iter().any(|f| matches!(f, Frame::TextAck { .. })), "{early:?}");
    assert!(!bob.collect_for(Duration::from_millis(10)).iter().any(|f| matches!(f, Frame::TextDeliver { .. })));

    // and when the store commits, whatever waited went into few
    // transactions, not one per text (bob's new login's records and the
    // hundred puts),
    drop(gate);
    let mut batch_sizes = Vec::new();
    while first + batch_sizes.iter().sum::<usize>() < 1 + 2 + 100 {
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
