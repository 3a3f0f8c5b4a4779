//! The container namespace of an invocation, as the main plugins open it:
//! required for ADD and CHECK, optional (gone, or `CNI_NETNS` empty) for DEL,
//! plus the single-threaded runtime each invocation runs its netlink on.

use crate::error::CniError;
use crate::link;
use crate::ns::NetNs;
use crate::skel::Invocation;

/// The tokio runtime for one invocation.
pub fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    link::runtime().map_err(|e| CniError::io("tokio runtime", e))
}

/// `CNI_NETNS`, which must be set and exist (ADD, CHECK).
pub fn open_required(inv: &Invocation) -> Result<NetNs, CniError> {
    let path = inv
        .netns
        .as_ref()
        .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing", ""))?;
    NetNs::open(path).map_err(|e| {
        CniError::internal(
            format!("failed to open netns {:?}: {e}", path.display()),
            "",
        )
    })
}

/// `CNI_NETNS` for DEL: `None` when unset, empty or already gone.
pub fn open_for_del(inv: &Invocation) -> Result<Option<NetNs>, CniError> {
    match inv.netns.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => match NetNs::open(p) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(CniError::internal(e.to_string(), "")),
        },
        None => Ok(None),
    }
}
