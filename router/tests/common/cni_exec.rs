//! Where weft's CNI plugins are for the root tests; running them the way
//! libcni does is netsim's (`netsim::cni`).

use std::path::{Path, PathBuf};

/// The directory holding weft's CNI plugin binaries (`bridge`, `ptp`,
/// `host-local`, `portmap`), next to the built weftd; `None` (with the
/// reason printed) when they are not built. With CI=true their absence
/// fails the test.
pub fn plugin_dir() -> Option<PathBuf> {
    match netsim::cni::plugin_dir_next_to(Path::new(env!("CARGO_BIN_EXE_weftd"))) {
        Ok(dir) => Some(dir),
        Err(msg) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: {msg}"
            );
            eprintln!("skipping: {msg}");
            None
        }
    }
}
