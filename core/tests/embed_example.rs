//! Runs `examples/embed_custom_loop.rs` (the proof that the core embeds in
//! any event loop) as a test: a server and two clients on loopback, driven
//! by `std::net::UdpSocket` alone.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/embed_custom_loop.rs"]
mod example;

#[test]
fn the_custom_loop_example_goes_direct_and_echoes() {
    // Given / when: the example runs end to end.
    let summary = example::run().unwrap_or_else(|e| panic!("the example failed: {e}"));
    // Then alice's hello came back over a direct path.
    assert!(summary.starts_with("bob echoed \"hello\" over the direct path"), "{summary}");
}
