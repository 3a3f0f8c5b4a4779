//! A blocking rtnetlink client for plugins that make a handful of requests
//! in one namespace (loopback, tuning): no async runtime, no worker thread,
//! one socket, each request answered before the next is sent. The messages
//! are the same `netlink-packet-route` values [`Netlink`](super::Netlink)
//! sends.

use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::LinkUnspec;

use super::{Link, LinkError, LinkTuning};

/// A blocking rtnetlink socket in the calling thread's namespace.
#[derive(Debug)]
pub struct SyncNetlink {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn failed(op: &str, errno: i32) -> LinkError {
    LinkError::Netlink {
        op: op.to_string(),
        msg: std::io::Error::from_raw_os_error(errno).to_string(),
        errno: Some(errno),
    }
}

impl SyncNetlink {
    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> Result<Self, LinkError> {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        sock.bind_auto()?;
        Ok(Self {
            sock,
            seq: 1,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends one request and collects the answers: until the ACK (or the
    /// error) for a plain request, until DONE for a dump.
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        dump: bool,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let mut answers = Vec::new();
        loop {
            self.buf.clear();
            self.sock.recv(&mut self.buf, 0)?;
            let mut off = 0;
            while off < self.buf.len() {
                let Some(rest) = self.buf.get(off..) else {
                    break;
                };
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).map_err(|e| {
                        LinkError::Netlink {
                            op: op.to_string(),
                            msg: format!("undecodable answer: {e}"),
                            errno: None,
                        }
                    })?;
                let len = usize::try_from(msg.header.length).unwrap_or(0);
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(c) => Err(failed(op, -c.get())),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
        }
    }

    /// The link named `name`, if it exists.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, LinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(m),
            false,
        ) {
            Ok(answers) => Ok(answers.iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_msg(l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a link up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<(), LinkError> {
        let b = LinkUnspec::new_with_index(index);
        let b = if up { b.up() } else { b.down() };
        self.request(
            &format!("set link {index} {}", if up { "up" } else { "down" }),
            RouteNetlinkMessage::SetLink(b.build()),
            false,
        )
        .map(|_| ())
    }

    /// Changes the given properties of a link in one request.
    pub fn tune_link(&mut self, index: u32, t: &LinkTuning) -> Result<(), LinkError> {
        self.request(
            &format!("set link {index}"),
            RouteNetlinkMessage::SetLink(t.message(index)),
            false,
        )
        .map(|_| ())
    }

    /// Addresses (ip, prefix) on a link, in the kernel's order.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        let answers = self.request(
            &format!("list addresses of {index}"),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            true,
        )?;
        Ok(answers
            .iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewAddress(m) if m.header.index == index => {
                    m.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }
}
