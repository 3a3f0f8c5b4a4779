//! Attaching a pod namespace to its node, behind one trait: the CNI exec
//! of weft's plugins ([`crate::cni::CniAttach`], what real nodes do) or the
//! built-in [`BridgeAttach`], kept as the fallback for kernel baselines
//! that run without weftd (and so without a conflist).

use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::Result;
use crate::netns::Netns;
use crate::topology::Ipv4Cidr;

/// Everything an attach step needs to know about one pod, much like the
/// CNI ADD inputs (container id, netns, ifname) plus the node's network.
#[derive(Debug)]
pub struct AttachRequest<'a> {
    /// The node namespace (where a CNI plugin would run).
    pub node: &'a Netns,
    /// The pod namespace (`CNI_NETNS` = `/run/netns/<name>`).
    pub pod: &'a Netns,
    /// A container id unique in the run (`CNI_CONTAINERID`).
    pub container_id: String,
    /// Interface name inside the pod (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// Host-side veth name in the node namespace.
    pub host_veth: String,
    /// The node's pod CIDR.
    pub pod_cidr: Ipv4Cidr,
    /// The bridge's gateway address.
    pub gateway: Ipv4Addr,
    /// The address netsim planned for this pod (an IPAM plugin may pick another).
    pub ip: Ipv4Addr,
    /// The bridge's name (`cni0`).
    pub bridge: &'a str,
    /// MTU for the pod interface.
    pub mtu: u32,
    /// The node's weftd file directory (`net.d/` with the conflist,
    /// `subnet.env`, host-local leases under `ipam/`).
    pub files_dir: &'a Path,
}

/// What an attach produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// The host-side interface in the node namespace.
    pub host_veth: String,
}

/// Attaches pods to nodes. Implementations: [`crate::cni::CniAttach`]
/// (weft's plugins) and [`BridgeAttach`] (built in).
pub trait PodAttach: Send + Sync {
    /// Connects the pod (CNI ADD) and returns its address.
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attached>;

    /// Verifies the attachment (CNI CHECK). The default checks nothing.
    fn check(&self, _req: &AttachRequest<'_>) -> Result<()> {
        Ok(())
    }

    /// Disconnects the pod (CNI DEL). Namespace deletion removes the links
    /// anyway, so the default does nothing.
    fn detach(&self, _req: &AttachRequest<'_>) -> Result<()> {
        Ok(())
    }

    /// Whether attaching needs the node's conflist, i.e. weftd running on
    /// the node first. The cluster then attaches a node's pods once its
    /// weftd has written the files.
    fn needs_node_config(&self) -> bool {
        false
    }
}

/// Does what the CNI bridge plugin with host-local IPAM does: a `cni0`
/// bridge carrying the gateway address, a veth per pod into it, the pod's
/// address and a default route via the gateway.
#[derive(Debug, Default, Clone, Copy)]
pub struct BridgeAttach;

impl PodAttach for BridgeAttach {
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attached> {
        let node = req.node;
        let mtu = req.mtu.to_string();
        let exists = node.ip(&["link", "show", req.bridge]).is_ok();
        if !exists {
            node.ip(&["link", "add", req.bridge, "type", "bridge"])?;
            node.ip(&["link", "set", req.bridge, "mtu", &mtu, "up"])?;
            let gw = format!("{}/{}", req.gateway, req.pod_cidr.len);
            node.ip(&["addr", "add", &gw, "dev", req.bridge])?;
        }
        // The veth is created in the node and its peer moved into the pod.
        node.ip(&[
            "link",
            "add",
            &req.host_veth,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            req.ifname,
            "mtu",
            &mtu,
            "netns",
            req.pod.name(),
        ])?;
        node.ip(&["link", "set", &req.host_veth, "master", req.bridge, "up"])?;
        let pod = req.pod;
        let addr = format!("{}/{}", req.ip, req.pod_cidr.len);
        pod.ip(&["addr", "add", &addr, "dev", req.ifname])?;
        pod.ip(&["link", "set", req.ifname, "up"])?;
        pod.ip(&["route", "add", "default", "via", &req.gateway.to_string()])?;
        Ok(Attached {
            ip: req.ip,
            host_veth: req.host_veth.clone(),
        })
    }
}
