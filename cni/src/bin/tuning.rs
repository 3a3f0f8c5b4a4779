//! The `tuning` CNI meta plugin binary.

fn main() {
    weft_cni::skel::run(&weft_cni::plugin::tuning::Tuning)
}
