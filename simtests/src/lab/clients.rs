//! The `punchline` client as the lab's session checks drive it: a `listen
//! --json` whose path events are kept with the moment each was printed, and
//! a `connect --json` whose one-line report is read at its end.
//!
//! `connect` prints nothing until it exits, so the moment-by-moment view of
//! a session is the listener's: `path-direct` (a new direct path, or the
//! same path to a peer whose NAT rebound, with its `remote`),
//! `path-fell-back` and `session-closed`. A listener started with
//! `--accept-files DIR` also keeps its file outcomes (`file`, `file-failed`,
//! `file-refused`) for the file check.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::host::Binaries;
use super::process::Spawned;
use super::topology::{ALT_SERVER, SERVER};
use super::{LabError, LabOptions};

/// How long the lab waits for `listen` to report itself online.
pub const LISTEN_READY: Duration = Duration::from_secs(15);

/// A change of the listener's path, as `listen --json` printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathChange {
    /// `path-direct` toward `remote`.
    Direct {
        /// The peer's address on the direct path.
        remote: String,
    },
    /// `path-fell-back`: on the relay again.
    FellBack,
    /// `session-closed`, with its `reason` (`peer` when the connector
    /// closed it as it exited).
    Closed {
        /// The close reason's name.
        reason: String,
    },
    /// `relay-transport-changed`: the relay leg rides `transport` (`udp`,
    /// `tcp`) now, on either side. Not a change of path.
    RelayTransport {
        /// The transport's name.
        transport: String,
    },
}

/// One path change and when the lab read it.
#[derive(Clone, Debug)]
pub struct PathEvent {
    /// When the line was read (the listener flushes each line).
    pub at: Instant,
    /// What changed.
    pub change: PathChange,
}

/// A running `punchline listen --json`.
pub struct Listener {
    process: Spawned,
    /// It printed `logged-in` before [`LISTEN_READY`].
    pub online: bool,
    /// It printed `session-opened`.
    opened: bool,
    events: Vec<PathEvent>,
    /// Its `file`, `file-failed` and `file-refused` lines, in order.
    files: Vec<Value>,
}

impl Listener {
    /// Starts `listen` as `user` in `ns` and waits until it is online (or
    /// has said it cannot be, or [`LISTEN_READY`] passed).
    pub fn start(ns: &str, user: &str, bins: &Binaries, opts: &LabOptions) -> Result<Listener, LabError> {
        Listener::start_with(ns, user, bins, opts, &[])
    }

    /// [`Listener::start`] with `flags` after `listen --json`
    /// (`--accept-files DIR`).
    pub fn start_with(
        ns: &str,
        user: &str,
        bins: &Binaries,
        opts: &LabOptions,
        flags: &[&str],
    ) -> Result<Listener, LabError> {
        let client = bins.client.to_string_lossy().into_owned();
        let mut command = vec!["listen", "--json"];
        command.extend_from_slice(flags);
        let process = Spawned::start(&format!("listen {user}"), ns, &client, &client_args(user, opts, &command))?;
        let first = process.wait_for_line(LISTEN_READY, |l| {
            matches!(event_name(l).as_deref(), Some("logged-in" | "login-failed" | "server-unreachable"))
        });
        let online = first.is_some_and(|l| event_name(&l).as_deref() == Some("logged-in"));
        Ok(Listener { process, online, opened: false, events: Vec::new(), files: Vec::new() })
    }

    /// Reads lines until the next file outcome (a `file`, `file-failed` or
    /// `file-refused` line, returned) or `deadline`.
    pub fn wait_file(&mut self, deadline: Instant) -> Option<Value> {
        let seen = self.files.len();
        while let Some((at, line)) = self.process.next_line(deadline) {
            self.record(at, &line);
            if self.files.len() > seen {
                return self.files.last().cloned();
            }
        }
        None
    }

    /// Reads lines until the first `path-direct` (returned) or `deadline`.
    pub fn wait_direct(&mut self, deadline: Instant) -> Option<PathEvent> {
        while let Some((at, line)) = self.process.next_line(deadline) {
            if let Some(e) = self.record(at, &line) {
                if matches!(e.change, PathChange::Direct { .. }) {
                    return Some(e);
                }
            }
        }
        None
    }

    /// Reads every line until `deadline`.
    pub fn read_until(&mut self, deadline: Instant) {
        while let Some((at, line)) = self.process.next_line(deadline) {
            self.record(at, &line);
        }
    }

    /// Takes every line printed so far, without waiting.
    pub fn read_pending(&mut self) {
        for (at, line) in self.process.lines_so_far() {
            self.record(at, &line);
        }
    }

