//! What `listen` does with files offered to it.
//!
//! Without `--accept-files DIR` every offer is refused
//! ([`FileRefusal::NotAccepting`]). With it, an offer is checked again
//! ([`check_name`]: the core did, the receiver does not rely on it), asked
//! about on the terminal with `--ask`, and accepted when the disk has room
//! for what is missing, naming the groups a partial of the same root already
//! holds ([`super::partial`]): a resume, also of a renamed copy.
//!
//! Each verified group the core hands over is written at its offset and
//! answered without waiting for the driver thread; checkpoints record the
//! written groups at most once a second. When every group is written the
//! whole file is hashed again and, only if it matches the root, moved into
//! place under its name (numbered when taken, never replacing a file).
//!
//! A second offer of a root another transfer is still receiving is refused
//! ([`FileRefusal::Busy`]) rather than let two transfers write one partial
//! file. A sender that restarts does not meet it: its new login makes the
//! server close its old sessions, which ends the old transfer here (its
//! groups recorded), so the new offer resumes at once.
//!
//! JSON lines (beside `listen`'s others; `peer` and `path` always there):
//! - `{"event":"file-refused","peer","path","name","reason","message"}`;
//! - `{"event":"file-progress","peer","path","name","bytes","size"}`, once
//!   a second per transfer;
//! - `{"event":"file","peer","path","name","size","root","saved"}`;
//! - `{"event":"file-failed","peer","path","name","reason","message"}`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar};
use punchline_core::client::{ClientEvent, FileDirection, FileFailure, FileId};
use punchline_core::files::{check_name, Hash};
use punchline_core::wire::frame::files::FileRefusal;
use punchline_core::wire::frame::SessionId;
use serde_json::json;

use super::partial::{self, Checkpointer, FinishError, Partial};
use super::progress::{bar_in, bars_wanted, JSON_EVERY};
use super::{abort_name, hex, refusal_name};
use crate::commands::{Listen, Printer};
use crate::display::escaped;
use crate::exit::Failure;
use crate::runtime::ClientRuntime;

/// How often the bars are redrawn.
const BARS_EVERY: Duration = Duration::from_millis(200);

/// An offer, as the core told it.
#[derive(Clone, Debug)]
struct Offer {
    session: SessionId,
    peer: String,
    name: String,
    size: u64,
    root: Hash,
}

/// A transfer being received.
#[derive(Debug)]
struct Transfer {
    offer: Offer,
    bar: Option<ProgressBar>,
    /// The session's path when last seen open.
    path: Option<&'static str>,
}

/// The receiving side of `listen`.
#[derive(Debug)]
pub(crate) struct Receiver {
    dir: Option<PathBuf>,
    json: bool,
    bars: Option<MultiProgress>,
    asker: Option<Asker>,
    checkpoints: Checkpointer,
    /// Open partial files, by root.
    partials: BTreeMap<Hash, Partial>,
    transfers: BTreeMap<FileId, Transfer>,
    /// Offers waiting for the user's answer (`--ask`).
    asking: BTreeMap<FileId, Offer>,
    last_bars: Instant,
    last_json: Instant,
}

