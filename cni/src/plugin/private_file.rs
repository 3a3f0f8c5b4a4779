//! A plugin's own state files: written whole (temp file, then rename) with
//! mode 0600 in a directory created 0700, so a crash never leaves half a
//! record and no other user reads it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::CniError;

/// Writes `body` to `path`; an error names `what` and the path.
pub fn write_private(path: &Path, body: &[u8], what: &str) -> Result<(), CniError> {
    let io = |e| CniError::io(format!("saving {what} {}", path.display()), e);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(body).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
