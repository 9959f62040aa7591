//! Static key files: a user's identity (`punchline --identity`) and the
//! server's key (`punchline-server --key`), shared by both binaries.
//!
//! A key file holds one line: the 32-byte X25519 secret in base64url. It is
//! created on first use from OS randomness, with mode `0600` (a directory
//! made for it `0700`), and a key file that others may read or write is
//! refused: a leaked identity lets anyone be its user.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use punchline_core::secure::StaticKey;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or creating it failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        error: io::Error,
    },
    /// Others may read or write it.
    #[error("{path} is readable or writable by others (mode {mode:o}); run chmod 600 on it")]
    Unsafe {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// It holds no key.
    #[error("{0} is not a Punchline key file")]
    NotAKey(String),
}

/// Reads the key at `path`, or creates it there when there is none.
pub fn load_or_create(path: &Path) -> Result<StaticKey, KeyFileError> {
    let shown = || path.display().to_string();
    let io = |error| KeyFileError::Io { path: shown(), error };
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Unsafe { path: shown(), mode });
            }
            let text = fs::read_to_string(path).map_err(io)?;
            let secret = URL_SAFE_NO_PAD
                .decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| KeyFileError::NotAKey(shown()))?;
            Ok(StaticKey::from_secret(secret))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path).map_err(io),
        Err(e) => Err(io(e)),
    }
}

fn create(path: &Path) -> io::Result<StaticKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| io::Error::other(format!("no OS randomness: {e}")))?;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(file, "{}", URL_SAFE_NO_PAD.encode(secret))?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "created a new key");
    Ok(StaticKey::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_with_mode_600_and_read_back() {
        // Given no file, when a key is asked for twice, then the first call
        // creates it (0600, in a 0700 directory) and the second reads it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity").join("alice.key");
        let made = load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load_or_create(&path).unwrap(), made);
    }

    #[test]
    fn a_key_file_others_can_read_or_that_holds_no_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob.key");
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create(&path), Err(KeyFileError::Unsafe { mode: 0o644, .. })));
        fs::write(&path, "hello\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load_or_create(&path), Err(KeyFileError::NotAKey(_))));
    }
}
