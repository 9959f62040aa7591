//! The `punchline-server` binary: start-up lines, signals, bad input, and a
//! STUN client no one here wrote (coturn's `turnutils_stunclient`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_punchline-server");

/// A running server, killed when dropped.
struct Running {
    child: Child,
    /// (role, address) lines printed at start, UDP sockets first, then TCP
    /// listeners (role `tcp`).
    listening: Vec<(String, SocketAddr)>,
    /// The message store's directory (`--data`), removed when dropped.
    _data: tempfile::TempDir,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let data = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(SERVER)
            .args(args)
            .arg("--data")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut listening = Vec::new();
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).expect("read") > 0, "server exited before listening");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("listening") => {}
                Some("key") => break,
                _ => panic!("unexpected line {line:?}"),
            }
            let role = words.next().expect("role").to_owned();
            let addr = words.next().expect("address").parse().expect("an address");
            listening.push((role, addr));
        }
        Running { child, listening, _data: data }
    }

    /// The UDP sockets' roles and addresses.
    fn udp(&self) -> Vec<(&str, SocketAddr)> {
        self.listening.iter().filter(|(r, _)| r != "tcp").map(|(r, a)| (r.as_str(), *a)).collect()
    }

    /// The TCP listeners' addresses.
    fn tcp(&self) -> Vec<SocketAddr> {
        self.listening.iter().filter(|(r, _)| r == "tcp").map(|(_, a)| *a).collect()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.expect("kill runs").success());
    }

    /// The exit code and stderr. The deadline only turns a hang into a
    /// failure.
    fn wait_exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut stderr = String::new();
                use std::io::Read;
                let _ = self.child.stderr.take().expect("piped").read_to_string(&mut stderr);
                return (status.code(), stderr);
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prints_every_socket_and_stops_cleanly_on_sigterm_and_sigint() {
    for (runtime, signal) in [("mio", "TERM"), ("smol", "INT"), ("mio", "INT"), ("smol", "TERM")] {
        // Given a server with an alternate address on another loopback IP.
        let mut server =
            Running::start(&["--listen", "127.0.0.1:0", "--alt-listen", "127.0.0.2:0", "--runtime", runtime]);
        // Then it printed the primary, the alternate and both crossed sockets.
        let udp = server.udp();
        let roles: Vec<&str> = udp.iter().map(|(r, _)| *r).collect();
        assert_eq!(roles, ["primary", "alternate", "crossed", "crossed"]);
        let (p, a) = (udp[0].1, udp[1].1);
        assert_ne!(p.port(), 0);
        assert_eq!(udp[2].1, SocketAddr::new(p.ip(), a.port()));
        assert_eq!(udp[3].1, SocketAddr::new(a.ip(), p.port()));
        // And its TCP listener on the primary address, on either runtime.
        assert_eq!(server.tcp(), vec![p], "{runtime}");
        // When it gets the signal, then it exits 0 and says so.
        server.signal(signal);
        let (code, stderr) = server.wait_exit();
        assert_eq!(code, Some(0), "{runtime} SIG{signal}: {stderr}");
        assert!(stderr.contains("stopped"), "{stderr}");
    }
}

