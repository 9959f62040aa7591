//! Everything the lab creates is registered here, so that a Ctrl-C (or
//! SIGTERM) removes it as surely as a normal exit or a failure does.
//!
//! Normal exits and failures clean up through [`NamespaceGuard`]'s `Drop`;
//! the signal handler runs on its own thread and uses the same registry.

use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Registry {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    keep: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { namespaces: Vec::new(), pids: Vec::new(), keep: false });

/// Installs the Ctrl-C / SIGTERM handler (once per process). With `keep`,
/// namespaces survive the interruption (processes never do).
pub fn install_signal_handler(keep: bool) {
    registry().keep = keep;
    // A second install fails harmlessly (tests may run two labs in one process).
    let _ = ctrlc::set_handler(|| {
        eprintln!("\nlab: interrupted, cleaning up");
        remove_everything();
        std::process::exit(130);
    });
}

/// Kills every registered process and, unless kept, deletes every registered
/// namespace.
pub fn remove_everything() {
    let (pids, namespaces, keep) = {
        let mut r = registry();
        (std::mem::take(&mut r.pids), std::mem::take(&mut r.namespaces), r.keep)
    };
    for pid in pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    if keep {
        print_removal_hint(&namespaces);
    } else {
        for ns in namespaces.iter().rev() {
            delete_namespace(ns);
        }
    }
}

/// Records a process to kill on interruption.
pub fn register_pid(pid: u32) {
    registry().pids.push(pid);
}

/// Forgets a process that has exited.
pub fn forget_pid(pid: u32) {
    registry().pids.retain(|p| *p != pid);
}

/// Records a namespace to delete on interruption.
pub fn register_namespace(name: &str) {
    registry().namespaces.push(name.to_owned());
}

/// Deletes a namespace (its veth ends die with it) and forgets it.
pub fn delete_namespace(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    registry().namespaces.retain(|n| n != name);
}

/// Forgets namespaces that `--keep` leaves behind, and says how to remove them.
pub fn print_removal_hint(namespaces: &[String]) {
    if namespaces.is_empty() {
        return;
    }
    eprintln!(
        "lab: --keep: left {} namespaces for inspection (e.g. `ip netns exec {} nft list ruleset`).",
        namespaces.len(),
        namespaces[0]
    );
    eprintln!("lab: remove them with: for ns in {}; do ip netns del $ns; done", namespaces.join(" "));
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock must not stop the cleanup.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}
