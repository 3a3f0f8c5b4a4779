//! The `weft` CNI meta-plugin binary. Cargo builds it as `weft-meta` (the
//! `weft` CLI owns that name in target/); it is installed as `weft` in the
//! CNI plugin directory (CNI type `weft`), and may be linked as `flannel`.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::weft::Weft)
}
