//! Fuzz body: the TCP coalescing plan on an arbitrary batch. Input: one
//! flag byte (coalescing on when odd), then packets each prefixed by a
//! 2-byte big-endian length. Every packet must land in exactly one frame,
//! in order; frames keep their limits; a coalesced frame's rebuilt header
//! states the length of what is written after it. Shared by the
//! `coalesce_plan` fuzz target and `encap/tests/fuzz_bodies.rs`.

use weft_encap::coalesce::{Coalescer, MAX_HEADER, MAX_SEGS};
use weft_encap::offload::{self, OffloadHeader};

/// Splits `data` into length-prefixed packets (a short tail is one packet).
pub(crate) fn packets(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [a, b, rest @ ..] = data {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
        let (p, tail) = rest.split_at(n);
        out.push(p);
        data = tail;
    }
    out
}

pub(crate) fn run(data: &[u8]) {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let pkts = packets(rest);
    let mut c = Coalescer::new(flag & 1 == 1);
    for (i, p) in pkts.iter().enumerate() {
        assert!(c.push(&pkts, i, 0..p.len()));
    }
    assert!(!c.push(&pkts, pkts.len(), 0..0), "no such buffer");
    assert_eq!(c.len(), pkts.len());
    let mut next = 0;
    let mut heads = Vec::new();
    let mut seen = vec![false; pkts.len()];
    for f in c.frames() {
        let (hb, hr) = c.head(f);
        heads.push(hb);
        assert_eq!(hr, 0..pkts[hb].len());
        assert!(f.segments() >= 1 && f.segments() <= MAX_SEGS);
        let mut n = 0;
        let mut bytes = 0;
        for (b, r) in c.payloads(f) {
            assert!(!seen[b], "packet {b} in two frames");
            seen[b] = true;
            assert!(r.start <= r.end && r.end <= pkts[b].len());
            n += 1;
            bytes += r.len();
        }
        assert_eq!(n, f.segments());
        next += n;
        let mut out = [0u8; MAX_HEADER];
        match c.header(pkts[hb], f, &mut out) {
            Some(len) => {
                assert!(f.is_coalesced());
                assert_eq!(bytes, f.payload_len());
                let vh = OffloadHeader::parse(&out).expect("header");
                assert_eq!(usize::from(vh.hdr_len), len - offload::LEN);
                let total = u16::from_be_bytes([out[offload::LEN + 2], out[offload::LEN + 3]]);
                assert_eq!(usize::from(total), len - offload::LEN + bytes);
                assert!(vh.segments(usize::from(total)) == f.segments());
            }
            None => assert!(!f.is_coalesced()),
        }
    }
    assert_eq!(next, pkts.len());
    assert!(seen.iter().all(|s| *s));
    assert!(heads.windows(2).all(|w| w[0] < w[1]), "frames in order");
    c.clear();
    assert!(c.is_empty());
}
