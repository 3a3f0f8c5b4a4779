//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Adds `data` as big-endian 16-bit words to `acc` (odd tail padded with 0).
#[must_use]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves so that no carry is lost.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// [`sum`], faster on long data (whole TCP segments): native-endian
/// 32-bit words summed into 64 bits (a loop the compiler vectorises),
/// folded to 16 bits and byte-swapped, which equals the big-endian word
/// sum (RFC 1071 §2 B: byte order independence).
#[must_use]
pub fn sum_wide(acc: u64, data: &[u8]) -> u64 {
    let words = data.chunks_exact(4);
    let tail = words.remainder();
    let mut s: u64 = words
        .map(|c| u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
        .sum();
    s = (s >> 32) + (s & 0xffff_ffff);
    s = (s >> 32) + (s & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    // Four folds leave s <= 0xffff.
    let folded = if cfg!(target_endian = "little") {
        (s as u16).swap_bytes()
    } else {
        s as u16
    };
    sum(acc + u64::from(folded), tail)
}

/// Folds an accumulated sum to 16 bits and complements it.
#[must_use]
#[inline(always)]
pub fn finish(mut acc: u64) -> u16 {
    // Branch-free: 64 -> 33 -> 32 -> 17 -> 16 bits with end-around carry.
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 16) + (acc & 0xffff);
    acc = (acc >> 16) + (acc & 0xffff);
    // Four folds leave acc <= 0xffff.
    !(acc as u16)
}

/// True when an IPv4 header (`ihl * 4` bytes, options included) carries a
/// correct checksum. The option-less 20-byte header, nearly every packet,
/// takes a fixed three-load path.
#[must_use]
#[inline(always)]
pub fn header_ok(h: &[u8]) -> bool {
    if let Some(
        &[
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
            c0,
            c1,
            c2,
            c3,
        ],
    ) = h.get(..20).filter(|_| h.len() == 20)
    {
        let a = u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
        let b = u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        let c = u64::from(u32::from_be_bytes([c0, c1, c2, c3]));
        let acc = (a >> 32) + (a & 0xffff_ffff) + (b >> 32) + (b & 0xffff_ffff) + c;
        return finish(acc) == 0;
    }
    checksum(h) == 0
}

/// The Internet checksum of `data`.
#[must_use]
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[must_use]
pub fn update(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    finish(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example bytes: sum 0xddf2, checksum 0x220d.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn header_fast_path_agrees() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7, 0x01, 0x01, 0x01, 0x00,
        ];
        assert!(header_ok(&h[..20]));
        h[3] ^= 1;
        assert!(!header_ok(&h[..20]));
        h[3] ^= 1;
        // 24 bytes (with a NOP/EOL option word) takes the generic path.
        let c = checksum(&{
            let mut x = h;
            x[10] = 0;
            x[11] = 0;
            x
        });
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(header_ok(&h));
        assert!(!header_ok(&h[..20]));
        // All-ones words exercise every carry fold.
        assert_eq!(finish(u64::MAX), !finish_slow(u64::MAX));
    }

    fn finish_slow(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn wide_sum_equals_the_reference() {
        let data: Vec<u8> = (0..3001u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0, 1, 2, 3, 4, 5, 63, 64, 65, 1448, 3001] {
            for acc in [0u64, 0xffff, 0x1234_5678] {
                let d = &data[..len];
                assert_eq!(
                    finish(sum_wide(acc, d)),
                    finish(sum(acc, d)),
                    "len {len} acc {acc:#x}"
                );
            }
        }
        let ones = vec![0xffu8; 4096];
        assert_eq!(finish(sum_wide(0, &ones)), finish(sum(0, &ones)));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            checksum(&[0x12, 0x34, 0x56]),
            checksum(&[0x12, 0x34, 0x56, 0x00])
        );
    }

    #[test]
    fn known_ipv4_header() {
        // Wikipedia's IPv4 header checksum example (checksum 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        for ttl in (0..=0x40u8).rev() {
            let old = u16::from_be_bytes([h[8], h[9]]);
            h[8] = ttl;
            let new = u16::from_be_bytes([h[8], h[9]]);
            let hc = update(u16::from_be_bytes([h[10], h[11]]), old, new);
            h[10..12].copy_from_slice(&hc.to_be_bytes());
            assert_eq!(checksum(&h), 0, "ttl {ttl}");
        }
    }
}
