//! Running one test inside a network namespace of its own, for the runtime
//! crates' wire tests (`runtime-mio/tests/ttl.rs`, and
//! `runtime-smol/tests/fresh_sockets.rs`, which includes this file by path).
//!
//! The test re-executes its own binary, filtered to itself, under
//! `ip netns exec` with `inside_env` set, then deletes the namespace (and
//! with it any nftables rules made inside). It needs root, iproute2 and
//! nftables: the tests that use it are `#[ignore]`d, and fail, naming what is
//! missing, when run without them.

use std::process::{Command, Stdio};

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
/// namespace was removed. Fails when not root or without `ip` or `nft`: the
/// caller is an ignored test that was asked to run, and must not pass
/// without running.
pub(crate) fn run_test_in_fresh_namespace(prefix: &str, name: &str, inside_env: &str, why: &str) {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let missing: Vec<&str> = [
        (!is_root).then_some("root"),
        (!available("ip", "-V")).then_some("`ip` (apt-get install -y iproute2)"),
        (!available("nft", "--version")).then_some("`nft` (apt-get install -y nftables)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(missing.is_empty(), "this test needs {} ({why})", missing.join(", "));
    let ns = format!("{prefix}-{}", std::process::id());
    assert!(run("ip", &["netns", "add", &ns]), "create namespace {ns}");
    let inside = (|| {
        if !run("ip", &["-n", &ns, "link", "set", "lo", "up"]) {
            return None;
        }
        let exe = std::env::current_exe().ok()?;
        let exe = exe.to_str()?;
        Command::new("ip")
            // `--include-ignored`: the test is ignored, and without it the
            // filtered run would run nothing and pass.
            .args(["netns", "exec", &ns, exe, "--exact", name, "--include-ignored", "--nocapture", "--test-threads=1"])
            .env(inside_env, "1")
            .stderr(Stdio::inherit())
            .output()
            .ok()
    })();
    let removed = run("ip", &["netns", "del", &ns]);
    let inside = inside.unwrap_or_else(|| panic!("could not run the test inside namespace {ns}"));
    let stdout = String::from_utf8_lossy(&inside.stdout);
    print!("{stdout}");
    assert!(inside.status.success(), "the test inside namespace {ns} failed (see its output above)");
    // It ran, rather than being filtered out.
    assert!(stdout.contains("test result: ok. 1 passed"), "the test did not run inside namespace {ns}");
    assert!(removed, "delete namespace {ns}");
}
