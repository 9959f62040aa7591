//! The text-message commands: `send` and `inbox` (`listen` prints incoming
//! texts as `{"event":"text",...}` lines, see [`crate::commands`]).
//!
//! `send` exits 0 only once every message was acknowledged: by the server
//! after it committed the message to its store (`stored`) or handed it to the
//! online recipient (`delivered`), or by the peer itself over a direct
//! session (`delivered`, path `direct`). Until then the core retransmits,
//! across server restarts (it logs in again and resends under the same ids,
//! which the server and the recipient de-duplicate).

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use punchline_core::client::ClientEvent;
use punchline_core::messaging::{SendTextError, TextFailure};
use punchline_core::wire::frame::{MessageId, TextRejection};
use serde_json::{json, Value};

use crate::commands::{wait_logged_in, Common};
use crate::exit::Failure;
use crate::runtime::Next;

/// Texts `send --stdin` keeps awaiting acknowledgement. The core's window
/// (1,024) sent as one burst overflows the server's socket receive buffer
/// (loopback, default buffer sizes): most of the burst is dropped and waits
/// for the 1 s retransmission, which held the rate near 200 messages/s;
/// 64 in flight keep the server busy without drops.
const IN_FLIGHT: usize = 64;

/// `send` options.
#[derive(Clone, Debug)]
pub struct Send {
    /// The recipient.
    pub peer: String,
    /// The text, or `None` to read one message per line from stdin.
    pub text: Option<String>,
    /// Give up when nothing was acknowledged for this long.
    pub timeout: Duration,
    /// JSON output.
    pub json: bool,
}

/// `inbox` options.
#[derive(Clone, Debug)]
pub struct Inbox {
    /// Limit for the whole inbox to arrive.
    pub timeout: Duration,
    /// JSON output.
    pub json: bool,
}

/// `send`: logs in, sends the text (or every line of stdin, in order), prints
/// one line per acknowledgement, exits once all are acknowledged.
pub fn send(common: &Common, opts: &Send) -> Result<(), Failure> {
    let rt = common.start()?;
    wait_logged_in(rt.as_ref(), common, Instant::now() + common.server_timeout)?;

    // Lines to send: the one text, or stdin read on its own thread so that
    // acknowledgements print while the input still streams.
    let (lines_tx, lines) = mpsc::channel::<Option<String>>();
    match &opts.text {
        Some(text) => {
            let _ = lines_tx.send(Some(text.clone()));
            let _ = lines_tx.send(None);
        }
        None => {
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if lines_tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                let _ = lines_tx.send(None);
            });
        }
    }

    let mut queue: VecDeque<(u64, String)> = VecDeque::new();
    let mut waiting: BTreeMap<MessageId, u64> = BTreeMap::new();
    let (mut read, mut input_done) = (0u64, false);
    let mut first_failure: Option<Failure> = None;
    let mut failed = 0u64;
    let mut last_progress = Instant::now();
    let printer = Printer { json: opts.json, lines: opts.text.is_none() };
    loop {
        while let Ok(line) = lines.try_recv() {
            match line {
                Some(text) => {
                    read += 1;
                    queue.push_back((read, text));
                }
                None => input_done = true,
            }
        }
        // Hand the queued lines to the client, at most IN_FLIGHT awaiting
        // acknowledgement.
        while let Some((line, text)) = queue.front().filter(|_| waiting.len() < IN_FLIGHT) {
            match rt.send_text(&opts.peer, text)? {
                Ok(id) => {
                    waiting.insert(id, *line);
                    queue.pop_front();
                }
                Err(SendTextError::WindowFull) => break,
                Err(e) => {
                    let failure = refused_locally(&opts.peer, e);
                    printer.failed(*line, None, &failure);
                    failed += 1;
                    first_failure.get_or_insert(failure);
                    queue.pop_front();
                }
            }
        }
        if input_done && queue.is_empty() && waiting.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= last_progress + opts.timeout {
            rt.shutdown()?;
            return Err(Failure::Timeout {
                after: humantime::format_duration(opts.timeout).to_string(),
                waiting_for: format!("{} message(s) unacknowledged", waiting.len() + queue.len()),
            });
        }
        let deadline = (now + Duration::from_millis(20)).min(last_progress + opts.timeout);
        match rt.next_event(deadline) {
            Next::Event(ClientEvent::TextAcked { id, status, path }) => {
                if let Some(line) = waiting.remove(&id) {
                    last_progress = Instant::now();
                    printer.acked(line, id, status.as_str(), path.as_str());
                }
            }
            Next::Event(ClientEvent::TextFailed { id, reason }) => {
                if let Some(line) = waiting.remove(&id) {
                    last_progress = Instant::now();
                    let failure = text_failure(&opts.peer, reason);
                    printer.failed(line, Some(id), &failure);
                    failed += 1;
                    first_failure.get_or_insert(failure);
                }
            }
            Next::Event(ClientEvent::PeerKeyChanged { peer, pinned, offered }) if peer == opts.peer => {
                rt.shutdown()?;
                return Err(common.contact_key_changed(&peer, pinned, offered));
            }
            Next::Event(e) if common.login_failure(&e).is_some() => {
                return Err(common.login_failure(&e).expect("checked"))
            }
            Next::Event(_) | Next::Idle => {}
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        }
    }
    rt.shutdown()?;
    match first_failure {
        None => Ok(()),
        Some(first) if read <= 1 => Err(first),
        Some(first) => Err(Failure::TextRefused(format!("{failed} of {read} messages failed; the first: {first}"))),
    }
}

