//! The `ptp` plugin: a veth pair with no bridge. The host end carries the
//! IPAM gateway as a /32 (/128) and a host route to the pod; the pod routes
//! everything, its own subnet included, via that address. Optional ipMasq
//! (nftables) and MTU; netlink only, no child processes.
//!
//! As with bridge, the host veth and the masquerade chain are named from
//! (network, container id, ifname) ([`crate::plugin::names::Names`]), so DEL
//! needs no prevResult and works with the namespace gone, and a failed ADD
//! removes the pair, the rules and the IPAM lease.

pub mod plan;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::delegate;
use crate::error::CniError;
use crate::link::{Link, Netlink, RouteSpec};
use crate::nft::NfSocket;
use crate::ns::NetNs;
use crate::plugin::names::Names;
use crate::plugin::{masq, netns, verify, veth};
use crate::skel::{Invocation, Plugin};
use crate::spec::{CniResult, IpConfig};
use plan::{PlannedRoute, PtpPlan};

/// The ptp plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ptp;

/// ptp's keys (unknown keys are ignored, as the reference does).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PtpConf {
    /// `ipMasq`, `ipMasqBackend`, `mtu`.
    #[serde(flatten)]
    pub veth: veth::VethKeys,
}

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

fn load(inv: &Invocation) -> Result<(PtpConf, &str), CniError> {
    let conf: PtpConf = serde_json::from_slice(&inv.stdin)
        .map_err(|e| CniError::decode(format!("failed to load netconf: {e}"), ""))?;
    let ipam = inv
        .net
        .ipam_type()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CniError::config("ptp needs an IPAM plugin (ipam.type)", ""))?;
    Ok((conf, ipam))
}

fn route_spec(r: &PlannedRoute, oif: u32) -> RouteSpec {
    RouteSpec {
        src: r.src,
        scope: r.scope,
        ..RouteSpec::new(r.dst.network(), r.dst.prefix_len(), r.gw, oif)
    }
}

async fn add_routes(nl: &Netlink, oif: u32, routes: &[PlannedRoute]) -> Result<(), CniError> {
    for r in routes {
        nl.add_route(&route_spec(r, oif))
            .await
            .map_err(|e| internal(format!("failed to add route {}: {e}", r.dst)))?;
    }
    Ok(())
}

/// Configures both ends from the plan: container addresses (no prefix
/// route, no DAD) and routes, then the host end's addresses and routes.
async fn apply(
    host: &Netlink,
    cont: &Netlink,
    hv: &Link,
    ci: &Link,
    p: &PtpPlan,
) -> Result<(), CniError> {
    cont.set_link(ci.index, true, None, None)
        .await
        .map_err(internal)?;
    for a in &p.container_addrs {
        cont.add_addr_opts(ci.index, a.addr(), a.prefix_len(), true, true)
            .await
            .map_err(|e| internal(format!("failed to add IP addr {a}: {e}")))?;
    }
    add_routes(cont, ci.index, &p.container_routes).await?;
    host.set_link(hv.index, true, None, None)
        .await
        .map_err(internal)?;
    for a in &p.host_addrs {
        host.add_addr(hv.index, a.addr(), a.prefix_len(), true)
            .await
            .map_err(|e| internal(format!("failed to add IP addr {a} to veth: {e}")))?;
    }
    add_routes(host, hv.index, &p.host_routes).await
}

