//! The bridge plugin's keys on arbitrary stdin: parse, validate, MAC choice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::plugin::bridge::config::BridgeConf;

fuzz_target!(|input: (&str, &[u8])| {
    let (mac, data) = input;
    let Ok(c) = BridgeConf::parse(data) else {
        return;
    };
    if let Ok(plan) = c.validate() {
        let _ = plan.needed();
    }
    let v: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let args = v.as_ref().and_then(|v| v.get("args"));
    let rc = v.as_ref().and_then(|v| v.get("runtimeConfig"));
    let _ = c.requested_mac(Some(mac), args, rc);
});
