//! The connection model, end to end over a wire of fixed delay that loses
//! the segments a test names: given/when/then, with exact (simulated) times.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const CLIENT: &str = "10.0.0.2:49152";
const SERVER: &str = "203.0.113.10:3478";
/// One-way delay of the test wire.
const ONE_WAY: Duration = Duration::from_millis(40);

/// What one end did, with the time.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Established(Duration),
    Data(Duration, Vec<u8>),
    PeerClosed(Duration),
    Reset(Duration),
    Failed(Duration),
    GaveUp(Duration),
}

/// Two ends and the segments between them.
struct Wire {
    now: Duration,
    client: Conn,
    server: Option<Conn>,
    /// (arrival, to the server?, segment), in sending order.
    flight: Vec<(Duration, bool, Segment)>,
    /// Segments sent so far, per direction, counting from 0: those whose
    /// index is in `lose_up` (client to server) or `lose_down` are lost.
    sent_up: usize,
    sent_down: usize,
    lose_up: Vec<usize>,
    lose_down: Vec<usize>,
    /// Lose everything from then on, both ways.
    cut_at: Option<Duration>,
    client_seen: Vec<Seen>,
    server_seen: Vec<Seen>,
    /// Times of the client's segments, first or again.
    client_sends: Vec<(Duration, Sending, TcpFlags)>,
}

impl Wire {
    fn new(lose_up: &[usize], lose_down: &[usize]) -> Wire {
        let mut out = Vec::new();
        let client = Conn::connect(Duration::ZERO, CLIENT.parse().unwrap(), SERVER.parse().unwrap(), &mut out);
        let mut w = Wire {
            now: Duration::ZERO,
            client,
            server: None,
            flight: Vec::new(),
            sent_up: 0,
            sent_down: 0,
            lose_up: lose_up.to_vec(),
            lose_down: lose_down.to_vec(),
            cut_at: None,
            client_seen: Vec::new(),
            server_seen: Vec::new(),
            client_sends: Vec::new(),
        };
        w.apply(true, out);
        w
    }

    /// Carries out an end's steps (`client`: the client's).
    fn apply(&mut self, client: bool, steps: Vec<Step>) {
        let now = self.now;
        for step in steps {
            let seen = if client { &mut self.client_seen } else { &mut self.server_seen };
            match step {
                Step::Send { seg, why } => {
                    if client {
                        self.client_sends.push((now, why, seg.flags));
                    }
                    let (count, lose) = if client {
                        (&mut self.sent_up, &self.lose_up)
                    } else {
                        (&mut self.sent_down, &self.lose_down)
                    };
                    let lost = lose.contains(count) || self.cut_at.is_some_and(|at| now >= at);
                    *count += 1;
                    if !lost {
                        self.flight.push((now + ONE_WAY, client, seg));
                    }
                }
                Step::Established => seen.push(Seen::Established(now)),
                Step::Deliver(b) => seen.push(Seen::Data(now, b.to_vec())),
                Step::PeerClosed => seen.push(Seen::PeerClosed(now)),
                Step::Reset => seen.push(Seen::Reset(now)),
                Step::ConnectFailed => seen.push(Seen::Failed(now)),
                Step::GaveUp => seen.push(Seen::GaveUp(now)),
            }
        }
        let end = if client { Some(&mut self.client) } else { self.server.as_mut() };
        if let Some(ack) = end.and_then(Conn::take_ack) {
            self.apply(client, vec![Step::Send { seg: ack, why: Sending::First }]);
        }
    }

