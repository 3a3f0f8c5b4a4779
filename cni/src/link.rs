//! Links, addresses and routes over rtnetlink: the kernel edge of the bridge
//! plugin. Each [`Netlink`] is bound to the namespace it was opened in.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlInfo, LinkMessage,
};
pub use netlink_packet_route::route::RouteScope;
use rtnetlink::{LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::ns::{NetNs, NsError};

mod addr;
pub mod sync;
mod vlan;

pub use sync::SyncNetlink;

/// Link errors.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A netlink request failed.
    #[error("{op}: {msg}")]
    Netlink {
        /// What was attempted.
        op: String,
        /// Kernel or library message.
        msg: String,
        /// errno when the kernel answered with one.
        errno: Option<i32>,
    },
    /// Opening the socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// Entering the namespace failed.
    #[error(transparent)]
    Ns(#[from] NsError),
}

impl LinkError {
    /// The errno, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { errno, .. } => *errno,
            _ => None,
        }
    }
}

fn nl_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let op = op.into();
    move |e| {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
            _ => None,
        };
        let msg = match errno {
            Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
            None => e.to_string(),
        };
        LinkError::Netlink { op, msg, errno }
    }
}

/// What we need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` (e.g. `bridge`, `veth`), if any.
    pub kind: Option<String>,
    /// Hardware address.
    pub mac: Vec<u8>,
    /// MTU.
    pub mtu: u32,
    /// Controller (bridge) index.
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Operationally up (`IFF_RUNNING`: carrier seen by the kernel's link watch).
    pub running: bool,
    /// `IFLA_IFALIAS`, if set.
    pub alias: Option<String>,
    /// Promiscuous mode (`IFF_PROMISC`).
    pub promisc: bool,
    /// All-multicast mode (`IFF_ALLMULTI`).
    pub allmulti: bool,
    /// Transmit queue length.
    pub txqlen: u32,
}

