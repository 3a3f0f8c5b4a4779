//! The `host-device` CNI plugin binary.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::host_device::HostDevice)
}
