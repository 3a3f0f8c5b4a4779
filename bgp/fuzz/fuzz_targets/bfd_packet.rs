//! Any bytes: the BFD control packet decoder must not panic, a packet that
//! decodes re-encodes to itself, and a session fed it must not panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use weft_bgp::bfd::{BfdConfig, BfdSession, ControlPacket, Input};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ControlPacket::decode(data) {
        assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
        let now = Instant::now();
        let mut s = BfdSession::new(
            BfdConfig {
                desired_min_tx: std::time::Duration::from_millis(300),
                required_min_rx: std::time::Duration::from_millis(300),
                detect_mult: 3,
                local_disc: 1,
                seed: 1,
            },
            now,
        );
        s.handle(now, Input::Received(p));
        s.handle(now + std::time::Duration::from_secs(60), Input::Tick);
    }
});
