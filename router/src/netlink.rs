//! The rtnetlink edge: dumps weftd's own routes, applies `RouteOp`s with
//! weftd's route protocol number, watches the kernel for changes, and looks
//! up the underlay interface. Never touches routes of other protocols.

use std::net::IpAddr;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use tokio::sync::{Mutex, mpsc};

use crate::cidr::Cidr;
use crate::reconcile::{KernelEvent, KernelRoute, RouteOp, RouteVia, diff};

/// weftd's route protocol number: 0x57 ('W'), unused in
/// /etc/iproute2/rt_protos. `ip route show proto 87` lists weftd's routes.
pub const WEFT_RTPROTO: u8 = 0x57;

/// Route requests packed into one netlink datagram by
/// [`RouteSync::apply_ops`]: one sendmsg and one ACK per batch instead of
/// per route (the kernel answers only failures and the batch's last
/// request).
const BATCH: usize = 256;

/// Errors at the netlink edge.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening a netlink socket failed.
    #[error("opening netlink socket: {0}")]
    Open(#[from] std::io::Error),
    /// A request failed.
    #[error("{what}: {source}")]
    Request {
        /// What was being done.
        what: String,
        /// The error.
        source: rtnetlink::Error,
    },
    /// A route could not be expressed as a netlink message.
    #[error("invalid route {0:?}")]
    InvalidRoute(KernelRoute),
}

/// The underlay interface: the one holding `underlay_ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayLink {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// The address's subnet (for direct routing).
    pub subnet: Cidr,
}

/// A netlink handle for weftd's routes.
#[derive(Debug, Clone)]
pub struct RouteSync {
    handle: Handle,
    batch: Arc<Mutex<BatchSocket>>,
    batch_portid: u32,
}

/// A plain rtnetlink socket for batched route changes.
struct BatchSocket {
    sock: TokioSocket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for BatchSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSocket")
            .field("seq", &self.seq)
            .finish()
    }
}

impl BatchSocket {
    /// The socket and its netlink port id.
    fn open() -> std::io::Result<(Self, u32)> {
        let mut sock = TokioSocket::new(NETLINK_ROUTE)?;
        let s = sock.socket_mut();
        let portid = s.bind_auto()?.port_number();
        s.connect(&SocketAddr::new(0, 0))?;
        // Errors carry only the failed request's header, so a batch of
        // failures fits the receive buffer.
        s.set_cap_ack(true)?;
        s.set_rx_buf_sz(1 << 20)?;
        let me = Self {
            sock,
            seq: 0,
            buf: Vec::new(),
        };
        Ok((me, portid))
    }

    /// Sends `ops` as one datagram and waits for the last one's ACK; the
    /// first failure (a delete of a route already gone is none) is
    /// returned once the kernel has answered the whole batch.
    async fn send(&mut self, ops: &[RouteOp]) -> Result<(), NetlinkError> {
        let Some(last) = ops.len().checked_sub(1) else {
            return Ok(());
        };
        let base = self.seq.wrapping_add(1);
        self.buf.clear();
        for (i, op) in ops.iter().enumerate() {
            let (msg, flags) = match op {
                RouteOp::Replace(r) => (
                    RouteNetlinkMessage::NewRoute(build(r)?),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                ),
                RouteOp::Delete(r) => (RouteNetlinkMessage::DelRoute(build(r)?), NLM_F_REQUEST),
            };
            let mut h = NetlinkHeader::default();
            h.flags = if i == last { flags | NLM_F_ACK } else { flags };
            self.seq = self.seq.wrapping_add(1);
            h.sequence_number = self.seq;
            let mut m = NetlinkMessage::new(h, NetlinkPayload::from(msg));
            m.finalize();
            let start = self.buf.len();
            self.buf.resize(start + m.buffer_len(), 0);
            m.serialize(&mut self.buf[start..]);
        }
        let sent = self
            .sock
            .send(&self.buf)
            .await
            .map_err(NetlinkError::Open)?;
        if sent != self.buf.len() {
            return Err(NetlinkError::Open(std::io::Error::other(
                "short netlink send",
            )));
        }
        let last_seq = self.seq;
        let mut first_err = None;
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .await
                .map_err(NetlinkError::Open)?;
            let mut rest = &data[..];
            let mut done = false;
            while !rest.is_empty() {
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest) else {
                    break;
                };
                let len = (m.header.length as usize).max(16).next_multiple_of(4);
                rest = rest.get(len..).unwrap_or_default();
                let NetlinkPayload::Error(e) = m.payload else {
                    continue;
                };
                let seq = m.header.sequence_number;
                let idx = seq.wrapping_sub(base) as usize;
                if e.code.is_some()
                    && let Some(op) = ops.get(idx)
                {
                    let err = rtnetlink::Error::NetlinkError(e);
                    let ignore = matches!(op, RouteOp::Delete(_)) && is_gone(&err);
                    if !ignore && first_err.is_none() {
                        let what = match op {
                            RouteOp::Replace(r) => format!("adding route {}", show(r)),
                            RouteOp::Delete(r) => format!("deleting route {}", show(r)),
                        };
                        first_err = Some(NetlinkError::Request { what, source: err });
                    }
                }
                done |= seq == last_seq;
            }
            if done {
                return first_err.map_or(Ok(()), Err);
            }
        }
    }
}

