//! The SQLite store: its contract, persistence across reopen, refusal of bad
//! directories and corrupted files, and the server machine running on it
//! through a crash.

use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punchline_core::messaging::{
    MessageId, MessageStore, PutOutcome, StoreCompletion, StoreOp, StoreReply, StoreRequest, StoreRequestId,
    StoredMessage,
};
use punchline_core::secure::{ChannelEnd, HelloSent, PublicKey, StaticKey};
use punchline_core::server::{Server, ServerConfig};
use punchline_core::wire::frame::{Frame, TextStatus};
use punchline_core::{Machine, SocketId};
use punchline_store::{OpenError, SqliteStore, STORE_FILE};

fn message(recipient: &str, sender: &str, seq: u64, text: &str) -> StoredMessage {
    StoredMessage {
        recipient: recipient.into(),
        sender: sender.into(),
        id: MessageId { conversation: u64::MAX - 7, seq },
        sealed: text.as_bytes().to_vec(),
    }
}

/// Bob's public key, as his first login proved it.
const BOB_KEY: PublicKey = PublicKey([0xb0; 32]);

#[test]
fn a_name_keeps_the_first_key_it_was_bound_to() {
    // Given bob bound to his key,
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    assert_eq!(store.write_user("bob", &BOB_KEY).unwrap(), BOB_KEY);
    // when a login with another key asks to bind the name, then the store
    // answers with bob's key and keeps it, across a reopen too.
    let mallory = PublicKey([0x66; 32]);
    assert_eq!(store.write_user("bob", &mallory).unwrap(), BOB_KEY);
    drop(store);
    let mut reopened = SqliteStore::open_dir(dir.path()).unwrap();
    assert_eq!(reopened.read_user("bob").unwrap(), Some(BOB_KEY));
}

/// A store as an older server left it: schema `version`, one plaintext
/// text for bob, and bob's name (with a key column from schema 2 on).
fn old_store(path: &std::path::Path, version: i32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let users = if version == 1 { "name TEXT PRIMARY KEY" } else { "name TEXT PRIMARY KEY, key BLOB" };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE messages (
             commit_no INTEGER PRIMARY KEY AUTOINCREMENT, recipient TEXT NOT NULL, sender TEXT NOT NULL,
             conversation INTEGER NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
             UNIQUE (recipient, sender, conversation, seq));
         CREATE INDEX messages_by_recipient ON messages (recipient, commit_no);
         CREATE TABLE users ({users}) WITHOUT ROWID;
         INSERT INTO users (name) VALUES ('bob');
         INSERT INTO messages (recipient, sender, conversation, seq, text) VALUES ('bob', 'alice', 1, 1, 'kept');
         PRAGMA application_id = {};
         PRAGMA user_version = {version};",
        punchline_store::APPLICATION_ID
    ))
    .unwrap();
}

#[test]
fn an_older_store_gains_keys_and_sets_its_plaintext_texts_aside() {
    for version in [1, 2] {
        // Given a store of schema 1 (names without keys) or 2 (texts in
        // plaintext),
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        old_store(&path, version);
        // when it is opened, then it is migrated: bob has no key yet (no
        // recipient until his next login binds one), and his plaintext text
        // is never delivered (no client accepts one) but kept aside for the
        // operator,
        let mut store = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(store.read_user("bob").unwrap(), None, "schema {version}");
        assert_eq!(store.count("bob").unwrap(), 0, "schema {version}");
        let conn = rusqlite::Connection::open(&path).unwrap();
        let aside: String =
            conn.query_row("SELECT text FROM plaintext_messages_v2 WHERE recipient = 'bob'", [], |r| r.get(0)).unwrap();
        assert_eq!(aside, "kept");
        // and his next login binds his key; new texts are stored sealed.
        assert_eq!(store.write_user("bob", &BOB_KEY).unwrap(), BOB_KEY);
        assert_eq!(store.read_user("bob").unwrap(), Some(BOB_KEY));
        assert_eq!(store.put(&message("bob", "alice", 2, "sealed"), 10).unwrap(), PutOutcome::Stored);
        assert_eq!(store.count("bob").unwrap(), 1);
        drop(store);
        let reopened = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(reopened.len().unwrap(), 1, "schema {version}: opened again, nothing migrates twice");
    }
}

