//! The container namespace of an invocation, as the main plugins open it:
//! required for ADD and CHECK, optional (gone, or `CNI_NETNS` empty) for DEL,
//! plus the single-threaded runtime each invocation runs its netlink on.

use crate::error::CniError;
use crate::link;
use crate::ns::{self, NetNs};
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

/// Turns IPv4 and/or IPv6 forwarding on in the calling thread's namespace
/// (the host), as the reference's `ip.EnableForward`; written only when off.
pub fn enable_forwarding(v4: bool, v6: bool) -> Result<(), CniError> {
    for (on, key, what) in [
        (v4, "net/ipv4/ip_forward", "enable ip_forward"),
        (v6, "net/ipv6/conf/all/forwarding", "enable IPv6 forwarding"),
    ] {
        if on && ns::read_sysctl(key).ok().as_deref() != Some("1") {
            ns::write_sysctl(key, "1").map_err(|e| CniError::io(what, e))?;
        }
    }
    Ok(())
}