fn req(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

fn is_gone(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if matches!(-m.raw_code(), libc::ESRCH | libc::ENOENT))
}

impl RouteSync {
    /// Opens a netlink connection (its driver task runs on the current
    /// tokio runtime).
    pub fn new() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let (batch, batch_portid) = BatchSocket::open()?;
        Ok(Self {
            handle,
            batch: Arc::new(Mutex::new(batch)),
            batch_portid,
        })
    }

    /// The netlink port id route changes are sent from: the kernel's
    /// notifications about them carry it (see [`watch_kernel`]).
    pub fn portid(&self) -> u32 {
        self.batch_portid
    }

    /// The raw rtnetlink handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Every route of weftd's protocol in the main table (both families).
    pub async fn dump_own(&self) -> Result<Vec<KernelRoute>, NetlinkError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let mut s = self.handle.route().get(msg).execute();
            while let Some(m) = s.try_next().await.map_err(req("dumping routes"))? {
                if m.header.protocol != RouteProtocol::Other(WEFT_RTPROTO)
                    || route_table_id(&m) != u32::from(RouteHeader::RT_TABLE_MAIN)
                {
                    continue;
                }
                if let Some(r) = parse_route(&m) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Applies one operation: replace on add; a delete of a route that is
    /// already gone succeeds. Through the batch socket like
    /// [`Self::apply_ops`], so the watcher recognises its own deletions.
    pub async fn apply(&self, op: &RouteOp) -> Result<(), NetlinkError> {
        self.apply_ops(std::slice::from_ref(op)).await
    }

    /// Dumps, diffs against `desired` and applies the difference. Returns
    /// the operations applied.
    pub async fn reconcile(&self, desired: &[KernelRoute]) -> Result<Vec<RouteOp>, NetlinkError> {
        self.reconcile_with(desired, true).await
    }

    /// [`Self::reconcile`], optionally without deletions (stale routes kept
    /// during a graceful restart).
    pub async fn reconcile_with(
        &self,
        desired: &[KernelRoute],
        delete: bool,
    ) -> Result<Vec<RouteOp>, NetlinkError> {
        let current = self.dump_own().await?;
        let mut ops = diff(desired, &current);
        if !delete {
            ops.retain(|o| matches!(o, RouteOp::Replace(_)));
        }
        self.apply_ops(&ops).await?;
        Ok(ops)
    }

    /// Applies `ops` (replacements before deletions, as [`diff`] and
    /// `change_ops` order them).
    pub async fn apply_ops(&self, ops: &[RouteOp]) -> Result<(), NetlinkError> {
        // The kernel handles the requests of one socket in order, so
        // replacements stay before deletions (a changed next hop never
        // leaves a gap). Batches of BATCH requests go out as one datagram
        // each: 100k routes cost a few hundred syscalls, not 200k.
        let mut batch = self.batch.lock().await;
        for chunk in ops.chunks(BATCH) {
            batch.send(chunk).await?;
        }
        Ok(())
    }

    /// The link named `name`, if it exists.
    async fn link_by_name(
        &self,
        name: &str,
    ) -> Result<Option<netlink_packet_route::link::LinkMessage>, NetlinkError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match s.try_next().await {
            Ok(m) => Ok(m),
            Err(e)
                if is_gone(&e)
                    || matches!(&e, rtnetlink::Error::NetlinkError(m) if -m.raw_code() == libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(req(format!("looking up link {name}"))(e)),
        }
    }

    /// Interface index of `name`, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        Ok(self.link_by_name(name).await?.map(|m| m.header.index))
    }

    /// Whether interface `name` is a TUN/TAP device (a persistent TUN left
    /// by a graceful stop); `None` when there is no such interface.
    pub async fn is_tun(&self, name: &str) -> Result<Option<bool>, NetlinkError> {
        use netlink_packet_route::link::{InfoKind, LinkInfo};
        Ok(self.link_by_name(name).await?.map(|m| {
            m.attributes.iter().any(|a| {
                matches!(a, LinkAttribute::LinkInfo(infos)
                    if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Tun))))
            })
        }))
    }

    /// Sets the MTU of interface `ifindex`.
    pub async fn set_mtu(&self, ifindex: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(ifindex)
                    .mtu(mtu)
                    .build(),
            )
            .execute()
            .await
            .map_err(req(format!("setting MTU {mtu} on link #{ifindex}")))
    }

    /// The interface that holds `ip`, with its MTU and subnet.
    pub async fn underlay_link(&self, ip: IpAddr) -> Result<Option<UnderlayLink>, NetlinkError> {
        let mut found = None;
        let mut s = self.handle.address().get().execute();
        while let Some(m) = s.try_next().await.map_err(req("dumping addresses"))? {
            let has = m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(x) | AddressAttribute::Address(x) if *x == ip)
            });
            if has && found.is_none() {
                found = Some((m.header.index, m.header.prefix_len));
            }
        }
        let Some((ifindex, plen)) = found else {
            return Ok(None);
        };
        let mut s = self.handle.link().get().match_index(ifindex).execute();
        let Some(link) = s.try_next().await.map_err(req("getting underlay link"))? else {
            return Ok(None);
        };
        let mut name = String::new();
        let mut mtu = 1500;
        for a in &link.attributes {
            match a {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::Mtu(m) => mtu = *m,
                _ => {}
            }
        }
        let subnet = Cidr::new(ip, plen).map(|c| c.network());
        Ok(subnet.map(|subnet| UnderlayLink {
            ifindex,
            name,
            mtu,
            subnet,
        }))
    }
}