#[test]
fn given_messages_then_they_come_back_in_commit_order_once_and_go_on_removal() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    assert_eq!(store.put(&message("bob", "alice", 2, "second"), 10).unwrap(), PutOutcome::Stored);
    assert_eq!(store.put(&message("bob", "alice", 1, "first"), 10).unwrap(), PutOutcome::Stored);
    assert_eq!(store.put(&message("carol", "alice", 1, "other"), 10).unwrap(), PutOutcome::Stored);
    // A retransmission is stored once.
    assert_eq!(store.put(&message("bob", "alice", 2, "second"), 10).unwrap(), PutOutcome::AlreadyStored);

    let pending = store.load_queue("bob", 10).unwrap().0;
    let texts: Vec<&[u8]> = pending.iter().map(|m| m.sealed.as_slice()).collect();
    assert_eq!(texts, [b"second".as_slice(), b"first"], "commit order, not id order");
    assert_eq!(pending[0], message("bob", "alice", 2, "second"), "ids survive the signed-integer column");
    assert_eq!(store.load_queue("bob", 1).unwrap().0.len(), 1);
    assert_eq!(store.count("bob").unwrap(), 2);

    assert!(store.remove("bob", "alice", MessageId { conversation: u64::MAX - 7, seq: 2 }).unwrap());
    assert!(!store.remove("bob", "alice", MessageId { conversation: u64::MAX - 7, seq: 2 }).unwrap());
    assert_eq!(store.count("bob").unwrap(), 1);
    assert_eq!(store.count("carol").unwrap(), 1);
}

#[test]
fn given_a_recipient_at_its_limit_then_put_refuses_but_a_retransmission_is_still_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    for seq in 1..=3 {
        assert_eq!(store.put(&message("bob", "alice", seq, "x"), 3).unwrap(), PutOutcome::Stored);
    }
    assert_eq!(store.put(&message("bob", "alice", 4, "x"), 3).unwrap(), PutOutcome::RecipientFull);
    assert_eq!(store.put(&message("bob", "alice", 3, "x"), 3).unwrap(), PutOutcome::AlreadyStored);
    assert_eq!(
        store.put(&message("carol", "alice", 4, "x"), 3).unwrap(),
        PutOutcome::Stored,
        "limits are per recipient"
    );
    assert_eq!(store.count("bob").unwrap(), 3);
}

#[test]
fn given_a_committed_store_when_it_is_reopened_then_messages_and_users_are_still_there() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(store.write_user("bob", &BOB_KEY).unwrap(), BOB_KEY);
        for seq in 1..=100 {
            store.put(&message("bob", "alice", seq, &format!("m{seq}")), 1000).unwrap();
        }
        store.remove("bob", "alice", MessageId { conversation: u64::MAX - 7, seq: 1 }).unwrap();
        // Dropped without any shutdown step beyond what a crash leaves.
    }
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    assert_eq!(store.read_user("bob").unwrap(), Some(BOB_KEY));
    assert_eq!(store.read_user("mallory").unwrap(), None);
    let pending = store.load_queue("bob", 1000).unwrap().0;
    assert_eq!(pending.len(), 99);
    assert_eq!(pending.first().unwrap().sealed, b"m2");
    assert_eq!(pending.last().unwrap().sealed, b"m100");
}

#[test]
fn given_garbage_in_the_store_file_then_open_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    fs::write(&path, b"this is not an SQLite database, it is a text file that someone put here".repeat(100)).unwrap();
    let error = SqliteStore::open_dir(dir.path()).expect_err("a garbage file must not open");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "the error names the file: {text}");
    // And the file was left alone for the operator to inspect.
    assert!(fs::read(&path).unwrap().starts_with(b"this is not an SQLite"));
}

#[test]
fn given_a_store_with_damaged_pages_then_open_fails_instead_of_starting_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        let mut store = SqliteStore::open(&path).unwrap();
        for seq in 1..=2000 {
            store.put(&message("bob", "alice", seq, &"x".repeat(200)), 10_000).unwrap();
        }
        // Fold the write-ahead log into the main file so the damage below
        // hits committed pages.
        drop(store);
    }
    let mut bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "the store spans many pages");
    // Overwrite pages in the middle of the table's b-tree.
    for b in &mut bytes[8 * 4096..12 * 4096] {
        *b = 0xa5;
    }
    fs::write(&path, &bytes).unwrap();
    let error = SqliteStore::open(&path).expect_err("a damaged store must not open");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()));
}

#[test]
fn given_an_sqlite_database_of_another_application_then_open_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    retag_as_another_application(&path);
    let error = SqliteStore::open(&path).expect_err("not our database");
    assert!(error.to_string().contains("another application"), "{error}");
}

