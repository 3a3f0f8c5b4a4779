//! The kernel side of bridge ADD/DEL/CHECK: bridge, veth pair, addresses,
//! routes, sysctls and the nftables batch. Everything created is named from
//! the attachment, so DEL and failure cleanup need no state.

use ipnet::IpNet;

use super::config::{BridgeConf, VlanPlan};
use super::plan::{self, AddrPlan, Names};
use crate::error::CniError;
use crate::link::{self, Link, LinkError, Netlink, RouteSpec};
use crate::nft::{NfSocket, NftError, skeleton};
use crate::ns::NetNs;
use crate::plugin::{netns, veth};

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

fn nft_err(e: NftError) -> CniError {
    CniError::internal(format!("ipMasq/macspoofchk nftables: {e}"), "")
}

/// What ADD made, for the result.
#[derive(Debug)]
pub struct Attached {
    /// The bridge.
    pub bridge: Link,
    /// The host veth.
    pub host: Link,
    /// The container interface.
    pub container: Link,
}

/// Ensures the bridge exists, is a bridge and is up.
pub async fn ensure_bridge(
    host: &Netlink,
    conf: &BridgeConf,
    vlan: &VlanPlan,
) -> Result<Link, CniError> {
    let name = &conf.bridge;
    let existing = host.link_by_name(name).await.map_err(internal)?;
    // Only a bridge made here gets its address set (for good: the kernel
    // then never swaps in the lowest port's address). A bridge someone else
    // made keeps whatever its owner chose; in particular writing back the
    // all-zero address the kernel gives a bridge whose last port left would
    // freeze it there, and a bridge at 00:00:00:00:00:00 has no local FDB
    // entry, so pods' unicast to the gateway would be flooded, not received.
    let br = match existing {
        Some(l) => l,
        None => {
            let mtu = (conf.veth.mtu != 0).then_some(conf.veth.mtu);
            host.add_bridge(name, mtu, false, Some(random_mac()))
                .await
                .map_err(internal)?;
            host.link_by_name(name)
                .await
                .map_err(internal)?
                .ok_or_else(|| internal(format!("bridge {name:?} vanished after creation")))?
        }
    };
    if !link::is_bridge(&br) {
        return Err(internal(format!(
            "{name:?} already exists but is not a bridge"
        )));
    }
    if vlan.needed() {
        let unavailable = |why: String| {
            internal(format!(
                "bridge {name}: VLAN filtering unavailable (kernel without CONFIG_BRIDGE_VLAN_FILTERING?): {why}"
            ))
        };
        host.set_vlan_filtering(br.index, name)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !host.vlan_filtering_on(br.index).await.map_err(internal)? {
            return Err(unavailable("the kernel did not enable it".into()));
        }
    }
    if !br.up || conf.promisc_mode {
        host.set_link(br.index, true, conf.promisc_mode.then_some(true), None)
            .await
            .map_err(internal)?;
    }
    Ok(br)
}

