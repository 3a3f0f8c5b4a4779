//! The fuzz bodies of `encap/fuzz/bodies/` on stable, without libFuzzer:
//! each runs over edge cases, well-formed packets with mutations and a
//! few thousand seeded random inputs, so CI exercises every invariant the
//! fuzz targets assert (`cargo fuzz` explores further; see CONTRIBUTING.md).
#![allow(clippy::unwrap_used)]

#[path = "../fuzz/bodies/coalesce_plan.rs"]
mod coalesce_plan;
#[path = "../fuzz/bodies/egress_plan.rs"]
mod egress_plan;
#[path = "../fuzz/bodies/inner_parse.rs"]
mod inner_parse;
#[path = "../fuzz/bodies/wireguard_classify.rs"]
mod wireguard_classify;

use weft_encap::checksum;
use weft_encap::coalesce::test_segment;

/// Random inputs per body.
const ROUNDS: usize = 3000;

/// xorshift64*: deterministic, seeded, enough for input generation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Flips a few random bytes of `v`.
    fn mutate(&mut self, v: &mut [u8]) {
        for _ in 0..self.below(4) {
            if !v.is_empty() {
                let at = self.below(v.len());
                v[at] ^= 1 << self.below(8);
            }
        }
    }
}

/// Well-formed inner packets: IPv4 TCP/UDP, IPv6 UDP.
fn packet(r: &mut Rng) -> Vec<u8> {
    let payload = r.below(1600);
    match r.below(3) {
        0 => {
            let seq = r.next() as u32;
            test_segment(seq, &r.bytes(payload), 0x10)
        }
        1 => {
            let mut p = vec![0u8; 28 + payload];
            p[0] = 0x45;
            let total = p.len() as u16;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            p[8] = 64;
            p[9] = 17;
            p[12..20].copy_from_slice(&r.bytes(8));
            let c = checksum::checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p
        }
        _ => {
            let mut p = vec![0u8; 48 + payload];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
            p[6] = 17;
            p[8..40].copy_from_slice(&r.bytes(32));
            p
        }
    }
}

fn edge_cases() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![vec![], vec![0x45], vec![0x60; 39], vec![0x45; 19]];
    v.extend((0..=255u8).map(|b| vec![b; 64]));
    v.push(vec![0xff; 70_000]);
    v
}

#[test]
fn inner_parse_body() {
    let mut r = Rng(0x5eed_0001);
    for e in edge_cases() {
        inner_parse::run(&e);
    }
    for _ in 0..ROUNDS {
        let mut p = match r.below(3) {
            0 => {
                let n = r.below(200);
                r.bytes(n)
            }
            1 => packet(&mut r),
            _ => {
                // A valid packet behind an offload header or VXLAN header.
                let n = if r.below(2) == 0 { 10 } else { 22 };
                let mut h = r.bytes(n);
                h.extend_from_slice(&packet(&mut r));
                h
            }
        };
        if r.below(2) == 0 {
            r.mutate(&mut p);
        }
        inner_parse::run(&p);
    }
}

#[test]
fn coalesce_plan_body() {
    let mut r = Rng(0x5eed_0002);
    for e in edge_cases() {
        coalesce_plan::run(&e);
    }
    for _ in 0..ROUNDS {
        // A flow of in-order segments, interleaved with other packets,
        // sometimes reordered, cut or corrupted.
        let mut seq = r.next() as u32;
        let gso = 1 + r.below(1400);
        let mut pkts = Vec::new();
        for _ in 0..r.below(100) {
            let p = match r.below(6) {
                0 => packet(&mut r),
                1 => {
                    let n = r.below(80);
                    r.bytes(n)
                }
                _ => {
                    let len = if r.below(8) == 0 { r.below(gso) } else { gso };
                    let flags = if r.below(10) == 0 { 0x18 } else { 0x10 };
                    let payload = r.bytes(len);
                    let s = test_segment(seq, &payload, flags);
                    seq = seq.wrapping_add(len as u32);
                    s
                }
            };
            pkts.push(p);
        }
        if r.below(4) == 0 && pkts.len() > 1 {
            let (a, b) = (r.below(pkts.len()), r.below(pkts.len()));
            pkts.swap(a, b);
        }
        let mut input = vec![r.next() as u8 | u8::from(r.below(4) != 0)];
        for p in &pkts {
            input.extend_from_slice(&(p.len() as u16).to_be_bytes());
            input.extend_from_slice(p);
        }
        if r.below(4) == 0 {
            r.mutate(&mut input[1..]);
        }
        coalesce_plan::run(&input);
    }
}

