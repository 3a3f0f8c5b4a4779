//! udp::decap on arbitrary payloads; an accepted payload is exactly one packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_encap::udp;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = udp::decap(data) {
        assert_eq!(p.bytes(), data);
        assert_eq!(udp::encap(data, 0..data.len()), Ok(0..data.len()));
    }
});
