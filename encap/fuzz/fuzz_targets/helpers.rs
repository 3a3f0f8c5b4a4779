//! The packet helpers on arbitrary bytes: ttl::decrement, ICMP replies,
//! flow hash. Replies must stay within their RFC size limits.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use weft_encap::{flow, icmp, ttl};

fuzz_target!(|input: (u16, &[u8])| {
    let (mtu, data) = input;
    let _ = flow::hash(data);
    let mut m = data.to_vec();
    let _ = ttl::decrement(&mut m);
    let mut out = [0u8; 1500];
    if let Ok(n) = icmp::frag_needed_v4(data, mtu, Ipv4Addr::new(10, 0, 0, 1), &mut out) {
        assert!(n <= icmp::MAX_V4_REPLY);
    }
    if let Ok(n) = icmp::packet_too_big_v6(data, u32::from(mtu), Ipv6Addr::LOCALHOST, &mut out) {
        assert!(n <= icmp::MAX_V6_REPLY);
    }
    let _ = icmp::time_exceeded_v4(data, Ipv4Addr::new(10, 0, 0, 1), &mut out[..64]);
    let _ = icmp::time_exceeded_v6(data, Ipv6Addr::LOCALHOST, &mut out[..100]);
});
