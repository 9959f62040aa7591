//! The SQLite store: see the crate documentation.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use punchline_core::messaging::{MessageId, MessageStore, PutOutcome, StoreError, StoredMessage};
use punchline_core::secure::PublicKey;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// The store's file name inside a data directory.
pub const STORE_FILE: &str = "messages.sqlite3";
/// `PRAGMA application_id` of a Punchline store: "PLMS".
pub const APPLICATION_ID: i32 = 0x504c_4d53;
/// The schema version (`PRAGMA user_version`) this crate writes.
pub const SCHEMA_VERSION: i32 = 3;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory cannot be created or written.
    #[error("unusable data directory {dir}: {reason}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file exists but is not a healthy Punchline store.
    #[error("{path} is not a usable Punchline message store: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// SQLite refused to open or set up the file.
    #[error("cannot open message store {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// A durable [`MessageStore`] in one SQLite file. See the crate docs for the
/// durability settings.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if missing) the store in data directory `dir`, which
    /// is created if missing. An unusable directory is an error naming it.
    pub fn open_dir(dir: &Path) -> Result<Self, OpenError> {
        let fail = |reason: String| OpenError::Directory { dir: dir.to_owned(), reason };
        fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        if !dir.is_dir() {
            return Err(fail("not a directory".into()));
        }
        // SQLite creates its -wal and -shm files beside the database: the
        // directory itself must be writable, which its mode bits alone do not
        // tell (read-only mounts, root squash). Try it.
        let probe = dir.join(".punchline-write-test");
        fs::write(&probe, b"")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| fail(format!("not writable: {e}")))?;
        SqliteStore::open(&dir.join(STORE_FILE))
    }

    /// Opens (creating if missing) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let sqlite = |source| OpenError::Sqlite { path: path.to_owned(), source };
        let corrupt = |reason: String| OpenError::Corrupt { path: path.to_owned(), reason };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        // The first statement that reads the file: garbage fails here with
        // "file is not a database".
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| corrupt(format!("cannot read it as SQLite ({e})")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(corrupt(format!("cannot switch it to WAL journaling (mode is {mode})")));
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| corrupt(format!("integrity check failed to run ({e})")))?;
        if check != "ok" {
            return Err(corrupt(format!("integrity check failed: {check}")));
        }
        let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(sqlite)?;
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sqlite)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        match (app, version) {
            (0, 0) if tables == 0 => create_schema(&conn).map_err(sqlite)?,
            (APPLICATION_ID, SCHEMA_VERSION) => {}
            (APPLICATION_ID, 1) => {
                migrate_from_1(&conn).map_err(sqlite)?;
                migrate_from_2(&conn).map_err(sqlite)?
            }
            (APPLICATION_ID, 2) => migrate_from_2(&conn).map_err(sqlite)?,
            (APPLICATION_ID, v) => {
                return Err(corrupt(format!("schema version {v}; this server reads {SCHEMA_VERSION}")))
            }
            _ => return Err(corrupt(format!("an SQLite database of another application (application_id {app:#x})"))),
        }
        Ok(SqliteStore { conn, path: path.to_owned() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Messages held, for every recipient together.
    pub fn len(&self) -> Result<usize, StoreError> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).map_err(store_error)?;
        Ok(n as usize)
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

/// The messages table of the current schema and its index (texts sealed to
/// their recipient), as a new store and the migration from 2 create it.
const MESSAGES: &str = "CREATE TABLE messages (
             commit_no    INTEGER PRIMARY KEY AUTOINCREMENT,
             recipient    TEXT    NOT NULL,
             sender       TEXT    NOT NULL,
             conversation INTEGER NOT NULL,
             seq          INTEGER NOT NULL,
             sealed       BLOB    NOT NULL,
             UNIQUE (recipient, sender, conversation, seq)
         );
         CREATE INDEX messages_by_recipient ON messages (recipient, commit_no);";

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {MESSAGES}
         CREATE TABLE users (name TEXT PRIMARY KEY, key BLOB) WITHOUT ROWID;
         PRAGMA application_id = {APPLICATION_ID};
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
}

/// Schema 1 knew names without keys: they gain a key column, empty until
/// each name's next login binds it.
fn migrate_from_1(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         ALTER TABLE users ADD COLUMN key BLOB;
         PRAGMA user_version = 2;
         COMMIT;",
    )
}

