//! `loopback`: brings the container's loopback interface up.
//!
//! ADD sets `CNI_IFNAME` (normally `lo`) up in `CNI_NETNS` and, without a
//! `prevResult`, reports it as the reference does: one interface (`mac`
//! all zeros, `sandbox` = `CNI_NETNS`) and its first IPv4 and first IPv6
//! address (`127.0.0.1/8`, `::1/128`), both pointing at that interface. With a
//! `prevResult` that result is passed through unchanged. An address outside
//! the loopback ranges on the interface is an error.
//!
//! DEL sets the interface down again, like the reference; an empty or
//! vanished `CNI_NETNS`, or a missing interface, is success. CHECK verifies
//! that `lo` is up.
//!
//! Deliberate differences from the reference 1.1.1: spec 1.1.0 is accepted;
//! DEL of an interface that does not exist succeeds.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::CniError;
use crate::link::SyncNetlink;
use crate::ns::NetNs;
use crate::skel::{Invocation, Plugin};
use crate::spec::{CniResult, Interface, IpConfig};

/// The loopback plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loopback;

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

fn netns_path(inv: &Invocation) -> Result<&std::path::Path, CniError> {
    inv.netns
        .as_deref()
        .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing", ""))
}

fn open(path: &std::path::Path) -> Result<NetNs, CniError> {
    NetNs::open(path).map_err(|e| internal(format!("failed to open netns {path:?}: {e}")))
}

/// The first address of each family, after checking that all are loopback.
fn loopback_addrs(addrs: &[(IpAddr, u8)]) -> Result<Vec<IpNet>, CniError> {
    if let Some((ip, _)) = addrs.iter().find(|(ip, _)| !ip.is_loopback()) {
        return Err(internal(format!(
            "loopback interface found with non-loopback address \"{ip}\""
        )));
    }
    let first = |v4: bool| {
        addrs
            .iter()
            .find(|(ip, _)| ip.is_ipv4() == v4)
            .and_then(|(ip, p)| IpNet::new(*ip, *p).ok())
    };
    Ok([first(true), first(false)].into_iter().flatten().collect())
}

impl Plugin for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let path = netns_path(inv)?;
        open(path)?.enter().map_err(internal)?;
        let mut nl = SyncNetlink::open().map_err(internal)?;
        let lo = nl
            .link_by_name(&inv.ifname)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("failed to find link {:?}", inv.ifname)))?;
        if !lo.up {
            nl.set_up(lo.index, true).map_err(internal)?;
        }
        let addrs = nl.addrs(lo.index).map_err(internal)?;
        let addrs = loopback_addrs(&addrs)?;
        if let Some(prev) = inv.net.prev()? {
            return Ok(prev);
        }
        Ok(CniResult {
            interfaces: vec![Interface {
                name: inv.ifname.clone(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: path.display().to_string(),
                ..Interface::default()
            }],
            ips: addrs
                .into_iter()
                .map(|address| IpConfig {
                    address,
                    gateway: None,
                    interface: Some(0),
                })
                .collect(),
            ..CniResult::default()
        })
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let Some(path) = inv.netns.as_deref().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        match NetNs::open(path) {
            Ok(ns) => ns.enter().map_err(internal)?,
            Err(e) if e.is_missing() => return Ok(()),
            Err(e) => return Err(internal(e)),
        }
        let mut nl = SyncNetlink::open().map_err(internal)?;
        match nl.link_by_name(&inv.ifname).map_err(internal)? {
            Some(lo) if lo.up => nl.set_up(lo.index, false).map_err(internal),
            _ => Ok(()),
        }
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        open(netns_path(inv)?)?.enter().map_err(internal)?;
        let mut nl = SyncNetlink::open().map_err(internal)?;
        // Like the reference: whatever CNI_IFNAME says, this checks `lo`.
        let lo = nl
            .link_by_name("lo")
            .map_err(internal)?
            .ok_or_else(|| internal("loopback interface lo not found"))?;
        if lo.up {
            Ok(())
        } else {
            Err(internal("loopback interface is down"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_address_per_family_and_only_loopback() {
        let a = |s: &str, p| (s.parse::<IpAddr>().unwrap(), p);
        let got = loopback_addrs(&[a("127.0.0.1", 8), a("::1", 128), a("127.0.0.2", 8)]).unwrap();
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["127.0.0.1/8", "::1/128"]);
        assert!(loopback_addrs(&[]).unwrap().is_empty());
        let e = loopback_addrs(&[a("127.0.0.1", 8), a("10.0.0.1", 24)]).unwrap_err();
        assert_eq!(e.code(), 999);
    }
}
