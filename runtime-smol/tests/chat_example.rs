//! Runs `examples/chat.rs` as two processes on loopback: one serves and
//! waits, the other connects; lines typed on each side are printed on the
//! other. Timeouts only guard against hangs.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(60);

/// Builds the example with the profile this test was built with (so the
/// dependencies `cargo test` built are reused; a no-op when the example is up
/// to date) and returns the executable's path, as cargo reports it.
fn chat_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let release = exe.parent().and_then(|deps| deps.parent()).is_some_and(|dir| dir.ends_with("release"));
    let profile = if release { ["--profile", "release"] } else { ["--profile", "test"] };
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--message-format=json", "-p", "punchline-smol", "--example", "chat"])
        .args(profile)
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "building the chat example failed: {}", String::from_utf8_lossy(&out.stderr));
    // One JSON message per line; the example's artifact names its executable.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let artifact = stdout
        .lines()
        .find(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""name":"chat""#))
        .expect("cargo reported the chat example");
    let path = artifact.split(r#""executable":""#).nth(1).and_then(|rest| rest.split('"').next()).expect("a path");
    PathBuf::from(path.replace("\\\\", "\\"))
}

/// A running chat: its stdin, and its stdout and stderr lines as they come.
struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far: stdout and stderr are read by two threads, so
    /// their lines may arrive in either order.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Chat {
    fn start(args: &[&str]) -> Chat {
        let mut child = Command::new(chat_binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the chat example");
        let (tx, lines) = channel();
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for (pipe, prefix) in [(Box::new(out) as Box<dyn std::io::Read + Send>, "out"), (Box::new(err), "err")] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(format!("{prefix} {line}"));
                }
            });
        }
        let stdin = child.stdin.take();
        Chat { child, stdin, lines, seen: Default::default() }
    }

    /// Waits for a line containing `needle` (or finds one already read),
    /// returning it.
    fn expect(&self, needle: &str) -> String {
        if let Some(line) = self.seen.borrow().iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.borrow_mut().push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {needle:?} in {:?}: {e}", self.seen.borrow()),
            }
        }
    }

    fn type_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").expect("write to the chat");
        stdin.flush().expect("flush");
    }

    /// Closes stdin (Ctrl-D) and waits for a clean exit.
    fn quit(mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "chat exited with {status}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "chat did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_chat_processes_talk_and_go_direct() {
    // Given Bob's chat serving on a free loopback port and waiting
    let mut bob = Chat::start(&["--serve", "127.0.0.1:0", "--user", "bob", "--bind", "127.0.0.1:0"]);
    let serving = bob.expect("[serving on ");
    let addr = serving.trim_end_matches(']').rsplit(' ').next().expect("an address").to_owned();
    bob.expect("[waiting for someone to connect]");

    // When Alice's chat connects to him
    let mut alice = Chat::start(&["--server", &addr, "--user", "alice", "--peer", "bob", "--bind", "127.0.0.1:0"]);
    alice.expect("[talking to bob");
    bob.expect("[talking to alice");

    // Then lines typed on one side are printed on the other, both ways
    alice.type_line("hello bob");
    assert_eq!(bob.expect("alice: "), "out alice: hello bob");
    bob.type_line("hi alice");
    assert_eq!(alice.expect("bob: "), "out bob: hi alice");

    // And the session went direct
    alice.expect("[direct to 127.0.0.1:");

    // When Alice quits, Bob is told and both exit cleanly
    alice.quit();
    bob.expect("[session closed: Peer]");
    bob.quit();
}
