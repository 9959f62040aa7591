//! The transport's ceiling on this machine, for `bench/send-file.sh`: a
//! plain, unencrypted UDP sender and receiver moving `SIZE` bytes over
//! loopback in datagrams of `DATAGRAM` bytes (plain `send`/`recv`, the
//! system calls the runtimes use), and a plain TCP stream moving the same
//! bytes. Prints one JSON object: each one's goodput in Mbit/s (bytes that
//! arrived, over the time from the first to the last), and the UDP loss.
//!
//! `cargo run --release -p punchline-client --example wire_baseline -- SIZE DATAGRAM`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1 << 30);
    let datagram: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1100);
    let (udp_mbps, udp_loss) = udp(size, datagram)?;
    let tcp_mbps = tcp(size)?;
    println!(
        "{}",
        serde_json::json!({"size": size, "datagram": datagram, "udp_mbps": udp_mbps, "udp_loss": udp_loss,
            "tcp_mbps": tcp_mbps})
    );
    Ok(())
}

/// Mbit/s of `bytes` over `elapsed`.
fn mbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

fn udp(size: u64, datagram: usize) -> std::io::Result<(f64, f64)> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.set_read_timeout(Some(Duration::from_millis(300)))?;
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let (mut bytes, mut first, mut last) = (0u64, None, Instant::now());
        while let Ok(n) = rx.recv(&mut buf) {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            bytes += n as u64;
        }
        (bytes, first.map_or(Duration::ZERO, |f| last - f))
    });
    let payload = vec![0x5au8; datagram];
    let mut sent = 0u64;
    while sent < size {
        let n = datagram.min((size - sent) as usize);
        match tx.send(&payload[..n]) {
            Ok(n) => sent += n as u64,
            // A full socket buffer (ENOBUFS) is what a blaster meets: retry.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(105) => {}
            Err(e) => return Err(e),
        }
    }
    let (bytes, elapsed) = receiver.join().expect("receiver thread");
    Ok((mbps(bytes, elapsed), 1.0 - bytes as f64 / size as f64))
}

fn tcp(size: u64) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let (mut bytes, mut first) = (0u64, None);
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            bytes += n as u64;
        }
        Ok((bytes, first.map_or(Duration::ZERO, |f: Instant| f.elapsed())))
    });
    let mut conn = TcpStream::connect(addr)?;
    let block = vec![0x5au8; 1 << 16];
    let mut sent = 0u64;
    while sent < size {
        let n = block.len().min((size - sent) as usize);
        conn.write_all(&block[..n])?;
        sent += n as u64;
    }
    drop(conn);
    let (bytes, elapsed) = receiver.join().expect("receiver thread")?;
    Ok(mbps(bytes, elapsed))
}
