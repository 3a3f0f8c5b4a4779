//! The `host-device` plugin: moves an existing host interface into the
//! container, renamed to `CNI_IFNAME` (its host name kept in the link alias,
//! as the reference does), optionally configured by IPAM; DEL moves it back
//! under its host name and, unlike the reference, restores its addresses
//! and up state from the record ADD kept under `dataDir`. netlink only.
//!
//! A failed ADD gives the device back and releases the IPAM lease. DEL is
//! idempotent: a device no longer in the container is not an error.

pub mod config;

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use crate::delegate;
use crate::error::CniError;
use crate::link::{self, Link, Netlink};
use crate::ns::NetNs;
use crate::plugin::bridge::attach::configure_container;
use crate::plugin::bridge::plan::AddrPlan;
use crate::plugin::{netns, verify};
use crate::skel::{Invocation, Plugin};
use crate::spec::{CniResult, Interface, IpConfig};
use config::{HostDeviceConf, HostState, Selector};

/// The host-device plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostDevice;

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

fn is_link_local(a: &IpNet) -> bool {
    match a.addr() {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Finds the host device the config names.
async fn find(host: &Netlink, sel: &Selector) -> Result<Link, CniError> {
    let missing = |what: String| internal(format!("failed to find host device: {what}"));
    match sel {
        Selector::Name(n) => host
            .link_by_name(n)
            .await
            .map_err(internal)?
            .ok_or_else(|| missing(format!("Link not found: {n}"))),
        Selector::Mac(m) => host
            .links()
            .await
            .map_err(internal)?
            .into_iter()
            .find(|l| l.mac == m)
            .ok_or_else(|| {
                missing(format!(
                    "failed to find physical interface with MAC {}",
                    link::format_mac(m)
                ))
            }),
        Selector::KernelPath(p) => {
            let dir = p.join("net");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map_err(|_| missing(format!("failed to find network devices at {dir:?}")))?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let links = host.links().await.map_err(internal)?;
            names
                .iter()
                .find_map(|n| links.iter().find(|l| &l.name == n).cloned())
                .ok_or_else(|| missing(format!("failed to find device name at {dir:?}")))
        }
    }
}

/// Moves `dev` into the container as `ifname` (alias = its host name), up,
/// in one request.
async fn move_in(
    host: &Netlink,
    cont: &Netlink,
    ns: &NetNs,
    dev: &Link,
    ifname: &str,
) -> Result<Link, CniError> {
    host.move_to(dev.index, ns, ifname, Some(&dev.name), true)
        .await
        .map_err(|e| {
            internal(format!(
                "failed to move {:?} to container ns as {ifname:?}: {e}",
                dev.name
            ))
        })?;
    cont.link_by_name(ifname)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(format!("failed to find {ifname:?} after the move")))
}

/// Moves container interface `dev` back to the host as `state.name` (up
/// when it was), then restores its addresses. A failed move leaves it in
/// the container under its container name, so DEL can be retried.
async fn move_out(
    (host, cont): (&Netlink, &Netlink),
    ns: &NetNs,
    dev: &Link,
    ifname: &str,
    state: &HostState,
) -> Result<(), CniError> {
    let host_ns = NetNs::open(Path::new("/proc/self/ns/net")).map_err(internal)?;
    if let Err(e) = cont
        .move_to(dev.index, &host_ns, &state.name, None, state.up)
        .await
    {
        // The kernel moves the device before renaming it: when the host
        // name is taken, it lands in the host under its container name.
        // Put it back for a retry.
        if let Ok(Some(l)) = host.link_by_name(&dev.name).await {
            if l.mac == dev.mac {
                let _ = host.move_to(l.index, ns, ifname, None, dev.up).await;
            }
        }
        return Err(internal(format!(
            "failed to move {ifname:?} back to the host as {:?}: {e}",
            state.name
        )));
    }
    let back = host
        .link_by_name(&state.name)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(format!("{} missing after the move back", state.name)))?;
    for a in &state.addrs {
        host.add_addr(back.index, a.addr(), a.prefix_len(), true)
            .await
            .map_err(|e| internal(format!("failed to restore {a} on {}: {e}", state.name)))?;
    }
    Ok(())
}

fn sandbox(inv: &Invocation) -> String {
    verify::sandbox(inv.netns.as_deref())
}