    /// Runs every arrival and timer up to `until`.
    fn run(&mut self, until: Duration) {
        loop {
            let arrival = self.flight.iter().map(|f| f.0).min();
            let timers = [self.client.deadline(), self.server.as_ref().and_then(Conn::deadline)];
            let next = arrival.into_iter().chain(timers.into_iter().flatten()).min();
            let Some(at) = next.filter(|&at| at <= until) else { break };
            self.now = at;
            if arrival == Some(at) {
                let k = self.flight.iter().position(|f| f.0 == at).unwrap();
                let (_, to_server, seg) = self.flight.remove(k);
                let mut out = Vec::new();
                if to_server {
                    match self.server.as_mut() {
                        Some(s) => s.receive(at, seg, &mut out),
                        None if seg.flags.is_syn() => {
                            let (l, r) = (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
                            self.server = Some(Conn::accept(at, l, r, &seg, &mut out));
                        }
                        None => {}
                    }
                } else {
                    self.client.receive(at, seg, &mut out);
                }
                self.apply(!to_server, out);
                continue;
            }
            let mut out = Vec::new();
            if self.client.deadline() == Some(at) {
                self.client.on_timeout(at, &mut out);
                self.apply(true, out);
            } else if let Some(s) = self.server.as_mut() {
                s.on_timeout(at, &mut out);
                self.apply(false, out);
            }
        }
        self.now = until;
    }

    fn client_writes(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        self.client.write(self.now, &Bytes::copy_from_slice(data), &mut out);
        self.apply(true, out);
    }
}

#[test]
fn the_handshake_takes_one_round_trip() {
    // Given a wire of 40 ms each way, when the client connects at 0,
    let mut w = Wire::new(&[], &[]);
    w.run(ms(1000));
    // then it is open after one round trip, the server after one and a
    // half (the ACK), and only the three segments of the handshake went.
    assert_eq!(w.client_seen, [Seen::Established(ms(80))]);
    assert_eq!(w.server_seen, [Seen::Established(ms(120))]);
    assert_eq!((w.sent_up, w.sent_down), (2, 1));
    assert_eq!(w.client.deadline(), None, "nothing waits for an ACK");
}

#[test]
fn an_unanswered_syn_is_sent_three_times_and_the_connect_fails_after_seven_seconds() {
    // Given a server that never hears the client,
    let mut w = Wire::new(&[0, 1, 2], &[]);
    w.run(ms(20_000));
    // then the SYN goes at 0, 1 s and 3 s, and the connect fails at 7 s.
    let syns: Vec<(Duration, Sending)> = w.client_sends.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        syns,
        [
            (ms(0), Sending::First),
            (ms(1000), Sending::AfterTimeout(ms(1000))),
            (ms(3000), Sending::AfterTimeout(ms(2000)))
        ]
    );
    assert_eq!(w.client_seen, [Seen::Failed(ms(7000))]);
    assert_eq!(w.client.state(), State::Closed);
}

#[test]
fn a_lost_segment_delays_every_later_byte_until_its_retransmission_arrives() {
    // Given an open connection (RTT 80 ms: the RTO is 3 x 80 = 240 ms),
    // whose first data segment is lost,
    let mut w = Wire::new(&[2], &[]);
    w.run(ms(200));
    // when the client writes three pieces at 200 ms,
    for piece in [b"one".as_slice(), b"two", b"three"] {
        w.client_writes(piece);
    }
    w.run(ms(2000));
    // then nothing reaches the server until the first is sent again, 240 ms
    // later, and then all three arrive together, in order.
    assert_eq!(w.server_seen, [Seen::Established(ms(120)), Seen::Data(ms(480), b"onetwothree".to_vec())]);
    let again: Vec<&(Duration, Sending, TcpFlags)> = w.client_sends.iter().filter(|s| s.1 != Sending::First).collect();
    assert_eq!(again, [&(ms(440), Sending::AfterTimeout(ms(240)), TcpFlags::PSH.with(TcpFlags::ACK))]);
    assert_eq!(w.client.retransmissions, 1);
    assert_eq!(w.client.unacknowledged(), 0, "all acknowledged at last");
}

