//! `punchline send-file PEER PATH`: offers a file and serves its content.
//!
//! The file is hashed once ([`tree_of`]: BLAKE3 root and group manifest, in
//! 1 MiB reads) while the client logs in, then offered under its own file
//! name. The core asks for the content a 16 KiB group at a time
//! (`FileRead`); each is read at its offset (`pread`) and handed back
//! without waiting for the driver thread. The command exits 0 once the
//! receiver holds every group verified and written.
//!
//! A file that changes while it is sent no longer matches the root it was
//! offered with: the receiver's verification catches the first changed
//! group and the transfer ends with exit 18. A file that shrinks cannot be
//! read at the end: exit 1.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use punchline_core::client::{
    ClientEvent, ConnectFailure, FileDirection, FileFailure, FileSource, PathKind, SendFileError,
};
use punchline_core::files::check_name;
use punchline_core::wire::frame::files::FileAbort;
use punchline_core::wire::frame::Transport;
use serde_json::json;

use super::partial::tree_of;
use super::progress::{hashing_bar, SendProgress};
use super::{hex, mbps, path_name};
use crate::commands::{close_reason, wait_logged_in, Common};
use crate::exit::Failure;
use crate::runtime::{ClientRuntime, Next};

/// How often the transfer's progress is read from the client.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// `send-file` options.
#[derive(Clone, Debug)]
pub struct SendFile {
    /// The recipient.
    pub peer: String,
    /// The file.
    pub path: PathBuf,
    /// Limit for the offer to be answered (the session included).
    pub timeout: Duration,
    /// JSON lines.
    pub json: bool,
}

/// What the transfer measured, for the final line.
#[derive(Debug)]
struct Sent {
    name: String,
    size: u64,
    root: [u8; 32],
    resumed: u64,
    seconds: f64,
    path: &'static str,
}

/// `send-file`: hashes the file, offers it to the peer, serves its reads,
/// prints the result.
pub fn send_file(common: &Common, opts: &SendFile) -> Result<(), Failure> {
    let name = offered_name(&opts.path)?;
    if !punchline_core::server::valid_user_name(&opts.peer) || opts.peer == common.user {
        return Err(Failure::Usage(format!("{:?} cannot be a peer (invalid name, or yourself)", opts.peer)));
    }
    let file = File::open(&opts.path).map_err(|e| cannot_read(&opts.path, &e))?;
    let meta = file.metadata().map_err(|e| cannot_read(&opts.path, &e))?;
    if !meta.is_file() {
        return Err(Failure::Usage(format!("{} is not a regular file", opts.path.display())));
    }
    let size = meta.len();
    // The login runs on the client's thread while the file is hashed.
    let rt = common.start()?;
    let result = hash(&file, &name, size, opts.json, &opts.path).and_then(|source| {
        wait_logged_in(rt.as_ref(), common, Instant::now() + common.server_timeout)?;
        transfer(rt.as_ref(), common, opts, &file, source)
    });
    rt.shutdown()?;
    let sent = result?;
    print_done(opts, &sent);
    Ok(())
}

/// The name the receiver sees: PATH's file name, if a receiver would take it.
fn offered_name(path: &Path) -> Result<String, Failure> {
    let Some(name) = path.file_name() else {
        return Err(Failure::Usage(format!("{} names no file", path.display())));
    };
    let Some(name) = name.to_str() else {
        return Err(Failure::Usage(format!("the file name {name:?} is not UTF-8; rename the file to send it")));
    };
    match check_name(name) {
        Ok(_) => Ok(name.to_owned()),
        Err(e) => Err(Failure::Usage(format!("{e}: receivers refuse it; rename the file to send it"))),
    }
}

fn cannot_read(path: &Path, e: &std::io::Error) -> Failure {
    Failure::Io(std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))
}

/// The file's root and manifest, from one pass over it.
fn hash(file: &File, name: &str, size: u64, json: bool, path: &Path) -> Result<FileSource, Failure> {
    let bar = hashing_bar(json, name, size);
    let tree = tree_of(file, size, |done| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (root, manifest) = tree.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            Failure::Io(std::io::Error::other(format!("{} changed (shrank) while it was hashed", path.display())))
        }
        _ => cannot_read(path, &e),
    })?;
    Ok(FileSource { name: name.to_owned(), size, root, manifest })
}

