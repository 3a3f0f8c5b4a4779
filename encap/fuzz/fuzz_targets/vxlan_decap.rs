//! vxlan::decap on arbitrary datagrams with an arbitrary expected VNI; an
//! accepted frame must re-encode to the same bytes (minus Ethernet padding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_encap::vxlan;

fuzz_target!(|input: (u32, &[u8])| {
    let (vni, data) = input;
    if let Ok(f) = vxlan::decap(data, vni) {
        assert_eq!(&data[f.inner_range.clone()], f.inner.bytes());
        let mut buf = data[..f.inner_range.end].to_vec();
        buf[..vxlan::HEADROOM].fill(0);
        let out = vxlan::encap(&mut buf, f.inner_range.clone(), f.vni, f.src_mac, f.dst_mac)
            .expect("a decoded frame re-encodes");
        assert_eq!(&buf[out], &data[..f.inner_range.end]);
    }
});