#[test]
fn an_ack_that_covers_a_retransmission_takes_no_rtt_sample_and_leaves_the_timeout_alone() {
    // Given an open connection (RTT 80 ms: the RTO is 240 ms) whose write
    // at 200 ms is lost and so is its first retransmission (at 440 ms),
    // with a second write at 250 ms held behind the hole until the second
    // retransmission (at 920 ms) fills it and one ACK covers both (1000 ms),
    let mut w = Wire::new(&[2, 4, 6], &[]);
    w.run(ms(200));
    w.client_writes(b"one");
    w.run(ms(250));
    w.client_writes(b"two");
    w.run(ms(2000));
    assert_eq!(w.server_seen, [Seen::Established(ms(120)), Seen::Data(ms(960), b"onetwo".to_vec())]);
    // when the next write (at 2 s) is lost too,
    w.client_writes(b"three");
    w.run(ms(4000));
    // then it is sent again after the same 240 ms: the 750 ms "sample" of
    // the second write (sent once, but acknowledged only because the
    // retransmission filled the hole) was not taken (Karn's algorithm).
    let waits: Vec<(Duration, Duration)> = w
        .client_sends
        .iter()
        .filter_map(|s| match s.1 {
            Sending::AfterTimeout(d) => Some((s.0, d)),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [(ms(440), ms(240)), (ms(920), ms(480)), (ms(2240), ms(240))]);
    assert_eq!(w.server_seen.last(), Some(&Seen::Data(ms(2280), b"three".to_vec())));
}

#[test]
fn the_timeout_doubles_and_the_end_gives_up_after_six_retransmissions() {
    // Given an open connection that goes dark at 1 s, with a write then,
    let mut w = Wire::new(&[], &[]);
    w.run(ms(1000));
    w.cut_at = Some(ms(1000));
    w.client_writes(b"ping");
    w.run(ms(60_000));
    // then the write is sent again after 240 ms (three times the 80 ms
    // round trip sampled in the handshake), doubling each time,
    let waits: Vec<Duration> = w
        .client_sends
        .iter()
        .filter_map(|s| match s.1 {
            Sending::AfterTimeout(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [ms(240), ms(480), ms(960), ms(1920), ms(3840), ms(7680)]);
    // and the client gives up when the sixth goes unanswered.
    let total: Duration = waits.iter().sum::<Duration>() + ms(15_360);
    assert_eq!(w.client_seen.last(), Some(&Seen::GaveUp(ms(1000) + total)));
    assert_eq!(w.client.state(), State::Closed);
}

#[test]
fn a_fin_closes_the_other_end_after_one_way_and_is_acknowledged() {
    // Given an open connection, when the client writes and closes at 1 s,
    let mut w = Wire::new(&[], &[]);
    w.run(ms(1000));
    w.client_writes(b"bye");
    let mut out = Vec::new();
    w.client.close(w.now, &mut out);
    w.apply(true, out);
    w.run(ms(5000));
    // then the server reads the data, then sees the end, 40 ms later,
    assert_eq!(w.server_seen[1..], [Seen::Data(ms(1040), b"bye".to_vec()), Seen::PeerClosed(ms(1040))]);
    // and the client's FIN is acknowledged: nothing is left to send.
    assert!(w.client.fin_sent() && w.client.all_acked());
    assert_eq!(w.client.deadline(), None);
}

#[test]
fn a_reset_closes_the_other_end() {
    let mut w = Wire::new(&[], &[]);
    w.run(ms(1000));
    let rst = w.server.as_mut().unwrap().reset();
    w.flight.push((w.now + ONE_WAY, false, rst));
    w.run(ms(2000));
    assert_eq!(w.client_seen, [Seen::Established(ms(80)), Seen::Reset(ms(1040))]);
    // A closed end ignores what comes after.
    w.client_writes(b"late");
    assert_eq!(w.sent_up, 2);
}

#[test]
fn duplicated_and_reordered_segments_are_delivered_once_in_order() {
    // Given an open connection, when the server receives segments 2 and 3
    // before 1, and 2 twice,
    let mut w = Wire::new(&[], &[]);
    w.run(ms(1000));
    let seg = |seq: u64, data: &'static [u8]| Segment {
        flags: TcpFlags::PSH.with(TcpFlags::ACK),
        seq,
        ack: 1,
        data: Bytes::from_static(data),
    };
    let server = w.server.as_mut().unwrap();
    let mut out = Vec::new();
    for s in [seg(4, b"bbb"), seg(4, b"bbb"), seg(7, b"cc"), seg(1, b"aaa"), seg(1, b"aaa")] {
        server.receive(ms(1000), s, &mut out);
    }
    // then the bytes come out once, in order, when the gap fills.
    let data: Vec<&Step> = out.iter().filter(|s| matches!(s, Step::Deliver(_))).collect();
    assert_eq!(data, [&Step::Deliver(Bytes::from_static(b"aaabbbcc"))]);
    assert_eq!(server.take_ack().map(|a| a.ack), Some(9));
}

#[test]
fn a_write_larger_than_one_segment_is_cut_at_the_mss() {
    let mut w = Wire::new(&[], &[]);
    w.run(ms(1000));
    w.client_writes(&vec![7u8; MSS * 2 + 10]);
    let sizes: Vec<usize> = w.flight.iter().map(|f| f.2.data.len()).collect();
    assert_eq!(sizes, [MSS, MSS, 10]);
    assert_eq!(w.client.unacknowledged(), MSS * 2 + 10);
    w.run(ms(2000));
    // Each segment is read as it arrives, all three 40 ms later.
    let reads: Vec<(Duration, usize)> = w.server_seen[1..]
        .iter()
        .map(|s| match s {
            Seen::Data(at, data) => (*at, data.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reads, [(ms(1040), MSS), (ms(1040), MSS), (ms(1040), 10)]);
}

#[test]
fn a_segment_survives_encoding_and_a_short_payload_is_refused() {
    let seg = Segment { flags: TcpFlags::ACK, seq: 1 << 40, ack: 7, data: Bytes::from_static(b"abc") };
    assert_eq!(Segment::decode(TcpFlags::ACK, &seg.encode()), Some(seg));
    assert_eq!(Segment::decode(TcpFlags::ACK, &Bytes::from_static(&[0; 15])), None);
}
