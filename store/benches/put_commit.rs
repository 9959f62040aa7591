//! Sustained rate of durable message commits into the SQLite store.
//!
//! `put_commit` stores one message per iteration, each in its own
//! transaction, with `synchronous = FULL` — one fsync of the write-ahead log
//! per message. `put_group_64` stores 64 messages per transaction, as group
//! commit does under a stream of texts (throughput is per message).
//! `fsync_floor` is the baseline measured in the same run: append a
//! message-sized record to a file and `fdatasync` it, the least any durable
//! per-message commit can cost on this disk. The ratios say how much SQLite
//! adds over the fsync, and how much grouping saves.
//!
//! The files live under `PUNCHLINE_BENCH_DIR` when set, otherwise in Cargo's
//! target temporary directory (on the same disk as the build), never on a
//! tmpfs where fsync would be free.

use punchline_core::secure::X_OVERHEAD;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use punchline_core::messaging::{MessageId, MessageStore, StoreOp, StoreRequest, StoreRequestId, StoredMessage};
use punchline_store::SqliteStore;

fn bench_dir() -> PathBuf {
    std::env::var_os("PUNCHLINE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

fn put_commit(c: &mut Criterion) {
    let base = bench_dir();
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    // What the store holds of a chat-length text: its bytes, sealed to the
    // recipient (`X_OVERHEAD` more than the text).
    let text = vec![b'x'; "a message of about the length people type in a chat, ".len() * 2 + X_OVERHEAD];
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30).measurement_time(Duration::from_secs(10));

    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    let mut seq = 0u64;
    group.bench_function("put_commit", |b| {
        b.iter(|| {
            seq += 1;
            // 100 recipients, as on a server with many offline users.
            let message = StoredMessage {
                recipient: format!("user{}", seq % 100),
                sender: "alice".into(),
                id: MessageId { conversation: 7, seq },
                sealed: text.clone(),
            };
            let put =
                StoreRequest { id: StoreRequestId(seq), op: StoreOp::Put { message, max_per_recipient: usize::MAX } };
            store.execute(vec![put])
        })
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("put_group_64", |b| {
        b.iter(|| {
            let batch = (0..64)
                .map(|_| {
                    seq += 1;
                    let message = StoredMessage {
                        recipient: format!("user{}", seq % 100),
                        sender: "alice".into(),
                        id: MessageId { conversation: 7, seq },
                        sealed: text.clone(),
                    };
                    StoreRequest {
                        id: StoreRequestId(seq),
                        op: StoreOp::Put { message, max_per_recipient: usize::MAX },
                    }
                })
                .collect();
            store.execute(batch)
        })
    });
    group.throughput(Throughput::Elements(1));

    let mut log = OpenOptions::new().create(true).append(true).open(dir.path().join("fsync-floor.log")).unwrap();
    let record = vec![b'x'; text.len() + 64];
    group.bench_function("fsync_floor", |b| {
        b.iter(|| {
            log.write_all(&record).unwrap();
            log.sync_data().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, put_commit);
criterion_main!(benches);
