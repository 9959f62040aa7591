//! Tests of the reliable stream (they may read the clock; the stream never does).

use super::*;

#[test]
fn out_of_order_messages_are_delivered_in_order_once() {
    let mut s = Stream::new();
    let m = |b: u8| StreamMessage::App(vec![b]);
    assert_eq!(s.receive(1, m(1)), vec![]);
    assert_eq!(s.ack(), (0, 0b1));
    assert_eq!(s.receive(0, m(0)), vec![m(0), m(1)]);
    assert_eq!(s.receive(1, m(1)), vec![], "duplicate dropped");
    assert_eq!(s.ack(), (2, 0));
}

#[test]
fn acked_messages_stop_retransmitting_and_the_rest_back_off() {
    let t0 = Instant::now();
    let mut s = Stream::new();
    let a = s.push(t0, StreamMessage::App(vec![1]));
    let b = s.push(t0, StreamMessage::App(vec![2]));
    assert_eq!(s.retransmit_at(), Some(t0 + INITIAL_RTO));
    s.on_ack(t0 + Duration::from_millis(100), 0, 0b1);
    assert_eq!(s.all_unacked(), vec![a]);
    assert_eq!(s.due(t0 + INITIAL_RTO), vec![a]);
    let _ = b;
    assert_eq!(s.due(t0 + INITIAL_RTO), Vec::<u64>::new());
}