/// `inbox`: logs in, receives and acknowledges every stored text, prints them,
/// exits once the server says none are left.
pub fn inbox(common: &Common, opts: &Inbox) -> Result<(), Failure> {
    let rt = common.start()?;
    let deadline = Instant::now() + opts.timeout;
    wait_logged_in(rt.as_ref(), common, (Instant::now() + common.server_timeout).min(deadline))?;
    if let Err(e) = rt.sync_inbox()? {
        return Err(Failure::Refused(e.to_string()));
    }
    let mut count = 0u64;
    loop {
        match rt.next_event(deadline) {
            Next::Event(ClientEvent::TextReceived { from, id, text }) => {
                count += 1;
                if opts.json {
                    println!("{}", json!({"event": "text", "peer": from, "id": id.to_string(), "text": text}));
                } else {
                    println!("{}: {}", crate::display::escaped(&from), crate::display::escaped(&text));
                }
                // Acknowledged only once shown: a crash before this line
                // makes the server deliver the text again, never lose it.
                std::io::Write::flush(&mut std::io::stdout())?;
                rt.ack_text(&from, id)?;
            }
            Next::Event(ClientEvent::InboxEmpty) => break,
            Next::Event(_) => {}
            Next::Idle => {
                rt.shutdown()?;
                return Err(Failure::Timeout {
                    after: humantime::format_duration(opts.timeout).to_string(),
                    waiting_for: format!("the server did not confirm an empty inbox ({count} received)"),
                });
            }
            Next::Stopped => return Err(std::io::Error::other("the client stopped unexpectedly").into()),
        }
    }
    if !opts.json {
        eprintln!("{count} message(s)");
    }
    rt.shutdown()?;
    Ok(())
}

struct Printer {
    json: bool,
    /// Reading stdin: name the input line of each answer.
    lines: bool,
}

impl Printer {
    fn acked(&self, line: u64, id: MessageId, status: &str, path: &str) {
        if self.json {
            let mut v = json!({"id": id.to_string(), "status": status, "path": path});
            if self.lines {
                v["line"] = line.into();
            }
            println!("{v}");
        } else if self.lines {
            println!("line {line}: {status} via {path} (id {id})");
        } else {
            println!("{status} via {path} (id {id})");
        }
    }

    fn failed(&self, line: u64, id: Option<MessageId>, failure: &Failure) {
        if !self.lines {
            // The error line on stderr says it all.
            return;
        }
        if self.json {
            let v: Value = json!({"line": line, "id": id.map(|i| i.to_string()), "error": failure.to_string()});
            println!("{v}");
        } else {
            println!("line {line}: failed: {failure}");
        }
    }
}

fn refused_locally(peer: &str, e: SendTextError) -> Failure {
    match e {
        SendTextError::BadRecipient => Failure::TextRefused(format!("invalid recipient {peer:?}")),
        SendTextError::NotLoggedIn => Failure::Refused("not logged in".into()),
        e => Failure::TextRefused(e.to_string()),
    }
}

fn text_failure(peer: &str, reason: TextFailure) -> Failure {
    match reason {
        TextFailure::Rejected(TextRejection::UnknownRecipient) => Failure::UnknownPeer(peer.to_owned()),
        TextFailure::Rejected(r) => Failure::TextRefused(r.to_string()),
        TextFailure::PeerKeyChanged => Failure::TextRefused(reason.to_string()),
        TextFailure::Timeout => Failure::Timeout {
            after: "the client's text timeout".into(),
            waiting_for: "no acknowledgement (the server may still hold the message)".into(),
        },
    }
}
