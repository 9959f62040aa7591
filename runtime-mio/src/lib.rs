//! `punchline-mio`: drives any Punchline core machine (client or server) over
//! mio UDP sockets and timers.
//!
//! Status: placeholder. Issue 5 fills it: drain transmits and events after every
//! input, sleep until `poll_timeout`, honour requests for extra sockets, set the
//! per-packet TTL, shut down cleanly.
