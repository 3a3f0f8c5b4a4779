//! The `portmap` plugin: host ports to pod ports with nftables DNAT, chained
//! after an interface plugin. Per-pod chains are reached through shared
//! verdict maps keyed by (host address,) protocol and port, so a packet costs
//! one map lookup however many pods there are. All state is owned by the
//! chain named from (network, container id); DEL needs nothing else.

pub mod config;
pub mod plan;

use std::net::IpAddr;

use crate::error::CniError;
use crate::link::{self, Netlink};
use crate::nft::{self, NfSocket, NftError, skeleton};
use crate::ns;
use crate::skel::{Invocation, Plugin};
use crate::spec::CniResult;
use config::{PortMapConf, Settings};
use plan::PmNames;

/// The portmap plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortMap;

fn load(inv: &Invocation) -> Result<Settings, CniError> {
    let conf = PortMapConf::parse(&inv.stdin).map_err(|e| CniError::decode(e, ""))?;
    conf.settings()
        .map_err(|errs| CniError::config(errs.join("; "), ""))
}

fn nft_err(e: NftError) -> CniError {
    match e.errno() {
        Some(libc::EEXIST) => CniError::internal(
            "a requested host port is already mapped to another container",
            e.to_string(),
        ),
        Some(libc::ENOENT) => CniError::internal(
            "nftables object missing (externalSetMarkChain must name a chain in table inet weft-cni)",
            e.to_string(),
        ),
        _ => CniError::internal(format!("portmap nftables: {e}"), ""),
    }
}

/// The container addresses of a result: those on sandbox interfaces (or not
/// tied to an interface).
fn container_ips(r: &CniResult) -> Vec<IpAddr> {
    r.ips
        .iter()
        .filter(|ip| match ip.interface {
            Some(i) => r
                .interfaces
                .get(i)
                .is_none_or(|itf| !itf.sandbox.is_empty()),
            None => true,
        })
        .map(|ip| ip.address.addr())
        .collect()
}

fn release(sock: &mut NfSocket, names: &PmNames) -> Result<Vec<u16>, NftError> {
    let t = skeleton::inet_table();
    let owned = sock.owned(&t, &names.dnat_chain)?;
    if owned.is_empty() {
        return Ok(Vec::new());
    }
    let udp = plan::owned_udp_ports(&owned);
    // Op by op when something is already gone (a concurrent DEL, or state
    // removed by hand): what is left still goes.
    nft::gc::apply_release(sock, &nft::release_ops(&t, &names.dnat_chain, &owned))?;
    Ok(udp)
}

fn flush_udp(sock: &mut NfSocket, ports: &[u16]) -> Result<(), CniError> {
    sock.flush_conntrack_dports(17, ports)
        .map(|_| ())
        .map_err(|e| CniError::internal(format!("conntrack flush of UDP ports {ports:?}: {e}"), ""))
}

/// Turns on route_localnet on the interface that routes to `ip`.
fn enable_localnet(ip: IpAddr) -> Result<(), CniError> {
    let rt = link::runtime().map_err(|e| CniError::io("tokio runtime", e))?;
    let name = rt.block_on(async {
        let nl = Netlink::connect().map_err(|e| CniError::internal(e.to_string(), ""))?;
        let Some(oif) = nl
            .route_oif(ip)
            .await
            .map_err(|e| CniError::internal(e.to_string(), ""))?
        else {
            return Ok(None);
        };
        Ok::<_, CniError>(
            nl.link_by_index(oif)
                .await
                .map_err(|e| CniError::internal(e.to_string(), ""))?
                .map(|l| l.name),
        )
    })?;
    match name {
        Some(n) => set_localnet(&n),
        None => Ok(()),
    }
}

fn set_localnet(ifname: &str) -> Result<(), CniError> {
    let key = format!("net/ipv4/conf/{ifname}/route_localnet");
    if ns::read_sysctl(&key).ok().as_deref() != Some("1") {
        ns::write_sysctl(&key, "1").map_err(|e| CniError::io(format!("set {key}"), e))?;
    }
    Ok(())
}

