//! Result conversion from arbitrary JSON, for every spec version, and the
//! round trip through our own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::spec::{CniResult, SUPPORTED_VERSIONS};

fuzz_target!(|input: (u8, &[u8])| {
    let (which, data) = input;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let from = SUPPORTED_VERSIONS[usize::from(which) % SUPPORTED_VERSIONS.len()];
    let Ok(r) = CniResult::from_json(&v, from) else {
        return;
    };
    for to in SUPPORTED_VERSIONS {
        if let Ok(j) = r.to_json(to) {
            let back = CniResult::from_json(&j, to).expect("own output must decode");
            assert_eq!(
                back.to_json(to).ok(),
                Some(j),
                "re-encoding differs ({from} -> {to})"
            );
        }
    }
});
