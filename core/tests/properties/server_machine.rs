//! A stateful server under attack (2b).

use super::*;

// ---------------------------------------------------------------------------
// 2b. A stateful server: learned tokens and sessions reach its deep paths
// ---------------------------------------------------------------------------

/// Where a frame to the server comes from.
#[derive(Clone, Debug)]
enum From {
    Pool(usize),
    /// The address the substituted token was handed to.
    TokenOwner,
    Any(SocketAddr),
}

/// Which learned values to substitute into a generated frame. Token and
/// session indexes count back from the most recently learned.
#[derive(Clone, Debug)]
struct Pick {
    token: Option<usize>,
    session: Option<usize>,
    name: Option<usize>,
}

#[derive(Clone, Debug)]
enum ServerOp {
    /// Hostile bytes.
    Raw {
        socket: SocketId,
        from: From,
        bytes: Vec<u8>,
    },
    /// A client frame with learned tokens, sessions and names substituted,
    /// maybe mutated.
    Frame {
        socket: SocketId,
        from: From,
        frame: Frame,
        pick: Pick,
        mutations: Vec<Mutation>,
    },
    /// An honest login of a pool name from a pool address, maybe followed
    /// by its NAT profile (a connect to a user waits for its profile, or for
    /// a grace period after its login).
    Login {
        name: usize,
        from: usize,
        request: u32,
        profile: Option<NatProfile>,
    },
    /// A connect to a pool name with a recently learned token, from the
    /// address it was handed to.
    HonestConnect {
        token: usize,
        peer: usize,
        request: u32,
    },
    /// A relay frame from a member of a learned session, with that member's
    /// latest token.
    HonestRelay {
        member: usize,
        payload: Vec<u8>,
    },
    /// The same request, `count` times at one instant from one address.
    Flood {
        from: usize,
        count: usize,
        stun: bool,
    },
    Advance(Duration),
}

fn from() -> impl Strategy<Value = From> + Clone {
    prop_oneof![
        2 => (0usize..5).prop_map(From::Pool),
        5 => Just(From::TokenOwner),
        1 => socket_addr().prop_map(From::Any),
    ]
}

fn pick() -> impl Strategy<Value = Pick> + Clone {
    let recent = || prop_oneof![1 => Just(None), 6 => (0usize..3).prop_map(Some), 2 => any::<usize>().prop_map(Some)];
    let name = prop_oneof![1 => Just(None), 4 => (0..NAMES.len()).prop_map(Some)];
    (recent(), recent(), name).prop_map(|(token, session, name)| Pick { token, session, name })
}