/// The kernel-side filter of the watch socket: link messages, and route
/// deletions of weftd's protocol not caused by `own_portid` (weftd's own
/// batch socket). Everything else (100k route additions, weftd's own
/// 100k deletions) is dropped before it is queued, so a table change
/// costs no notification traffic at all.
fn watch_filter(own_portid: u32) -> Vec<socket2::SockFilter> {
    use socket2::SockFilter as F;
    // Classic BPF loads are big-endian; netlink headers are host-endian.
    let h = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    let w = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    const LD_H: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_W: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const LD_B: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;
    const RTM_DELROUTE: u16 = 25;
    vec![
        F::new(LD_H, 0, 0, 4),                      // 0: nlmsg_type
        F::new(JEQ, 7, 0, h(RTM_NEWLINK)),          // 1: -> 9 accept
        F::new(JEQ, 6, 0, h(RTM_DELLINK)),          // 2: -> 9 accept
        F::new(JEQ, 0, 4, h(RTM_DELROUTE)),         // 3: else -> 8 drop
        F::new(LD_W, 0, 0, 12),                     // 4: nlmsg_pid (the requester)
        F::new(JEQ, 2, 0, w(own_portid)),           // 5: ours -> 8 drop
        F::new(LD_B, 0, 0, 16 + 5),                 // 6: rtm_protocol
        F::new(JEQ, 1, 0, u32::from(WEFT_RTPROTO)), // 7: -> 9 accept
        F::new(RET, 0, 0, 0),                       // 8: drop
        F::new(RET, 0, 0, u32::MAX),                // 9: accept
    ]
}

