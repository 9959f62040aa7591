//! The server's settings: command-line flags over an optional TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use punchline_core::server::ServerConfig;
use punchline_core::Seed;
use serde::Deserialize;

/// Which runtime drives the server machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// `punchline-mio`: one thread, mio's poll.
    #[default]
    Mio,
    /// `punchline-smol`: an async task on smol.
    Smol,
}

impl RuntimeKind {
    /// The name used on the command line and in config files.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Mio => "mio",
            RuntimeKind::Smol => "smol",
        }
    }
}

/// How the message store commits (`--store-commit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreCommit {
    /// Every request that arrives during a commit goes into the next one:
    /// one fsync for many texts, each acknowledged after its own commit.
    #[default]
    Group,
    /// One transaction, one fsync, per request: the baseline group commit
    /// is measured against. Slower; for measurements.
    Each,
}

/// The config file (`--config FILE`): every field optional, unknown fields
/// rejected. Durations are strings with units ("500ms", "75s").
///
/// ```toml
/// listen = "0.0.0.0:3478"
/// alt_listen = "198.51.100.2:3479"
/// runtime = "mio"                 # or "smol"
/// seed = 42                       # default: 256 fresh bits from the OS at every start
/// user_timeout = "75s"
/// offer_retransmit = "500ms"
/// offer_attempts = 20
/// request_burst = 64
/// request_rate = 32
/// relay_burst_bytes = 524288
/// relay_rate_bytes = 2097152
/// max_sources = 100000
/// max_sessions_per_user = 64
/// max_users = 1000000            # online at once; a login beyond is refused (RateLimited)
/// data = "/var/lib/punchline"     # the message store's directory
/// key = "/var/lib/punchline/server.key"  # the static key (default: in data)
/// store_commit = "group"          # or "each" (one fsync per text)
/// text_burst = 4096               # text frames one user may burst
/// text_rate = 16384               # text frames per second one user may sustain
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The primary address.
    pub listen: Option<SocketAddr>,
    /// The alternate address (NAT behaviour discovery).
    pub alt_listen: Option<SocketAddr>,
    /// The runtime.
    pub runtime: Option<RuntimeKind>,
    /// The seed of tokens, session ids and keys. Leave it unset in
    /// production: a known seed makes session keys predictable.
    pub seed: Option<u64>,
    /// See [`ServerConfig::user_timeout`].
    #[serde(default, with = "humantime_serde")]
    pub user_timeout: Option<Duration>,
    /// See [`ServerConfig::offer_retransmit`].
    #[serde(default, with = "humantime_serde")]
    pub offer_retransmit: Option<Duration>,
    /// See [`ServerConfig::offer_attempts`].
    pub offer_attempts: Option<u32>,
    /// See [`ServerConfig::request_burst`].
    pub request_burst: Option<u32>,
    /// See [`ServerConfig::request_rate`].
    pub request_rate: Option<u32>,
    /// See [`ServerConfig::relay_burst_bytes`].
    pub relay_burst_bytes: Option<u32>,
    /// See [`ServerConfig::relay_rate_bytes`].
    pub relay_rate_bytes: Option<u32>,
    /// See [`ServerConfig::max_sources`].
    pub max_sources: Option<usize>,
    /// See [`ServerConfig::max_sessions_per_user`].
    pub max_sessions_per_user: Option<usize>,
    /// See [`ServerConfig::max_users`].
    pub max_users: Option<usize>,
    /// The directory of the durable message store (`--data`).
    pub data: Option<PathBuf>,
    /// The server's static key file (`--key`).
    pub key: Option<PathBuf>,
    /// How the store commits (`--store-commit`).
    pub store_commit: Option<StoreCommit>,
    /// See [`punchline_core::server::MailboxConfig::text_burst`].
    pub text_burst: Option<u32>,
    /// See [`punchline_core::server::MailboxConfig::text_rate`].
    pub text_rate: Option<u32>,
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`FileConfig`].
    #[error("invalid config file {path}, {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the line and the offending key).
        message: String,
    },
    /// No primary address anywhere.
    #[error("no listen address: pass --listen ADDR or set `listen` in the config file")]
    NoListen,
    /// The alternate address cannot serve discovery.
    #[error("--alt-listen {alt} must differ from --listen {primary}")]
    SameAlternate {
        /// The primary.
        primary: SocketAddr,
        /// The alternate.
        alt: SocketAddr,
    },
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
    }

    /// Parses TOML text; the error is the parser's message.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let Some(span) = e.span() else { return e.message().to_owned() };
            let line = text[..span.start].matches('\n').count() + 1;
            // A bad value's message does not name its key: add it.
            let key = text.lines().nth(line - 1).and_then(|l| l.split_once('=')).map(|(k, _)| k.trim());
            match key {
                Some(key) if !key.is_empty() && !e.message().contains(key) => {
                    format!("line {line}, `{key}`: {}", e.message())
                }
                _ => format!("line {line}: {}", e.message()),
            }
        })
    }
}

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The core server's settings (addresses may have port 0).
    pub server: ServerConfig,
    /// The runtime.
    pub runtime: RuntimeKind,
    /// The directory of the durable message store, created if missing.
    /// `None` keeps messages in memory only (tests, embedding); the binary
    /// always sets one ([`DEFAULT_DATA_DIR`] by default).
    pub data: Option<PathBuf>,
    /// How the store commits.
    pub store_commit: StoreCommit,
}

