//! The `bridge` plugin: a veth pair from the container into a Linux bridge,
//! addresses and routes from delegated IPAM, optional gateway, ipMasq and
//! macspoofchk (nftables), all over netlink with no child processes.
//!
//! Every kernel object is named from (network, container id, ifname) — see
//! [`crate::plugin::names::Names`] — so DEL cleans up without prevResult, with the netns gone
//! or with an empty `CNI_NETNS`, and a failed ADD undoes itself (including the
//! IPAM lease).

pub mod attach;
pub mod config;
pub mod plan;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::delegate;
use crate::error::CniError;
use crate::link::{self, Netlink};
use crate::nft::{self, NfSocket};
use crate::ns::NetNs;
use crate::plugin::{netns, verify, veth};
use crate::skel::{Invocation, Plugin};
use crate::spec::{CniResult, Interface, IpConfig, Route};
use config::BridgeConf;
use plan::Names;

/// The bridge plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bridge;

fn load(inv: &Invocation) -> Result<(BridgeConf, config::VlanPlan), CniError> {
    let conf = BridgeConf::parse(&inv.stdin).map_err(|e| CniError::decode(e, ""))?;
    let vlan = conf
        .validate()
        .map_err(|errs| CniError::config(errs.join("; "), ""))?;
    Ok((conf, vlan))
}

