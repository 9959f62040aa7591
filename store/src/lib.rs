//! # punchline-store
//!
//! The durable offline-message store of Punchline's server: an embedded
//! SQLite database (through `rusqlite`, SQLite compiled in; the default
//! `sqlite` feature) implementing [`punchline_core::messaging::MessageStore`],
//! and [`StoreWorker`], which runs any store on its own thread with group
//! commit (what the runtimes use; they build without the `sqlite` feature).
//!
//! ## Why SQLite
//!
//! The store is a queue per recipient that must be ordered (commit order),
//! de-duplicated (a retransmitted message is stored once), counted (the
//! per-recipient limit) and deleted one by one on acknowledgement. In SQL that
//! is one table with a `UNIQUE` constraint and an index, and every operation
//! is a single statement inside a transaction. SQLite's durability and
//! crash-recovery are among the most tested of any embedded database, its
//! file format is stable and inspectable with the `sqlite3` tool an operator
//! already has, and `PRAGMA quick_check` gives a cheap integrity check at
//! start-up. redb would do too, but needs the index and counting written by
//! hand over its key-value tables.
//!
//! ## Durability settings
//!
//! - `journal_mode = WAL`: a commit appends to the write-ahead log; readers
//!   never block the writer.
//! - `synchronous = FULL`: in WAL mode, the log is fsynced at *every* commit,
//!   so a transaction that returned is on stable storage and survives a
//!   process kill *and* a power cut. (`NORMAL` would survive a process kill
//!   but could lose the last commits on power loss; the server acknowledges a
//!   message to its sender right after `put` returns, so that is not enough.)
//! - A batch of requests ([`MessageStore::execute`]) is one transaction
//!   (`BEGIN IMMEDIATE`), so a crash leaves each message either fully stored
//!   or absent, and the whole batch costs one fsync.
//!
//! ## Group commit
//!
//! [`StoreWorker`] runs a store on its own thread: the server's driver
//! submits requests and never waits; every request that arrives while a
//! commit is in flight goes into the next transaction. One fsync then
//! covers as many texts as arrived during the last one, and each text is
//! acknowledged after the commit that holds it. The figures are in the
//! README (`benches/group_commit.rs`).
//!
//! ## Refusing bad files
//!
//! [`SqliteStore::open`] fails with an error naming the file when it is not
//! an SQLite database, fails `PRAGMA quick_check`, or is an SQLite database
//! of something else (its `application_id` is not Punchline's). It never
//! starts empty over a file it could not read: that would silently lose
//! every stored message.

pub mod keyfile;
mod worker;
pub use worker::{CommitEach, StoreWorker, MAX_BATCH};

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::*;
