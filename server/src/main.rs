//! `punchline-server --listen ADDR [--alt-listen ADDR] [--tcp-listen ADDR]... [--no-tcp] [--runtime mio|smol] [--config FILE]`

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use punchline_server::config::{os_seed, FileConfig, RuntimeKind, Settings, StoreCommit, DEFAULT_DATA_DIR};
use punchline_server::RunError;
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::info;

/// The Punchline server: signaling, presence, NAT discovery and relay over UDP,
/// and over TCP for clients whose network drops UDP.
///
/// At start it prints one line per bound socket on stdout,
/// `listening <primary|alternate|crossed> <ADDR>`, then one per TCP
/// listener, `listening tcp <ADDR>`, then `key <FINGERPRINT>`
/// (the public key clients pin), then logs to stderr
/// (set RUST_LOG, e.g. RUST_LOG=debug; default info). SIGINT or SIGTERM stop
/// it cleanly (exit 0).
///
/// Texts for offline users wait in a durable SQLite store in the --data
/// directory; the server acknowledges a text only once it is committed.
///
/// Exit codes: 0 stopped by a signal; 1 a socket could not be bound or
/// failed; 2 bad flags, config file or key file; 3 the message store cannot be used
/// (directory not creatable or writable, file corrupt or not ours).
#[derive(Parser, Debug)]
#[command(name = "punchline-server", version)]
struct Args {
    /// Primary UDP address clients log in to (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Alternate address for NAT behaviour discovery (RFC 5780): use another
    /// IP and another port; the server then also listens on the two crossed
    /// combinations.
    #[arg(long, value_name = "ADDR")]
    alt_listen: Option<SocketAddr>,
    /// Also accept TCP here (repeatable; port 443 gets through most
    /// firewalls). TCP is accepted on the --listen address anyway, unless
    /// --no-tcp.
    #[arg(long, value_name = "ADDR")]
    tcp_listen: Vec<SocketAddr>,
    /// No TCP at all: not on the --listen address either.
    #[arg(long, conflicts_with = "tcp_listen")]
    no_tcp: bool,
    /// The runtime that drives the server (smol: no TCP yet).
    #[arg(long, value_enum)]
    runtime: Option<RuntimeKind>,
    /// Directory of the durable message store, created if missing
    /// [default: punchline-data under the working directory].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// How the store commits: `group` puts every text that arrives during a
    /// commit into the next one (one fsync for many); `each` commits every
    /// text alone (one fsync per text: the baseline for measurements).
    #[arg(long, value_enum, value_name = "HOW")]
    store_commit: Option<StoreCommit>,
    /// The server's static key file, created (mode 0600) on first start.
    /// Clients pin its public half; its fingerprint is printed at start.
    /// [default: server.key in the --data directory]
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A TOML file with any of: listen, alt_listen, tcp_listen (a list),
    /// no_tcp, runtime, seed, key,
    /// user_timeout, offer_retransmit, offer_attempts, request_burst,
    /// request_rate, relay_burst_bytes, relay_rate_bytes, max_sources,
    /// max_sessions_per_user, data, store_commit, text_burst, text_rate.
    /// Flags override the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();

    let file = match args.config.as_deref().map(FileConfig::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => return usage_error(&e),
    };
    let seed = match os_seed() {
        Ok(seed) => seed,
        Err(e) => {
            eprintln!("punchline-server: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key_file = args.key.clone().or(file.key.clone());
    if file.seed.is_some() {
        tracing::warn!("the config file sets `seed`: tokens, session ids and keys are predictable; for tests only");
    }
    let merged = Settings::merge(args.listen, args.alt_listen, args.runtime, file, seed)
        .and_then(|s| s.with_tcp_flags(args.tcp_listen, args.no_tcp));
    let mut settings = match merged {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    settings.data = Some(args.data.or(settings.data).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)));
    settings.store_commit = args.store_commit.unwrap_or(settings.store_commit);
    let data = settings.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if key_file.is_none() {
        // The key's default home is the data directory: an unusable one is
        // reported as such (exit 3), before any key is made.
        if let Err(e) = punchline_store::SqliteStore::open_dir(&data) {
            eprintln!("punchline-server: {}", RunError::Store(e));
            return ExitCode::from(3);
        }
    }
    let key_file = key_file.unwrap_or_else(|| data.join("server.key"));
    settings.server.key = match punchline_store::keyfile::load_or_create(&key_file) {
        Ok(key) => key,
        Err(e) => return usage_error(&e),
    };
    let fingerprint = settings.server.key.public();
    // Handlers go in before the addresses are printed: whoever reads those
    // lines may signal at once.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("punchline-server: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = settings.runtime;
    let result = punchline_server::run_with(settings, |listening, stopper| {
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!(signal, "stopping");
                stopper.stop();
            }
        });
        let mut out = std::io::stdout().lock();
        for (id, addr) in &listening.udp {
            let _ = writeln!(out, "listening {} {addr}", punchline_server::socket_role(*id));
        }
        for addr in &listening.tcp {
            let _ = writeln!(out, "listening tcp {addr}");
        }
        // Clients pin this (`punchline --server-key`): compare it out of
        // band on first contact.
        let _ = writeln!(out, "key {fingerprint}");
        let _ = out.flush();
        info!(runtime = runtime.name(), sockets = listening.udp.len(), tcp = listening.tcp.len(), "serving");
    });
    match result {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e @ RunError::Store(_)) => {
            eprintln!("punchline-server: {e}");
            ExitCode::from(3)
        }
        Err(e @ RunError::Io(_)) => {
            eprintln!("punchline-server: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("punchline-server: {e}");
    ExitCode::from(2)
}