#[test]
fn a_long_flow_coalesces_in_the_body() {
    // The body's invariants on a plan that does coalesce (not only on
    // single-packet frames).
    let mut input = vec![1u8];
    for i in 0..100u32 {
        let s = test_segment(1000 + i * 100, &[i as u8; 100], 0x10);
        input.extend_from_slice(&(s.len() as u16).to_be_bytes());
        input.extend_from_slice(&s);
    }
    coalesce_plan::run(&input);
    let pkts = coalesce_plan::packets(&input[1..]);
    let mut c = weft_encap::coalesce::Coalescer::new(true);
    for (i, p) in pkts.iter().enumerate() {
        c.push(&pkts, i, 0..p.len());
    }
    let sizes: Vec<usize> = c
        .frames()
        .iter()
        .map(weft_encap::coalesce::Frame::segments)
        .collect();
    assert_eq!(sizes, vec![64, 36]);
}

#[test]
fn egress_plan_body() {
    let mut r = Rng(0x5eed_0003);
    for e in edge_cases() {
        egress_plan::run(&e);
    }
    for _ in 0..ROUNDS {
        let mut input = vec![r.next() as u8];
        let mtu = [0, 1280, 1450, 1500, 9000, 65535][r.below(6)] as u16;
        input.extend_from_slice(&mtu.to_be_bytes());
        let mut p = packet(&mut r);
        // Offload header: plain, partial checksum, TSO or random.
        let (gso_type, csum_offset) = match r.below(4) {
            0 => (0, 0),
            1 => (1, 16),
            2 => (5, 6),
            _ => (r.next() as u8, r.next() as u16),
        };
        let gso_size = (1 + r.below(1500)) as u16;
        let csum_start: u16 = if p[0] >> 4 == 6 { 40 } else { 20 };
        let mut vh = [0u8; 10];
        vh[0] = r.below(2) as u8;
        vh[1] = gso_type;
        vh[2..4].copy_from_slice(&(r.next() as u16).to_le_bytes());
        vh[4..6].copy_from_slice(&gso_size.to_le_bytes());
        vh[6..8].copy_from_slice(&csum_start.to_le_bytes());
        vh[8..10].copy_from_slice(&csum_offset.to_le_bytes());
        input.extend_from_slice(&vh);
        if r.below(3) == 0 {
            r.mutate(&mut p);
        }
        input.extend_from_slice(&p);
        egress_plan::run(&input);
    }
}

#[test]
fn wireguard_classify_body() {
    let mut r = Rng(0x5eed_0077);
    for e in edge_cases() {
        wireguard_classify::run(&e);
    }
    for _ in 0..ROUNDS {
        // Each message type at and around its length, and random bytes.
        let len = match r.below(5) {
            0 => 148,
            1 => 92,
            2 => 64,
            3 => 32 + r.below(1500),
            _ => r.below(200),
        };
        let mut d = r.bytes(len);
        if let Some(t) = d.first_mut() {
            *t = 1 + r.below(4) as u8;
        }
        for b in d.iter_mut().skip(1).take(3) {
            *b = 0;
        }
        r.mutate(&mut d);
        if r.below(4) == 0 && !d.is_empty() {
            d.truncate(r.below(d.len()));
        }
        wireguard_classify::run(&d);
    }
}
