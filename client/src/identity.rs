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
//! - `known_peers`: `SERVER-ADDRESS NAME FINGERPRINT` per line: the key the
//!   server's directory gave for a contact the first time `whois` asked.
//!   `--known-peers FILE` names another file.

use std::collections::BTreeMap;
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

/// A file of pins, one per line: the fields that name what is pinned,
/// then its key's fingerprint. Lines that do not parse are skipped; the
/// first pin of a name wins (a pin is never silently replaced).
#[derive(Debug, Clone)]
pub struct Pins {
    path: PathBuf,
}

impl Pins {
    /// The pins in `path` (which need not exist yet).
    pub fn at(path: PathBuf) -> Self {
        Pins { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key pinned for `name` (space-separated fields, as [`Pins::pin`]
    /// wrote them), if any.
    fn lookup(&self, name: &str) -> Result<Option<PublicKey>, Failure> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(text.lines().find_map(|line| {
            let (pinned, key) = line.trim().rsplit_once(' ')?;
            (pinned.split_whitespace().collect::<Vec<_>>().join(" ") == name).then(|| PublicKey::parse(key)).flatten()
        }))
    }

    fn pin(&self, name: &str, key: PublicKey) -> Result<(), Failure> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new().append(true).create(true).mode(0o600).open(&self.path)?;
        writeln!(file, "{name} {key}")?;
        file.sync_all()?;
        Ok(())
    }
}

/// The server keys pinned on first contact: `ADDRESS FINGERPRINT` lines.
#[derive(Debug, Clone)]
pub struct KnownServers(Pins);

impl KnownServers {
    /// The pins in `path` (which need not exist yet).
    pub fn at(path: PathBuf) -> Self {
        KnownServers(Pins::at(path))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The key pinned for `server`, if any.
    pub fn lookup(&self, server: SocketAddr) -> Result<Option<PublicKey>, Failure> {
        self.0.lookup(&server.to_string())
    }

    /// Pins `key` for `server`.
    pub fn pin(&self, server: SocketAddr, key: PublicKey) -> Result<(), Failure> {
        self.0.pin(&server.to_string(), key)
    }
}

/// Contacts' keys pinned on first use: `SERVER-ADDRESS NAME FINGERPRINT`
/// lines (a name is a user of one server).
#[derive(Debug, Clone)]
pub struct KnownPeers(Pins);

impl KnownPeers {
    /// The pins in `path` (which need not exist yet).
    pub fn at(path: PathBuf) -> Self {
        KnownPeers(Pins::at(path))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The key pinned for `peer` on `server`, if any.
    pub fn lookup(&self, server: SocketAddr, peer: &str) -> Result<Option<PublicKey>, Failure> {
        self.0.lookup(&format!("{server} {peer}"))
    }

    /// Pins `key` for `peer` on `server`.
    pub fn pin(&self, server: SocketAddr, peer: &str, key: PublicKey) -> Result<(), Failure> {
        self.0.pin(&format!("{server} {peer}"), key)
    }

    /// Every contact pinned on `server`, each with its first pin.
    pub fn for_server(&self, server: SocketAddr) -> Result<BTreeMap<String, PublicKey>, Failure> {
        let text = match fs::read_to_string(self.path()) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let server = server.to_string();
        let mut pins = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(at), Some(name), Some(key), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            {
                if let (true, Some(key)) = (at == server, PublicKey::parse(key)) {
                    pins.entry(name.to_owned()).or_insert(key);
                }
            }
        }
        Ok(pins)
    }
}

/// The default file of contacts' pins.
pub fn default_known_peers() -> PathBuf {
    config_dir().join("known_peers")
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

    #[test]
    fn contacts_are_pinned_per_server_and_name_and_the_first_pin_wins() {
        let dir = tempfile::tempdir().unwrap();
        let peers = KnownPeers::at(dir.path().join("known_peers"));
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        peers.pin(a, "bob", PublicKey([1; 32])).unwrap();
        peers.pin(b, "bob", PublicKey([2; 32])).unwrap();
        peers.pin(a, "bob", PublicKey([3; 32])).unwrap();
        assert_eq!(peers.lookup(a, "bob").unwrap(), Some(PublicKey([1; 32])));
        assert_eq!(peers.lookup(b, "bob").unwrap(), Some(PublicKey([2; 32])));
        assert_eq!(peers.lookup(a, "bo").unwrap(), None);
    }
}
