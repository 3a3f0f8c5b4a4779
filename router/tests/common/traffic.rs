//! Traffic helpers for the root tests: deterministic payloads, a hashed
//! TCP transfer between two namespaces, and an iperf3 run between pods.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use netsim::netns::Netns;

use super::{Cluster, pod_ip};

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// FNV-1a 64 over a stream of chunks.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);
impl Fnv {
    /// A fresh hash.
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    /// Adds bytes.
    pub fn update(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= u64::from(c);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Sends `len` bytes over TCP from pod `from` to `to_ip` in pod `to`
/// and asserts that the receiver's hash equals the sender's.
pub fn tcp_transfer(from: &Netns, to: &Netns, to_ip: &str, len: usize) {
    let ip: IpAddr = to_ip.parse().unwrap();
    let bind: SocketAddr = SocketAddr::new(ip, 0);
    let listener = to.run_in(move || TcpListener::bind(bind)).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut h = Fnv::new();
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n;
        }
        (total, h.0)
    });
    let data = pattern(len, 0x5eed ^ len as u64);
    let mut expect = Fnv::new();
    expect.update(&data);
    let mut client = from
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    client
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client.write_all(&data).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    drop(client);
    let (total, hash) = server.join().unwrap();
    assert_eq!(total, len, "received byte count");
    assert_eq!(hash, expect.0, "payload hash mismatch");
}

/// A one-shot iperf3 server in pod 2, given 300 ms to listen.
pub fn iperf_server(c: &Cluster) -> std::process::Child {
    let server = c
        .node(2)
        .pod
        .command("iperf3")
        .args(["-s", "-1", "-B", &pod_ip(2)])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server
}

/// iperf3 TCP from pod 1 to pod 2 with `streams` streams for `secs`
/// seconds (bounded by a 30 s `timeout`); Gbit/s received, 0 on failure.
pub fn iperf_gbps(c: &Cluster, streams: u32, secs: u32) -> f64 {
    let mut server = iperf_server(c);
    let out = c
        .node(1)
        .pod
        .command("timeout")
        .args([
            "30",
            "iperf3",
            "-c",
            &pod_ip(2),
            "-t",
            &secs.to_string(),
            "-P",
            &streams.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9
}