/// Leaves at `path` a healthy SQLite database that belongs to another
/// application: a store whose header's application_id (offset 68, SQLite's
/// "Database File Format" §1.3) is rewritten.
fn retag_as_another_application(path: &std::path::Path) {
    drop(SqliteStore::open(path).unwrap());
    let mut bytes = fs::read(path).unwrap();
    bytes[68..72].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    fs::write(path, bytes).unwrap();
}

#[test]
fn given_a_data_directory_that_is_a_file_then_open_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("data");
    fs::write(&not_a_dir, b"x").unwrap();
    let error = SqliteStore::open_dir(&not_a_dir).expect_err("a file is no directory");
    assert!(matches!(error, OpenError::Directory { .. }), "{error:?}");
    assert!(error.to_string().contains(&not_a_dir.display().to_string()), "{error}");
    let nested = not_a_dir.join("below");
    let error = SqliteStore::open_dir(&nested).expect_err("cannot create a directory under a file");
    assert!(error.to_string().contains(&nested.display().to_string()), "{error}");
}

#[test]
fn given_a_missing_data_directory_then_it_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("punchline-data").join("deeper");
    let store = SqliteStore::open_dir(&data).unwrap();
    assert_eq!(store.path(), data.join(STORE_FILE));
    assert!(store.path().exists());
}

// ---------------------------------------------------------------------------
// The server machine on the SQLite store
// ---------------------------------------------------------------------------

const SERVER: &str = "203.0.113.10:3478";
const ALICE: &str = "198.51.100.1:4000";
const BOB: &str = "198.51.100.2:4000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A client logged in by hand: its address and its end of the channel.
struct Conn {
    from: &'static str,
    channel: ChannelEnd,
}

/// Feeds `datagram` from `from`, carries out the server's storage requests
/// on `store` as its driver would (one batch, one commit), and returns what
/// the server sent: each destination with the frame (sealed inside, or in
/// the clear) and the datagram.
fn deliver(
    server: &mut Server,
    store: &mut SqliteStore,
    now: Instant,
    from: &str,
    datagram: &[u8],
) -> Vec<(SocketAddr, Frame, Vec<u8>)> {
    server.handle_datagram(now, SocketId(0), addr(from), datagram);
    loop {
        let batch: Vec<StoreRequest> = std::iter::from_fn(|| server.poll_store_request()).collect();
        if batch.is_empty() {
            break;
        }
        for completion in store.execute(batch) {
            server.handle_store_completion(now, completion);
        }
    }
    let mut out = Vec::new();
    while let Some(t) = server.poll_transmit() {
        let frame = Frame::decode(t.plaintext.as_deref().unwrap_or(&t.payload)).unwrap();
        out.push((t.destination, frame, t.payload.to_vec()));
    }
    while server.poll_event().is_some() {}
    out
}

/// Sends `frame` sealed in `conn`'s channel; returns the frames the server
/// answered, by destination.
fn exchange(
    server: &mut Server,
    store: &mut SqliteStore,
    now: Instant,
    conn: &Conn,
    frame: Frame,
) -> Vec<(SocketAddr, Frame)> {
    let sealed = conn.channel.seal(&frame.encode()).unwrap();
    deliver(server, store, now, conn.from, &sealed).into_iter().map(|(to, f, _)| (to, f)).collect()
}

/// Logs `user` in from `from` with a real handshake (its key derived from
/// its name), and proves the address with the keepalive a client sends at
/// once: only then does the server bind the name and deliver its stored
/// texts, which are among the answers returned.
fn login(
    server: &mut Server,
    store: &mut SqliteStore,
    now: Instant,
    from: &'static str,
    user: &str,
) -> (u64, Conn, Vec<(SocketAddr, Frame)>) {
    let identity = StaticKey::derive(1.into(), user);
    let login = Frame::Login { request: 1, user: user.into(), host_candidates: vec![] }.encode();
    let (hello, datagram) = HelloSent::start(&identity, &server.public_key(), &login, None, 2.into());
    let answers = deliver(server, store, now, from, &datagram);
    let welcome = answers.iter().find(|(to, ..)| *to == addr(from)).expect("a welcome");
    let (payload, finished) = hello.finish(&welcome.2).expect("the welcome authenticates");
    let Ok(Frame::LoginOk { token, .. }) = Frame::decode(&payload) else { panic!("refused: {payload:?}") };
    let conn = Conn { from, channel: finished.into_channel(token).unwrap() };
    let answers = exchange(server, store, now, &conn, Frame::Keepalive { token, profile: Default::default() });
    (token, conn, answers)
}

