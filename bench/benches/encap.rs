//! encap/decap of 64- and 1400-byte packets in each format, beside a
//! memcpy of the same packet. Prints (encap+decap) / memcpy at the end.
//! Target: below 1.0 for 1400 bytes (cheaper than copying the packet).
//!
//! `cargo bench -p weft-bench --bench encap -- --measurement-time 1`
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use weft_bench::{Ratio, print_ratios};
use weft_encap::{MAX_HEADROOM, MacAddr, checksum, ipip, udp, vxlan};

const SIZES: [usize; 2] = [64, 1400];
const SRC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const DST: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const HEADER: vxlan::Header = vxlan::Header::new(1, SRC, DST);
const OUTER: ipip::Outer = ipip::Outer {
    src: Ipv4Addr::new(192, 168, 0, 1),
    dst: Ipv4Addr::new(192, 168, 0, 2),
    ttl: 64,
    id: 7,
};

/// An IPv4 UDP packet of `size` bytes at `buf[MAX_HEADROOM..]`.
fn packet_buf(size: usize) -> (Vec<u8>, Range<usize>) {
    let mut buf = vec![0u8; MAX_HEADROOM + size];
    let p = &mut buf[MAX_HEADROOM..];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(size).unwrap().to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 244, 1, 2]);
    p[16..20].copy_from_slice(&[10, 244, 2, 3]);
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..24].copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let end = buf.len();
    (buf, MAX_HEADROOM..end)
}

/// One format's encap and decap as closures over a prepared buffer.
fn vxlan_round(buf: &mut [u8], r: &Range<usize>) -> usize {
    // As a router would: the per-peer header composed once, outside the loop.
    let out = vxlan::encap_with(buf, r.clone(), black_box(&HEADER)).unwrap();
    vxlan::decap(black_box(&buf[out]), 1).unwrap().inner.len()
}

fn udp_round(buf: &mut [u8], r: &Range<usize>) -> usize {
    let out = udp::encap(buf, r.clone()).unwrap();
    udp::decap(black_box(&buf[out])).unwrap().len()
}

fn ipip_round(buf: &mut [u8], r: &Range<usize>) -> usize {
    let out = ipip::encap(buf, r.clone(), &OUTER).unwrap();
    ipip::decap(black_box(&buf[out])).unwrap().inner.len()
}

type Round = fn(&mut [u8], &Range<usize>) -> usize;
const FORMATS: [(&str, Round); 3] = [
    ("udp", udp_round),
    ("vxlan", vxlan_round),
    ("ipip", ipip_round),
];

fn bench(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("encap_{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        let (mut buf, r) = packet_buf(size);
        let src = buf[r.clone()].to_vec();
        let mut dst = vec![0u8; size];
        g.bench_function("memcpy", |b| {
            b.iter(|| dst.copy_from_slice(black_box(&src)));
        });
        for (name, round) in FORMATS {
            g.bench_function(format!("{name}/encap+decap"), |b| {
                b.iter(|| round(black_box(&mut buf), &r));
            });
        }
        // Encap and decap alone, for vxlan (the default overlay).
        g.bench_function("vxlan/encap", |b| {
            b.iter(|| vxlan::encap(black_box(&mut buf), r.clone(), 1, SRC, DST).unwrap());
        });
        let out = vxlan::encap(&mut buf, r.clone(), 1, SRC, DST).unwrap();
        let dgram = buf[out].to_vec();
        g.bench_function("vxlan/decap", |b| {
            b.iter(|| vxlan::decap(black_box(&dgram), 1).unwrap().inner.len());
        });
        let (mut ibuf, ir) = packet_buf(size);
        let out = ipip::encap(&mut ibuf, ir, &OUTER).unwrap();
        let ipkt = ibuf[out].to_vec();
        g.bench_function("ipip/decap", |b| {
            b.iter(|| ipip::decap(black_box(&ipkt)).unwrap().inner.len());
        });
        g.finish();
    }
}

fn ratios() -> Vec<Ratio> {
    let mut rows = Vec::new();
    for size in SIZES {
        let (mut buf, r) = packet_buf(size);
        let src = buf[r.clone()].to_vec();
        let mut dst = vec![0u8; size];
        let base = format!("memcpy {size}B");
        for (name, round) in FORMATS {
            rows.push(Ratio::measure(
                format!("{name} encap+decap {size}B"),
                || {
                    black_box(round(black_box(&mut buf), &r));
                },
                base.clone(),
                || dst.copy_from_slice(black_box(&src)),
            ));
        }
        // The two halves on their own buffers, as on two hosts: the decoder
        // reads bytes that were not just written by the encoder.
        let (mut ebuf, er) = packet_buf(size);
        let out = vxlan::encap(&mut ebuf, er.clone(), 1, SRC, DST).unwrap();
        let dgram = ebuf[out].to_vec();
        rows.push(Ratio::measure(
            format!("vxlan encap, decap apart {size}B"),
            || {
                black_box(vxlan::encap_with(black_box(&mut ebuf), er.clone(), &HEADER).unwrap());
                black_box(vxlan::decap(black_box(&dgram), 1).unwrap().inner.len());
            },
            base.clone(),
            || dst.copy_from_slice(black_box(&src)),
        ));
        rows.push(Ratio::measure(
            format!("  vxlan encap alone {size}B"),
            || {
                black_box(vxlan::encap_with(black_box(&mut ebuf), er.clone(), &HEADER).unwrap());
            },
            base.clone(),
            || dst.copy_from_slice(black_box(&src)),
        ));
        rows.push(Ratio::measure(
            format!("  vxlan decap alone {size}B"),
            || {
                black_box(vxlan::decap(black_box(&dgram), 1).unwrap().inner.len());
            },
            base.clone(),
            || dst.copy_from_slice(black_box(&src)),
        ));
    }
    rows
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios(
        "encap+decap vs memcpy of the same packet (ratio < 1: cheaper than a copy)",
        &ratios(),
    );
}