impl Plugin for PortMap {
    fn name(&self) -> &'static str {
        "portmap"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let s = load(inv)?;
        let prev = inv.net.prev()?.ok_or_else(|| {
            CniError::config("must be called as chained plugin", "prevResult missing")
        })?;
        if s.mappings.is_empty() {
            return Ok(prev);
        }
        let names = PmNames::new(&inv.net.name, &inv.container_id);
        let ips = container_ips(&prev);
        let p = plan::plan(&names, &ips, &s);
        let mut sock = NfSocket::open().map_err(nft_err)?;
        let old_udp = release(&mut sock, &names).map_err(nft_err)?;
        if !p.ops.is_empty() {
            skeleton::ensure(&mut sock, skeleton::Skeleton::Inet).map_err(nft_err)?;
            match sock.apply(&p.ops) {
                Err(e) if e.errno() == Some(libc::EEXIST) && reclaim(&mut sock, &names, &p.ops) => {
                    sock.apply(&p.ops).map_err(nft_err)?;
                }
                r => r.map_err(nft_err)?,
            }
        }
        if p.localnet {
            // The host-side interfaces of the previous result (bridge, host
            // veth) are where the pod is routed: set it there without a
            // netlink round trip; fall back to a route lookup.
            let host_ifs: Vec<&str> = prev
                .interfaces
                .iter()
                .filter(|i| {
                    i.sandbox.is_empty() && !i.name.is_empty() && !i.name.contains(['/', '.'])
                })
                .map(|i| i.name.as_str())
                .filter(|n| {
                    std::path::Path::new("/proc/sys/net/ipv4/conf")
                        .join(n)
                        .exists()
                })
                .collect();
            if host_ifs.is_empty() {
                if let Some(v4) = ips.iter().copied().find(IpAddr::is_ipv4) {
                    enable_localnet(v4)?;
                }
            }
            for n in host_ifs {
                set_localnet(n)?;
            }
        }
        let mut udp = p.udp_ports.clone();
        udp.extend(
            old_udp
                .iter()
                .filter(|p| !udp.contains(p))
                .collect::<Vec<_>>(),
        );
        flush_udp(&mut sock, &udp)?;
        Ok(prev)
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let _ = load(inv)?;
        let names = PmNames::new(&inv.net.name, &inv.container_id);
        let mut sock = NfSocket::open().map_err(nft_err)?;
        let udp = release(&mut sock, &names).map_err(nft_err)?;
        flush_udp(&mut sock, &udp)
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let s = load(inv)?;
        let prev = inv
            .net
            .prev()?
            .ok_or_else(|| CniError::config("must be called as chained plugin", ""))?;
        if s.mappings.is_empty() {
            return Ok(());
        }
        let names = PmNames::new(&inv.net.name, &inv.container_id);
        let p = plan::plan(&names, &container_ips(&prev), &s);
        if p.ops.is_empty() {
            return Ok(());
        }
        let mut sock = NfSocket::open().map_err(nft_err)?;
        verify(&mut sock, &names, &p.ops).map_err(|why| {
            CniError::internal(
                format!(
                    "portmap state of container {} does not match its config",
                    inv.container_id
                ),
                why,
            )
        })
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let _ = load(inv)?;
        let valid = crate::spec::valid_attachments(&inv.stdin)?;
        let keep = |cid: &str, _: &str| valid.iter().any(|(c, _)| c == cid);
        let mut sock = NfSocket::open().map_err(nft_err)?;
        let (ops, released) = nft::gc::stale_ops(
            &mut sock,
            &skeleton::inet_table(),
            plan::DNAT_PREFIX,
            &inv.net.name,
            &keep,
        )
        .map_err(nft_err)?;
        nft::gc::apply_release(&mut sock, &ops).map_err(nft_err)?;
        flush_udp(&mut sock, &plan::owned_udp_ports(&released))
    }
}

/// Deletes map elements of the plan that already lead to this container's
/// chains (left behind when its owner records were removed by hand).
/// Returns whether anything was deleted.
fn reclaim(sock: &mut NfSocket, names: &PmNames, ops: &[nft::Op]) -> bool {
    let mut del = Vec::new();
    for op in ops {
        if let nft::Op::AddElems { table, set, elems } = op {
            for (key, _) in elems {
                let ours = |b: &[u8], c: &str| b.windows(c.len()).any(|w| w == c.as_bytes());
                if let Ok(Some(got)) = sock.elem(table, set, key) {
                    if ours(&got, &names.dnat_chain) || ours(&got, &names.post_chain) {
                        del.push(nft::Op::DelElems {
                            table: table.clone(),
                            set: set.clone(),
                            keys: vec![key.clone()],
                        });
                    }
                }
            }
        }
    }
    if del.is_empty() {
        return false;
    }
    // The masquerade chain is refilled by the retried ADD.
    del.push(nft::Op::FlushChain {
        table: skeleton::inet_table(),
        chain: names.post_chain.clone(),
    });
    nft::gc::apply_release(sock, &del).is_ok()
}

/// Compares the kernel with what ADD installs: every map element present
/// and pointing at the pod's chain, and the pod's chains holding the
/// planned number of rules. Returns what is missing.
fn verify(sock: &mut NfSocket, names: &PmNames, ops: &[nft::Op]) -> Result<(), String> {
    let e = |x: NftError| x.to_string();
    let t = skeleton::inet_table();
    if sock.owned(&t, &names.dnat_chain).map_err(e)?.is_empty() {
        return Err(format!("chain {} missing", names.dnat_chain));
    }
    let mut want_rules: Vec<(&str, usize)> = Vec::new();
    for op in ops {
        match op {
            nft::Op::AddElems { table, set, elems } => {
                for (key, verdict) in elems {
                    let got = sock.elem(table, set, key).map_err(e)?;
                    let Some(got) = got else {
                        return Err(format!("element of map {set} missing"));
                    };
                    let target = match verdict {
                        Some(nft::Verdict::Goto(c) | nft::Verdict::Jump(c)) => c.as_str(),
                        _ => continue,
                    };
                    if !got.windows(target.len()).any(|w| w == target.as_bytes()) {
                        return Err(format!("element of map {set} does not lead to {target}"));
                    }
                }
            }
            nft::Op::AddRule {
                chain,
                userdata: None,
                ..
            } => match want_rules.iter_mut().find(|(c, _)| *c == chain.as_str()) {
                Some(w) => w.1 += 1,
                None => want_rules.push((chain.as_str(), 1)),
            },
            _ => {}
        }
    }
    for (chain, want) in want_rules {
        let have = sock.plain_rules(&t, chain).map_err(e)?;
        if have != want {
            return Err(format!("chain {chain} has {have} rules, {want} expected"));
        }
    }
    Ok(())
}