impl Ptp {
    async fn add_async(
        &self,
        inv: &Invocation,
        conf: &PtpConf,
        ipam: &str,
        ns: &NetNs,
        names: &Names,
    ) -> Result<CniResult, CniError> {
        let host = Netlink::connect().map_err(internal)?;
        let cont = Netlink::connect_in(ns).map_err(internal)?;
        veth::ensure_absent(&cont, &inv.ifname).await?;
        let hv = veth::add_pair(&host, ns, names, &inv.ifname, conf.veth.mtu, None).await?;
        let mut leased = false;
        let r = self
            .attach(inv, conf, ipam, (&host, &cont), &hv, names, &mut leased)
            .await;
        if r.is_err() {
            let _ = host.del_link(hv.index).await;
            if let Ok(mut s) = NfSocket::open() {
                let _ = masq::release(&mut s, names);
            }
            if leased {
                let _ = delegate::exec_del(ipam, &inv.stdin, inv);
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    async fn attach(
        &self,
        inv: &Invocation,
        conf: &PtpConf,
        ipam: &str,
        (host, cont): (&Netlink, &Netlink),
        hv: &Link,
        names: &Names,
        leased: &mut bool,
    ) -> Result<CniResult, CniError> {
        let ci = cont
            .link_by_name(&inv.ifname)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal(format!("{} missing after creation", inv.ifname)))?;
        let ipam_result = delegate::exec_add(ipam, &inv.stdin, inv)?;
        *leased = true;
        if ipam_result.ips.is_empty() {
            return Err(internal("IPAM plugin returned missing IP config"));
        }
        let ips: Vec<(IpNet, Option<IpAddr>)> = ipam_result
            .ips
            .iter()
            .map(|i| (i.address, i.gateway))
            .collect();
        let routes: Vec<(IpNet, Option<IpAddr>)> =
            ipam_result.routes.iter().map(|r| (r.dst, r.gw)).collect();
        let p = plan::plan(&ips, &routes).map_err(internal)?;
        netns::enable_forwarding(
            ips.iter().any(|(a, _)| a.addr().is_ipv4()),
            ips.iter().any(|(a, _)| a.addr().is_ipv6()),
        )?;
        apply(host, cont, hv, &ci, &p).await?;
        if conf.veth.ip_masq {
            let mut sock = NfSocket::open().map_err(internal)?;
            let own: Vec<IpNet> = ips.iter().map(|(a, _)| *a).collect();
            masq::install(&mut sock, names, &own)?;
        }
        let mut result = ipam_result;
        result.ips = result
            .ips
            .into_iter()
            .map(|i| IpConfig {
                interface: Some(1),
                ..i
            })
            .collect();
        if let Some(dns) = inv.net.dns.as_ref().filter(|d| **d != Default::default()) {
            result.dns = dns.clone();
        }
        let sandbox = verify::sandbox(inv.netns.as_deref());
        result.interfaces = veth::result_interfaces(hv, &inv.ifname, &ci, sandbox).into();
        Ok(result)
    }
}

impl Plugin for Ptp {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let (conf, ipam) = load(inv)?;
        let ns = netns::open_required(inv)?;
        let names = Names::new(&inv.net.name, &inv.container_id, &inv.ifname);
        netns::runtime()?.block_on(self.add_async(inv, &conf, ipam, &ns, &names))
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let (_, ipam) = load(inv)?;
        delegate::exec_del(ipam, &inv.stdin, inv)?;
        let names = Names::new(&inv.net.name, &inv.container_id, &inv.ifname);
        let ns = netns::open_for_del(inv)?;
        // Held until the links are gone (see bridge: the socket's close
        // waits for the rules' grace period, overlapped with the delete).
        let mut sock = NfSocket::open().map_err(internal)?;
        masq::release(&mut sock, &names).map_err(internal)?;
        let r = netns::runtime()?.block_on(async {
            let host = Netlink::connect().map_err(internal)?;
            veth::delete_pair(&host, &names, ns.as_ref(), &inv.ifname).await
        });
        drop(sock);
        r
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let (_, ipam) = load(inv)?;
        let ns = netns::open_required(inv)?;
        delegate::exec_check(ipam, &inv.stdin, inv)?;
        let prev = inv
            .net
            .prev()?
            .ok_or_else(|| internal("ptp: Required prevResult missing"))?;
        let sandbox = verify::sandbox(inv.netns.as_deref());
        let want = prev
            .interfaces
            .iter()
            .find(|i| i.name == inv.ifname && i.sandbox == sandbox)
            .ok_or_else(|| {
                internal(format!(
                    "Sandbox in prevResult doesn't match configured netns: {sandbox}"
                ))
            })?;
        netns::runtime()?.block_on(async {
            let cont = Netlink::connect_in(&ns).map_err(internal)?;
            let ci = cont
                .link_by_name(&inv.ifname)
                .await
                .map_err(internal)?
                .ok_or_else(|| {
                    internal(format!(
                        "ptp: Container Interface name in prevResult: {} not found",
                        inv.ifname
                    ))
                })?;
            if ci.kind.as_deref() != Some("veth") {
                return Err(internal(format!(
                    "Error: Container interface {} not of type veth/p2p",
                    inv.ifname
                )));
            }
            verify::interface_matches(&cont, &ci, want, &prev, "ptp: ").await
        })
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        let (_, ipam) = load(inv)?;
        delegate::exec_status(ipam, &inv.stdin, inv)
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let (_, ipam) = load(inv)?;
        delegate::exec_gc(ipam, &inv.stdin, inv)
    }
}
