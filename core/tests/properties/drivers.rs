//! Drivers: a client and a server fed datagrams and time, checking every
//! datagram they send.

use super::*;

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

/// Drives a client the way a runtime would, checking every output: sockets
/// asked for are opened at once; sockets released must have been opened and
/// not yet released; every transmit is well formed and leaves from a socket
/// the driver holds.
pub(crate) struct ClientDriver {
    pub(crate) client: Client,
    pub(crate) now: Instant,
    pub(crate) primary: (SocketId, SocketAddr),
    /// Sockets the driver holds: the primary, those opened on request, and
    /// any a datagram was fed on.
    pub(crate) live: BTreeMap<SocketId, SocketAddr>,
    /// Sockets opened on the client's request and not yet released.
    pub(crate) opened: BTreeSet<SocketId>,
    pub(crate) next_socket: u32,
    pub(crate) sent: Vec<Transmit>,
    pub(crate) events: Vec<ClientEvent>,
    /// The server's end of the client's channel, when the test plays the
    /// server (see [`logged_in_client`]).
    pub(crate) server_end: Option<ChannelEnd>,
    /// Every datagram [`ClientDriver::feed_sealed`] fed, for replays.
    pub(crate) sealed_fed: Vec<Vec<u8>>,
}

impl ClientDriver {
    pub(crate) fn new(config: ClientConfig, now: Instant) -> Self {
        let primary = (SocketId(0), addr("198.51.100.1:4000"));
        let client = Client::new(config, primary, now);
        let mut d = ClientDriver {
            client,
            now,
            primary,
            live: [primary].into_iter().collect(),
            opened: BTreeSet::new(),
            next_socket: 100,
            sent: Vec::new(),
            events: Vec::new(),
            server_end: None,
            sealed_fed: Vec::new(),
        };
        d.drain();
        d
    }

    /// Feeds `frame` (an encoded frame, or any bytes) sealed in the
    /// client's channel by the server's end, from the server's primary
    /// address to the primary socket; returns the datagram.
    pub(crate) fn feed_sealed(&mut self, frame: &[u8]) -> Vec<u8> {
        let end = self.server_end.as_ref().expect("the test plays the server");
        let datagram = end.seal(frame).expect("a channel this young never runs out of counters");
        self.feed(self.primary.0, server_primary(), &datagram);
        self.sealed_fed.push(datagram.clone());
        datagram
    }

    pub(crate) fn feed(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        let local = SocketAddr::new(self.primary.1.ip(), 50_000u16.wrapping_add(socket.0 as u16));
        self.live.entry(socket).or_insert(local);
        self.client.handle_datagram(self.now, socket, from, payload);
        self.drain();
    }

    /// Moves time forward by `by` and runs the timers, until the client has
    /// nothing due (a client whose deadline stays at `now` would make its
    /// driver spin).
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.drain();
        for _ in 0..64 {
            match self.client.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.client.handle_timeout(self.now);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!("the client's deadline stays at or before now: its driver would spin");
    }

    /// Runs the timers, deadline after deadline, for `span` without input.
    pub(crate) fn idle(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(at) = self.client.poll_timeout() {
            if at > end {
                break;
            }
            self.advance(at.saturating_duration_since(self.now));
        }
        self.now = end;
    }

    pub(crate) fn drain(&mut self) {
        for _ in 0..64 {
            while let Some(t) = self.client.poll_transmit() {
                assert_well_formed("the client", &t);
                if let (Some(end), Some(_)) = (self.server_end.as_mut(), layout::parse_sealed(&t.payload)) {
                    // What the client seals is what its plaintext says, in
                    // the channel the test's server holds.
                    assert_eq!(
                        end.open(&t.payload).as_deref(),
                        t.plaintext.as_deref(),
                        "a sealed frame that does not open to its plaintext"
                    );
                }
                assert!(
                    self.live.contains_key(&t.socket),
                    "the client sent from {:?}, not held by its driver",
                    t.socket
                );
                self.sent.push(t);
            }
            let mut asked = Vec::new();
            while let Some(e) = self.client.poll_event() {
                match &e {
                    ClientEvent::OpenSockets { request, count } => {
                        assert!((1..=1024).contains(count), "asked for {count} sockets");
                        asked.push((*request, *count));
                    }
                    ClientEvent::ReleaseSocket { socket } => {
                        assert_ne!(*socket, self.primary.0, "the client released its primary socket");
                        assert!(self.opened.remove(socket), "released {socket:?}, which is not open on its request");
                        self.live.remove(socket);
                    }
                    _ => {}
                }
                self.events.push(e);
            }
            if asked.is_empty() {
                return;
            }
            for (request, count) in asked {
                let sockets: Vec<(SocketId, SocketAddr)> = (0..count)
                    .map(|_| {
                        let id = SocketId(self.next_socket);
                        self.next_socket += 1;
                        (id, SocketAddr::new(self.primary.1.ip(), (self.next_socket % 60_000) as u16 + 1024))
                    })
                    .collect();
                for (id, a) in &sockets {
                    self.live.insert(*id, *a);
                    self.opened.insert(*id);
                }
                self.client.sockets_opened(self.now, request, &sockets);
            }
        }
        panic!("the client keeps asking for sockets");
    }

    pub(crate) fn take_sent(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.sent)
    }
}

