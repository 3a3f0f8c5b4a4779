//! Any bytes, under either AS-number width: decode must not panic, and a
//! message that decodes must re-encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_bgp::wire::{SessionCaps, decode, encode};

fuzz_target!(|input: (bool, &[u8])| {
    let (four_octet_as, data) = input;
    let caps = SessionCaps { four_octet_as };
    if let Ok(m) = decode(data, &caps) {
        let mut again = Vec::new();
        encode(&m, &caps, &mut again);
        let back = decode(&again, &caps);
        if let (weft_bgp::wire::Message::Update(a), Ok(weft_bgp::wire::Message::Update(b))) = (&m, &back) {
            // Verdicts may differ once a discarded attribute is gone.
            assert_eq!(a.nlri, b.nlri);
            assert_eq!(a.withdrawn, b.withdrawn);
        }
    }
});
