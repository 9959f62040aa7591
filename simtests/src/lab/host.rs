//! What the lab needs from the machine: root, `ip`, `nft`, `conntrack`, and
//! the two Punchline binaries. Every missing piece is named in the error.

use std::path::{Path, PathBuf};

use super::LabError;

/// The binaries the lab runs inside its namespaces.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `punchline-server`.
    pub server: PathBuf,
    /// `punchline` (the client).
    pub client: PathBuf,
}

impl Binaries {
    /// The binaries at the given paths, or by default next to the running
    /// executable (the same cargo target directory).
    pub fn locate(server: Option<PathBuf>, client: Option<PathBuf>) -> Result<Binaries, LabError> {
        let beside = |name: &str| -> PathBuf {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
                .unwrap_or_else(|| PathBuf::from(name))
        };
        let server = server.unwrap_or_else(|| beside("punchline-server"));
        let client = client.unwrap_or_else(|| beside("punchline"));
        let mut missing = Vec::new();
        for (path, what, flag) in
            [(&server, "punchline-server", "--server-bin"), (&client, "punchline", "--client-bin")]
        {
            if !is_executable(path) {
                missing.push(format!(
                    "{what} not found at {} (build it with `cargo build -p {}` or pass {flag} PATH)",
                    path.display(),
                    if what == "punchline" { "punchline-client" } else { "punchline-server" }
                ));
            }
        }
        if missing.is_empty() {
            Ok(Binaries { server, client })
        } else {
            Err(LabError::Missing(missing))
        }
    }
}

/// Checks root and the `ip` and `nft` tools, and with `sessions` (the
/// pairs, reboot and same-LAN checks, as opposed to `--nat-only`) the
/// `conntrack` tool that flushes a NAT's table; `turnserver` and
/// `turnutils_natdiscovery` are optional (their column stays empty).
pub fn check_machine(sessions: bool) -> Result<(), LabError> {
    let mut missing = Vec::new();
    if effective_uid() != Some(0) {
        missing.push("root (network namespaces and nftables need CAP_NET_ADMIN; run as root)".to_owned());
    }
    let conntrack = sessions.then_some(("conntrack", "conntrack"));
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")].into_iter().chain(conntrack) {
        if find_in_path(tool).is_none() {
            missing.push(format!("`{tool}` (apt-get install -y {package})"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Missing(missing))
    }
}

/// Whether coturn's STUN server and NAT discovery tool are installed.
pub fn coturn_available() -> bool {
    find_in_path("turnserver").is_some() && find_in_path("turnutils_natdiscovery").is_some()
}

/// The effective user id, from `/proc/self/status` (no libc call needed).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The first executable `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
