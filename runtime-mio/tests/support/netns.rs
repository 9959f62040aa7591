//! Running one test inside a network namespace of its own, for the runtime
//! crates' wire tests (`runtime-mio/tests/ttl.rs`, and
//! `runtime-smol/tests/fresh_sockets.rs`, which includes this file by path).
//!
//! The test re-executes its own binary, filtered to itself, under
//! `ip netns exec` with `inside_env` set, then deletes the namespace (and
//! with it any nftables rules made inside). It needs root, iproute2 and
//! nftables, and skips loudly without them.

use std::process::Command;

/// Runs `program args`; true when it exited 0.
pub(crate) fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).status().is_ok_and(|s| s.success())
}

fn available(program: &str, version_flag: &str) -> bool {
    Command::new(program).arg(version_flag).output().is_ok_and(|o| o.status.success())
}

/// True when this process is the copy running inside the namespace.
pub(crate) fn inside(inside_env: &str) -> bool {
    std::env::var_os(inside_env).is_some()
}

/// From the outside: runs test `name` again inside a fresh namespace named
/// `{prefix}-{pid}` with loopback up, and asserts it passed and that the
/// namespace was removed. Prints `SKIPPED: needs ... ({why})` and returns
/// when not root or without `ip` or `nft`.
pub(crate) fn run_test_in_fresh_namespace(prefix: &str, name: &str, inside_env: &str, why: &str) {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root || !available("nft", "--version") || !available("ip", "-V") {
        eprintln!("SKIPPED: needs root, iproute2 and nftables ({why})");
        return;
    }
    let ns = format!("{prefix}-{}", std::process::id());
    assert!(run("ip", &["netns", "add", &ns]), "create namespace {ns}");
    let inside = (|| {
        if !run("ip", &["-n", &ns, "link", "set", "lo", "up"]) {
            return None;
        }
        let exe = std::env::current_exe().ok()?;
        let exe = exe.to_str()?;
        Command::new("ip")
            .args(["netns", "exec", &ns, exe, "--exact", name, "--nocapture", "--test-threads=1"])
            .env(inside_env, "1")
            .status()
            .ok()
    })();
    let removed = run("ip", &["netns", "del", &ns]);
    assert!(inside.is_some_and(|s| s.success()), "the test inside namespace {ns} failed (see its output above)");
    assert!(removed, "delete namespace {ns}");
}
