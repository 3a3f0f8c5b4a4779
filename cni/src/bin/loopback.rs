//! The `loopback` CNI plugin binary.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::loopback::Loopback)
}
