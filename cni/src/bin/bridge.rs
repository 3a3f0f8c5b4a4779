//! The `bridge` CNI plugin binary.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::bridge::Bridge)
}
