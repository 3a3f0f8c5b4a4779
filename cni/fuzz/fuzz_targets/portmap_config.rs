//! The portmap plugin's keys (mappings, conditions, masq bits) on arbitrary
//! stdin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::plugin::portmap::config::PortMapConf;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = PortMapConf::parse(data) {
        let _ = c.settings();
    }
});
