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
/// tcp_listen = ["0.0.0.0:443"]    # TCP listeners beside the one on `listen` (issue 21)
/// no_tcp = false                  # true: no TCP at all, not even on `listen`
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
    /// TCP listeners besides the primary address's (`--tcp-listen`).
    pub tcp_listen: Option<Vec<SocketAddr>>,
    /// No TCP at all (`--no-tcp`).
    pub no_tcp: Option<bool>,
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
    /// TCP turned off, and TCP listeners asked for.
    #[error("--no-tcp (no_tcp) turns TCP off; it cannot go with --tcp-listen (tcp_listen)")]
    NoTcpWithTcpListen,
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
    /// TCP listeners (issue 21) besides the one on the primary address:
    /// port 443, say, for networks that let little else out.
    pub tcp_listen: Vec<SocketAddr>,
    /// No TCP at all. By default the server also listens on TCP at its
    /// primary address (the same IP and port as UDP), where clients look
    /// for it (`ClientConfig::server_tcp`).
    pub no_tcp: bool,
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
        let settings = Settings {
            server,
            runtime: runtime.or(file.runtime).unwrap_or_default(),
            data: file.data,
            store_commit: file.store_commit.unwrap_or_default(),
            tcp_listen: file.tcp_listen.unwrap_or_default(),
            no_tcp: file.no_tcp.unwrap_or(false),
        };
        settings.check_tcp()?;
        Ok(settings)
    }

    /// Applies the TCP flags over what [`merge`](Self::merge) took from the
    /// file: `--tcp-listen` addresses, when any, replace the file's list;
    /// `--no-tcp` turns TCP off. TCP off with listeners asked for is an
    /// error, wherever each came from.
    pub fn with_tcp_flags(mut self, tcp_listen: Vec<SocketAddr>, no_tcp: bool) -> Result<Settings, ConfigError> {
        if !tcp_listen.is_empty() {
            self.tcp_listen = tcp_listen;
        }
        self.no_tcp |= no_tcp;
        self.check_tcp()?;
        Ok(self)
    }

    fn check_tcp(&self) -> Result<(), ConfigError> {
        if self.no_tcp && !self.tcp_listen.is_empty() {
            return Err(ConfigError::NoTcpWithTcpListen);
        }
        Ok(())
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
    fn tcp_listeners_come_from_the_file_and_flags_replace_them() {
        // Given a file with two TCP listeners.
        let file = FileConfig::parse("tcp_listen = [\"0.0.0.0:443\", \"[::]:443\"]\n").expect("valid file");
        let primary = Some("127.0.0.1:5000".parse().unwrap());
        let s = Settings::merge(primary, None, None, file.clone(), 9.into()).expect("valid");
        // Then both are kept, and TCP on the primary stays on.
        let expected: Vec<SocketAddr> = vec!["0.0.0.0:443".parse().unwrap(), "[::]:443".parse().unwrap()];
        assert_eq!((s.tcp_listen.clone(), s.no_tcp), (expected.clone(), false));
        // When no flag says otherwise, then the file's list stands.
        assert_eq!(s.clone().with_tcp_flags(Vec::new(), false).expect("valid").tcp_listen, expected);
        // When --tcp-listen is given, then it replaces the file's list.
        let flag: Vec<SocketAddr> = vec!["127.0.0.1:8443".parse().unwrap()];
        assert_eq!(s.with_tcp_flags(flag.clone(), false).expect("valid").tcp_listen, flag);
        // And by default there are no extra listeners, and TCP is on.
        let default = Settings::merge(primary, None, None, FileConfig::default(), 9.into()).expect("valid");
        assert_eq!((default.tcp_listen.len(), default.no_tcp), (0, false));
    }

    #[test]
    fn tcp_off_with_tcp_listeners_is_refused_wherever_each_comes_from() {
        let primary = Some("127.0.0.1:5000".parse().unwrap());
        let listen: Vec<SocketAddr> = vec!["0.0.0.0:443".parse().unwrap()];
        // Both in the file.
        let file = FileConfig::parse("no_tcp = true\ntcp_listen = [\"0.0.0.0:443\"]\n").expect("valid toml");
        let err = Settings::merge(primary, None, None, file, 9.into()).unwrap_err();
        assert!(matches!(err, ConfigError::NoTcpWithTcpListen), "{err}");
        // Off in the file, listeners on the command line.
        let file = FileConfig::parse("no_tcp = true\n").expect("valid toml");
        let s = Settings::merge(primary, None, None, file, 9.into()).expect("valid alone");
        assert!(s.no_tcp);
        assert!(matches!(s.with_tcp_flags(listen.clone(), false), Err(ConfigError::NoTcpWithTcpListen)));
        // Listeners in the file, off on the command line.
        let file = FileConfig::parse("tcp_listen = [\"0.0.0.0:443\"]\n").expect("valid toml");
        let s = Settings::merge(primary, None, None, file, 9.into()).expect("valid alone");
        assert!(matches!(s.with_tcp_flags(Vec::new(), true), Err(ConfigError::NoTcpWithTcpListen)));
        // Off alone is fine.
        let s = Settings::merge(primary, None, None, FileConfig::default(), 9.into()).expect("valid");
        assert!(s.with_tcp_flags(Vec::new(), true).expect("valid").no_tcp);
    }

    #[test]
    fn a_bad_tcp_listen_address_is_named() {
        let err = FileConfig::parse("tcp_listen = [\"0.0.0.0\"]\n").unwrap_err();
        assert!(err.contains("tcp_listen"), "{err}");
        let err = FileConfig::parse("tcp_listen = \"0.0.0.0:443\"\n").unwrap_err();
        assert!(err.contains("tcp_listen"), "{err}");
    }

    #[test]
    fn a_listen_address_is_required() {
        let err = Settings::merge(None, None, None, FileConfig::default(), 0.into()).unwrap_err();
        assert!(matches!(err, ConfigError::NoListen));
    }
}
