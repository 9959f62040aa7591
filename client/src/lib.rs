//! `punchline-client`: the `punchline` command-line client around
//! [`punchline_core::client::Client`], on the runtime of your choice.
//!
//! - [`commands`]: `nat-check`, `listen`, `connect`;
//! - [`messages`]: `send` and `inbox` (text messages);
//! - [`files`]: `send-file`, and the files `listen --accept-files` receives;
//! - [`ping`]: the tiny ping protocol `listen` and `connect` speak over
//!   session data;
//! - [`runtime`]: the blocking interface over `punchline-mio` and
//!   `punchline-smol`;
//! - [`nat`]: RFC 4787 names and the nearest simulator preset;
//! - [`stun`]: reflexive discovery against a standard STUN server;
//! - [`identity`]: the user's key file and the pinned server keys;
//! - [`exit`]: errors and their exit codes.

pub mod commands;
pub mod display;
pub mod exit;
pub mod files;
pub mod identity;
pub mod interfaces;
pub mod messages;
pub mod nat;
pub mod ping;
pub mod runtime;
pub mod stun;
