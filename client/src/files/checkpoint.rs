//! The thread that records partial files' states ([`Checkpointer`]), so
//! the receiving loop never waits for `fdatasync`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use super::partial::State;

enum Job {
    Save { file: Arc<File>, state: State, path: PathBuf, tmp: PathBuf },
    Flush(mpsc::Sender<()>),
}

/// A thread that records checkpoints in order, so the receiving loop never
/// waits for `fdatasync`.
#[derive(Debug)]
pub struct Checkpointer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread.
    pub fn start() -> io::Result<Checkpointer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("punchline-checkpoints".into()).spawn(move || {
            for job in rx {
                match job {
                    Job::Save { file, state, path, tmp } => {
                        if let Err(e) = write_state(&file, &state, &path, &tmp) {
                            // The previous state stays: it claims less, never more.
                            tracing::warn!(error = %e, path = %path.display(), "cannot record a partial file's state");
                        }
                    }
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        })?;
        Ok(Checkpointer { jobs: Some(jobs), thread: Some(thread) })
    }

    /// Queues a checkpoint: `fdatasync` of `file`, then `state` written to
    /// `tmp`, synced and renamed over `path`.
    pub(super) fn save(&self, file: Arc<File>, state: State, path: PathBuf, tmp: PathBuf) {
        self.submit(Job::Save { file, state, path, tmp });
    }

    fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Waits until every checkpoint queued so far is recorded.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.submit(Job::Flush(done));
        let _ = wait.recv();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it recorded the rest.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The partial's groups first, then the state that lists them: a crash
/// between the two leaves the old state, which claims less.
fn write_state(file: &File, state: &State, path: &Path, tmp: &Path) -> io::Result<()> {
    file.sync_data()?;
    let text = serde_json::to_vec(state).map_err(io::Error::other)?;
    {
        let mut out = File::create(tmp)?;
        io::Write::write_all(&mut out, &text)?;
        out.sync_all()?;
    }
    std::fs::rename(tmp, path)
}
