//! Drivers: a client and a server fed datagrams and time, checking every
//! datagram they send.

use super::*;

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

/// A sealed datagram a machine sent, and the frame its plaintext showed.
type Shown = (Vec<u8>, Vec<u8>);

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
    /// Every frame the client sealed in its channel, as the server's end
    /// opened it.
    pub(crate) to_server: Vec<Frame>,
    /// The payload of every relay frame the client sent, by session.
    pub(crate) relays: Vec<(SessionId, Vec<u8>)>,
    /// The test's ends of the sessions it plays the peer of (see
    /// [`ClientDriver::follow`]): every peer frame the client seals for one
    /// of them, directly or in a relay frame, must open there to the frame
    /// its plaintext shows.
    pub(crate) peer_ends: BTreeMap<SessionId, SessionCipher>,
    /// Sessions the test follows, and the peer datagrams the client sent
    /// for them that wait for the test's end (the client may hold its keys
    /// first).
    followed: BTreeMap<SessionId, Vec<Shown>>,
    /// The latest peer datagram the client sealed for each session, for
    /// reflecting it back.
    pub(crate) peer_sent: BTreeMap<SessionId, Vec<u8>>,
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
            to_server: Vec::new(),
            relays: Vec::new(),
            peer_ends: BTreeMap::new(),
            followed: BTreeMap::new(),
            peer_sent: BTreeMap::new(),
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

    /// Starts following `session` afresh (the client opened it again):
    /// the peer datagrams it sends are checked once the test holds its end
    /// ([`ClientDriver::set_peer_end`]).
    pub(crate) fn follow(&mut self, session: SessionId) {
        self.peer_ends.remove(&session);
        self.followed.insert(session, Vec::new());
    }

    /// The test's end of `session` (a followed one) exists now: what the
    /// client sent for it so far must open there.
    pub(crate) fn set_peer_end(&mut self, session: SessionId, end: SessionCipher) {
        self.peer_ends.insert(session, end);
        self.check_peer_datagrams();
    }

    /// Opens the client's peer datagrams of followed sessions whose end the
    /// test holds: each must open, in the order sent, to the frame its
    /// plaintext showed.
    fn check_peer_datagrams(&mut self) {
        for (session, waiting) in self.followed.iter_mut() {
            let Some(end) = self.peer_ends.get_mut(session) else { continue };
            for (datagram, shown) in waiting.drain(..) {
                let opened = end.open(self.now, &datagram);
                assert_eq!(
                    opened.as_deref(),
                    Ok(&shown[..]),
                    "the client's datagram of {session} opens to another frame"
                );
            }
        }
    }

    /// A `PeerSealed` datagram the client sent for `session`, showing
    /// `shown`.
    fn sent_peer_datagram(&mut self, session: SessionId, datagram: Vec<u8>, shown: Vec<u8>) {
        self.peer_sent.insert(session, datagram.clone());
        if let Some(waiting) = self.followed.get_mut(&session) {
            waiting.push((datagram, shown));
        }
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
                    // the channel the test's server holds; but a relay frame
                    // carrying a sealed peer frame, which its plaintext shows
                    // with that peer frame inside.
                    let opened = end.open(&t.payload);
                    let Some(opened) = opened else { panic!("a sealed frame that does not open in its channel") };
                    let frame = Frame::decode(&opened).expect("the plaintext decodes (checked), and so must this");
                    match &frame {
                        Frame::Relay { token, session, payload } if payload[0] == layout::tag::PEER_SEALED => {
                            let shown = t.plaintext.as_deref().map(Frame::decode);
                            let Some(Ok(Frame::Relay { token: t2, session: s2, payload: inner })) = shown else {
                                panic!("a relay frame shown as {shown:?}");
                            };
                            assert_eq!((t2, s2), (*token, *session), "a relay frame shown for another session");
                            self.sent_peer_datagram(*session, payload.clone(), inner);
                        }
                        _ => assert_eq!(
                            Some(&opened[..]),
                            t.plaintext.as_deref(),
                            "a sealed frame that is not its plaintext"
                        ),
                    }
                    if let Frame::Relay { session, payload, .. } = &frame {
                        self.relays.push((*session, payload.clone()));
                    }
                    self.to_server.push(frame);
                }
                if let Some((session, _, _)) = layout::parse_sealed_as(layout::tag::PEER_SEALED, &t.payload) {
                    let shown = t.plaintext.as_deref().expect("a PeerSealed shows its frame (checked)").to_vec();
                    self.sent_peer_datagram(SessionId(session), t.payload.to_vec(), shown);
                }
                assert!(
                    self.live.contains_key(&t.socket),
                    "the client sent from {:?}, not held by its driver",
                    t.socket
                );
                self.sent.push(t);
            }
            let mut asked = Vec::new();
            let mut offered = Vec::new();
            while let Some(e) = self.client.poll_event() {
                match &e {
                    // A hostile peer's file is taken, to exercise receiving;
                    // nothing it sends can verify against its random root.
                    ClientEvent::FileOffered { file, .. } => offered.push(*file),
                    ClientEvent::FileWrite { offset, data, .. } => {
                        panic!("{} bytes at {offset} written from a hostile peer's file", data.len())
                    }
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
            for file in &offered {
                self.client.accept_file(self.now, *file, &[]);
            }
            if asked.is_empty() && offered.is_empty() {
                self.check_peer_datagrams();
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
    /// The key each name is bound to: its first proved login's (the test's
    /// logins record it). An offer names the other member by it.
    pub(crate) bound: BTreeMap<String, PublicKey>,
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
            bound: BTreeMap::new(),
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
                // What concerns a session (its offer, relayed datagrams, its
                // end) is sealed only in its members' channels, and an offer
                // names the other member, and the key the directory binds
                // its name to (the session's keys come from the members'
                // own handshake with it: the server holds none).
                let owner = &self.owners[&receiver];
                let session = match sent_frame(&t) {
                    Some(Frame::Offer { session, ref peer, peer_key, .. }) => {
                        let members = self.session_members.get(&session);
                        assert!(members.is_some_and(|m| m.contains(peer) && peer != owner), "{owner} offered {peer}");
                        assert_eq!(self.bound.get(peer), Some(&PublicKey(peer_key)), "{owner} offered {peer}'s key");
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
