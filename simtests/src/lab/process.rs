//! Processes started inside the lab's namespaces (`ip netns exec`), read line
//! by line, and stopped when their handle drops.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cleanup;
use super::LabError;

/// The `PUNCHLINE_HOME` every process the lab starts gets: the clients'
/// identity keys and pins live there (issue 20), never in the user's own
/// configuration directory.
static CLIENT_HOME: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

/// Sets the directory of [`CLIENT_HOME`] for this lab run.
pub fn set_client_home(dir: &std::path::Path) {
    *CLIENT_HOME.lock().expect("client home") = Some(dir.to_owned());
}

/// Gives `command` the lab's client home.
fn with_home(command: &mut Command) -> &mut Command {
    if let Some(home) = CLIENT_HOME.lock().expect("client home").as_ref() {
        command.env("PUNCHLINE_HOME", home);
    }
    command
}

/// A running process inside a namespace. Dropping it stops it: SIGTERM,
/// then SIGKILL if it has not exited within a second.
pub struct Spawned {
    /// What it is, for messages (`server`, `listen b-3`, ...).
    pub name: String,
    child: Child,
    /// Each stdout line with the moment the reader thread got it, so that
    /// a caller busy elsewhere (flushing a NAT) still learns when it came.
    lines: Receiver<(Instant, String)>,
    pending: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `program args` in namespace `ns`.
    pub fn start(name: &str, ns: &str, program: &str, args: &[String]) -> Result<Spawned, LabError> {
        let mut child = cleanup::spawn(
            with_home(&mut Command::new("ip"))
                .args(["netns", "exec", ns, program])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| LabError::Command(format!("cannot start {name} ({program}): {e}")))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr buffer").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(Spawned { name: name.to_owned(), child, lines, pending: Vec::new(), stderr })
    }

    /// The first stdout line that satisfies `wanted`, within `timeout`.
    pub fn wait_for_line(&self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, line) = self.next_line(deadline)?;
            if wanted(&line) {
                return Some(line);
            }
        }
    }

    /// The next stdout line and when it was read, unless `deadline` passes
    /// (or the process closed its stdout) first.
    pub fn next_line(&self, deadline: Instant) -> Option<(Instant, String)> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.lines.recv_timeout(left).ok()
    }

    /// Every stdout line already read, with when it was read, without
    /// waiting.
    pub fn lines_so_far(&self) -> Vec<(Instant, String)> {
        self.lines.try_iter().collect()
    }

    /// Waits for the process to exit (at most `timeout`, then it is killed)
    /// and returns its exit code (`None` when killed), every stdout line not
    /// read yet, and its stderr.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    // Wait on the output channel rather than a fixed sleep:
                    // a line or the closed pipe wakes us at once.
                    if let Ok((_, line)) = self.lines.recv_timeout(Duration::from_millis(50)) {
                        self.pending.push(line);
                    }
                }
                _ => {
                    self.stop();
                    break None;
                }
            }
        };
        let mut lines = std::mem::take(&mut self.pending);
        // The reader thread ends at EOF, which follows the exit.
        while let Ok((_, line)) = self.lines.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
        (code, lines, self.stderr())
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = Pid::from_raw(self.child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                let _ = self.lines.recv_timeout(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        cleanup::forget_pid(self.child.id());
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `program args` in `ns` to completion; `Err` names the command and
/// carries its stderr when it fails.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Runs a command to completion, `Err` with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    run_with_input(program, args, None)
}

/// [`run`] with `input` written to stdin (for `nft -f -`).
pub fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String, LabError> {
    use std::io::Write;
    let mut child = with_home(&mut Command::new(program))
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Command(format!("cannot run `{program}`: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|e| LabError::Command(format!("`{program}` stdin: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::Command(format!("`{program}`: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
