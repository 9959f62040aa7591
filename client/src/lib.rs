//! `punchline-client`: the `punchline` command-line client (`nat-check`,
//! `listen`, `connect`, `send`, `inbox`) around [`punchline_core::client::Client`].
//!
//! Status: placeholder. Issue 5 fills it.