    /// Every path change read so far, in order.
    pub fn events(&self) -> &[PathEvent] {
        &self.events
    }

    /// The listener's path at the end: `direct`, `relay` (opened, or fell
    /// back), `closed` (for any reason but the peer's close), or `none` (no
    /// session seen). The peer closing the session as its `connect` exits
    /// is the end of the check, not a change of path: the path is the one
    /// before it.
    pub fn path(&self) -> &'static str {
        let path_of = |e: &PathEvent| match &e.change {
            PathChange::Direct { .. } => Some("direct"),
            PathChange::FellBack => Some("relay"),
            PathChange::Closed { reason } if reason != "peer" => Some("closed"),
            PathChange::Closed { .. } | PathChange::RelayTransport { .. } => None,
        };
        let last = self.events.iter().rev().find_map(path_of);
        last.unwrap_or(if self.opened { "relay" } else { "none" })
    }

    fn record(&mut self, at: Instant, line: &str) -> Option<PathEvent> {
        let json: Value = serde_json::from_str(line).ok()?;
        let event = json["event"].as_str()?.to_owned();
        let change = match event.as_str() {
            "session-opened" => {
                self.opened = true;
                return None;
            }
            "path-direct" => PathChange::Direct { remote: json["remote"].as_str().unwrap_or("?").to_owned() },
            "path-fell-back" => PathChange::FellBack,
            "session-closed" => PathChange::Closed { reason: json["reason"].as_str().unwrap_or("?").to_owned() },
            "relay-transport-changed" => {
                PathChange::RelayTransport { transport: json["transport"].as_str().unwrap_or("?").to_owned() }
            }
            "file" | "file-failed" | "file-refused" => {
                self.files.push(json);
                return None;
            }
            _ => return None,
        };
        let e = PathEvent { at, change };
        self.events.push(e.clone());
        Some(e)
    }
}

/// A finished `punchline connect --json`.
#[derive(Clone, Debug)]
pub struct ConnectRun {
    /// Its exit code (`None`: killed after its deadline).
    pub exit_code: Option<i32>,
    /// Its one JSON report, if it printed one.
    pub json: Option<Value>,
    /// Its stderr.
    pub stderr: String,
}

impl ConnectRun {
    /// A field of the report, `None` when absent or `null`.
    pub fn field(&self, key: &str) -> Option<Value> {
        self.json.as_ref().and_then(|j| j.get(key).cloned()).filter(|v| !v.is_null())
    }

    /// The report's `outcome`, `failed` without one.
    pub fn outcome(&self) -> String {
        self.field("outcome").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "failed".to_owned())
    }

    /// The stderr, cut short, when there was no report (for diagnosis).
    pub fn error(&self) -> Option<String> {
        self.json.is_none().then(|| {
            let e = self.stderr.trim();
            if e.is_empty() {
                "no JSON from connect".to_owned()
            } else {
                e.chars().take(400).collect()
            }
        })
    }
}

/// Starts `connect PEER --json` as `user` in `ns`, with `flags` before
/// `--json` (`--pings`, `--interval`, ...).
pub fn start_connect(
    ns: &str,
    user: &str,
    peer: &str,
    flags: &[&str],
    bins: &Binaries,
    opts: &LabOptions,
) -> Result<Spawned, LabError> {
    let client = bins.client.to_string_lossy().into_owned();
    let mut command = vec!["connect", peer];
    command.extend_from_slice(flags);
    command.push("--json");
    Spawned::start(&format!("connect {user}"), ns, &client, &client_args(user, opts, &command))
}

/// Waits for a `connect` to end (killed after `timeout`) and reads its report.
pub fn finish_connect(connect: Spawned, timeout: Duration) -> ConnectRun {
    let (exit_code, lines, stderr) = connect.finish(timeout);
    let json = lines.iter().rev().find_map(|l| serde_json::from_str(l).ok());
    ConnectRun { exit_code, json, stderr }
}

/// The client's global flags for `user`, then `command`.
pub fn client_args(user: &str, opts: &LabOptions, command: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--server".into(),
        SERVER.to_string(),
        "--alt-server".into(),
        ALT_SERVER.to_string(),
        "--user".into(),
        user.into(),
    ];
    if let Some(rt) = &opts.runtime {
        args.extend(["--runtime".to_owned(), rt.clone()]);
    }
    args.extend(command.iter().map(|s| s.to_string()));
    args
}

/// The `event` of a `listen --json` line.
pub fn event_name(line: &str) -> Option<String> {
    serde_json::from_str::<Value>(line).ok().and_then(|j| j["event"].as_str().map(str::to_owned))
}

/// Milliseconds from `from` to `to` (0 when `to` is earlier).
pub fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}
