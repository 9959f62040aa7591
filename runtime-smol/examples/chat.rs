//! A peer-to-peer chat in a page: lines typed go to the peer, lines received
//! are printed. The session starts on the server's relay and moves to a direct
//! path by itself.
//!
//! ```text
//! terminal 1:  cargo run -p punchline-smol --example chat -- --serve 127.0.0.1:3478 --user bob
//! terminal 2:  cargo run -p punchline-smol --example chat -- --server 127.0.0.1:3478 --user alice --peer bob
//! ```
//! (`--serve` runs a server in the same process; against a real server, give
//! `--server` only.) Ctrl-D ends the chat.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use punchline_smol::{BoundServer, Client, ClientConfig, ConnectFailure, Error, ServerConfig, SessionEvent};
use smol::io::{AsyncBufReadExt, BufReader};
use smol::{future, stream::StreamExt, Timer, Unblock};

/// Chat with another user over Punchline.
#[derive(Parser)]
struct Args {
    /// The server to log in to (default: the one started by --serve).
    #[arg(long, required_unless_present = "serve")]
    server: Option<SocketAddr>,
    /// Your user name.
    #[arg(long)]
    user: String,
    /// Whom to talk to; without it, wait for someone to connect.
    #[arg(long)]
    peer: Option<String>,
    /// Also run a server on this address, in this process.
    #[arg(long)]
    serve: Option<SocketAddr>,
    /// The local address to bind.
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: SocketAddr,
}

enum Input {
    Line(Option<std::io::Result<String>>),
    Session(Option<SessionEvent>),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    smol::block_on(async {
        let mut server = args.server;
        if let Some(addr) = args.serve {
            let bound = BoundServer::bind_config(ServerConfig::new(addr, None))?;
            eprintln!("[serving on {}]", bound.primary());
            server = server.or(Some(bound.primary()));
            smol::spawn(bound.run(future::pending())).detach();
        }
        let client = Client::start(ClientConfig::new(&args.user, server.expect("clap checked")), args.bind).await?;
        let incoming = client.accept(); // queue sessions peers open from now on
        client.wait_logged_in().await?;
        eprintln!("[logged in as {} from {}]", args.user, client.local_addr());

        let session = match &args.peer {
            None => {
                eprintln!("[waiting for someone to connect]");
                incoming.await.ok_or("client stopped")?
            }
            Some(peer) => loop {
                match client.connect_session(peer).await {
                    Err(Error::ConnectFailed { reason: ConnectFailure::PeerOffline, .. }) => {
                        eprintln!("[{peer} is offline; retrying]");
                        Timer::after(Duration::from_secs(1)).await;
                    }
                    other => break other?,
                }
            },
        };
        eprintln!("[talking to {} over the relay; Ctrl-D quits]", session.peer());

        let mut lines = BufReader::new(Unblock::new(std::io::stdin())).lines();
        loop {
            let line = async { Input::Line(lines.next().await) };
            let event = async { Input::Session(session.next_event().await) };
            match future::or(line, event).await {
                Input::Line(Some(line)) => session.send(line?.as_bytes()).await?,
                Input::Line(None) => break,
                Input::Session(Some(SessionEvent::Data(text))) => {
                    println!("{}: {}", session.peer(), String::from_utf8_lossy(&text))
                }
                Input::Session(Some(SessionEvent::PathDirect { remote, .. })) => eprintln!("[direct to {remote}]"),
                Input::Session(Some(SessionEvent::PathFellBack)) => eprintln!("[back on the relay]"),
                Input::Session(Some(SessionEvent::Closed(reason))) => {
                    eprintln!("[session closed: {reason:?}]");
                    break;
                }
                Input::Session(Some(_)) => {}
                Input::Session(None) => break,
            }
        }
        client.shutdown().await;
        Ok(())
    })
}