/// Drives a server, checking every output: well formed, from a socket the
/// driver holds, and only ever to an address the server has heard from (it
/// is never an open relay, nor a reflector toward third parties).
pub(crate) struct ServerDriver {
    pub(crate) server: Server,
    pub(crate) request_burst: u32,
    pub(crate) now: Instant,
    pub(crate) fed_sockets: BTreeSet<SocketId>,
    pub(crate) heard_from: BTreeSet<SocketAddr>,
    /// Tokens from `LoginOk`s (in Welcomes), with the address they were
    /// sent to.
    pub(crate) tokens: Vec<(u64, SocketAddr)>,
    /// The clients' ends of the channels the test holds, by the clients'
    /// indexes (the receiver of the server's sealed frames): every sealed
    /// frame the server sends is opened with its end and must be what its
    /// plaintext says.
    pub(crate) ends: BTreeMap<u64, ChannelEnd>,
    /// The user name each of those channels logged in, by the same index.
    pub(crate) owners: BTreeMap<u64, String>,
    /// The members of each session, from `SessionCreated` events.
    pub(crate) session_members: BTreeMap<SessionId, [String; 2]>,
    /// Sessions from `Offer`s.
    pub(crate) sessions: Vec<SessionId>,
    /// Each `Offer` as (session, member address).
    pub(crate) members: Vec<(SessionId, SocketAddr)>,
    pub(crate) sent: Vec<Transmit>,
    store: MemoryStore,
}

impl ServerDriver {
    pub(crate) fn new(config: ServerConfig, now: Instant) -> Self {
        ServerDriver {
            request_burst: config.request_burst,
            server: Server::new(config, now),
            now,
            fed_sockets: BTreeSet::new(),
            heard_from: BTreeSet::new(),
            tokens: Vec::new(),
            sessions: Vec::new(),
            members: Vec::new(),
            ends: BTreeMap::new(),
            owners: BTreeMap::new(),
            session_members: BTreeMap::new(),
            sent: Vec::new(),
            store: MemoryStore::new(),
        }
    }

    pub(crate) fn feed(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        self.fed_sockets.insert(socket);
        self.heard_from.insert(from);
        self.server.handle_datagram(self.now, socket, from, payload);
        self.drain();
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.server.handle_timeout(self.now);
        self.drain();
        for _ in 0..64 {
            match self.server.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.server.handle_timeout(self.now);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!("the server's deadline stays at or before now: its driver would spin");
    }

    pub(crate) fn idle(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(at) = self.server.poll_timeout() {
            if at > end {
                break;
            }
            self.advance(at.saturating_duration_since(self.now));
        }
        self.now = end;
    }

    pub(crate) fn drain(&mut self) {
        // Storage requests run at once on an in-memory store, as a driver's
        // store thread would run them (only later).
        loop {
            let batch: Vec<_> = std::iter::from_fn(|| self.server.poll_store_request()).collect();
            if batch.is_empty() {
                break;
            }
            for completion in self.store.execute(batch) {
                self.server.handle_store_completion(self.now, completion);
            }
        }
        while let Some(event) = self.server.poll_event() {
            if let ServerEvent::SessionCreated { session, initiator, responder, .. } = event {
                self.session_members.insert(session, [initiator, responder]);
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            assert_well_formed("the server", &t);
            let own = self.server.sockets().iter().any(|(id, _)| *id == t.socket);
            assert!(own || self.fed_sockets.contains(&t.socket), "the server sent from unknown {:?}", t.socket);
            assert!(self.heard_from.contains(&t.destination), "the server sent to {}, never heard from", t.destination);
            assert_eq!(t.ttl, None, "the server sends with the default TTL");
            if let Some((receiver, _, _)) = layout::parse_sealed(&t.payload) {
                let end = self.ends.get_mut(&receiver);
                let end = end.unwrap_or_else(|| panic!("the server sealed a frame in a channel no client holds"));
                assert_eq!(
                    end.open(&t.payload).as_deref(),
                    t.plaintext.as_deref(),
                    "a sealed frame that does not open to its plaintext"
                );
                // What concerns a session (its offer with its key, relayed
                // frames, its end) is sealed only in its members' channels,
                // and an offer names the other member.
                let owner = &self.owners[&receiver];
                let session = match sent_frame(&t) {
                    Some(Frame::Offer { session, ref peer, .. }) => {
                        let members = self.session_members.get(&session);
                        assert!(members.is_some_and(|m| m.contains(peer) && peer != owner), "{owner} offered {peer}");
                        Some(session)
                    }
                    Some(Frame::Relayed { session, .. } | Frame::SessionEnded { session, .. }) => Some(session),
                    _ => None,
                };
                if let Some(session) = session {
                    let members = self.session_members.get(&session);
                    assert!(
                        members.is_some_and(|m| m.contains(owner)),
                        "{:?} sealed in {owner}'s channel, not a member of {members:?}",
                        sent_frame(&t)
                    );
                }
            }
            match sent_frame(&t) {
                Some(Frame::LoginOk { token, .. }) => self.tokens.push((token, t.destination)),
                Some(Frame::Offer { session, .. }) => {
                    self.sessions.push(session);
                    self.members.push((session, t.destination));
                }
                _ => {}
            }
            self.sent.push(t);
        }
    }

    pub(crate) fn take_sent(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.sent)
    }
}