#[test]
fn bad_flags_and_bad_config_exit_2_with_one_clear_line() {
    let run = |args: &[&str]| Command::new(SERVER).args(args).output().expect("runs");

    let out = run(&["--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'not-an-address' for '--listen <ADDR>'"));

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no listen address"));

    let dir = std::env::temp_dir().join(format!("punchline-server-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nlisten_port = 7\n").expect("write");
    let out = run(&["--config", bad.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: unknown field `listen_port`"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = run(&["--config", dir.join("missing.toml").to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));

    // A good file is used: the server listens where it says.
    let good = dir.join("good.toml");
    std::fs::write(&good, "listen = \"127.0.0.1:0\"\nruntime = \"smol\"\nuser_timeout = \"30s\"\n").expect("write");
    let mut server = Running::start(&["--config", good.to_str().expect("utf-8 path")]);
    assert_eq!(server.listening[0].0, "primary");
    assert_eq!(server.listening[0].1.ip().to_string(), "127.0.0.1");
    server.signal("TERM");
    assert_eq!(server.wait_exit().0, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let cwd = tempfile::tempdir().expect("temp dir");
    let out = Command::new(SERVER).args(["--listen", &addr]).current_dir(cwd.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot bind {addr}")));
}

/// Sends a STUN Binding request over TCP to `to` and returns the mapped
/// address of the answer (RFC 8489 §6.2.2: the message as it is, framed by
/// its own length).
fn stun_over_tcp(to: SocketAddr) -> SocketAddr {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(to).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let tid = [7u8; 12];
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(&tid);
    stream.write_all(&request).expect("write");
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).expect("a response");
    assert_eq!(&header[..2], &[0x01, 0x01], "a Binding success response");
    assert_eq!(&header[8..], &tid);
    let mut body = vec![0; u16::from_be_bytes([header[2], header[3]]) as usize];
    stream.read_exact(&mut body).expect("its attributes");
    // XOR-MAPPED-ADDRESS (0x0020), IPv4: family, port and address XORed
    // with the magic cookie.
    let mut at = 0;
    while at + 4 <= body.len() {
        let (kind, len) =
            (u16::from_be_bytes([body[at], body[at + 1]]), u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = &body[at + 4..at + 4 + len as usize];
        if kind == 0x0020 && value[1] == 0x01 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ 0x2112;
            let ip = std::net::Ipv4Addr::new(value[4] ^ 0x21, value[5] ^ 0x12, value[6] ^ 0xa4, value[7] ^ 0x42);
            let mapped = SocketAddr::from((ip, port));
            assert_eq!(mapped, stream.local_addr().expect("addr"));
            return mapped;
        }
        at += 4 + (len as usize).div_ceil(4) * 4;
    }
    panic!("no XOR-MAPPED-ADDRESS in {body:?}");
}

#[test]
fn tcp_is_served_on_the_primary_address_and_every_tcp_listen_address() {
    // Given a server with one more TCP listener on the command line, and
    // another started from a config file.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tcp.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\ntcp_listen = [\"127.0.0.1:0\"]\n").expect("write");
    let from_flags = Running::start(&["--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"]);
    let from_file = Running::start(&["--config", file.to_str().expect("utf-8 path")]);
    for server in [&from_flags, &from_file] {
        // Then it prints the TCP listener on the primary's own address
        // first, then the extra one on a port of its own.
        let primary = server.udp()[0].1;
        let tcp = server.tcp();
        assert_eq!(tcp.len(), 2, "{:?}", server.listening);
        assert_eq!(tcp[0], primary);
        assert_ne!(tcp[1].port(), primary.port());
        // And both answer STUN Binding over TCP.
        for addr in tcp {
            stun_over_tcp(addr);
        }
    }
}

#[test]
fn no_tcp_turns_tcp_off_and_does_not_go_with_tcp_listen() {
    // Given a server started with --no-tcp.
    let server = Running::start(&["--listen", "127.0.0.1:0", "--no-tcp"]);
    // Then it prints no TCP listener, and its primary port refuses TCP.
    assert_eq!(server.tcp(), []);
    assert!(std::net::TcpStream::connect(server.udp()[0].1).is_err());

    // --no-tcp with --tcp-listen, on the command line or in the file, is
    // a usage error.
    let out = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0", "--no-tcp", "--tcp-listen", "127.0.0.1:0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{out:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("both.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nno_tcp = true\ntcp_listen = [\"127.0.0.1:0\"]\n").expect("write");
    let out = Command::new(SERVER).arg("--config").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-tcp (no_tcp) turns TCP off"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_tcp_port_in_use_is_a_clear_error_on_either_runtime() {
    // Given a port taken on TCP (and free on UDP).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let cwd = tempfile::tempdir().expect("temp dir");
    // When the server listens there, then it says TCP cannot listen there.
    let out = Command::new(SERVER).args(["--listen", &addr]).current_dir(cwd.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on TCP {addr}")), "{out:?}");
    // When it is only a --tcp-listen address, the same.
    let out = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0", "--tcp-listen", &addr])
        .current_dir(cwd.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on TCP {addr}")), "{out:?}");
    // And with the smol runtime, the same; a free --tcp-listen address is
    // listened on beside the primary.
    let out = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0", "--runtime", "smol", "--tcp-listen", &addr])
        .current_dir(cwd.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on TCP {addr}")), "{out:?}");
    drop(taken);
    let mut server = Running::start(&["--listen", "127.0.0.1:0", "--runtime", "smol", "--tcp-listen", &addr]);
    let primary = server.udp()[0].1;
    assert_eq!(server.tcp(), vec![primary, addr.parse().expect("addr")]);
    server.signal("TERM");
    assert_eq!(server.wait_exit().0, Some(0));
}

#[test]
fn the_store_defaults_to_punchline_data_under_the_working_directory() {
    // Given a working directory without a data directory.
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    // When the server has started (it prints its sockets after opening the store).
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("read");
    let _ = child.kill();
    let _ = child.wait();
    // Then the store lives in ./punchline-data.
    assert!(line.starts_with("listening primary"), "{line:?}");
    assert!(cwd.path().join("punchline-data/messages.sqlite3").is_file(), "no store file under punchline-data");
}

#[test]
fn an_unusable_data_directory_or_a_corrupt_store_exits_3_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |data: &std::path::Path| {
        Command::new(SERVER).args(["--listen", "127.0.0.1:0"]).arg("--data").arg(data).output().expect("runs")
    };
    // Given a regular file where the directory should be.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unusable data directory"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Given a store file full of garbage.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("messages.sqlite3"), vec![0x5a; 8192]).expect("write");
    let out = run(&data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("is not a usable Punchline message store"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
#[ignore = "needs coturn's `turnutils_stunclient` (apt-get install -y coturn)"]
fn coturn_stunclient_gets_its_mapped_address() {
    if let Err(e) = Command::new("turnutils_stunclient").output() {
        panic!("this test needs coturn's `turnutils_stunclient` (apt-get install -y coturn): {e}");
    }
    for runtime in ["mio", "smol"] {
        // Given our server on 127.0.0.1.
        let server = Running::start(&["--listen", "127.0.0.1:0", "--runtime", runtime]);
        let port = server.listening[0].1.port();
        // When coturn's STUN client asks it from another loopback address.
        let out = Command::new("turnutils_stunclient")
            .args(["-p", &port.to_string(), "-L", "127.0.0.5", "127.0.0.1"])
            .output()
            .expect("stunclient runs");
        // Then it reports that address as its reflexive address.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.contains("UDP reflexive addr:")).unwrap_or_else(|| panic!("{stdout}"));
        let mapped: SocketAddr = line.rsplit(' ').next().expect("address").parse().expect("an address");
        assert_eq!(mapped.ip().to_string(), "127.0.0.5", "{runtime}: {line}");
        assert_ne!(mapped.port(), 0);
    }
}
