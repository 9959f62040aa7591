//! Tests of the reliable stream. Time is a `Duration` since an arbitrary
//! epoch (see [`Moment`](crate::timer::Moment)): like the stream, the tests read no clock.

use super::*;

#[test]
fn out_of_order_messages_are_delivered_in_order_once() {
    let mut s = Stream::<Duration>::new();
    let m = |b: u8| StreamMessage::App(vec![b]);
    assert_eq!(s.receive(1, m(1)), vec![]);
    assert_eq!(s.ack(), (0, 0b1));
    assert_eq!(s.receive(0, m(0)), vec![m(0), m(1)]);
    assert_eq!(s.receive(1, m(1)), vec![], "duplicate dropped");
    assert_eq!(s.ack(), (2, 0));
}

#[test]
fn acked_messages_stop_retransmitting_and_the_rest_back_off() {
    // Given two messages sent at t0, before any round trip was measured,
    let t0 = Duration::from_secs(1000);
    let mut s = Stream::new();
    let a = s.push(t0, StreamMessage::App(vec![1]));
    let _b = s.push(t0, StreamMessage::App(vec![2]));
    assert_eq!(s.retransmit_at(), Some(t0 + INITIAL_RTO));
    // when the second is acknowledged selectively after 100 ms,
    s.on_ack(t0 + Duration::from_millis(100), 0, 0b1);
    // then only the first stays unacknowledged, due after the measured RTO
    // (RFC 6298: srtt 100 ms + 4 x rttvar 50 ms = 300 ms),
    let rto = Duration::from_millis(300);
    assert_eq!(s.all_unacked(), vec![a]);
    assert_eq!(s.retransmit_at(), Some(t0 + rto));
    let t1 = t0 + INITIAL_RTO;
    assert_eq!(s.due(t1), vec![a]);
    // and once retransmitted it backs off to twice the RTO.
    assert_eq!(s.retransmit_at(), Some(t1 + 2 * rto));
    assert_eq!(s.due(t1 + 2 * rto - Duration::from_millis(1)), Vec::<u64>::new());
    assert_eq!(s.due(t1 + 2 * rto), vec![a]);
}
