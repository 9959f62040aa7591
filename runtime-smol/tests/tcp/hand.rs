//! A client machine driven by hand, on a thread of its own, over a blocking
//! TCP stream with a small receive buffer: the test decides when it reads,
//! and can freeze it (a client whose runtime stalls) while its server keeps
//! sending.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use punchline_core::client::{Client as Machine, ClientConfig, ClientEvent};
use punchline_core::{Machine as _, SocketId};
use smol::channel::{Receiver, Sender};

/// The first connection's id (the primary UDP socket is 0).
const FIRST_CONN: u32 = 1 << 31;
/// The client's receive buffer: small, so the kernel holds little of what
/// the server sends while the client does not read.
const RECV_BUFFER: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
enum Progress {
    LoggedIn,
    SessionOpened,
    Paused,
}

enum Command {
    Pause,
    Resume,
    Stop,
}

pub(crate) struct HandClient {
    commands: mpsc::Sender<Command>,
    progress: Receiver<Progress>,
    data: Receiver<Bytes>,
    thread: Option<JoinHandle<()>>,
}

impl HandClient {
    /// Starts a client logging in as `user`; its UDP goes to `dead_udp`
    /// (never answered; the driver does not even send it) and TCP to
    /// `server_tcp`. It holds sessions on the relay.
    pub(crate) fn spawn(user: &str, dead_udp: SocketAddr, server_tcp: SocketAddr) -> HandClient {
        let mut config = ClientConfig::new(user, dead_udp);
        config.server_tcp = Some(server_tcp);
        config.punch = false;
        let (commands, command_rx) = mpsc::channel();
        let (progress_tx, progress) = smol::channel::unbounded();
        let (data_tx, data) = smol::channel::unbounded();
        let driver = Driver {
            machine: Machine::new(config, (SocketId(0), "127.0.0.1:9".parse().unwrap()), Instant::now()),
            stream: None,
            commands: command_rx,
            progress: progress_tx,
            data: data_tx,
            connects: 0,
        };
        let thread = std::thread::spawn(move || driver.run());
        HandClient { commands, progress, data, thread: Some(thread) }
    }

    pub(crate) async fn logged_in(&self) {
        self.expect(Progress::LoggedIn).await;
    }

    pub(crate) async fn session_opened(&self) {
        self.expect(Progress::SessionOpened).await;
    }

    /// Freezes the client: from the return on, it reads nothing, sends
    /// nothing, and its timers wait.
    pub(crate) async fn pause(&self) {
        let _ = self.commands.send(Command::Pause);
        self.expect(Progress::Paused).await;
    }

    pub(crate) fn resume(&self) {
        let _ = self.commands.send(Command::Resume);
    }

    /// The first `n` data messages its sessions delivered, in order.
    pub(crate) async fn received(&self, n: usize) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.data.recv().await.expect("the hand-driven client runs"));
        }
        out
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            smol::unblock(move || thread.join()).await.expect("the hand-driven client ran");
        }
    }

    async fn expect(&self, want: Progress) {
        let got = self.progress.recv().await.expect("the hand-driven client runs");
        assert_eq!(got, want);
    }
}

struct Driver {
    machine: Machine,
    /// The connection to the server and its id.
    stream: Option<(SocketId, TcpStream)>,
    commands: mpsc::Receiver<Command>,
    progress: Sender<Progress>,
    data: Sender<Bytes>,
    /// Connections opened so far; each gets an id of its own.
    connects: u32,
}

impl Driver {
    /// The drive loop of `punchline_core::Machine`, by hand.
    fn run(mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(t) = self.machine.poll_transmit() {
                // UDP "goes nowhere": only the connection carries anything.
                if let Some((conn, stream)) = self.stream.as_mut() {
                    if t.socket == *conn && stream.write_all(&t.payload).is_err() {
                        self.closed();
                    }
                }
            }
            while let Some(event) = self.machine.poll_event() {
                self.event(event);
            }
            match self.commands.try_recv() {
                Ok(Command::Pause) => {
                    let _ = self.progress.try_send(Progress::Paused);
                    match self.commands.recv() {
                        Ok(Command::Resume) => {}
                        _ => return,
                    }
                }
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Ok(Command::Resume) | Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            let wait = self.machine.poll_timeout().map_or(Duration::MAX, |at| at.saturating_duration_since(now));
            let wait = wait.clamp(Duration::from_millis(1), Duration::from_millis(20));
            match self.stream.as_mut() {
                Some((conn, stream)) => {
                    let conn = *conn;
                    stream.set_read_timeout(Some(wait)).expect("a non-zero timeout");
                    match stream.read(&mut buf) {
                        Ok(0) => self.closed(),
                        Ok(n) => self.machine.handle_stream_data(Instant::now(), conn, &buf[..n]),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => self.closed(),
                    }
                }
                None => std::thread::sleep(wait),
            }
            let now = Instant::now();
            if self.machine.poll_timeout().is_some_and(|at| at <= now) {
                self.machine.handle_timeout(now);
            }
        }
    }

    fn event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::OpenStream { request, to } => {
                let conn = SocketId(FIRST_CONN + self.connects);
                self.connects += 1;
                self.stream = connect(to).ok().map(|s| (conn, s));
                let conn = self.stream.as_ref().map(|(conn, _)| *conn);
                self.machine.stream_opened(Instant::now(), request, conn);
            }
            ClientEvent::CloseStream { conn } if self.stream.as_ref().is_some_and(|(c, _)| *c == conn) => {
                self.stream = None
            }
            ClientEvent::LoggedIn { .. } => {
                let _ = self.progress.try_send(Progress::LoggedIn);
            }
            ClientEvent::SessionOpened { .. } => {
                let _ = self.progress.try_send(Progress::SessionOpened);
            }
            ClientEvent::DataReceived { data, .. } => {
                let _ = self.data.try_send(data);
            }
            _ => {}
        }
    }

    fn closed(&mut self) {
        if let Some((conn, _)) = self.stream.take() {
            self.machine.handle_stream_closed(Instant::now(), conn);
        }
    }
}

/// A connection whose receive buffer is set small before it connects (the
/// window it advertises follows from it).
fn connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(RECV_BUFFER)?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    socket.set_nodelay(true)?;
    Ok(socket.into())
}