/// A random locally administered unicast MAC address.
pub fn random_mac() -> [u8; 6] {
    use std::io::Read;
    let mut m = [0u8; 6];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut m));
    if filled.is_err() {
        // No urandom: derive from the clock and pid (unique enough per node).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        m.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

/// Creates the veth pair and plugs the host end into the bridge.
#[allow(clippy::too_many_arguments)]
pub async fn create_veth(
    host: &Netlink,
    netns: &NetNs,
    br: &Link,
    conf: &BridgeConf,
    vlan: &VlanPlan,
    names: &Names,
    ifname: &str,
    mac: Option<[u8; 6]>,
) -> Result<Link, CniError> {
    // As the reference: the configured MTU, else the kernel default.
    let hv = veth::add_pair(host, netns, names, ifname, conf.veth.mtu, mac).await?;
    host.set_link(hv.index, true, None, Some(br.index))
        .await
        .map_err(internal)?;
    if conf.hairpin_mode || conf.port_isolation {
        host.set_port(hv.index, conf.hairpin_mode, conf.port_isolation)
            .await
            .map_err(internal)?;
    }
    if vlan.needed() {
        vlan_port(host, hv.index, vlan).await.map_err(internal)?;
    }
    Ok(hv)
}

async fn vlan_port(host: &Netlink, index: u32, vlan: &VlanPlan) -> Result<(), LinkError> {
    if !vlan.preserve_default {
        host.del_vlan(index, 1).await?;
    }
    if vlan.access != 0 {
        host.add_vlan(index, vlan.access, true, false).await?;
    }
    for vid in &vlan.trunk {
        host.add_vlan(index, *vid, false, false).await?;
    }
    Ok(())
}

/// Name of the VLAN gateway interface for `bridge` and `vid`, as the
/// reference names it (`<bridge>.<vid>`), if it fits IFNAMSIZ.
pub fn vlan_gateway_name(bridge: &str, vid: u16) -> Option<String> {
    let n = format!("{bridge}.{vid}");
    (n.len() <= 15).then_some(n)
}

/// Deterministic name of the bridge-side peer of the VLAN gateway interface
/// (the reference picks a random `veth…`; ours is derived from the gateway
/// name so a retry finds it).
pub fn vlan_gateway_peer(gw_name: &str) -> String {
    // FNV-1a, 32 bits.
    let h = gw_name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("vgw{h:08x}")
}

/// The link that holds the gateway addresses with `isGateway` and `vlan`:
/// like the reference, `<bridge>.<vlan>` is one end of a veth pair kept in
/// the host namespace whose other end is an untagged access port of the VLAN
/// on the bridge. Created on first use, shared by every container of that
/// bridge and VLAN, and (as the reference) never removed by DEL. Needs VLAN
/// filtering on the bridge for the port's PVID; on failure nothing is left.
pub async fn vlan_gateway_link(
    host: &Netlink,
    br: &Link,
    conf: &BridgeConf,
    vlan: &VlanPlan,
) -> Result<Link, CniError> {
    let name = vlan_gateway_name(&conf.bridge, vlan.access).ok_or_else(|| {
        CniError::config(
            format!(
                "vlan gateway interface name \"{}.{}\" is longer than 15 bytes",
                conf.bridge, vlan.access
            ),
            "",
        )
    })?;
    if let Some(l) = host.link_by_name(&name).await.map_err(internal)? {
        if !l.up {
            host.set_link(l.index, true, None, None)
                .await
                .map_err(internal)?;
        }
        return Ok(l);
    }
    let peer = vlan_gateway_peer(&name);
    let mtu = (br.mtu != 0).then_some(br.mtu);
    host.add_veth_local(&name, &peer, mtu).await.map_err(|e| {
        internal(format!(
            "could not create vlan gateway interface {name}: {e}"
        ))
    })?;
    let gone = |n: &str| LinkError::Netlink {
        op: format!("get link {n}"),
        msg: "vanished after creation".into(),
        errno: None,
    };
    let setup = async {
        let p = host.link_by_name(&peer).await?.ok_or_else(|| gone(&peer))?;
        host.set_link(p.index, true, None, Some(br.index)).await?;
        let access = VlanPlan {
            access: vlan.access,
            trunk: Vec::new(),
            preserve_default: vlan.preserve_default,
        };
        vlan_port(host, p.index, &access).await?;
        let g = host.link_by_name(&name).await?.ok_or_else(|| gone(&name))?;
        host.set_link(g.index, true, None, None).await?;
        host.link_by_name(&name).await?.ok_or_else(|| gone(&name))
    };
    match setup.await {
        Ok(l) => Ok(l),
        Err(e) => {
            if let Ok(Some(l)) = host.link_by_name(&name).await {
                let _ = host.del_link(l.index).await;
            }
            Err(internal(format!(
                "could not set up vlan gateway interface {name}: {e}"
            )))
        }
    }
}

/// How long ADD waits for IPv6 DAD with `enabledad` (the reference: 10 s).
pub const DAD_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until no IPv6 address of the link is tentative, like the
/// reference's `ip.SettleAddresses` (polls every 50 ms, bounded by
/// `timeout`). A failed DAD (duplicate address on the link) is an error, and
/// so is running out of time, as in the reference.
pub async fn settle_dad(
    nl: &Netlink,
    index: u32,
    timeout: std::time::Duration,
) -> Result<(), CniError> {
    let start = std::time::Instant::now();
    loop {
        let (tentative, failed) = nl.dad_state(index).await.map_err(internal)?;
        if let Some(ip) = failed.first() {
            return Err(internal(format!(
                "address {ip} failed duplicate address detection (DADFAILED)"
            )));
        }
        if tentative.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(internal(format!(
                "addresses {tentative:?} still tentative after {} ms of DAD",
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Configures the container interface: up, addresses (IPv6 without DAD
/// unless `enabledad`), routes (via the family's gateway when IPAM gave
/// none), like the reference's `ipam.ConfigureIface`.
pub async fn configure_container(
    cont: &Netlink,
    index: u32,
    plan: &AddrPlan,
    enabledad: bool,
) -> Result<(), CniError> {
    cont.set_link(index, true, None, None)
        .await
        .map_err(internal)?;
    for (addr, _) in &plan.ips {
        cont.add_addr(index, addr.addr(), addr.prefix_len(), !enabledad)
            .await
            .map_err(|e| internal(format!("failed to add IP addr {addr} to {index}: {e}")))?;
    }
    if enabledad && plan.ips.iter().any(|(a, _)| a.addr().is_ipv6()) {
        settle_dad(cont, index, DAD_SETTLE_TIMEOUT).await?;
    }
    for (dst, gw) in &plan.routes {
        let gw = plan::route_gateway(dst, *gw, &plan.ips);
        let r = RouteSpec::new(dst.network(), dst.prefix_len(), gw, index);
        cont.add_route(&r)
            .await
            .map_err(|e| internal(format!("failed to add route {dst}: {e}")))?;
    }
    Ok(())
}

/// Gives the gateway link (the bridge, or the VLAN gateway interface) its
/// gateway addresses and turns forwarding on.
pub async fn configure_gateway(
    host: &Netlink,
    br: &Link,
    plan: &AddrPlan,
    conf: &BridgeConf,
) -> Result<(), CniError> {
    if plan.bridge_addrs.is_empty() {
        return Ok(());
    }
    let existing: Vec<IpNet> = host
        .addrs(br.index)
        .await
        .map_err(internal)?
        .into_iter()
        .filter_map(|(ip, p)| IpNet::new(ip, p).ok())
        .collect();
    for want in &plan.bridge_addrs {
        match plan::ensure_bridge_addr(&existing, *want, conf.force_address, &conf.bridge)
            .map_err(internal)?
        {
            None => {}
            Some(del) => {
                for d in del {
                    host.del_addr(br.index, d.addr(), d.prefix_len())
                        .await
                        .map_err(internal)?;
                }
                host.add_addr(br.index, want.addr(), want.prefix_len(), true)
                    .await
                    .map_err(internal)?;
            }
        }
    }
    let v4 = plan.ips.iter().any(|(a, _)| a.addr().is_ipv4());
    let v6 = plan.ips.iter().any(|(a, _)| a.addr().is_ipv6());
    netns::enable_forwarding(v4, v6)
}

/// Releases the attachment's nftables state (ipMasq and macspoofchk).
pub fn release_rules(sock: &mut NfSocket, names: &Names) -> Result<(), NftError> {
    let mut ops = Vec::new();
    for (table, chain) in [
        (skeleton::inet_table(), &names.masq_chain),
        (skeleton::bridge_table(), &names.spoof_chain),
    ] {
        let owned = sock.owned(&table, chain)?;
        if !owned.is_empty() {
            ops.extend(crate::nft::release_ops(&table, chain, &owned));
        }
    }
    // A concurrent DEL of the same attachment (or a hand) removed some of
    // it: release the rest op by op.
    crate::nft::gc::apply_release(sock, &ops)
}

/// Installs ipMasq / macspoofchk for the attachment in one batch.
pub fn install_rules(
    sock: &mut NfSocket,
    conf: &BridgeConf,
    names: &Names,
    ips: &[IpNet],
    host_ifindex: u32,
    mac: Option<[u8; 6]>,
) -> Result<(), CniError> {
    let spoof = conf.macspoofchk && mac.is_some();
    let masq = conf.veth.ip_masq && !ips.is_empty();
    if !masq && !spoof {
        return Ok(());
    }
    release_rules(sock, names).map_err(nft_err)?;
    let mut ops = Vec::new();
    if conf.veth.ip_masq && !ips.is_empty() {
        skeleton::ensure(sock, skeleton::Skeleton::Inet).map_err(nft_err)?;
        ops.extend(plan::masq_ops(names, ips));
    }
    if let (true, Some(m)) = (spoof, mac) {
        skeleton::ensure(sock, skeleton::Skeleton::Bridge).map_err(nft_err)?;
        ops.extend(plan::spoof_ops(names, host_ifindex, m));
    }
    sock.apply(&ops).map_err(nft_err)
}