/// Schema 2 stored texts in plaintext, which no client accepts any more
/// (texts through the server are sealed to their recipient). They are not
/// deleted, and never delivered: they move to `plaintext_messages_v2`, for
/// the operator to export or drop, and the count is logged.
fn migrate_from_2(conn: &Connection) -> rusqlite::Result<()> {
    let kept: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE messages RENAME TO plaintext_messages_v2;
         DROP INDEX messages_by_recipient;
         {MESSAGES}
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))?;
    if kept > 0 {
        tracing::warn!(
            kept,
            "texts stored in plaintext by an older server are kept in table plaintext_messages_v2 and not delivered"
        );
    }
    Ok(())
}

fn store_error(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

/// SQLite integers are signed 64-bit: ids are stored bit for bit.
fn sql_u64(v: u64) -> i64 {
    v as i64
}

impl MessageStore for SqliteStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(store_error)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        // With synchronous = FULL in WAL mode this fsyncs the log.
        self.conn.execute_batch("COMMIT").map_err(store_error)
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            if let Err(error) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(%error, "message store rollback failed");
            }
        }
    }

    fn put(&mut self, message: &StoredMessage, max_per_recipient: usize) -> Result<PutOutcome, StoreError> {
        let id = message.id;
        let exists = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM messages WHERE recipient = ?1 AND sender = ?2 AND conversation = ?3 AND seq = ?4",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![message.recipient, message.sender, sql_u64(id.conversation), sql_u64(id.seq)],
                    |_| Ok(()),
                )
                .optional()
            })
            .map_err(store_error)?;
        if exists.is_some() {
            return Ok(PutOutcome::AlreadyStored);
        }
        if self.count(&message.recipient)? >= max_per_recipient {
            return Ok(PutOutcome::RecipientFull);
        }
        // One statement: it writes whole or not at all, so an error here
        // leaves the rest of the batch intact.
        self.conn
            .prepare_cached(
                "INSERT INTO messages (recipient, sender, conversation, seq, sealed) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    message.recipient,
                    message.sender,
                    sql_u64(id.conversation),
                    sql_u64(id.seq),
                    message.sealed
                ])
            })
            .map_err(store_error)?;
        Ok(PutOutcome::Stored)
    }

    fn remove(&mut self, recipient: &str, sender: &str, id: MessageId) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM messages WHERE recipient = ?1 AND sender = ?2 AND conversation = ?3 AND seq = ?4",
            )
            .and_then(|mut s| s.execute(params![recipient, sender, sql_u64(id.conversation), sql_u64(id.seq)]))
            .map_err(store_error)?;
        Ok(n > 0)
    }

    fn load_queue(&mut self, recipient: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sender, conversation, seq, sealed FROM messages WHERE recipient = ?1 ORDER BY commit_no LIMIT ?2",
            )
            .map_err(store_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![recipient, limit], |r| {
                Ok(StoredMessage {
                    recipient: recipient.to_owned(),
                    sender: r.get(0)?,
                    id: MessageId { conversation: r.get::<_, i64>(1)? as u64, seq: r.get::<_, i64>(2)? as u64 },
                    sealed: r.get(3)?,
                })
            })
            .map_err(store_error)?;
        let messages = rows.collect::<Result<Vec<_>, _>>().map_err(store_error)?;
        drop(stmt);
        Ok((messages, self.count(recipient)?))
    }

    fn read_user(&mut self, user: &str) -> Result<Option<PublicKey>, StoreError> {
        // A name recorded before keys existed (schema 1) has no key: it is
        // bound by its next login, and until then it is no recipient.
        let key: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached("SELECT key FROM users WHERE name = ?1")
            .and_then(|mut s| s.query_row(params![user], |r| r.get(0)).optional())
            .map_err(store_error)?;
        Ok(key.flatten().and_then(|bytes| Some(PublicKey(bytes.try_into().ok()?))))
    }

    fn write_user(&mut self, user: &str, key: &PublicKey) -> Result<PublicKey, StoreError> {
        // Bind the name unless it is bound: a name keeps its first key.
        self.conn
            .prepare_cached(
                "INSERT INTO users (name, key) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET key = excluded.key WHERE users.key IS NULL",
            )
            .and_then(|mut s| s.execute(params![user, &key.0[..]]))
            .map_err(store_error)?;
        self.read_user(user)?.ok_or_else(|| StoreError(format!("user {user:?} has no key after binding it")))
    }
}

impl SqliteStore {
    /// How many messages `recipient` has.
    pub fn count(&self, recipient: &str) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM messages WHERE recipient = ?1")
            .and_then(|mut s| s.query_row(params![recipient], |r| r.get(0)))
            .map_err(store_error)?;
        Ok(n as usize)
    }
}
