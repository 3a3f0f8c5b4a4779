//! `wireguard_classify` on arbitrary input; the body (and what it asserts)
//! lives in `bodies/wireguard_classify.rs`, which `encap/tests/fuzz_bodies.rs`
//! also runs on stable.
#![no_main]

#[path = "../bodies/wireguard_classify.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
