//! Property tests: encode/decode round trips, and arbitrary or mutated
//! bytes never panic.

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_four_octet(m in message()) {
        let mut b = Vec::new();
        encode(&m, &FOUR, &mut b);
        prop_assert!(b.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(frame_len(&b), Ok(Some(b.len())));
        prop_assert_eq!(decode(&b, &FOUR), Ok(m));
    }

    #[test]
    fn round_trip_two_octet(u in update_strategy(false)) {
        let mut b = Vec::new();
        let m = Message::Update(u);
        encode(&m, &TWO, &mut b);
        prop_assert_eq!(decode(&b, &TWO), Ok(m));
    }

    #[test]
    fn arbitrary_bytes_never_panic(kind in 0u8..7, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let b = frame(kind, &body);
        let _ = decode(&b, &FOUR);
        let _ = decode(&b, &TWO);
        let _ = decode(&body, &FOUR);
        let _ = frame_len(&body);
    }

    #[test]
    fn mutated_messages_never_panic(
        m in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = Vec::new();
        encode(&m, &FOUR, &mut b);
        for (i, v) in flips {
            let i = 19 + i.index(b.len().saturating_sub(19).max(1));
            if i < b.len() {
                b[i] = v;
            }
        }
        let _ = decode(&b, &FOUR);
        let _ = decode(&b, &TWO);
        let n = cut.index(b.len());
        let mut t = b[..n].to_vec();
        if t.len() >= 19 {
            let l = t.len() as u16;
            t[16..18].copy_from_slice(&l.to_be_bytes());
        }
        let _ = decode(&t, &FOUR);
    }
}
