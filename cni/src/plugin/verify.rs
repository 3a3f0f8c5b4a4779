//! CHECK of a pod interface against the attachment's `prevResult`, shared
//! by ptp and host-device: its MAC, every address and every route, with the
//! reference's messages. The interface lookup (and its kind) stays with
//! each plugin.

use crate::error::CniError;
use crate::link::{self, Link, Netlink};
use crate::spec::{CniResult, Interface, Route};

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

/// The `sandbox` a result names: `CNI_NETNS` as given, or empty.
pub fn sandbox(netns: Option<&std::path::Path>) -> String {
    netns.map(|p| p.display().to_string()).unwrap_or_default()
}

/// Fails unless `dev` (in the namespace `cont` talks to) has the MAC `want`
/// names, each of `prev`'s addresses and each of its routes. `prefix`
/// starts the MAC message (the reference's ptp says `ptp: `).
pub async fn interface_matches(
    cont: &Netlink,
    dev: &Link,
    want: &Interface,
    prev: &CniResult,
    prefix: &str,
) -> Result<(), CniError> {
    let ifname = &want.name;
    let have_mac = link::format_mac(&dev.mac);
    if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&have_mac) {
        return Err(internal(format!(
            "{prefix}Interface {ifname} Mac {} doesn't match container Mac: {have_mac}",
            want.mac
        )));
    }
    let have = cont.prefixes(dev.index).await.map_err(internal)?;
    if let Some(ip) = prev.ips.iter().find(|ip| !have.contains(&ip.address)) {
        return Err(internal(format!(
            "Failed to match addr {} on interface {ifname}",
            ip.address
        )));
    }
    let routes = cont.routes_via(dev.index).await.map_err(internal)?;
    let routed = |r: &Route| {
        routes
            .iter()
            .any(|(d, g)| *d == r.dst && (r.gw.is_none() || *g == r.gw))
    };
    if let Some(r) = prev.routes.iter().find(|r| !routed(r)) {
        return Err(internal(format!(
            "Failed to match route {} on interface {ifname}",
            r.dst
        )));
    }
    Ok(())
}
