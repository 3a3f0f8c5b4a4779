//! The `weft` CNI meta-plugin binary (also installed as `flannel`).

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::weft::Weft)
}