impl Bridge {
    async fn add_async(
        &self,
        inv: &Invocation,
        conf: &BridgeConf,
        vlan: &config::VlanPlan,
        netns: &NetNs,
        names: &Names,
        mac: Option<[u8; 6]>,
    ) -> Result<CniResult, CniError> {
        let host = Netlink::connect().map_err(|e| CniError::internal(e.to_string(), ""))?;
        let cont = Netlink::connect_in(netns).map_err(|e| CniError::internal(e.to_string(), ""))?;
        veth::ensure_absent(&cont, &inv.ifname).await?;
        let br = attach::ensure_bridge(&host, conf, vlan).await?;
        let hv =
            attach::create_veth(&host, netns, &br, conf, vlan, names, &inv.ifname, mac).await?;
        if conf.enabledad {
            // As the reference: make sure the container interface does DAD
            // (best effort; the namespace default may have it off).
            let k = inv.ifname.clone();
            let _ = netns.run(move || {
                let _ = crate::ns::write_sysctl(&format!("net/ipv6/conf/{k}/enhanced_dad"), "1");
                let _ = crate::ns::write_sysctl(&format!("net/ipv6/conf/{k}/accept_dad"), "1");
            });
        }
        // From here on a failure must undo the veth (and the IPAM lease).
        let mut leased = false;
        let r = self
            .add_rest(
                inv,
                (conf, vlan),
                &host,
                &cont,
                &br,
                &hv,
                names,
                &mut leased,
            )
            .await;
        if r.is_err() {
            let _ = host.del_link(hv.index).await;
            if let Ok(mut s) = NfSocket::open() {
                let _ = attach::release_rules(&mut s, names);
            }
            if leased {
                if let Some(t) = inv.net.ipam_type() {
                    let _ = delegate::exec_del(t, &inv.stdin, inv);
                }
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    async fn add_rest(
        &self,
        inv: &Invocation,
        (conf, vlan): (&BridgeConf, &config::VlanPlan),
        host: &Netlink,
        cont: &Netlink,
        br: &link::Link,
        hv: &link::Link,
        names: &Names,
        leased: &mut bool,
    ) -> Result<CniResult, CniError> {
        let ci = cont
            .link_by_name(&inv.ifname)
            .await
            .map_err(|e| CniError::internal(e.to_string(), ""))?
            .ok_or_else(|| {
                CniError::internal(
                    format!("container interface {} missing after creation", inv.ifname),
                    "",
                )
            })?;
        let mut result = CniResult::default();
        let mut addr_plan = plan::AddrPlan::default();
        if let Some(t) = inv.net.ipam_type() {
            let ipam = delegate::exec_add(t, &inv.stdin, inv)?;
            *leased = true;
            if ipam.ips.is_empty() {
                return Err(CniError::internal(
                    "IPAM plugin returned missing IP config",
                    "",
                ));
            }
            let ips: Vec<(IpNet, Option<IpAddr>)> =
                ipam.ips.iter().map(|i| (i.address, i.gateway)).collect();
            let routes: Vec<(IpNet, Option<IpAddr>)> =
                ipam.routes.iter().map(|r| (r.dst, r.gw)).collect();
            addr_plan =
                plan::plan_addresses(conf.is_gateway, conf.is_default_gateway, &ips, &routes)
                    .map_err(|e| CniError::internal(e, ""))?;
            result.dns = ipam.dns.clone();
            // Keep IPAM's route attributes, append ours.
            result.routes = ipam.routes.clone();
            for (dst, gw) in addr_plan.routes.iter().skip(ipam.routes.len()) {
                result.routes.push(Route::new(*dst, *gw));
            }
            result.ips = addr_plan
                .ips
                .iter()
                .map(|(a, g)| IpConfig {
                    address: *a,
                    gateway: *g,
                    interface: Some(2),
                })
                .collect();
        }
        if let Some(dns) = &inv.net.dns {
            if !dns.nameservers.is_empty()
                || !dns.domain.is_empty()
                || !dns.search.is_empty()
                || !dns.options.is_empty()
            {
                result.dns = dns.clone();
            }
        }
        if !conf.disable_container_interface {
            attach::configure_container(cont, ci.index, &addr_plan, conf.enabledad).await?;
        }
        if conf.is_gateway && vlan.access != 0 && !addr_plan.bridge_addrs.is_empty() {
            let gw = attach::vlan_gateway_link(host, br, conf, vlan).await?;
            attach::configure_gateway(host, &gw, &addr_plan, conf).await?;
        } else {
            attach::configure_gateway(host, br, &addr_plan, conf).await?;
        }
        let cmac = <[u8; 6]>::try_from(ci.mac.as_slice()).ok();
        let masq_ips: Vec<IpNet> = addr_plan.ips.iter().map(|(a, _)| *a).collect();
        let mut sock = NfSocket::open().map_err(|e| CniError::internal(e.to_string(), ""))?;
        attach::install_rules(&mut sock, conf, names, &masq_ips, hv.index, cmac)?;
        let br_now = host
            .link_by_index(br.index)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| br.clone());
        let netns_path = verify::sandbox(inv.netns.as_deref());
        let bridge = Interface {
            name: br_now.name.clone(),
            mac: link::format_mac(&br_now.mac),
            ..Default::default()
        };
        result.interfaces = std::iter::once(bridge)
            .chain(veth::result_interfaces(hv, &inv.ifname, &ci, netns_path))
            .collect();
        Ok(result)
    }
}

impl Plugin for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let (conf, vlan) = load(inv)?;
        inv.check_args(&["MAC"])?;
        let mac = conf
            .requested_mac(
                inv.arg("MAC"),
                inv.net.args.as_ref(),
                inv.net.runtime_config.as_ref(),
            )
            .map_err(|e| CniError::config(e, ""))?;
        let netns = netns::open_required(inv)?;
        let names = Names::new(&inv.net.name, &inv.container_id, &inv.ifname);
        netns::runtime()?.block_on(self.add_async(inv, &conf, &vlan, &netns, &names, mac))
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let _ = load(inv)?;
        if let Some(t) = inv.net.ipam_type() {
            delegate::exec_del(t, &inv.stdin, inv)?;
        }
        let names = Names::new(&inv.net.name, &inv.container_id, &inv.ifname);
        let netns = netns::open_for_del(inv)?;
        // The socket stays open until the links are gone: closing an
        // nfnetlink socket waits for the deleted rules' RCU grace period,
        // which then overlaps with the (slower) veth deletion.
        let mut sock = NfSocket::open().map_err(|e| CniError::internal(e.to_string(), ""))?;
        attach::release_rules(&mut sock, &names)
            .map_err(|e| CniError::internal(e.to_string(), ""))?;
        let r = netns::runtime()?.block_on(async {
            let host = Netlink::connect().map_err(|e| CniError::internal(e.to_string(), ""))?;
            veth::delete_pair(&host, &names, netns.as_ref(), &inv.ifname).await
        });
        drop(sock);
        r
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        let _ = load(inv)?;
        match inv.net.ipam_type() {
            Some(t) => delegate::exec_status(t, &inv.stdin, inv),
            None => Ok(()),
        }
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let _ = load(inv)?;
        let valid = crate::spec::valid_attachments(&inv.stdin)?;
        let keep = |cid: &str, ifname: &str| valid.iter().any(|(c, i)| c == cid && i == ifname);
        let mut sock = NfSocket::open().map_err(|e| CniError::internal(e.to_string(), ""))?;
        let mut ops = Vec::new();
        for (table, prefix) in [
            (
                nft::skeleton::inet_table(),
                crate::plugin::names::MASQ_PREFIX,
            ),
            (
                nft::skeleton::bridge_table(),
                crate::plugin::names::SPOOF_PREFIX,
            ),
        ] {
            let (o, _) = nft::gc::stale_ops(&mut sock, &table, prefix, &inv.net.name, &keep)
                .map_err(|e| CniError::internal(format!("GC of ipMasq/macspoofchk: {e}"), ""))?;
            ops.extend(o);
        }
        nft::gc::apply_release(&mut sock, &ops)
            .map_err(|e| CniError::internal(format!("GC of ipMasq/macspoofchk: {e}"), ""))?;
        match inv.net.ipam_type() {
            Some(t) => delegate::exec_gc(t, &inv.stdin, inv),
            None => Ok(()),
        }
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let (conf, _) = load(inv)?;
        let prev = inv
            .net
            .prev()?
            .ok_or_else(|| CniError::internal("Required prevResult missing", ""))?;
        if let Some(t) = inv.net.ipam_type() {
            delegate::exec_check(t, &inv.stdin, inv)?;
        }
        let netns = netns::open_required(inv)?;
        let names = Names::new(&inv.net.name, &inv.container_id, &inv.ifname);
        netns::runtime()?.block_on(async {
            let e = |m: String| CniError::internal(m, "");
            let host = Netlink::connect().map_err(|x| e(x.to_string()))?;
            let cont = Netlink::connect_in(&netns).map_err(|x| e(x.to_string()))?;
            let br = host
                .link_by_name(&conf.bridge)
                .await
                .map_err(|x| e(x.to_string()))?;
            let br = br
                .filter(link::is_bridge)
                .ok_or_else(|| e(format!("bridge {} missing", conf.bridge)))?;
            let hv_name = prev
                .interfaces
                .iter()
                .find(|i| i.sandbox.is_empty() && i.name != conf.bridge)
                .map_or(names.host_veth.clone(), |i| i.name.clone());
            let hv = host
                .link_by_name(&hv_name)
                .await
                .map_err(|x| e(x.to_string()))?;
            let hv = hv.ok_or_else(|| e(format!("host veth {hv_name} missing")))?;
            if hv.master != Some(br.index) {
                return Err(e(format!(
                    "interface {hv_name} is not attached to bridge {}",
                    conf.bridge
                )));
            }
            let ci = cont
                .link_by_name(&inv.ifname)
                .await
                .map_err(|x| e(x.to_string()))?;
            let ci = ci.ok_or_else(|| e(format!("Interface name {} not found", inv.ifname)))?;
            if let Some(want) = prev
                .interfaces
                .iter()
                .find(|i| i.name == inv.ifname && !i.sandbox.is_empty())
            {
                if !want.mac.is_empty()
                    && !want.mac.eq_ignore_ascii_case(&link::format_mac(&ci.mac))
                {
                    return Err(e(format!(
                        "Interface {} Mac {} doesn't match container Mac",
                        inv.ifname, want.mac
                    )));
                }
            }
            let have = cont
                .prefixes(ci.index)
                .await
                .map_err(|x| e(x.to_string()))?;
            for ip in &prev.ips {
                if !have.contains(&ip.address) {
                    return Err(e(format!(
                        "Failed to match addr {} on interface {}",
                        ip.address, inv.ifname
                    )));
                }
            }
            Ok(())
        })
    }
}
