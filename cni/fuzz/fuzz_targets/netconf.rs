//! The common config keys on arbitrary stdin, plus the prevResult
//! conversion and re-encoding for every spec version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::spec::{CniResult, NetConf, SUPPORTED_VERSIONS};

fuzz_target!(|data: &[u8]| {
    let Ok(net) = NetConf::parse(data) else {
        return;
    };
    let _ = net.ipam_type();
    if let Ok(Some(prev)) = net.prev() {
        for v in SUPPORTED_VERSIONS {
            if let Ok(j) = prev.to_json(v) {
                // What we print must read back as the same result.
                let back = CniResult::from_json(&j, v).expect("own output must decode");
                assert_eq!(back.to_json(v).ok(), Some(j), "re-encoding differs ({v})");
            }
        }
    }
});