impl HostDevice {
    async fn add_async(
        &self,
        inv: &Invocation,
        conf: &HostDeviceConf,
        sel: &Selector,
        ns: &NetNs,
    ) -> Result<CniResult, CniError> {
        let host = Netlink::connect().map_err(internal)?;
        let cont = Netlink::connect_in(ns).map_err(internal)?;
        let dev = find(&host, sel).await?;
        if cont
            .link_by_name(&inv.ifname)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(internal(format!(
                "container interface {} already exists",
                inv.ifname
            )));
        }
        let addrs: Vec<IpNet> = host
            .prefixes(dev.index)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|a| !is_link_local(a))
            .collect();
        let state = HostState {
            name: dev.name.clone(),
            up: dev.up,
            addrs,
        };
        let path = conf.state_path(&inv.net.name, &inv.container_id, &inv.ifname);
        state.save(&path)?;
        let moved = match move_in(&host, &cont, ns, &dev, &inv.ifname).await {
            Ok(l) => l,
            Err(e) => {
                // Wherever it got to, give it back.
                // The move is one request: if it failed, the device is
                // still in the host as it was; if only the look-up failed,
                // give it back.
                for name in [&inv.ifname, &dev.name] {
                    if let Ok(Some(l)) = cont.link_by_name(name).await {
                        let _ = move_out((&host, &cont), ns, &l, name, &state).await;
                        break;
                    }
                }
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let mut leased = false;
        let r = self.configure(inv, &cont, &moved, &mut leased).await;
        if r.is_err() {
            if leased {
                if let Some(t) = inv.net.ipam_type() {
                    let _ = delegate::exec_del(t, &inv.stdin, inv);
                }
            }
            if move_out((&host, &cont), ns, &moved, &inv.ifname, &state)
                .await
                .is_ok()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        r
    }

    async fn configure(
        &self,
        inv: &Invocation,
        cont: &Netlink,
        dev: &Link,
        leased: &mut bool,
    ) -> Result<CniResult, CniError> {
        let iface = Interface {
            name: dev.name.clone(),
            mac: link::format_mac(&dev.mac),
            sandbox: sandbox(inv),
            ..Default::default()
        };
        let Some(t) = inv.net.ipam_type().filter(|t| !t.is_empty()) else {
            return Ok(CniResult {
                interfaces: vec![iface],
                ..Default::default()
            });
        };
        let mut result = delegate::exec_add(t, &inv.stdin, inv)?;
        *leased = true;
        if result.ips.is_empty() {
            return Err(internal("IPAM plugin returned missing IP config"));
        }
        let plan = AddrPlan {
            ips: result.ips.iter().map(|i| (i.address, i.gateway)).collect(),
            bridge_addrs: Vec::new(),
            routes: result.routes.iter().map(|r| (r.dst, r.gw)).collect(),
        };
        configure_container(cont, dev.index, &plan, false).await?;
        result.ips = result
            .ips
            .into_iter()
            .map(|i| IpConfig {
                interface: Some(0),
                ..i
            })
            .collect();
        result.interfaces = vec![iface];
        // As the reference: the config's dns replaces IPAM's.
        result.dns = inv.net.dns.clone().unwrap_or_default();
        Ok(result)
    }

    async fn del_async(
        &self,
        inv: &Invocation,
        conf: &HostDeviceConf,
        ns: &NetNs,
    ) -> Result<(), CniError> {
        let path = conf.state_path(&inv.net.name, &inv.container_id, &inv.ifname);
        let host = Netlink::connect().map_err(internal)?;
        let cont = Netlink::connect_in(ns).map_err(internal)?;
        let Some(dev) = cont.link_by_name(&inv.ifname).await.map_err(internal)? else {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        };
        // Our record, else the alias the reference (or we) left on the link.
        let state = match (HostState::load(&path), dev.alias.clone()) {
            (Some(s), _) => s,
            (None, Some(name)) if !name.is_empty() => HostState {
                name,
                up: false,
                addrs: Vec::new(),
            },
            _ => {
                return Err(internal(format!(
                    "failed to restore {:?}: its host name is unknown (no record, no alias)",
                    inv.ifname
                )));
            }
        };
        move_out((&host, &cont), ns, &dev, &inv.ifname, &state).await?;
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}

impl Plugin for HostDevice {
    fn name(&self) -> &'static str {
        "host-device"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = HostDeviceConf::parse(&inv.stdin)?;
        let sel = conf.selector()?;
        let ns = netns::open_required(inv)?;
        netns::runtime()?.block_on(self.add_async(inv, &conf, &sel, &ns))
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = HostDeviceConf::parse(&inv.stdin)?;
        conf.selector()?;
        if let Some(t) = inv.net.ipam_type().filter(|t| !t.is_empty()) {
            delegate::exec_del(t, &inv.stdin, inv)?;
        }
        match netns::open_for_del(inv)? {
            Some(ns) => netns::runtime()?.block_on(self.del_async(inv, &conf, &ns)),
            None => {
                let path = conf.state_path(&inv.net.name, &inv.container_id, &inv.ifname);
                let _ = std::fs::remove_file(path);
                Ok(())
            }
        }
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = HostDeviceConf::parse(&inv.stdin)?;
        conf.selector()?;
        let ns = netns::open_required(inv)?;
        if let Some(t) = inv.net.ipam_type().filter(|t| !t.is_empty()) {
            delegate::exec_check(t, &inv.stdin, inv)?;
        }
        let prev = inv
            .net
            .prev()?
            .ok_or_else(|| internal("Required prevResult missing"))?;
        let want = prev
            .interfaces
            .iter()
            .find(|i| i.name == inv.ifname && i.sandbox == sandbox(inv))
            .ok_or_else(|| {
                internal(format!(
                    "Sandbox in prevResult doesn't match configured netns: {}",
                    sandbox(inv)
                ))
            })?;
        netns::runtime()?.block_on(async {
            let cont = Netlink::connect_in(&ns).map_err(internal)?;
            let dev = cont
                .link_by_name(&inv.ifname)
                .await
                .map_err(internal)?
                .ok_or_else(|| {
                    internal(format!(
                        "Container Interface name in prevResult: {} not found",
                        inv.ifname
                    ))
                })?;
            verify::interface_matches(&cont, &dev, want, &prev, "").await
        })
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        match inv.net.ipam_type().filter(|t| !t.is_empty()) {
            Some(t) => delegate::exec_status(t, &inv.stdin, inv),
            None => Ok(()),
        }
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        match inv.net.ipam_type().filter(|t| !t.is_empty()) {
            Some(t) => delegate::exec_gc(t, &inv.stdin, inv),
            None => Ok(()),
        }
    }
}
