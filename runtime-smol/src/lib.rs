//! `punchline-smol`: runs Punchline core machines as async tasks on smol, with
//! async handles for applications (`connect(peer).await`, send, a stream of
//! events).
//!
//! Status: placeholder. Issue 5 fills it.