#[test]
fn given_a_message_acknowledged_as_stored_when_the_server_crashes_then_the_restarted_server_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let config = ServerConfig::new(addr(SERVER), None);
    let id = MessageId { conversation: 42, seq: 1 };
    {
        let mut store = SqliteStore::open_dir(dir.path()).unwrap();
        let mut server = Server::new(config.clone(), now);
        let (bob, bob_conn, _) = login(&mut server, &mut store, now, BOB, "bob");
        exchange(&mut server, &mut store, now, &bob_conn, Frame::Logout { token: bob });
        let (alice, alice_conn, _) = login(&mut server, &mut store, now, ALICE, "alice");
        let answers = exchange(
            &mut server,
            &mut store,
            now,
            &alice_conn,
            Frame::TextSend { token: alice, id, to: "bob".into(), sealed: b"hi".to_vec() },
        );
        assert_eq!(answers, [(addr(ALICE), Frame::TextAck { id, status: TextStatus::Stored })]);
        // SIGKILL: the machine and its connection vanish without a goodbye.
        std::mem::forget(server);
        std::mem::forget(store);
    }
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    let mut server = Server::new(config, now + Duration::from_secs(1));
    let later = now + Duration::from_secs(2);
    let (bob, bob_conn, answers) = login(&mut server, &mut store, later, BOB, "bob");
    let delivered = Frame::TextDeliver { from: "alice".into(), id, sealed: b"hi".to_vec() };
    assert!(answers.contains(&(addr(BOB), delivered)), "{answers:?}");
    let answers = exchange(
        &mut server,
        &mut store,
        later,
        &bob_conn,
        Frame::TextDeliverAck { token: bob, from: "alice".into(), id },
    );
    assert_eq!(answers, [(addr(BOB), Frame::InboxStatus { pending: 0 })]);
    assert_eq!(store.count("bob").unwrap(), 0, "deleted only after the recipient's ack");
}

#[test]
fn given_a_restarted_server_then_a_user_known_before_the_crash_can_still_receive_messages() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let config = ServerConfig::new(addr(SERVER), None);
    {
        let mut store = SqliteStore::open_dir(dir.path()).unwrap();
        let mut server = Server::new(config.clone(), now);
        login(&mut server, &mut store, now, BOB, "bob");
    }
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    let mut server = Server::new(config, now);
    let (alice, alice_conn, _) = login(&mut server, &mut store, now, ALICE, "alice");
    let id = MessageId { conversation: 1, seq: 1 };
    let answers = exchange(
        &mut server,
        &mut store,
        now,
        &alice_conn,
        Frame::TextSend { token: alice, id, to: "bob".into(), sealed: b"x".to_vec() },
    );
    assert_eq!(answers, [(addr(ALICE), Frame::TextAck { id, status: TextStatus::Stored })]);
    let id2 = MessageId { conversation: 1, seq: 2 };
    let answers = exchange(
        &mut server,
        &mut store,
        now,
        &alice_conn,
        Frame::TextSend { token: alice, id: id2, to: "nobody".into(), sealed: b"x".to_vec() },
    );
    assert_eq!(
        answers,
        [(
            addr(ALICE),
            Frame::TextRejected { id: id2, reason: punchline_core::wire::frame::TextRejection::UnknownRecipient }
        )]
    );
}

// ---------------------------------------------------------------------------
// Group commit
// ---------------------------------------------------------------------------

fn put_request(n: u64, recipient: &str) -> StoreRequest {
    let message = message(recipient, "alice", n, &format!("text {n}"));
    StoreRequest { id: StoreRequestId(n), op: StoreOp::Put { message, max_per_recipient: 3 } }
}

#[test]
fn given_a_batch_then_it_commits_as_one_transaction_and_answers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    let mut batch: Vec<StoreRequest> = (1..=4).map(|n| put_request(n, "bob")).collect();
    batch.push(StoreRequest { id: StoreRequestId(5), op: StoreOp::LoadQueue { recipient: "bob".into(), limit: 10 } });
    batch.push(StoreRequest { id: StoreRequestId(6), op: StoreOp::WriteUser { user: "bob".into(), key: BOB_KEY } });
    batch.push(StoreRequest { id: StoreRequestId(7), op: StoreOp::ReadUser { user: "bob".into() } });
    let done = store.execute(batch);
    let ids: Vec<u64> = done.iter().map(|c| c.id.0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7], "one completion per request, in request order");
    let replies: Vec<StoreReply> = done.into_iter().map(|c: StoreCompletion| c.result.unwrap()).collect();
    assert_eq!(
        replies[..4],
        [
            StoreReply::Put(PutOutcome::Stored),
            StoreReply::Put(PutOutcome::Stored),
            StoreReply::Put(PutOutcome::Stored),
            StoreReply::Put(PutOutcome::RecipientFull),
        ]
    );
    let StoreReply::Queue { messages, total } = &replies[4] else { panic!("{:?}", replies[4]) };
    assert_eq!((messages.len(), *total), (3, 3), "a read sees the writes before it in its batch");
    assert_eq!(replies[5], StoreReply::UserBound(BOB_KEY));
    assert_eq!(replies[6], StoreReply::UserKey(Some(BOB_KEY)));
    drop(store);
    let mut reopened = SqliteStore::open_dir(dir.path()).unwrap();
    assert_eq!(reopened.count("bob").unwrap(), 3, "the batch was committed");
    assert_eq!(reopened.read_user("bob").unwrap(), Some(BOB_KEY));
}

