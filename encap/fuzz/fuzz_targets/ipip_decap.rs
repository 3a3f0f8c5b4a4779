//! ipip::decap on arbitrary packets; an accepted packet's inner view lies
//! where `inner_range` says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_encap::ipip;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ipip::decap(data) {
        assert_eq!(&data[p.inner_range.clone()], p.inner.bytes());
        assert_eq!(p.inner_range.end, data.len());
    }
});
