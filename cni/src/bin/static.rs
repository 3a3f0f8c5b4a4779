//! The `static` IPAM plugin binary.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::static_ipam::Static)
}