#[test]
fn given_a_worker_when_requests_arrive_during_a_commit_then_they_form_the_next_batch() {
    use std::sync::mpsc;
    // A store whose commit waits for the test: the first batch is "in
    // flight" until the test lets it finish.
    #[derive(Debug)]
    struct Gated {
        inner: SqliteStore,
        gate: mpsc::Receiver<()>,
        batches: mpsc::Sender<usize>,
    }
    impl MessageStore for Gated {
        fn begin(&mut self) -> Result<(), punchline_core::messaging::StoreError> {
            self.inner.begin()
        }
        fn commit(&mut self) -> Result<(), punchline_core::messaging::StoreError> {
            self.gate.recv().expect("the test opens the gate");
            self.inner.commit()
        }
        fn rollback(&mut self) {
            self.inner.rollback()
        }
        fn put(&mut self, m: &StoredMessage, max: usize) -> Result<PutOutcome, punchline_core::messaging::StoreError> {
            self.inner.put(m, max)
        }
        fn remove(&mut self, r: &str, s: &str, id: MessageId) -> Result<bool, punchline_core::messaging::StoreError> {
            self.inner.remove(r, s, id)
        }
        fn load_queue(
            &mut self,
            r: &str,
            limit: usize,
        ) -> Result<(Vec<StoredMessage>, usize), punchline_core::messaging::StoreError> {
            self.inner.load_queue(r, limit)
        }
        fn read_user(&mut self, u: &str) -> Result<Option<PublicKey>, punchline_core::messaging::StoreError> {
            self.inner.read_user(u)
        }
        fn write_user(&mut self, u: &str, key: &PublicKey) -> Result<PublicKey, punchline_core::messaging::StoreError> {
            self.inner.write_user(u, key)
        }
        fn execute(&mut self, batch: Vec<StoreRequest>) -> Vec<StoreCompletion> {
            self.batches.send(batch.len()).unwrap();
            // The trait's own batching, through the gated commit.
            let results: Vec<_> = {
                self.begin().unwrap();
                batch.into_iter().map(|r| (r.id, self.apply(r.op))).collect()
            };
            self.commit().unwrap();
            results.into_iter().map(|(id, result)| StoreCompletion { id, result }).collect()
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let (gate_tx, gate) = mpsc::channel();
    let (batches_tx, batches) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let store = Gated { inner: SqliteStore::open_dir(dir.path()).unwrap(), gate, batches: batches_tx };
    let worker =
        punchline_store::StoreWorker::spawn(store, move |completions| done_tx.send(completions).unwrap()).unwrap();
    worker.submit(put_request(1, "bob"));
    assert_eq!(batches.recv().unwrap(), 1, "an idle store commits the first request alone");
    // While that commit is held, 99 more requests arrive.
    for n in 2..=100 {
        worker.submit(put_request(n, &format!("user{n}")));
    }
    assert!(done.try_recv().is_err(), "nothing is answered before its commit");
    gate_tx.send(()).unwrap();
    assert_eq!(done.recv().unwrap().len(), 1);
    assert_eq!(batches.recv().unwrap(), 99, "everything that waited is one transaction");
    gate_tx.send(()).unwrap();
    let second = done.recv().unwrap();
    let ids: Vec<u64> = second.iter().map(|c| c.id.0).collect();
    assert_eq!(ids, (2..=100).collect::<Vec<u64>>());
    assert!(second.iter().all(|c| c.result == Ok(StoreReply::Put(PutOutcome::Stored))));
    drop(worker);
    assert_eq!(SqliteStore::open_dir(dir.path()).unwrap().len().unwrap(), 100);
}
