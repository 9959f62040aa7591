//! What the driver costs: one message's round trip on a direct session
//! (Alice sends, Bob's task echoes, Alice receives) over loopback, against
//! the same ping-pong between two bare `std::net::UdpSocket`s in the same run.
//! The ratio is the figure to watch; the absolute times depend on the machine.
//!
//! `cargo bench -p punchline-smol --bench roundtrip`

use std::net::UdpSocket;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use punchline_smol::{BoundServer, Client, ClientConfig, ServerConfig};

const PAYLOAD: [u8; 64] = [7; 64];

fn baseline_std_udp(c: &mut Criterion) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    a.connect(b_addr).unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = b.recv_from(&mut buf) {
            if n == 0 {
                break;
            }
            b.send_to(&buf[..n], from).unwrap();
        }
    });
    let mut buf = [0u8; 2048];
    c.bench_function("roundtrip/std_udp (baseline)", |bench| {
        bench.iter(|| {
            a.send(&PAYLOAD).unwrap();
            a.recv(&mut buf).unwrap()
        })
    });
    a.send(&[]).unwrap(); // stops the echo thread
    echo.join().unwrap();
}

fn smol_direct_session(c: &mut Criterion) {
    smol::block_on(async {
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Some("127.0.0.2:0".parse().unwrap()));
        let server = BoundServer::bind_config(config).unwrap();
        let (primary, alternate) = (server.primary(), server.alternate());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let serving = smol::spawn(server.run(async move {
            let _ = stopped.recv().await;
        }));
        let start = |user: &str| {
            let mut config = ClientConfig::new(user, primary);
            config.alt_server = alternate;
            Client::start(config, "127.0.0.1:0".parse().unwrap())
        };
        let alice = start("alice").await.unwrap();
        let bob = start("bob").await.unwrap();
        let incoming = bob.accept();
        alice.wait_logged_in().await.unwrap();
        bob.wait_logged_in().await.unwrap();
        let session = alice.connect_session("bob").await.unwrap();
        let echo_session = incoming.await.unwrap();
        session.wait_direct().await.unwrap();
        let echo = smol::spawn(async move {
            while let Some(data) = echo_session.recv().await {
                if echo_session.send(&data).await.is_err() {
                    break;
                }
            }
        });
        c.bench_function("roundtrip/smol_direct_session", |bench| {
            bench.iter(|| {
                smol::block_on(async {
                    session.send(&PAYLOAD).await.unwrap();
                    session.recv().await.unwrap()
                })
            })
        });
        drop(session);
        alice.shutdown().await;
        bob.shutdown().await;
        echo.await;
        let _ = stop.send(()).await;
        serving.await.unwrap();
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = baseline_std_udp, smol_direct_session
}
criterion_main!(benches);
