//! `punchline-server`: the deployable server (signaling, presence, relay,
//! offline messages) around [`punchline_core::server::Server`].
//!
//! Status: placeholder. Issue 5 adds the binary (`--listen`, `--alt-listen`,
//! `--runtime`, `--config`), issue 7 the durable offline store.