impl Link {
    fn from_msg(m: &LinkMessage) -> Self {
        let mut l = Self {
            index: m.header.index,
            name: String::new(),
            kind: None,
            mac: Vec::new(),
            mtu: 0,
            master: None,
            up: m.header.flags.contains(LinkFlags::Up),
            running: m.header.flags.contains(LinkFlags::Running),
            alias: None,
            promisc: m.header.flags.contains(LinkFlags::Promisc),
            allmulti: m.header.flags.contains(LinkFlags::Allmulti),
            txqlen: 0,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name.clone_from(n),
                LinkAttribute::Address(a) => l.mac.clone_from(a),
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::TxQueueLen(v) => l.txqlen = *v,
                LinkAttribute::Controller(c) => l.master = Some(*c),
                LinkAttribute::IfAlias(a) => l.alias = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let NlInfo::Kind(k) = i {
                            l.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Link properties to change with [`Netlink::tune_link`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkTuning {
    /// Hardware address.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Promiscuous mode.
    pub promisc: Option<bool>,
    /// All-multicast mode.
    pub allmulti: Option<bool>,
    /// Transmit queue length.
    pub txqlen: Option<u32>,
}

impl LinkTuning {
    /// The `RTM_SETLINK` message of link `index` making these changes.
    pub fn message(&self, index: u32) -> LinkMessage {
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(mac) = self.mac {
            b = b.address(mac.to_vec());
        }
        if let Some(mtu) = self.mtu {
            b = b.mtu(mtu);
        }
        if let Some(p) = self.promisc {
            b = b.promiscuous(p);
        }
        if let Some(a) = self.allmulti {
            b = b.allmulticast(a);
        }
        if let Some(q) = self.txqlen {
            b = b.txqueuelen(q);
        }
        b.build()
    }
}

/// A route to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination network.
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix: u8,
    /// Next hop.
    pub gw: Option<IpAddr>,
    /// Output interface.
    pub oif: u32,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    /// Scope (the builder's universe when `None`).
    pub scope: Option<RouteScope>,
}

impl RouteSpec {
    /// A universe-scoped route to `dst/prefix` out of `oif`, optionally via `gw`.
    pub fn new(dst: IpAddr, prefix: u8, gw: Option<IpAddr>, oif: u32) -> Self {
        Self {
            dst,
            prefix,
            gw,
            oif,
            src: None,
            scope: None,
        }
    }
}

/// An rtnetlink handle bound to one network namespace.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Connects in the calling thread's namespace. Needs a tokio runtime.
    pub fn connect() -> Result<Self, LinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Connects inside `ns` (the socket is created on a thread in the
    /// namespace and driven by the current runtime).
    pub fn connect_in(ns: &NetNs) -> Result<Self, LinkError> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns.run(|| {
            let _guard = rt.enter();
            rtnetlink::new_connection()
        })??;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The link named `name`, if it exists.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, LinkError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(m) => Ok(m.as_ref().map(Link::from_msg)),
            Err(e) => {
                let e = nl_err(format!("get link {name}"))(e);
                if e.errno() == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The link with index `index`, if it exists.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, LinkError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(m) => Ok(m.as_ref().map(Link::from_msg)),
            Err(e) => {
                let e = nl_err(format!("get link {index}"))(e);
                if e.errno() == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Creates a bridge (up), tolerating a concurrent creator. A `mac`
    /// given here is the bridge's for good: the kernel no longer replaces it
    /// with the lowest port address as ports come and go.
    pub async fn add_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        vlan_filtering: bool,
        mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError> {
        let mut b = LinkBridge::new(name).up();
        if let Some(m) = mac {
            b = b.address(m.to_vec());
        }
        if vlan_filtering {
            b = b.vlan_filtering(true);
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        match self
            .handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(nl_err(format!("add bridge {name}")))
        {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Creates a veth pair: `host` here, `peer` directly in namespace `peer_ns`.
    pub async fn add_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetNs,
        mtu: Option<u32>,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError> {
        use std::os::fd::AsRawFd;
        let mut p = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(peer_ns.file().as_raw_fd());
        if let Some(m) = mtu {
            p = p.mtu(m);
        }
        if let Some(mac) = peer_mac {
            p = p.address(mac.to_vec());
        }
        let mut v =
            LinkVeth::new(host, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())));
        if let Some(m) = mtu {
            v = v.mtu(m);
        }
        self.handle
            .link()
            .add(v.build())
            .execute()
            .await
            .map_err(nl_err(format!("add veth {host}/{peer}")))
    }

    /// Creates a veth pair with both ends in this namespace.
    pub async fn add_veth_local(
        &self,
        name: &str,
        peer: &str,
        mtu: Option<u32>,
    ) -> Result<(), LinkError> {
        let mut v = LinkVeth::new(name, peer);
        if let Some(m) = mtu {
            v = v.mtu(m);
        }
        self.handle
            .link()
            .add(v.build())
            .execute()
            .await
            .map_err(nl_err(format!("add veth {name}/{peer}")))
    }

    /// Sets promiscuous mode and (optionally) brings the link up.
    pub async fn set_link(
        &self,
        index: u32,
        up: bool,
        promisc: Option<bool>,
        master: Option<u32>,
    ) -> Result<(), LinkError> {
        let mut b = LinkUnspec::new_with_index(index);
        if up {
            b = b.up();
        }
        if let Some(p) = promisc {
            b = b.promiscuous(p);
        }
        if let Some(m) = master {
            b = b.controller(m);
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(nl_err(format!("set link {index}")))
    }

    /// Changes the given properties of a link in one request (`None`
    /// leaves a property alone).
    pub async fn tune_link(&self, index: u32, t: &LinkTuning) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(t.message(index))
            .execute()
            .await
            .map_err(nl_err(format!("set link {index}")))
    }

    /// Sets a link administratively down.
    pub async fn set_link_down(&self, index: u32) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(nl_err(format!("set link {index} down")))
    }

    /// Bridge port options: hairpin and isolation.
    pub async fn set_port(
        &self,
        index: u32,
        hairpin: bool,
        isolated: bool,
    ) -> Result<(), LinkError> {
        let msg = LinkBridgePort::new(index)
            .hairpin(hairpin)
            .isolated(isolated)
            .build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(nl_err(format!("set bridge port {index}")))
    }

    /// Moves a link into the namespace `ns`, in the same request renaming it
    /// to `name` there (the kernel closes the device for the move, so no
    /// separate down is needed), optionally setting its alias and bringing
    /// it up. A name taken in `ns` fails the whole request: the link stays.
    pub async fn move_to(
        &self,
        index: u32,
        ns: &NetNs,
        name: &str,
        alias: Option<&str>,
        up: bool,
    ) -> Result<(), LinkError> {
        use std::os::fd::AsRawFd;
        let mut b = LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.file().as_raw_fd())
            .name(name.to_string());
        if let Some(a) = alias {
            b = b.alias(a.to_string());
        }
        if up {
            b = b.up();
        }
        let msg = b.build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl_err(format!(
                "move link {index} to another netns as {name}"
            )))
    }

    /// Every link in this namespace.
    pub async fn links(&self) -> Result<Vec<Link>, LinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl_err("list links"))?;
        Ok(msgs.iter().map(Link::from_msg).collect())
    }

    /// Deletes a link.
    pub async fn del_link(&self, index: u32) -> Result<(), LinkError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(nl_err(format!("delete link {index}")))
    }
}

/// A single-threaded runtime for one plugin invocation.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// The kind string of a bridge.
pub const BRIDGE_KIND: &str = "bridge";

/// The `InfoKind` display of a bridge, for comparisons.
pub fn is_bridge(l: &Link) -> bool {
    l.kind.as_deref() == Some(&InfoKind::Bridge.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("0a:58:0A:f4:00:1f").unwrap();
        assert_eq!(format_mac(&m), "0a:58:0a:f4:00:1f");
        assert_eq!(parse_mac("0a:58:0a:f4:00"), None);
        assert_eq!(parse_mac("0a:58:0a:f4:00:1f:00"), None);
        assert_eq!(parse_mac("zz:58:0a:f4:00:1f"), None);
    }
}
