//! Declares the `fuzzing` cfg that cargo-fuzz sets (checksum checks are
//! skipped under it so the fuzzer reaches deeper code).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
}
