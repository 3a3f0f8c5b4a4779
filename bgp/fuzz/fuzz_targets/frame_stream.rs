//! A byte stream cut into frames the way the session reader does it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_bgp::wire::{SessionCaps, decode, frame_len};

fuzz_target!(|data: &[u8]| {
    let caps = SessionCaps { four_octet_as: true };
    let mut rest = data;
    while let Ok(Some(n)) = frame_len(rest) {
        let _ = decode(&rest[..n], &caps);
        rest = &rest[n..];
    }
});