impl Receiver {
    /// The receiver for `listen`'s options: checks them (a directory that
    /// exists; `--ask` only on a terminal) and deletes partial files that
    /// expired ([`partial::EXPIRY`]).
    pub(crate) fn new(opts: &Listen) -> Result<Receiver, Failure> {
        if opts.ask && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(Failure::Usage(
                "--ask needs a terminal (stdin and stderr) to ask on; without one, leave it out to accept every \
                 file, or --accept-files out to refuse them"
                    .into(),
            ));
        }
        if let Some(dir) = &opts.accept_files {
            if !dir.is_dir() {
                return Err(Failure::Usage(format!("--accept-files {}: no such directory", dir.display())));
            }
            let deleted = partial::sweep(dir, partial::EXPIRY)?;
            if deleted > 0 {
                eprintln!("punchline: deleted {deleted} partial file(s) older than 7 days from {}", dir.display());
            }
        }
        let bars = (opts.accept_files.is_some() && bars_wanted(opts.json)).then(MultiProgress::new);
        let asker = if opts.ask { Some(Asker::start(bars.clone())?) } else { None };
        let now = Instant::now();
        Ok(Receiver {
            dir: opts.accept_files.clone(),
            json: opts.json,
            bars,
            asker,
            checkpoints: Checkpointer::start()?,
            partials: BTreeMap::new(),
            transfers: BTreeMap::new(),
            asking: BTreeMap::new(),
            last_bars: now,
            last_json: now,
        })
    }

    /// The progress bars, for the printer to hide while it prints.
    pub(crate) fn bars(&self) -> Option<MultiProgress> {
        self.bars.clone()
    }

    /// Handles `event` if it concerns files received; false otherwise.
    pub(crate) fn event(
        &mut self,
        rt: &dyn ClientRuntime,
        printer: &mut Printer,
        event: &ClientEvent,
    ) -> Result<bool, Failure> {
        match event {
            ClientEvent::FileOffered { file, session, peer, name, size, root } => {
                let offer =
                    Offer { session: *session, peer: peer.clone(), name: name.clone(), size: *size, root: *root };
                self.offered(rt, printer, *file, offer)?;
            }
            ClientEvent::FileWrite { file, offset, data } => {
                let Some(root) = self.transfers.get(file).map(|t| t.offer.root) else { return Ok(true) };
                let Some(partial) = self.partials.get_mut(&root) else { return Ok(true) };
                let result = partial.write(*offset, data);
                rt.file_written(*file, *offset, result)?;
                if partial.checkpoint_due(Instant::now()) {
                    partial.checkpoint(&self.checkpoints);
                }
            }
            ClientEvent::FileCompleted { file, direction: FileDirection::Incoming, .. } => {
                self.completed(printer, *file);
            }
            ClientEvent::FileFailed { file, failure } => self.failed(printer, *file, *failure),
            // Outgoing transfers are `send-file`'s.
            ClientEvent::FileAccepted { .. } | ClientEvent::FileRead { .. } | ClientEvent::FileCompleted { .. } => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Between events: the user's answers, progress, checkpoints of
    /// transfers that stalled.
    pub(crate) fn tick(&mut self, rt: &dyn ClientRuntime, printer: &mut Printer) -> Result<(), Failure> {
        while let Some((file, yes)) = self.asker.as_ref().and_then(Asker::answer) {
            let Some(offer) = self.asking.remove(&file) else { continue };
            if yes {
                self.admit(rt, printer, file, offer)?;
            } else {
                rt.refuse_file(file, FileRefusal::Declined)?;
                self.refused(printer, &offer, FileRefusal::Declined, "declined here");
            }
        }
        let now = Instant::now();
        for t in self.transfers.values_mut() {
            t.path = printer.path_of(t.offer.session).or(t.path);
        }
        let asking = self.asker.as_ref().is_some_and(Asker::is_open);
        if self.bars.is_some() && !asking && now >= self.last_bars + BARS_EVERY {
            self.last_bars = now;
            for t in self.transfers.values() {
                if let (Some(bar), Some(p)) = (&t.bar, self.partials.get(&t.offer.root)) {
                    bar.set_position(p.held_bytes());
                }
            }
        }
        if self.json && now >= self.last_json + JSON_EVERY {
            self.last_json = now;
            let lines: Vec<_> = self
                .transfers
                .values()
                .map(|t| {
                    let bytes = self.partials.get(&t.offer.root).map_or(0, Partial::held_bytes);
                    json!({"event": "file-progress", "peer": t.offer.peer, "path": t.path, "name": t.offer.name,
                        "bytes": bytes, "size": t.offer.size})
                })
                .collect();
            for line in lines {
                printer.line(line);
            }
        }
        for p in self.partials.values_mut() {
            if p.checkpoint_due(now) {
                p.checkpoint(&self.checkpoints);
            }
        }
        Ok(())
    }

    /// `listen` stops: every transfer's written groups are recorded.
    pub(crate) fn stop(&mut self) {
        for p in self.partials.values_mut() {
            p.checkpoint(&self.checkpoints);
        }
        self.checkpoints.flush();
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }

    fn offered(
        &mut self,
        rt: &dyn ClientRuntime,
        printer: &mut Printer,
        file: FileId,
        offer: Offer,
    ) -> Result<(), Failure> {
        if self.dir.is_none() {
            rt.refuse_file(file, FileRefusal::NotAccepting)?;
            let why = "files are not accepted here (listen runs without --accept-files)";
            self.refused(printer, &offer, FileRefusal::NotAccepting, why);
            return Ok(());
        }
        if let Err(e) = check_name(&offer.name) {
            rt.refuse_file(file, FileRefusal::BadName)?;
            self.refused(printer, &offer, FileRefusal::BadName, &e.to_string());
            return Ok(());
        }
        match &self.asker {
            Some(asker) => {
                let question = format!(
                    "accept {} ({}) from {}? [y/N] ",
                    escaped(&offer.name),
                    HumanBytes(offer.size),
                    escaped(&offer.peer)
                );
                asker.ask(file, question);
                self.asking.insert(file, offer);
                Ok(())
            }
            None => self.admit(rt, printer, file, offer),
        }
    }

    /// Accepts `offer` if the disk has room for what is missing.
    fn admit(
        &mut self,
        rt: &dyn ClientRuntime,
        printer: &mut Printer,
        file: FileId,
        offer: Offer,
    ) -> Result<(), Failure> {
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        if self.transfers.values().any(|t| t.offer.root == offer.root) {
            rt.refuse_file(file, FileRefusal::Busy)?;
            self.refused(printer, &offer, FileRefusal::Busy, "the same content is being received already");
            return Ok(());
        }
        let fresh = !self.partials.contains_key(&offer.root);
        if fresh {
            match Partial::open(&dir, &offer.name, offer.size, offer.root) {
                Ok(p) => {
                    self.partials.insert(offer.root, p);
                }
                Err(e) => {
                    rt.refuse_file(file, FileRefusal::Declined)?;
                    let why = format!("cannot create the partial file in {}: {e}", dir.display());
                    self.refused(printer, &offer, FileRefusal::Declined, &why);
                    return Ok(());
                }
            }
        }
        let partial = self.partials.get_mut(&offer.root).expect("inserted above");
        let missing = offer.size.saturating_sub(partial.held_bytes());
        match partial::free_space(&dir) {
            Ok(free) if missing > free => {
                if fresh {
                    // Nothing of it was held here before this offer: the
                    // empty file goes again.
                    if let Some(p) = self.partials.remove(&offer.root).filter(|p| p.held_bytes() == 0) {
                        p.abandon();
                    }
                }
                rt.refuse_file(file, FileRefusal::NoSpace)?;
                let why = format!("{} missing, {} free in {}", HumanBytes(missing), HumanBytes(free), dir.display());
                self.refused(printer, &offer, FileRefusal::NoSpace, &why);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot measure the free space; accepting"),
        }
        partial.set_name(&offer.name);
        let held = partial.held_bytes();
        rt.accept_file(file, partial.held())?;
        let bar = self.bars.as_ref().map(|multi| {
            let bar = bar_in(multi, offer.size);
            bar.set_message(format!("{} ← {}", escaped(&offer.name), escaped(&offer.peer)));
            bar.set_position(held);
            bar.reset_eta();
            bar
        });
        let path = printer.path_of(offer.session);
        self.transfers.insert(file, Transfer { offer, bar, path });
        Ok(())
    }

    /// Every group is written: the final check, then into place.
    fn completed(&mut self, printer: &mut Printer, file: FileId) {
        let Some(t) = self.transfers.remove(&file) else { return };
        if let Some(bar) = &t.bar {
            bar.finish_and_clear();
        }
        let Some(mut partial) = self.partials.remove(&t.offer.root) else { return };
        let line = match partial.finish(&self.checkpoints, &t.offer.name) {
            Ok(saved) => json!({"event": "file", "peer": t.offer.peer, "path": t.path, "name": t.offer.name,
                "size": t.offer.size, "root": hex(&t.offer.root), "saved": saved.display().to_string()}),
            Err(e @ FinishError::Mismatch { .. }) => self.failed_line(&t, "verification-failed", &e.to_string()),
            Err(FinishError::Io(e)) => {
                // Kept for a resume, with its groups recorded.
                partial.checkpoint(&self.checkpoints);
                self.checkpoints.flush();
                self.failed_line(&t, "write-failed", &format!("cannot move the file into place: {e}"))
            }
        };
        printer.line(line);
    }

    fn failed(&mut self, printer: &mut Printer, file: FileId, failure: FileFailure) {
        let (reason, message) = match failure {
            FileFailure::Aborted { reason, by_peer } => {
                let by = if by_peer { "the sender ended it" } else { "ended here" };
                (abort_name(reason), format!("{by}: {reason}; what was received is kept for a resume"))
            }
            FileFailure::SessionClosed(reason) => {
                ("session-closed", format!("the session ended ({reason:?}); what was received is kept for a resume"))
            }
            // Outgoing outcomes; `listen` sends nothing.
            FileFailure::Refused(_) | FileFailure::ConnectFailed(_) => ("failed", failure.to_string()),
        };
        if let Some(offer) = self.asking.remove(&file) {
            // Its question may still be on the screen; the answer is ignored.
            let t = Transfer { offer, bar: None, path: None };
            let line = self.failed_line(&t, reason, &message);
            printer.line(line);
            return;
        }
        let Some(t) = self.transfers.remove(&file) else { return };
        if let Some(bar) = &t.bar {
            bar.finish_and_clear();
        }
        if let Some(mut partial) = self.partials.remove(&t.offer.root) {
            partial.checkpoint(&self.checkpoints);
            self.checkpoints.flush();
        }
        let line = self.failed_line(&t, reason, &message);
        printer.line(line);
    }

    fn failed_line(&self, t: &Transfer, reason: &str, message: &str) -> serde_json::Value {
        json!({"event": "file-failed", "peer": t.offer.peer, "path": t.path, "name": t.offer.name,
            "reason": reason, "message": message})
    }

    fn refused(&self, printer: &mut Printer, offer: &Offer, reason: FileRefusal, message: &str) {
        printer.line(json!({"event": "file-refused", "peer": offer.peer, "path": printer.path_of(offer.session),
            "name": offer.name, "reason": refusal_name(reason), "message": message}));
    }
}

/// `--ask`: a thread that asks on stderr and reads the answers from stdin,
/// one offer at a time, so the receiving loop never waits for a human.
#[derive(Debug)]
struct Asker {
    questions: mpsc::Sender<(FileId, String)>,
    answers: mpsc::Receiver<(FileId, bool)>,
    /// A question is on the screen: bars are not redrawn over it.
    open: Arc<AtomicBool>,
}

impl Asker {
    fn start(bars: Option<MultiProgress>) -> std::io::Result<Asker> {
        let (questions, asked) = mpsc::channel::<(FileId, String)>();
        let (answer, answers) = mpsc::channel();
        let open = Arc::new(AtomicBool::new(false));
        let showing = Arc::clone(&open);
        std::thread::Builder::new().name("punchline-ask".into()).spawn(move || {
            let stdin = std::io::stdin();
            let mut closed = false;
            for (file, question) in asked {
                let mut yes = false;
                if !closed {
                    showing.store(true, Ordering::SeqCst);
                    match &bars {
                        Some(bars) => bars.suspend(|| eprint!("{question}")),
                        None => eprint!("{question}"),
                    }
                    let mut line = String::new();
                    // End of input (or an error) answers no, now and after.
                    closed = stdin.lock().read_line(&mut line).map_or(true, |n| n == 0);
                    yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
                    showing.store(false, Ordering::SeqCst);
                }
                if answer.send((file, yes)).is_err() {
                    return;
                }
            }
        })?;
        Ok(Asker { questions, answers, open })
    }

    fn ask(&self, file: FileId, question: String) {
        let _ = self.questions.send((file, question));
    }

    fn answer(&self) -> Option<(FileId, bool)> {
        self.answers.try_recv().ok()
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}
