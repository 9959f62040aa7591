//! A bottleneck in miniature: [`Recovery`] with [`NewReno`] and the pacer
//! sending through a link of fixed rate and delay with a drop-tail queue,
//! [`AckTracker`] acknowledging on the far side. Virtual time jumps from
//! event to event; nothing is random.

use std::collections::VecDeque;
use std::time::Duration;

use super::*;

const MSS: u64 = 1200;
/// The bottleneck sends one datagram per millisecond (9.6 Mbit/s).
const TX_TIME: Duration = Duration::from_millis(1);
/// One-way propagation delay, each way: a 20 ms minimum RTT, so the pipe
/// holds 20 datagrams.
const ONE_WAY: Duration = Duration::from_millis(10);
/// The bottleneck's queue, in datagrams (half the pipe).
const QUEUE: usize = 10;
/// Chunks to move.
const CHUNKS: usize = 4000;

/// What a run measured.
struct Run {
    /// From the first send to the last chunk acknowledged.
    elapsed: Duration,
    /// Datagrams the queue dropped.
    dropped: u64,
    /// Every chunk arrived at the receiver.
    delivered: usize,
    /// The window after each acknowledgement, in order.
    windows: Vec<u64>,
    stats: RecoveryStats,
}

fn run() -> Run {
    let t0 = Duration::ZERO;
    let mut now = t0;
    let mut sender: Recovery<usize, Duration> =
        Recovery::<_, Duration>::new(Box::new(NewReno::<Duration>::default()), MSS);
    let mut receiver = AckTracker::<Duration>::new();

    let mut next_new = 0usize;
    let mut resend: VecDeque<usize> = VecDeque::new();
    let mut acked = vec![false; CHUNKS];
    let mut acked_count = 0;
    let mut arrived = vec![false; CHUNKS];

    // The link: departure times of the datagrams queued or in service, and
    // what is propagating each way, in order of arrival.
    let mut link_free = t0;
    let mut queued: VecDeque<Duration> = VecDeque::new();
    let mut to_receiver: VecDeque<(Duration, u64, usize)> = VecDeque::new();
    let mut to_sender: VecDeque<(Duration, AckRanges)> = VecDeque::new();
    let mut dropped = 0;
    let mut windows = Vec::new();

    for _ in 0..1_000_000 {
        while to_receiver.front().is_some_and(|&(at, ..)| at <= now) {
            let (_, pn, chunk) = to_receiver.pop_front().unwrap();
            if receiver.on_received(now, pn) {
                arrived[chunk] = true;
            }
        }
        if receiver.ack_due().is_some_and(|due| due <= now) {
            to_sender.push_back((now + ONE_WAY, receiver.take_ack(now).unwrap()));
        }
        while to_sender.front().is_some_and(|&(at, _)| at <= now) {
            let (_, ack) = to_sender.pop_front().unwrap();
            let outcome = sender.on_ack(now, &ack);
            for chunk in outcome.acked {
                if !acked[chunk] {
                    acked[chunk] = true;
                    acked_count += 1;
                }
            }
            resend.extend(outcome.lost);
            windows.push(sender.window());
        }
        if acked_count == CHUNKS {
            let delivered = arrived.iter().filter(|&&a| a).count();
            return Run { elapsed: now - t0, dropped, delivered, windows, stats: sender.stats() };
        }
        if sender.timeout().is_some_and(|t| t <= now) {
            let outcome = sender.on_timeout(now);
            resend.extend(outcome.lost);
            if outcome.probes > 0 && resend.is_empty() && next_new == CHUNKS {
                // Nothing new to probe with: the oldest packet's contents.
                resend.extend(sender.oldest_in_flight().map(|(_, &chunk)| chunk));
            }
        }

        let mut paced_until = None;
        loop {
            while resend.front().is_some_and(|&c| acked[c]) {
                resend.pop_front();
            }
            let Some(chunk) = resend.front().copied().or((next_new < CHUNKS).then_some(next_new)) else { break };
            if !sender.can_send(MSS) {
                break;
            }
            if let Some(t) = sender.send_time(now, MSS) {
                paced_until = Some(t);
                break;
            }
            if resend.pop_front().is_none() {
                next_new += 1;
            }
            let pn = sender.next_pn();
            sender.on_sent(now, pn, MSS, chunk);
            // Drop-tail: a full queue refuses the datagram.
            while queued.front().is_some_and(|&departs| departs <= now) {
                queued.pop_front();
            }
            if queued.len() >= QUEUE {
                dropped += 1;
                continue;
            }
            let departs = link_free.max(now) + TX_TIME;
            link_free = departs;
            queued.push_back(departs);
            to_receiver.push_back((departs + ONE_WAY, pn, chunk));
        }

        let next = [
            to_receiver.front().map(|&(at, ..)| at),
            to_sender.front().map(|&(at, _)| at),
            receiver.ack_due(),
            sender.timeout(),
            paced_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("something is always pending until every chunk is acknowledged");
        now = now.max(next);
    }
    panic!("the transfer did not finish in a million steps");
}

#[test]
fn newreno_fills_a_drop_tail_bottleneck_with_a_sawtooth() {
    // Given a 1 datagram/ms bottleneck, a 20 ms RTT and a 10-datagram queue,
    // when 4000 chunks are sent through it,
    let run = run();

    // then every chunk arrives, and the link was busy over 80 % of the time;
    assert_eq!(run.delivered, CHUNKS);
    let busy = TX_TIME * CHUNKS as u32;
    let utilisation = busy.as_secs_f64() / run.elapsed.as_secs_f64();
    assert!(utilisation > 0.8, "utilisation {utilisation:.3} over {:?}", run.elapsed);

    // the queue overflowed and the sender saw the losses;
    assert!(run.dropped > 0);
    assert!(run.stats.lost_packets >= run.dropped, "{} lost, {} dropped", run.stats.lost_packets, run.dropped);

    // and the window is a sawtooth: it falls again and again, and grows
    // between falls, around what the pipe and the queue hold (30 datagrams).
    let mut peaks = Vec::new();
    let mut troughs = Vec::new();
    for pair in run.windows.windows(2) {
        if pair[1] < pair[0] {
            peaks.push(pair[0]);
            troughs.push(pair[1]);
        }
    }
    // (Slow start overshoots to twice the pipe and the queue, and its
    // backlog may cost a second halving at once; from then on each fall
    // follows a rise.)
    assert!(peaks.len() >= 5, "{} reductions", peaks.len());
    for i in 1..troughs.len() - 1 {
        assert!(peaks[i + 1] > troughs[i], "the window did not grow between reductions {i} and {}", i + 1);
    }
    // After slow start, each peak is within the pipe plus the queue, give or
    // take the growth of the round trip that overflowed it.
    for &peak in &peaks[1..] {
        assert!((15 * MSS..=45 * MSS).contains(&peak), "peak of {} datagrams", peak / MSS);
    }
}
