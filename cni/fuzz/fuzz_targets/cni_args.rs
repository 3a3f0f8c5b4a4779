//! CNI_ARGS splitting and strict validation on arbitrary strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::skel::{check_cni_args, split_cni_args};

fuzz_target!(|raw: &str| {
    let pairs = split_cni_args(raw);
    if check_cni_args(raw, &["IP", "MAC", "K8S_POD_NAME"]).is_ok() {
        // Whatever strict validation accepts, the lenient split sees every
        // pair of (the reference parses the same string the same way).
        let n = raw.split(';').filter(|p| !p.is_empty()).count();
        assert!(pairs.len() <= n);
    }
});