/// Offers the file and serves it until the receiver holds all of it.
fn transfer(
    rt: &dyn ClientRuntime,
    common: &Common,
    opts: &SendFile,
    disk: &File,
    source: FileSource,
) -> Result<Sent, Failure> {
    let (name, size) = (source.name.clone(), source.size);
    let id = match rt.send_file(&opts.peer, source)? {
        Ok(id) => id,
        Err(SendFileError::BadUserName) => {
            return Err(Failure::Usage(format!("{:?} cannot be a peer (invalid name, or yourself)", opts.peer)))
        }
        Err(SendFileError::NotLoggedIn) => return Err(Failure::Refused("login refused".into())),
        Err(SendFileError::BadName(e)) => return Err(Failure::Usage(e.to_string())),
        Err(e @ SendFileError::BadManifest) => return Err(std::io::Error::other(e.to_string()).into()),
    };
    let mut progress = SendProgress::new(opts.json, &name, size, &opts.peer);
    let offered = Instant::now();
    let mut accepted: Option<(Instant, u64)> = None;
    let mut read_error: Option<std::io::Error> = None;
    let (mut path, mut relay_tcp) = (PathKind::Relay, false);
    let mut next_poll = offered + POLL_EVERY;
    let result = loop {
        let now = Instant::now();
        if accepted.is_none() && now >= offered + opts.timeout {
            rt.cancel_file(id)?;
            break Err(Failure::Timeout {
                after: humantime::format_duration(opts.timeout).to_string(),
                waiting_for: format!("{:?} did not answer the offer", opts.peer),
            });
        }
        if now >= next_poll {
            next_poll = now + POLL_EVERY;
            if let Some(p) = rt.file_progress(id)?.filter(|p| p.accepted) {
                path = p.path;
                progress.update(now, p.done, path_name(path, relay_tcp), &opts.peer);
            }
        }
        let deadline = if accepted.is_none() { next_poll.min(offered + opts.timeout) } else { next_poll };
        let event = match rt.next_event(deadline) {
            Next::Event(e) => e,
            Next::Idle => continue,
            Next::Stopped => break Err(std::io::Error::other("the client stopped unexpectedly").into()),
        };
        match event {
            ClientEvent::FileRead { file, offset, len } if file == id => {
                let mut data = vec![0u8; len as usize];
                match disk.read_exact_at(&mut data, offset) {
                    Ok(()) => rt.file_data(id, offset, data)?,
                    Err(e) => {
                        read_error.get_or_insert(e);
                        rt.file_read_failed(id)?;
                    }
                }
            }
            ClientEvent::FileAccepted { file, resumed } if file == id => {
                let now = Instant::now();
                accepted = Some((now, resumed));
                progress.accepted(now, resumed);
            }
            ClientEvent::FileCompleted { file, direction: FileDirection::Outgoing, size, root } if file == id => {
                let (at, resumed) = accepted.unwrap_or((offered, 0));
                break Ok(Sent {
                    name: name.clone(),
                    size,
                    root,
                    resumed,
                    seconds: at.elapsed().as_secs_f64(),
                    path: path_name(path, relay_tcp),
                });
            }
            ClientEvent::FileFailed { file, failure } if file == id => {
                break Err(failure_of(common, opts, failure, read_error.take()));
            }
            ClientEvent::PathDirect { socket, remote, .. } => path = PathKind::Direct { socket, remote },
            ClientEvent::PathFellBack { .. } => path = PathKind::Relay,
            ClientEvent::RelayTransportChanged { transport, .. } => relay_tcp = transport == Transport::Tcp,
            ClientEvent::PeerKeyChanged { peer, pinned, offered } if peer == opts.peer => {
                break Err(common.contact_key_changed(&peer, pinned, offered));
            }
            e => {
                if let Some(failure) = common.login_failure(&e) {
                    break Err(failure);
                }
            }
        }
    };
    progress.finish();
    result
}

/// The exit a failed transfer gives.
fn failure_of(common: &Common, opts: &SendFile, failure: FileFailure, read_error: Option<std::io::Error>) -> Failure {
    let peer = &opts.peer;
    match failure {
        FileFailure::Refused(reason) => Failure::FileRefused(reason.to_string()),
        FileFailure::Aborted { reason: FileAbort::DiskFull, .. } => Failure::DiskFull(format!(
            "{peer:?} has no room for the file: its disk is full (it keeps what it received, and sending again \
             resumes once there is room)"
        )),
        FileFailure::Aborted { reason: FileAbort::VerificationFailed, .. } => Failure::VerificationFailed(format!(
            "verification failed: what was sent does not match the BLAKE3 root {} was offered with (did it \
             change while it was sent?)",
            opts.path.display()
        )),
        FileFailure::Aborted { reason: FileAbort::ReadFailed, by_peer: false } => match read_error {
            Some(e) => cannot_read(&opts.path, &e),
            None => Failure::Io(std::io::Error::other(format!("cannot read {}", opts.path.display()))),
        },
        FileFailure::Aborted { reason, by_peer: true } => {
            Failure::FileAborted(format!("{peer:?} ended the transfer: {reason}"))
        }
        FileFailure::Aborted { reason, by_peer: false } => {
            Failure::FileAborted(format!("the transfer ended: {reason}"))
        }
        FileFailure::SessionClosed(reason) => Failure::PeerGone(format!(
            "the session with {peer:?} closed ({}): the transfer stopped; sending the same file again resumes \
             from what {peer:?} holds",
            close_reason(reason, common)
        )),
        FileFailure::ConnectFailed(reason) => match reason {
            ConnectFailure::UnknownPeer => Failure::UnknownPeer(peer.clone()),
            ConnectFailure::PeerOffline => Failure::PeerOffline(peer.clone()),
            ConnectFailure::ServerUnreachable => Failure::ServerUnreachable(common.server),
            ConnectFailure::Refused(code) => Failure::Refused(format!("{code:?}")),
            ConnectFailure::PeerKeyChanged => Failure::Refused("the peer's key is not the one pinned".into()),
        },
    }
}

fn print_done(opts: &SendFile, sent: &Sent) {
    let goodput = mbps(sent.size - sent.resumed.min(sent.size), sent.seconds);
    if opts.json {
        println!(
            "{}",
            json!({"event": "done", "peer": opts.peer, "name": sent.name, "size": sent.size, "root": hex(&sent.root),
                "goodput_mbps": goodput, "seconds": (sent.seconds * 1000.0).round() / 1000.0, "path": sent.path,
                "resumed_bytes": sent.resumed})
        );
    } else {
        let resumed = if sent.resumed > 0 {
            format!(", {} of it resumed", indicatif::HumanBytes(sent.resumed))
        } else {
            String::new()
        };
        println!(
            "sent {} ({}{resumed}) to {} over {} in {:.1} s: {goodput} Mbit/s; BLAKE3 {}",
            crate::display::escaped(&sent.name),
            indicatif::HumanBytes(sent.size),
            crate::display::escaped(&opts.peer),
            sent.path,
            sent.seconds,
            hex(&sent.root)
        );
    }
}