/// The message store's directory when neither `--data` nor the config file
/// names one: `punchline-data` under the working directory.
pub const DEFAULT_DATA_DIR: &str = "punchline-data";

impl Settings {
    /// Merges flags over the file: a flag given on the command line wins.
    /// `fresh_seed` is used when neither sets a seed.
    pub fn merge(
        listen: Option<SocketAddr>,
        alt_listen: Option<SocketAddr>,
        runtime: Option<RuntimeKind>,
        file: FileConfig,
        fresh_seed: Seed,
    ) -> Result<Settings, ConfigError> {
        let primary = listen.or(file.listen).ok_or(ConfigError::NoListen)?;
        let alternate = alt_listen.or(file.alt_listen);
        if let Some(alt) = alternate {
            if alt == primary && alt.port() != 0 {
                return Err(ConfigError::SameAlternate { primary, alt });
            }
        }
        let mut server = ServerConfig::new(primary, alternate);
        server.seed = file.seed.map(Seed::from).unwrap_or(fresh_seed);
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = file.$field { server.$field = v; } )* };
        }
        set!(
            user_timeout,
            offer_retransmit,
            offer_attempts,
            request_burst,
            request_rate,
            relay_burst_bytes,
            relay_rate_bytes,
            max_sources,
            max_sessions_per_user,
            max_users
        );
        if let Some(burst) = file.text_burst {
            server.mailbox.text_burst = burst;
        }
        if let Some(rate) = file.text_rate {
            server.mailbox.text_rate = rate;
        }
        Ok(Settings {
            server,
            runtime: runtime.or(file.runtime).unwrap_or_default(),
            data: file.data,
            store_commit: file.store_commit.unwrap_or_default(),
        })
    }
}

/// 256 bits from the operating system's randomness (`getrandom(2)`), the
/// seed of every token, session id and key the server makes. Without it the
/// server cannot run safely, so it stops.
pub fn os_seed() -> std::io::Result<Seed> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no OS randomness: {e}")))?;
    Ok(Seed::from_entropy(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_fields_apply_and_flags_win() {
        // Given a file with addresses, a runtime and a timeout.
        let file = FileConfig::parse(
            "listen = \"127.0.0.1:4000\"\nalt_listen = \"127.0.0.2:4001\"\nruntime = \"smol\"\nuser_timeout = \"20s\"\n",
        )
        .expect("valid file");
        // When the command line overrides the primary address only.
        let s = Settings::merge(Some("127.0.0.1:5000".parse().unwrap()), None, None, file, 9.into()).expect("valid");
        // Then the flag wins, the rest comes from the file, the seed from the caller.
        assert_eq!(s.server.primary, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(s.server.alternate, Some("127.0.0.2:4001".parse().unwrap()));
        assert_eq!(s.runtime, RuntimeKind::Smol);
        assert_eq!(s.server.user_timeout, Duration::from_secs(20));
        assert_eq!(s.server.seed, 9.into());
    }

    #[test]
    fn store_and_text_limits_come_from_the_file() {
        let file = FileConfig::parse("store_commit = \"each\"\ntext_burst = 5000\ntext_rate = 20000\n").expect("valid");
        let s = Settings::merge(Some("127.0.0.1:5000".parse().unwrap()), None, None, file, 9.into()).expect("valid");
        assert_eq!(s.store_commit, StoreCommit::Each);
        assert_eq!((s.server.mailbox.text_burst, s.server.mailbox.text_rate), (5000, 20000));
        let default =
            Settings::merge(Some("127.0.0.1:5000".parse().unwrap()), None, None, FileConfig::default(), 9.into());
        assert_eq!(default.expect("valid").store_commit, StoreCommit::Group);
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_rejected_by_name() {
        let err = FileConfig::parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert!(err.contains("unknown field `listen_port`"), "{err}");
        let err = FileConfig::parse("user_timeout = \"soon\"\n").unwrap_err();
        assert!(err.contains("user_timeout"), "{err}");
    }

    #[test]
    fn a_listen_address_is_required() {
        let err = Settings::merge(None, None, None, FileConfig::default(), 0.into()).unwrap_err();
        assert!(matches!(err, ConfigError::NoListen));
    }
}
