//! host-local's config (ranges, legacy keys, requested IPs) on arbitrary
//! stdin and CNI_ARGS, and resolv.conf parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::ipam::config::{IpamConfig, parse_resolv_conf};

fuzz_target!(|input: (&str, &[u8])| {
    let (args, data) = input;
    if let Ok(c) = IpamConfig::load(data, args) {
        let _ = format!("{c:?}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_resolv_conf(text);
    }
});
