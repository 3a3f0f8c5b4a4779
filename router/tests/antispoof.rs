//! Anti-spoofing and dataplane metrics: weftd runs in this process (inside
//! node 1's namespace) with a debugging metrics recorder; packets injected
//! from an unknown underlay address, with an inner source outside the
//! sender's pod range, to a foreign inner destination or with a wrong VNI
//! are dropped and counted by reason; valid traffic is counted per peer.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Cluster, Opts, own_routes, pod_ip};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use weft_encap::{MacAddr, vxlan};
use weft_router::config::Config;
use weft_router::core::Readiness;
use weft_router::daemon::{self, RunOptions};
use weft_router::feed::{self, FeedItem};
use weft_router::route_table::RouteTable;

const TOOLS: &[&str] = &["ip", "ping", "sysctl", "kill", "ethtool"];

/// Cumulative counter values (a debugging snapshot drains counters).
#[derive(Default)]
struct Totals(Mutex<HashMap<String, u64>>);

static TOTALS: std::sync::LazyLock<Totals> = std::sync::LazyLock::new(Totals::default);

fn counter(s: &Snapshotter, name: &str, label: (&str, &str)) -> u64 {
    let mut totals = TOTALS.0.lock().unwrap();
    for (k, _, _, v) in s.snapshot().into_vec() {
        if let DebugValue::Counter(c) = v {
            let labels: Vec<String> = k
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            *totals
                .entry(format!("{}{{{}}}", k.key().name(), labels.join(",")))
                .or_default() += c;
        }
    }
    let want = format!("{}={}", label.0, label.1);
    totals
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(&want))
        .map(|(_, v)| *v)
        .sum()
}

/// Waits (bounded) until the counter reaches at least `min`.
fn wait_for(s: &Snapshotter, name: &str, label: (&str, &str), min: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = counter(s, name, label);
        if v >= min {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{label:?} = {v}, expected >= {min}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet (UDP checksum 0 = none).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

fn vxlan_frame(inner: &[u8], vni: u32) -> Vec<u8> {
    let mut buf = vec![0u8; vxlan::HEADROOM + inner.len()];
    buf[vxlan::HEADROOM..].copy_from_slice(inner);
    let r = vxlan::encap(
        &mut buf,
        vxlan::HEADROOM..vxlan::HEADROOM + inner.len(),
        vni,
        MacAddr([2, 0x57, 172, 31, 0, 2]),
        MacAddr([2, 0x57, 172, 31, 0, 1]),
    )
    .unwrap();
    buf[r].to_vec()
}

#[test]
fn spoofed_and_unknown_packets_are_dropped_and_counted() {
    if !netsim::netns::privileged_or_skip(
        "spoofed_and_unknown_packets_are_dropped_and_counted",
        TOOLS,
    ) {
        return;
    }
    let rec = DebuggingRecorder::new();
    let snap = rec.snapshotter();
    rec.install().unwrap();

    let mut c = Cluster::new("rta", 2, Opts::default());
    let cfg2 = c.config(2, "vxlan", "");
    c.start_weftd(2, &cfg2);

    // weftd for node 1, in-process, inside node 1's namespace.
    let cfg = Config::parse(&c.config(1, "vxlan", "")).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The readiness hook sd_notify will use: Ready once the routes are in.
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(Readiness::Starting);
    let daemon_thread = c
        .node(1)
        .ns
        .run_in(move || {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let (feed, updates) = feed::route_channel();
                    feed.send(FeedItem::Routes(RouteTable::static_updates(&cfg)))
                        .await
                        .unwrap();
                    let opts = RunOptions {
                        readiness: Some(ready_tx),
                        ..RunOptions::default()
                    };
                    let stop = async {
                        let _ = stop_rx.await;
                    };
                    daemon::run_with(cfg, updates, stop, opts).await
                })
            })
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while *ready_rx.borrow() != Readiness::Ready {
        assert!(Instant::now() < deadline, "in-process weftd never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ready means programmed: the route is there at once.
    assert!(own_routes(&c.node(1).ns).contains("10.244.2.0/24"));

    // Valid traffic is counted per peer.
    assert!(c.ping(1, &pod_ip(2)), "{}", c.logs());
    let peer = ("peer", "172.31.0.2");
    // Counters are flushed once per batch, right after the packets moved.
    wait_for(&snap, "weft_dataplane_tx_packets_total", peer, 1);
    wait_for(&snap, "weft_dataplane_rx_packets_total", peer, 1);
    wait_for(&snap, "weft_dataplane_tx_bytes_total", peer, 84);
    wait_for(&snap, "weft_dataplane_rx_bytes_total", peer, 84);

    // A listener in pod 1 sees what gets through.
    let listener = c
        .node(1)
        .pod
        .run_in(|| UdpSocket::bind("10.244.1.2:5555"))
        .unwrap()
        .unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.node(2)
        .ns
        .ip(&["addr", "add", "172.31.0.77/24", "dev", "eth0"])
        .unwrap();
    let from_peer = c
        .node(2)
        .ns
        .run_in(|| UdpSocket::bind("172.31.0.2:0"))
        .unwrap()
        .unwrap();
    let from_stranger = c
        .node(2)
        .ns
        .run_in(|| UdpSocket::bind("172.31.0.77:0"))
        .unwrap()
        .unwrap();
    let to: SocketAddr = "172.31.0.1:8472".parse().unwrap();

    let pod2 = [10, 244, 2, 2];
    let pod1 = [10, 244, 1, 2];
    let cases = [
        (&from_stranger, pod2, pod1, 1, "unknown_peer"),
        (&from_peer, [10, 244, 3, 9], pod1, 1, "spoofed_source"),
        (&from_peer, pod2, [10, 244, 5, 99], 1, "foreign_destination"),
        (&from_peer, pod2, pod1, 2, "vni_mismatch"),
    ];
    let mut buf = [0u8; 64];
    for (sock, src, dst, vni, reason) in cases {
        let before = counter(&snap, "weft_dataplane_drops_total", ("reason", reason));
        let frame = vxlan_frame(&ipv4_udp(src, dst, 5555, reason.as_bytes()), vni);
        sock.send_to(&frame, to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while counter(&snap, "weft_dataplane_drops_total", ("reason", reason)) != before + 1 {
            assert!(Instant::now() < deadline, "{reason} not counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            listener.recv_from(&mut buf).is_err(),
            "{reason} packet was delivered"
        );
    }
    // Spoofed packets from a known peer count against that peer too.
    wait_for(&snap, "weft_dataplane_peer_drops_total", peer, 3);

    // The same path with valid addresses delivers: the checks are not
    // rejecting everything.
    let rx_before = counter(&snap, "weft_dataplane_rx_packets_total", peer);
    let frame = vxlan_frame(&ipv4_udp(pod2, pod1, 5555, b"valid"), 1);
    from_peer.send_to(&frame, to).unwrap();
    let (n, _) = listener
        .recv_from(&mut buf)
        .expect("valid injected packet not delivered");
    assert_eq!(&buf[..n], b"valid");
    wait_for(
        &snap,
        "weft_dataplane_rx_packets_total",
        peer,
        rx_before + 1,
    );

    stop_tx.send(()).unwrap();
    daemon_thread.join().unwrap().unwrap();
    assert_eq!(*ready_rx.borrow(), Readiness::Stopping);
    assert_eq!(own_routes(&c.node(1).ns), "");
    assert!(
        c.node(1).ns.ip(&["link", "show", "weft0"]).is_err(),
        "TUN left behind"
    );
}