/// Subscribes to route and link changes: links changing and routes of
/// weftd's protocol disappearing, except those `sync` deleted itself.
/// Call before the first dump so nothing is missed.
pub fn watch_kernel(
    sync: &RouteSync,
) -> Result<mpsc::UnboundedReceiver<KernelEvent>, NetlinkError> {
    let (mut conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])?;
    socket2::SockRef::from(conn.socket_mut().socket_ref())
        .attach_filter(&watch_filter(sync.portid()))?;
    tokio::spawn(conn);
    // Unbounded: someone else deleting 100k routes yields 100k small
    // events, none of which may be lost (the daemon drains them in batches).
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let ev = match msg.payload {
                netlink_packet_core::NetlinkPayload::InnerMessage(m) => match m {
                    RouteNetlinkMessage::DelRoute(r)
                        if r.header.protocol == RouteProtocol::Other(WEFT_RTPROTO)
                            && route_table_id(&r) == u32::from(RouteHeader::RT_TABLE_MAIN) =>
                    {
                        Some(parse_route(&r).map_or(KernelEvent::Unknown, KernelEvent::RouteGone))
                    }
                    RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_) => {
                        Some(KernelEvent::Link)
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(ev) = ev
                && tx.send(ev).is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

fn route_table_id(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn addr_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn parse_route(m: &RouteMessage) -> Option<KernelRoute> {
    let mut dst = None;
    let mut gw = None;
    let mut oif = None;
    let mut multipath = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr_of(d),
            RouteAttribute::Gateway(g) => gw = addr_of(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => multipath = Some(multipath_gateways(hops)?),
            _ => {}
        }
    }
    let dst = match (dst, m.header.address_family) {
        (Some(d), _) => d,
        (None, AddressFamily::Inet) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        (None, _) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let dst = Cidr::new(dst, m.header.destination_prefix_length)?;
    let via = match (multipath, gw, oif) {
        (Some(mut gws), _, _) => {
            gws.sort_unstable();
            match gws[..] {
                [one] => RouteVia::Gateway(one),
                _ => RouteVia::Multipath(gws),
            }
        }
        (None, Some(g), _) => RouteVia::Gateway(g),
        (None, None, Some(i)) => RouteVia::Dev(i),
        (None, None, None) => return None,
    };
    Some(KernelRoute { dst, via })
}

/// The gateways of an `RTA_MULTIPATH` list; `None` when a next hop has
/// none (not a route weftd made).
fn multipath_gateways(hops: &[RouteNextHop]) -> Option<Vec<IpAddr>> {
    let gws: Option<Vec<IpAddr>> = hops
        .iter()
        .map(|h| {
            h.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => addr_of(g),
                _ => None,
            })
        })
        .collect();
    gws.filter(|g| !g.is_empty())
}

/// One `RTA_MULTIPATH` entry: a gateway, the device left to the kernel.
fn next_hop(gw: IpAddr) -> RouteNextHop {
    let mut h = RouteNextHop::default();
    h.attributes.push(RouteAttribute::Gateway(match gw {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }));
    h
}

fn build(r: &KernelRoute) -> Result<RouteMessage, NetlinkError> {
    let bad = |_| NetlinkError::InvalidRoute(r.clone());
    let b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .map_err(bad)?
        .protocol(RouteProtocol::Other(WEFT_RTPROTO))
        .table_id(u32::from(RouteHeader::RT_TABLE_MAIN))
        .kind(RouteType::Unicast);
    let b = match &r.via {
        RouteVia::Gateway(g) => b.gateway(*g).map_err(bad)?.scope(RouteScope::Universe),
        RouteVia::Multipath(gws) => {
            if gws.iter().any(|g| g.is_ipv4() != r.dst.is_ipv4()) {
                return Err(NetlinkError::InvalidRoute(r.clone()));
            }
            b.multipath(gws.iter().map(|g| next_hop(*g)).collect())
                .scope(RouteScope::Universe)
        }
        RouteVia::Dev(i) => b.output_interface(*i).scope(RouteScope::Link),
    };
    Ok(b.build())
}

fn show(r: &KernelRoute) -> String {
    match &r.via {
        RouteVia::Gateway(g) => format!("{} via {g}", r.dst),
        RouteVia::Multipath(gws) => {
            let hops: Vec<String> = gws.iter().map(|g| format!("nexthop via {g}")).collect();
            format!("{} {}", r.dst, hops.join(" "))
        }
        RouteVia::Dev(i) => format!("{} dev #{i}", r.dst),
    }
}
