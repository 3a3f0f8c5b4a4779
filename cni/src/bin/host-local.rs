//! The `host-local` IPAM plugin binary.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::host_local::HostLocal)
}
