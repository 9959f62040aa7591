//! `punchline --server ADDR [--alt-server ADDR] --user NAME [--runtime mio|smol] COMMAND`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use punchline_client::commands::{self, Common, Connect, Listen, NatCheck};
use punchline_client::exit::{Failure, EXIT_CODES_HELP};
use punchline_client::files::send::{self, SendFile};
use punchline_client::identity;
use punchline_client::messages::{self, Inbox, Send};
use punchline_client::runtime::RuntimeKind;
use punchline_core::secure::PublicKey;
use punchline_core::Seed;

/// The Punchline client: checks your NAT, waits for sessions, or opens one
/// and pings over it (directly when hole punching succeeds, else through the
/// server's relay).
///
/// Ping protocol: `connect` sends `ping:<seq>` as session data; `listen` (and
/// `connect`) answer `pong:<seq>`. Logs go to stderr (RUST_LOG, default warn).
#[derive(Parser, Debug)]
#[command(name = "punchline", version, after_help = EXIT_CODES_HELP)]
struct Args {
    /// The server's primary address.
    #[arg(long, value_name = "ADDR")]
    server: SocketAddr,
    /// The server's alternate address, for NAT behaviour discovery.
    #[arg(long, value_name = "ADDR")]
    alt_server: Option<SocketAddr>,
    /// The server's TCP address, tried when UDP gets no answer (networks
    /// that drop UDP): in parallel with a login that waited 300 ms, and
    /// instead of UDP once the server is silent over it for 2.5 s.
    /// Default: the --server address.
    #[arg(long, value_name = "ADDR")]
    server_tcp: Option<SocketAddr>,
    /// Never fall back to TCP.
    #[arg(long, conflicts_with = "server_tcp")]
    no_tcp: bool,
    /// The user name to log in as.
    #[arg(long, value_name = "NAME")]
    user: String,
    /// The runtime that drives the client.
    #[arg(long, value_enum, default_value = "mio")]
    runtime: RuntimeKind,
    /// Local address of the primary socket (default: the IP routed toward
    /// the server, any free port).
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// How long the server may stay silent before it counts as unreachable.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
    server_timeout: Duration,
    /// A session that hears nothing from its peer for this long closes
    /// (default 30s).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    session_timeout: Option<Duration>,
    /// Hold every session on the server's relay: send no openers or probes
    /// and answer none, so the path never goes direct (to measure the relay,
    /// or where direct paths are unwanted).
    #[arg(long)]
    relay: bool,
    /// The user's identity key file (created, mode 0600, on first use).
    /// Default: identity/<user>.key in the configuration directory
    /// ($PUNCHLINE_HOME, else $XDG_CONFIG_HOME/punchline, else
    /// ~/.config/punchline).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The server's key fingerprint (as `punchline-server` prints it at
    /// start): pinned for this run; the known_servers file is neither read
    /// nor written.
    #[arg(long, value_name = "FINGERPRINT")]
    server_key: Option<String>,
    /// Server keys pinned on first contact, one `ADDRESS FINGERPRINT` per
    /// line. Default: known_servers in the configuration directory.
    #[arg(long, value_name = "FILE")]
    known_servers: Option<PathBuf>,
    /// Contacts' keys pinned by `whois`, one `SERVER-ADDRESS NAME
    /// FINGERPRINT` per line. Default: known_peers in the configuration
    /// directory.
    #[arg(long, value_name = "FILE")]
    known_peers: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask the server's directory for PEER's key fingerprint, pin it on
    /// first use in known_peers, and check it against the pin after (exit
    /// 14 when it changed). Compare it with what PEER's `whoami` prints.
    Whois {
        /// The contact.
        peer: String,
        /// One JSON object: peer, fingerprint, online, pinned_before.
        #[arg(long)]
        json: bool,
    },
    /// Print this user's key fingerprint (creating the identity on first
    /// use), for others to compare with what they pinned. Sends nothing.
    Whoami {
        /// One JSON object: user, fingerprint, identity.
        #[arg(long)]
        json: bool,
    },
    /// Print the reflexive address and the NAT profile (mapping, filtering,
    /// port allocation, nearest simulator preset).
    NatCheck {
        /// Discover the reflexive address with this standard STUN server
        /// (RFC 8489 Binding) instead of ours.
        #[arg(long, value_name = "HOST:PORT")]
        stun: Option<String>,
        /// One JSON object: reflexive, mapping, filtering, ports, preset, ...
        #[arg(long)]
        json: bool,
    },
    /// Stay online, accept sessions, answer pings, receive files and print
    /// events until SIGINT/SIGTERM.
    ///
    /// Files: without --accept-files every offer is refused (the sender
    /// exits 15). With it, each file is written beside its final place as
    /// DIR/.punchline-<root>.partial plus a small .state file, verified group
    /// by group, hashed again whole once complete, and only then renamed to
    /// DIR/NAME ("NAME (1).ext" when the name is taken: no file is ever
    /// replaced). An interrupted transfer resumes when the same content is
    /// sent again, under any name. Partial files are deleted when listen
    /// starts, 7 days after their last write.
    Listen {
        /// JSON lines with at least `event`, `peer` and `path`; files add
        /// `file` (name, size, root, saved), `file-progress` (once a second),
        /// `file-failed` and `file-refused` (reason, message) lines.
        #[arg(long)]
        json: bool,
        /// Accept offered files into DIR (an existing directory).
        #[arg(long, value_name = "DIR")]
        accept_files: Option<PathBuf>,
        /// Ask on the terminal before accepting each file ("accept NAME (SIZE)
        /// from PEER? [y/N]"); a usage error without a terminal.
        #[arg(long, requires = "accept_files")]
        ask: bool,
    },
    /// Send the file at PATH to PEER, peer to peer when a direct path opens,
    /// through the server's relay otherwise: verified against its BLAKE3
    /// root, resumed from what PEER already holds of the same content.
    ///
    /// PEER must be online and run `listen --accept-files`. On a terminal a
    /// progress bar shows bytes, rate, ETA and the path. Exits 0 once PEER
    /// holds the whole file; see the exit codes below for the failures.
    SendFile {
        /// The recipient.
        peer: String,
        /// The file; PEER sees its file name.
        path: PathBuf,
        /// Limit for the session to open and PEER to answer the offer (exit 6).
        #[arg(long, value_name = "DUR", default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// JSON lines: `progress` once a second (name, size, bytes,
        /// rate_mbps, eta_s, path), then `done` (name, size, root,
        /// goodput_mbps, path, resumed_bytes).
        #[arg(long)]
        json: bool,
    },
    /// Open a session with PEER, send pings, print the path and timings.
    ///
    /// After the session opens (on the relay) it waits for a direct path,
    /// for as long as punching may still succeed (until the path is direct,
    /// the strategy is relay-only or the client gives up punching), at most
    /// --direct-wait, then pings; failed attempts that will be retried are
    /// waited through. `outcome` is the path at the end. Exits 0 when
    /// connected.
    Connect {
        /// The user to connect to.
        peer: String,
        /// How many pings to send.
        #[arg(long, default_value_t = 5)]
        pings: u32,
        /// Time between pings.
        #[arg(long, value_name = "DUR", default_value = "200ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Limit for the session to open, and for the last answers after the
        /// last ping.
        #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Limit for the wait for a direct path before pinging starts.
        #[arg(long, value_name = "DUR", default_value = "5s", value_parser = humantime::parse_duration)]
        direct_wait: Duration,
        /// One JSON object: peer, outcome, strategy, connect_ms, direct_ms,
        /// rtt_ms_p50, pings_answered, ...
        #[arg(long)]
        json: bool,
    },
    /// Send a text message to PEER (online or not) and wait for its
    /// acknowledgement: `stored` by the server for an offline peer, or
    /// `delivered`. Exits 0 once everything sent was acknowledged.
    Send {
        /// The recipient.
        peer: String,
        /// The text (UTF-8, at most 1,000 bytes).
        #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
        text: Option<String>,
        /// Send every line of stdin as one message, in order; print one line
        /// per acknowledgement (with --json: line, id, status, path) as they
        /// come; exit once stdin is closed and all are acknowledged.
        #[arg(long)]
        stdin: bool,
        /// Give up (exit 6) when nothing was acknowledged for this long.
        #[arg(long, value_name = "DUR", default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// One JSON object per message: id, status (delivered|stored), path
        /// (direct|server).
        #[arg(long)]
        json: bool,
    },
    /// Log in, receive and acknowledge every message stored for us, print
    /// them, exit.
    Inbox {
        /// Limit for the whole inbox to arrive.
        #[arg(long, value_name = "DUR", default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// One JSON line per message: event "text", peer, id, text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // Past RLIMIT_FSIZE a write fails with EFBIG, and the kernel also sends
    // SIGXFSZ, whose default action kills the process. With a handler
    // installed the write's error is all that happens: a receiver reports a
    // full disk and keeps its partial file.
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, Arc::new(AtomicBool::new(false))) {
        tracing::debug!(error = %e, "cannot catch SIGXFSZ");
    }
    let seed = match os_seed() {
        Ok(seed) => seed,
        Err(e) => return fail(&e),
    };
    let identity_path = args.identity.clone().unwrap_or_else(|| identity::default_identity(&args.user));
    if !punchline_core::server::valid_user_name(&args.user) {
        return fail(&Failure::Usage(format!("{:?} is not a valid user name", args.user)));
    }
    let identity = match identity::load_or_create(&identity_path) {
        Ok(identity) => identity,
        Err(e) => return fail(&e),
    };
    if let Command::Whoami { json } = args.command {
        let fingerprint = identity.public().to_string();
        if json {
            let out = serde_json::json!({"user": args.user, "fingerprint": fingerprint,
                "identity": identity_path.display().to_string()});
            println!("{out}");
        } else {
            println!("{} {fingerprint}", args.user);
        }
        return ExitCode::SUCCESS;
    }
    let known_servers =
        identity::KnownServers::at(args.known_servers.clone().unwrap_or_else(identity::default_known_servers));
    let (server_key, known_servers) = match &args.server_key {
        Some(text) => match PublicKey::parse(text) {
            Some(key) => (Some(key), None),
            None => return fail(&Failure::Usage(format!("--server-key {text:?} is not a key fingerprint"))),
        },
        None => match known_servers.lookup(args.server) {
            Ok(pinned) => (pinned, Some(known_servers)),
            Err(e) => return fail(&e),
        },
    };
    let common = Common {
        server: args.server,
        alt_server: args.alt_server,
        server_tcp: if args.no_tcp { None } else { Some(args.server_tcp.unwrap_or(args.server)) },
        user: args.user,
        runtime: args.runtime,
        bind: args.bind,
        server_timeout: args.server_timeout,
        session_timeout: args.session_timeout,
        seed,
        relay: args.relay,
        identity,
        server_key,
        known_servers,
        known_peers: identity::KnownPeers::at(args.known_peers.clone().unwrap_or_else(identity::default_known_peers)),
    };
    let result = match args.command {
        Command::NatCheck { stun, json } => commands::nat_check(&common, &NatCheck { stun, json }),
        Command::Listen { json, accept_files, ask } => commands::listen(&common, &Listen { json, accept_files, ask }),
        Command::SendFile { peer, path, timeout, json } => {
            send::send_file(&common, &SendFile { peer, path, timeout, json })
        }
        Command::Connect { peer, pings, interval, timeout, direct_wait, json } => {
            commands::connect(&common, &Connect { peer, pings, interval, timeout, direct_wait, json })
        }
        Command::Send { peer, text, stdin: _, timeout, json } => {
            messages::send(&common, &Send { peer, text, timeout, json })
        }
        Command::Inbox { timeout, json } => messages::inbox(&common, &Inbox { timeout, json }),
        Command::Whoami { .. } => unreachable!("answered above"),
        Command::Whois { peer, json } => commands::whois(&common, &peer, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Failure) -> ExitCode {
    eprintln!("punchline: error: {e}");
    e.exit_code()
}

/// 256 bits of OS randomness (`getrandom(2)`): the seed of every key, token
/// and id the client makes.
fn os_seed() -> Result<Seed, Failure> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no OS randomness: {e}")))?;
    Ok(Seed::from_entropy(bytes))
}
