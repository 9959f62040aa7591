//! The user's identity key and the server keys pinned on first contact
//! (issue 20).
//!
//! Files live in the per-user configuration directory:
//! `$PUNCHLINE_HOME` when set, else `$XDG_CONFIG_HOME/punchline`, else
//! `~/.config/punchline`:
//! - `identity/<user>.key`: the static X25519 secret of user `<user>`, one
//!   line of base64url, created on first use with mode `0600` (the
//!   directory `0700`). A key file that others may read or write is
//!   refused. `--identity FILE` names another file.
//! - `known_servers`: one pin per line, `ADDRESS FINGERPRINT`, as SSH's
//!   `known_hosts`: the key each server address showed on first contact.
//!   `--known-servers FILE` names another file; `--server-key FINGERPRINT`
//!   pins a key for this run without reading or writing the file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use punchline_core::secure::{PublicKey, StaticKey};

use crate::exit::Failure;

/// The per-user configuration directory.
pub fn config_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("PUNCHLINE_HOME") {
        return PathBuf::from(home);
    }
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("punchline");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("punchline")
}

/// The default identity file of `user`.
pub fn default_identity(user: &str) -> PathBuf {
    config_dir().join("identity").join(format!("{user}.key"))
}

/// The default pin file.
pub fn default_known_servers() -> PathBuf {
    config_dir().join("known_servers")
}

/// Reads the identity at `path`, or creates it there (from OS randomness)
/// when there is none; see [`punchline_store::keyfile`]. A file others may
/// read or write is refused.
pub fn load_or_create(path: &Path) -> Result<StaticKey, Failure> {
    punchline_store::keyfile::load_or_create(path).map_err(|e| Failure::UnsafeKeyFile(e.to_string()))
}

/// The server keys pinned on first contact.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
}

impl KnownServers {
    /// The pins in `path` (which need not exist yet).
    pub fn at(path: PathBuf) -> Self {
        KnownServers { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key pinned for `server`, if any. A line that does not parse is
    /// skipped.
    pub fn lookup(&self, server: SocketAddr) -> Result<Option<PublicKey>, Failure> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(text.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let addr: SocketAddr = fields.next()?.parse().ok()?;
            let key = PublicKey::parse(fields.next()?)?;
            (addr == server).then_some(key)
        }))
    }

    /// Pins `key` for `server`.
    pub fn pin(&self, server: SocketAddr, key: PublicKey) -> Result<(), Failure> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new().append(true).create(true).mode(0o600).open(&self.path)?;
        writeln!(file, "{server} {key}")?;
        file.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_per_server_address() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownServers::at(dir.path().join("known_servers"));
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap());
        assert_eq!(known.lookup(a).unwrap(), None);
        known.pin(a, PublicKey([1; 32])).unwrap();
        known.pin(b, PublicKey([2; 32])).unwrap();
        assert_eq!(known.lookup(a).unwrap(), Some(PublicKey([1; 32])));
        assert_eq!(known.lookup(b).unwrap(), Some(PublicKey([2; 32])));
    }
}
