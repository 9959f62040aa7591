//! Everything the lab creates is registered here, so that a Ctrl-C (or
//! SIGTERM) removes it as surely as a normal exit or a failure does.
//!
//! Normal exits and failures clean up through [`NamespaceGuard`]'s `Drop`;
//! the signal handler runs on its own thread and uses the same registry.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Registry {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    /// Files and directories of this run's own (the server's store, the
    /// clients' keys, coturn's pid file, the file check's 64 MiB files):
    /// removed even with `keep`.
    paths: Vec<PathBuf>,
    keep: bool,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { namespaces: Vec::new(), pids: Vec::new(), paths: Vec::new(), keep: false });

/// Installs the Ctrl-C / SIGTERM handler (once per process). With `keep`,
/// namespaces survive the interruption (processes never do).
pub fn install_signal_handler(keep: bool) {
    registry().keep = keep;
    // A second install fails harmlessly (tests may run two labs in one process).
    let _ = ctrlc::set_handler(|| {
        eprintln!("\nlab: interrupted, cleaning up");
        remove_everything_and_exit();
    });
}

/// Kills every registered process and, unless kept, deletes every registered
/// namespace. Holds the registry's lock throughout, and the handler exits
/// while still holding it, so the main thread cannot create anything after
/// the handler has looked.
fn remove_everything_and_exit() -> ! {
    let r = registry();
    for pid in &r.pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    for path in &r.paths {
        remove_from_disk(path);
    }
    if r.keep {
        print_removal_hint(&r.namespaces);
    } else {
        for ns in r.namespaces.iter().rev() {
            delete(ns);
        }
    }
    std::process::exit(130);
}

/// Spawns `command` and records it to kill on interruption, under the
/// registry's lock: the signal handler holds that lock from its first look
/// until the process exits, so nothing starts unseen behind its back.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut r = registry();
    let child = command.spawn()?;
    r.pids.push(child.id());
    Ok(child)
}

/// Creates a namespace and records it for removal, under the registry's
/// lock (see [`spawn`]).
pub fn create_namespace(name: &str) -> Result<(), String> {
    let mut r = registry();
    let out = Command::new("ip").args(["netns", "add", name]).stderr(Stdio::piped()).output();
    match out {
        Ok(out) if out.status.success() => {
            r.namespaces.push(name.to_owned());
            Ok(())
        }
        Ok(out) => Err(format!("`ip netns add {name}` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("cannot run `ip netns add {name}`: {e}")),
    }
}

/// Creates a directory of the run's own and records it for removal on an
/// interruption ([`remove`] removes it otherwise).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut r = registry();
    std::fs::create_dir_all(dir)?;
    r.paths.push(dir.to_owned());
    Ok(())
}

/// Records a file or directory that something the lab runs will create,
/// for removal on an interruption ([`remove`] removes it otherwise).
pub fn register(path: &Path) {
    registry().paths.push(path.to_owned());
}

/// Removes a file or directory recorded by [`create_dir`] or [`register`]
/// (whatever is there) and forgets it.
pub fn remove(path: &Path) {
    let mut r = registry();
    remove_from_disk(path);
    r.paths.retain(|p| p != path);
}

fn remove_from_disk(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// Forgets a process that has exited.
pub fn forget_pid(pid: u32) {
    registry().pids.retain(|p| *p != pid);
}

/// Deletes a namespace (its veth ends die with it) and forgets it.
pub fn delete_namespace(name: &str) {
    let mut r = registry();
    delete(name);
    r.namespaces.retain(|n| n != name);
}

fn delete(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
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