fn server_op() -> impl Strategy<Value = ServerOp> + Clone {
    let mutations = prop_oneof![4 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    let frame = prop_oneof![
        2 => client_to_server_frame(),
        2 => connect(),
        3 => relay(),
        1 => offer_ack(),
        1 => keepalive(),
    ];
    prop_oneof![
        2 => (socket_id(), from(), garbage()).prop_map(|(socket, from, bytes)| ServerOp::Raw { socket, from, bytes }),
        8 => (socket_id(), from(), frame, pick(), mutations)
            .prop_map(|(socket, from, frame, pick, mutations)| {
                ServerOp::Frame { socket, from, frame, pick, mutations }
            }),
        // Mostly each name from its own address, so logins do not keep
        // replacing each other.
        2 => (0..NAMES.len(), prop_oneof![4 => Just(None), 1 => (0usize..5).prop_map(Some)], 0u32..2,
              prop_oneof![1 => Just(None), 3 => nat_profile().prop_map(Some)])
            .prop_map(|(name, from, request, profile)| {
                ServerOp::Login { name, from: from.unwrap_or(name), request, profile }
            }),
        3 => (0usize..3, 0..NAMES.len(), 0u32..3)
            .prop_map(|(token, peer, request)| ServerOp::HonestConnect { token, peer, request }),
        3 => (any::<usize>(), payload(MAX_RELAY_PAYLOAD))
            .prop_map(|(member, payload)| ServerOp::HonestRelay { member, payload }),
        1 => (0usize..2, 65usize..=100, any::<bool>())
            .prop_map(|(from, count, stun)| ServerOp::Flood { from, count, stun }),
        1 => prop_oneof![4 => (0u64..2_000).prop_map(Duration::from_millis), 1 => advance()]
            .prop_map(ServerOp::Advance),
    ]
}

fn server_config() -> impl Strategy<Value = ServerConfig> {
    let alternate = select(vec![Some(server_alt()), None, Some(addr("203.0.113.10:3479"))]);
    (alternate, any::<bool>()).prop_map(|(alternate, tight)| {
        let mut config = ServerConfig::new(server_primary(), alternate);
        if tight {
            config.user_timeout = Duration::from_secs(20);
            config.offer_attempts = 3;
            config.request_burst = 4;
            config.request_rate = 1;
            config.relay_burst_bytes = 3000;
            config.relay_rate_bytes = 500;
            config.max_sources = 3;
            config.max_sessions_per_user = 1;
        }
        config
    })
}

/// The `i`-th most recent of `items`.
fn recent<T: Copy>(items: &[T], i: Option<usize>) -> Option<T> {
    let i = i?;
    (!items.is_empty()).then(|| items[items.len() - 1 - i % items.len()])
}

/// Substitutes learned tokens, sessions and pool names into `frame`;
/// returns the address of the substituted token's owner.
fn patch(frame: &mut Frame, pick: &Pick, tokens: &[(u64, SocketAddr)], sessions: &[SessionId]) -> Option<SocketAddr> {
    let learned = recent(tokens, pick.token);
    let (tok, sid) = (learned.map(|(t, _)| t), recent(sessions, pick.session));
    let name = pick.name.map(|i| NAMES[i].to_owned());
    match frame {
        Frame::Login { user, .. } => *user = name.unwrap_or_else(|| user.clone()),
        Frame::Keepalive { token, .. } | Frame::Profile { token, .. } | Frame::Logout { token } => {
            *token = tok.unwrap_or(*token)
        }
        Frame::Lookup { token, user, .. } => {
            *token = tok.unwrap_or(*token);
            *user = name.unwrap_or_else(|| user.clone());
        }
        Frame::Connect { token, peer, .. } => {
            *token = tok.unwrap_or(*token);
            *peer = name.unwrap_or_else(|| peer.clone());
        }
        Frame::OfferAck { token, session } | Frame::Relay { token, session, .. } => {
            *token = tok.unwrap_or(*token);
            *session = sid.unwrap_or(*session);
        }
        _ => {}
    }
    learned.map(|(_, owner)| owner)
}

fn run_server_ops(d: &mut ServerDriver, ops: &[ServerOp]) -> Result<(), TestCaseError> {
    let pool = client_pool();
    for op in ops {
        let (socket, from, bytes) = match op {
            ServerOp::Raw { socket, from, bytes } => (*socket, from.clone(), bytes.clone()),
            ServerOp::Frame { socket, from, frame, pick, mutations } => {
                let mut frame = frame.clone();
                let owner = patch(&mut frame, pick, &d.tokens, &d.sessions);
                let from = match (from, owner) {
                    (From::TokenOwner, Some(owner)) => From::Any(owner),
                    (f, _) => f.clone(),
                };
                (*socket, from, mutate(frame.encode(), mutations))
            }
            ServerOp::Login { name, from, request, profile } => {
                let login = Frame::Login {
                    request: *request,
                    user: NAMES[*name].to_owned(),
                    host_candidates: vec![pool[*from]],
                };
                d.feed(SocketId(0), pool[*from], &login.encode());
                let answer = d.take_sent().iter().find_map(|t| match Frame::decode(&t.payload) {
                    Ok(Frame::LoginOk { token, .. }) => Some(token),
                    _ => None,
                });
                match (answer, profile) {
                    (Some(token), Some(profile)) => {
                        (SocketId(0), From::Pool(*from), Frame::Profile { token, profile: *profile }.encode())
                    }
                    _ => continue,
                }
            }
            ServerOp::HonestConnect { token, peer, request } => {
                let Some((token, from)) = recent(&d.tokens, Some(*token)) else { continue };
                let connect = Frame::Connect {
                    token,
                    request: *request,
                    peer: NAMES[*peer].to_owned(),
                    profile: NatProfile::default(),
                };
                (SocketId(0), From::Any(from), connect.encode())
            }
            ServerOp::HonestRelay { member, payload } => {
                let Some((session, from)) = recent(&d.members, Some(*member % 4)) else { continue };
                let Some(&(token, _)) = d.tokens.iter().rev().find(|(_, owner)| *owner == from) else { continue };
                let relay = Frame::Relay { token, session, payload: payload.clone() };
                (SocketId(0), From::Any(from), relay.encode())
            }
            ServerOp::Flood { from, count, stun } => {
                // When one source sends more requests at one instant than
                // the request burst allows.
                let before = d.server.stats().clone();
                let request = if *stun {
                    stun::binding_request(stun::TransactionId([7; 12]))
                } else {
                    Frame::Discover { nonce: 1, answer_from: AnswerFrom::Same }.encode()
                };
                // (Floods come from their own addresses, so the clients above
                // keep their request budget.)
                let flooder = [addr("192.0.2.66:1"), addr("[2001:db8::66]:1")][*from % 2];
                for _ in 0..*count {
                    d.feed(SocketId(0), flooder, &request);
                }
                // Then at least the excess is refused and counted.
                let refused = d.server.stats().rate_limited - before.rate_limited;
                let excess = (*count as u64).saturating_sub(d.request_burst.into());
                prop_assert!(refused >= excess, "{} of {} refused", refused, count);
                let _ = d.take_sent();
                continue;
            }
            ServerOp::Advance(by) => {
                d.advance(*by);
                continue;
            }
        };
        let from = match from {
            From::Pool(i) => pool[i],
            From::TokenOwner => pool[0],
            From::Any(a) => a,
        };
        let before = d.server.stats().clone();
        d.feed(socket, from, &bytes);
        let after = d.server.stats().clone();
        let sent = d.take_sent();
        // Then undecodable input is counted once as malformed (STUN may be
        // rate-limited first).
        if undecodable(&bytes) {
            if wire::classify(&bytes) == wire::Kind::Stun && bytes.len() <= MAX_DATAGRAM {
                prop_assert_eq!(stats_sum(&after), stats_sum(&before) + 1);
            } else {
                prop_assert_eq!(&after, &ServerStats { malformed: before.malformed + 1, ..before.clone() });
            }
        }
        // And a Relayed frame leaves only for a Relay that came in, carrying
        // its session and payload unchanged, and is counted.
        let relayed: Vec<Frame> = sent
            .iter()
            .filter_map(|t| Frame::decode(&t.payload).ok())
            .filter(|f| matches!(f, Frame::Relayed { .. }))
            .collect();
        prop_assert_eq!(after.relayed - before.relayed, relayed.len() as u64);
        if let Some(Frame::Relayed { session, payload }) = relayed.first() {
            prop_assert_eq!(relayed.len(), 1);
            let relay = Frame::decode(&bytes);
            let Ok(Frame::Relay { session: s, payload: p, .. }) = relay else {
                return Err(TestCaseError::fail(format!("a Relayed frame left for {relay:?}")));
            };
            prop_assert_eq!((session, payload), (&s, &p));
        }
        // And no counter ever goes down.
        prop_assert!(after.malformed >= before.malformed && after.bad_token >= before.bad_token);
        prop_assert!(after.rate_limited >= before.rate_limited && after.relay_refused >= before.relay_refused);
        prop_assert!(after.relay_throttled >= before.relay_throttled && after.stun_answered >= before.stun_answered);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn a_server_survives_hostile_clients_and_forgets_them_when_idle(
        config in server_config(),
        ops in vec(server_op(), 1..40),
    ) {
        // Given a server with default or tight limits, and an alternate
        // address (four sockets), one on the same IP (two), or none (one).
        let now = Instant::now();
        let mut d = ServerDriver::new(config, now);
        // When honest logins, frames carrying learned tokens, sessions and
        // names (maybe mutated), garbage and floods arrive, with time passing.
        run_server_ops(&mut d, &ops)?;
        // Then nothing panicked, every transmit was well formed and went to
        // an address the server had heard from (checked by the driver), and
        // after ten silent minutes every user and session is gone.
        d.idle(Duration::from_secs(600));
        prop_assert_eq!(d.server.online_users().count(), 0);
        prop_assert_eq!(d.server.session_count(), 0);
    }
}
