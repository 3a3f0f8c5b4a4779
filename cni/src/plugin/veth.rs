//! The veth pair of an attachment (bridge, ptp): created with the host end
//! named from the attachment and the container end directly in the
//! container's namespace, and deleted by that name so DEL needs no state.

use serde::Deserialize;

use super::names::Names;
use crate::error::CniError;
use crate::link::{self, Link, Netlink};
use crate::ns::NetNs;
use crate::spec::Interface;

/// The keys bridge and ptp share (flattened into each config): masquerade
/// and the MTU of the pair.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VethKeys {
    /// Masquerade traffic from the pod leaving its subnet.
    #[serde(default)]
    pub ip_masq: bool,
    /// Accepted for compatibility (`iptables`/`nftables`); nftables is used.
    #[serde(default)]
    pub ip_masq_backend: Option<String>,
    /// MTU of the veth ends (bridge: and of a bridge it creates; 0: kernel
    /// default).
    #[serde(default)]
    pub mtu: u32,
}

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

/// Creates the pair (`names.host_veth` here, `ifname` in `netns`) and
/// returns the host end. `mtu` 0 keeps the kernel default.
pub async fn add_pair(
    host: &Netlink,
    netns: &NetNs,
    names: &Names,
    ifname: &str,
    mtu: u32,
    mac: Option<[u8; 6]>,
) -> Result<Link, CniError> {
    let mtu = (mtu != 0).then_some(mtu);
    host.add_veth(&names.host_veth, ifname, netns, mtu, mac)
        .await
        .map_err(|e| match e.errno() {
            Some(libc::EEXIST) => internal(format!(
                "failed to create veth {}: a link with that name already exists (attachment already set up?)",
                names.host_veth
            )),
            _ => internal(format!("failed to create veth: {e}")),
        })?;
    host.link_by_name(&names.host_veth)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(format!("veth {} vanished", names.host_veth)))
}

/// Fails when `ifname` already exists in the container (as the reference).
pub async fn ensure_absent(cont: &Netlink, ifname: &str) -> Result<(), CniError> {
    if cont.link_by_name(ifname).await.map_err(internal)?.is_some() {
        return Err(internal(format!(
            "container veth name provided ({ifname}) already exists"
        )));
    }
    Ok(())
}

/// Deletes the attachment's pair: the host veth by its derived name, or the
/// container interface when the host end is not ours (e.g. made by another
/// plugin) and the namespace still exists. Missing links are fine.
pub async fn delete_pair(
    host: &Netlink,
    names: &Names,
    netns: Option<&NetNs>,
    ifname: &str,
) -> Result<(), CniError> {
    if let Some(hv) = host
        .link_by_name(&names.host_veth)
        .await
        .map_err(internal)?
    {
        match host.del_link(hv.index).await {
            Err(e) if e.errno() != Some(libc::ENODEV) => return Err(internal(e)),
            _ => return Ok(()),
        }
    }
    let Some(ns) = netns else { return Ok(()) };
    let cont = Netlink::connect_in(ns).map_err(internal)?;
    if let Some(l) = cont.link_by_name(ifname).await.map_err(internal)? {
        match cont.del_link(l.index).await {
            Err(e) if e.errno() != Some(libc::ENODEV) => return Err(internal(e)),
            _ => {}
        }
    }
    Ok(())
}

/// The result's entries for the pair: the host end, then the container
/// interface `ifname` in `sandbox`.
pub fn result_interfaces(
    host: &Link,
    ifname: &str,
    cont: &Link,
    sandbox: String,
) -> [Interface; 2] {
    [
        Interface {
            name: host.name.clone(),
            mac: link::format_mac(&host.mac),
            ..Default::default()
        },
        Interface {
            name: ifname.to_owned(),
            mac: link::format_mac(&cont.mac),
            sandbox,
            ..Default::default()
        },
    ]
}
