//! `punchline-server --listen ADDR [--alt-listen ADDR] [--runtime mio|smol] [--config FILE]`

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use punchline_server::config::{os_seed, FileConfig, RuntimeKind, Settings, StoreCommit, DEFAULT_DATA_DIR};
use punchline_server::RunError;
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::info;

/// The Punchline server: signaling, presence, NAT discovery and relay over UDP.
///
/// At start it prints one line per bound socket on stdout,
/// `listening <primary|alternate|crossed> <ADDR>`, then `key <FINGERPRINT>`
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
    /// The runtime that drives the server.
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
    /// A TOML file with any of: listen, alt_listen, runtime, seed, key,
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
    let mut settings = match Settings::merge(args.listen, args.alt_listen, args.runtime, file, seed) {
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
    let result = punchline_server::run(settings, |addrs, stopper| {
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!(signal, "stopping");
                stopper.stop();
            }
        });
        let mut out = std::io::stdout().lock();
        for (id, addr) in addrs {
            let _ = writeln!(out, "listening {} {addr}", punchline_server::socket_role(*id));
        }
        // Clients pin this (`punchline --server-key`): compare it out of
        // band on first contact.
        let _ = writeln!(out, "key {fingerprint}");
        let _ = out.flush();
        info!(runtime = runtime.name(), sockets = addrs.len(), "serving");
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
