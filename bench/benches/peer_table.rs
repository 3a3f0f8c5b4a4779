//! The overlay peer table at cluster scale: per-packet lookup with 2 peers
//! against 10 000 (and, as the baseline, the linear scan over prefixes,
//! longest first, that the table replaced), and the cost of one route
//! change at 10 000 peers up to the copy the workers pick up; and the
//! whole per-packet egress pipeline (`weft_encap::egress::plan` + vxlan
//! encapsulation) at 2 and 10 000 peers.
//!
//! Run: `cargo bench -p weft-bench --bench peer_table` (no root needed).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use weft_encap::egress::{Egress, EgressPath, plan};
use weft_encap::format::Format;
use weft_encap::{MAX_HEADROOM, MacAddr};
use weft_router::cidr::Cidr;
use weft_router::dataplane::peer_table::PeerTable;
use weft_router::mode::Mode;
use weft_router::route_table::{NextHop, OverlayPeer};
use weft_router::vtep::derived_mac;

fn hop(i: u32) -> NextHop {
    let underlay = Ipv4Addr::from(0xac10_0000 | i);
    NextHop::Overlay(OverlayPeer {
        underlay,
        vtep_mac: derived_mac(underlay),
        mode: Mode::Vxlan,
    })
}

/// Peer `i`'s /24: 10.(i / 256).(i % 256).0/24, shifted past this node's.
fn range(i: u32) -> Cidr {
    Cidr::new(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + (i << 8))), 24).unwrap()
}

fn hops(n: u32) -> Vec<(Cidr, NextHop)> {
    (0..n).map(|i| (range(i), hop(i))).collect()
}

/// The replaced algorithm: prefixes sorted longest first, first match wins.
struct Scan(Vec<(Cidr, usize)>);

impl Scan {
    fn new(h: &[(Cidr, NextHop)]) -> Self {
        let mut v: Vec<(Cidr, usize)> = h.iter().enumerate().map(|(i, (c, _))| (*c, i)).collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.0.prefix_len()));
        Self(v)
    }
    fn lookup(&self, dst: IpAddr) -> Option<usize> {
        self.0
            .iter()
            .find(|(c, _)| c.contains(dst))
            .map(|(_, i)| *i)
    }
}

/// Destinations spread over the table's ranges (the packets of one flow
/// hit one range; a busy node talks to many).
fn dsts(n: u32, count: usize) -> Vec<IpAddr> {
    (0..count as u32)
        .map(|k| {
            let i = k.wrapping_mul(2_654_435_761) % n;
            IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + (i << 8) + 7))
        })
        .collect()
}

/// ns per lookup, best of `rounds` passes over `d`.
fn per_lookup(d: &[IpAddr], rounds: usize, f: impl Fn(IpAddr) -> Option<usize>) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut hits = 0usize;
        for &a in d {
            hits += usize::from(black_box(f(black_box(a))).is_some());
        }
        assert_eq!(hits, d.len());
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / d.len() as f64);
    }
    best
}

/// ns per packet of the egress pipeline for a 1400-byte IPv4 packet (the
/// plan: destination, lookup, MTU check; then the vxlan encapsulation),
/// best of `rounds` passes, the destination rewritten per packet.
fn per_packet(d: &[IpAddr], rounds: usize, table: &PeerTable) -> f64 {
    let path = EgressPath {
        max_inner: 1450,
        tap: false,
        vxlan: true,
    };
    let format = Format::Vxlan {
        vni: 1,
        local_mac: MacAddr([2, 0x57, 0, 0, 0, 1]),
    };
    let mut buf = vec![0u8; MAX_HEADROOM + 1400];
    let inner = MAX_HEADROOM..buf.len();
    buf[MAX_HEADROOM] = 0x45;
    buf[MAX_HEADROOM + 2..MAX_HEADROOM + 4].copy_from_slice(&1400u16.to_be_bytes());
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut sent = 0usize;
        for &a in d {
            let IpAddr::V4(a) = a else { continue };
            buf[MAX_HEADROOM + 16..MAX_HEADROOM + 20].copy_from_slice(&a.octets());
            if let Egress::Socket { peer } = plan(&buf[inner.clone()], None, table, &path) {
                let mac = table.peers()[peer].vtep_mac;
                sent += usize::from(format.encap(&mut buf, inner.clone(), mac).is_ok());
            }
        }
        assert_eq!(black_box(sent), d.len());
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / d.len() as f64);
    }
    best
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let small = PeerTable::new(&hops(2), &[]);
    let big_hops = hops(10_000);
    let big = PeerTable::new(&big_hops, &[]);
    let d2 = dsts(2, 1 << 16);
    let d10k = dsts(10_000, 1 << 16);
    let t2 = per_lookup(&d2, 50, |a| small.lookup(a));
    let t10k = per_lookup(&d10k, 50, |a| big.lookup(a));
    let scan2 = Scan::new(&hops(2));
    let scan10k = Scan::new(&big_hops);
    let s2 = per_lookup(&d2, 50, |a| scan2.lookup(a));
    let s10k = per_lookup(&d10k[..1 << 10], 3, |a| scan10k.lookup(a));
    println!("peer table lookup, ns per packet (best of passes over 65 536 destinations)");
    println!("| table | 2 peers | 10 000 peers | 10 000 / 2 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| hash per prefix length | {t2:.1} | {t10k:.1} | {:.2}× |",
        t10k / t2
    );
    println!(
        "| linear scan (replaced) | {s2:.1} | {s10k:.1} | {:.0}× |",
        s10k / s2
    );

    let p2 = per_packet(&d2, 50, &small);
    let p10k = per_packet(&d10k, 50, &big);
    // One stream: every packet to the same pod (the single-stream bench).
    let one2 = per_packet(&vec![d2[0]; 1 << 16], 50, &small);
    let one10k = per_packet(&vec![d10k[0]; 1 << 16], 50, &big);
    println!();
    println!("egress pipeline (plan + vxlan encap of 1400 B), ns per packet");
    println!("| destinations | 2 peers | 10 000 peers | 2 / 10 000 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| spread over every peer | {p2:.1} | {p10k:.1} | {:.3} |",
        p2 / p10k
    );
    println!(
        "| one stream | {one2:.1} | {one10k:.1} | {:.3} |",
        one2 / one10k
    );

    // One route change at 10 000 peers: apply + the copy workers get.
    let mut master = big.clone();
    let mut apply = Vec::new();
    let mut publish = Vec::new();
    let mut rebuild = Vec::new();
    for k in 0..200u32 {
        let t = Instant::now();
        master.apply(range(k), Some(&hop(20_000 + k)));
        apply.push(t.elapsed());
        let t = Instant::now();
        let copy = std::sync::Arc::new(master.clone());
        publish.push(t.elapsed());
        black_box(&copy);
        if k < 20 {
            let t = Instant::now();
            black_box(PeerTable::new(&big_hops, &[]));
            rebuild.push(t.elapsed());
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!();
    println!("one route change at 10 000 peers, medians of 200 (µs)");
    println!(
        "| apply | copy for the workers | total | full rebuild (baseline) |\n|---:|---:|---:|---:|\n| {:.2} | {:.1} | {:.1} | {:.0} |",
        us(median(apply.clone())),
        us(median(publish.clone())),
        us(median(apply)) + us(median(publish)),
        us(median(rebuild))
    );
}
