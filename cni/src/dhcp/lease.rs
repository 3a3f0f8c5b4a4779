//! One DHCP lease as the daemon keeps it, and every decision about it that
//! needs no socket or clock: which packet to send in which phase, which
//! reply to accept, when to renew (T1), rebind (T2) and give up (expiry),
//! and what CNI result the ACK stands for. Time is passed in as Unix
//! milliseconds so the record can be persisted and resumed by a restarted
//! daemon.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::wire::{FLAG_BROADCAST, Message, MessageType, OP_REPLY, ip_list, opt};
use crate::spec::{CniResult, IpConfig, Route};

/// What the client sends with every message of one lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientOptions {
    /// Client identifier text (`<containerid>/<network>/<ifname>`, at most 254 bytes).
    pub client_id: String,
    /// Hardware address of the interface.
    pub mac: [u8; 6],
    /// Options the client provides (`ipam.provide`), in order.
    #[serde(default)]
    pub provide: Vec<(u8, Vec<u8>)>,
    /// Parameter request list (`ipam.request` plus the defaults).
    #[serde(default)]
    pub request: Vec<u8>,
}

/// The client identifier the reference daemon uses, truncated to 254 bytes
/// at a character boundary.
pub fn client_id(container_id: &str, network: &str, ifname: &str) -> String {
    let mut id = format!("{container_id}/{network}/{ifname}");
    if id.len() > 254 {
        let mut end = 254;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
    }
    id
}

impl ClientOptions {
    /// A request carrying the client id, provided options and request list.
    fn message(&self, xid: u32, kind: MessageType, with_params: bool) -> Message {
        let mut m = Message::request(xid, self.mac);
        m.set_option(opt::MESSAGE_TYPE, vec![kind as u8]);
        let mut id = vec![0u8];
        id.extend_from_slice(self.client_id.as_bytes());
        m.set_option(opt::CLIENT_ID, id);
        if with_params {
            for (code, value) in &self.provide {
                m.set_option(*code, value.clone());
            }
            if !self.request.is_empty() {
                m.set_option(opt::PARAM_REQUEST, self.request.clone());
            }
        }
        m
    }

    /// DHCPDISCOVER, asking for `requested` when resuming a known address.
    /// Replies are asked to be broadcast: the interface has no address yet.
    pub fn discover(&self, xid: u32, requested: Option<Ipv4Addr>) -> Message {
        let mut m = self.message(xid, MessageType::Discover, true);
        m.flags = FLAG_BROADCAST;
        if let Some(ip) = requested {
            m.set_option(opt::REQUESTED_IP, ip.octets().to_vec());
        }
        m
    }

    /// DHCPREQUEST in SELECTING state, answering `offer`.
    pub fn select(&self, xid: u32, offer: &Message) -> Option<Message> {
        let server = offer.ip_option(opt::SERVER_ID)?;
        let mut m = self.message(xid, MessageType::Request, true);
        m.flags = FLAG_BROADCAST;
        m.set_option(opt::REQUESTED_IP, offer.yiaddr.octets().to_vec());
        m.set_option(opt::SERVER_ID, server.octets().to_vec());
        Some(m)
    }

    /// DHCPREQUEST in RENEWING (unicast) or REBINDING (broadcast) state:
    /// `ciaddr` set, no server id or requested address (RFC 2131 4.3.2).
    pub fn extend(&self, xid: u32, address: Ipv4Addr) -> Message {
        let mut m = self.message(xid, MessageType::Request, true);
        m.ciaddr = address;
        m
    }

    /// DHCPRELEASE of `address` to `server`.
    pub fn release(&self, xid: u32, address: Ipv4Addr, server: Ipv4Addr) -> Message {
        let mut m = self.message(xid, MessageType::Release, false);
        m.ciaddr = address;
        m.set_option(opt::SERVER_ID, server.octets().to_vec());
        m
    }

    /// True when `reply` answers our transaction `xid`: a BOOTREPLY of one
    /// of the `kinds`, for our hardware address.
    pub fn answers(&self, reply: &Message, xid: u32, kinds: &[MessageType]) -> bool {
        reply.op == OP_REPLY
            && reply.xid == xid
            && reply.hlen == 6
            && reply.chaddr[..6] == self.mac
            && reply.message_type().is_some_and(|t| kinds.contains(&t))
    }
}

/// Why an ACK cannot make a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No usable `yiaddr`.
    #[error("DHCPACK carries no address")]
    NoAddress,
    /// No or a non-contiguous subnet mask.
    #[error("DHCP option Subnet Mask not found in DHCPACK")]
    NoMask,
    /// No lease time.
    #[error("DHCP option Lease Time not found in DHCPACK")]
    NoLeaseTime,
    /// No server identifier.
    #[error("DHCP option Server Identifier not found in DHCPACK")]
    NoServer,
}

/// Shortest lease honoured: a server granting less is treated as granting
/// this much, so a broken server cannot make the client spin.
pub const MIN_LEASE_SECS: u32 = 10;

/// An acquired lease: the ACK's facts plus absolute times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Assigned address.
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask.
    pub prefix: u8,
    /// The server that granted it.
    pub server: Ipv4Addr,
    /// When the ACK arrived (Unix ms).
    pub acked_ms: u64,
    /// Lease time in seconds (`u32::MAX`: infinite).
    pub lease_secs: u32,
    /// T1 in seconds after `acked_ms`.
    pub t1_secs: u32,
    /// T2 in seconds after `acked_ms`.
    pub t2_secs: u32,
    /// All options of the ACK (for the CNI result).
    pub options: Vec<(u8, Vec<u8>)>,
}

/// Where a lease stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to do until T1 (Unix ms).
    Bound {
        /// T1.
        until_ms: u64,
    },
    /// Between T1 and T2: ask the granting server directly.
    Renewing {
        /// T2.
        until_ms: u64,
    },
    /// Between T2 and expiry: ask any server.
    Rebinding {
        /// Expiry.
        until_ms: u64,
    },
    /// Past expiry: the address is no longer ours.
    Expired,
}

fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then(|| u8::try_from(ones).unwrap_or(32))
}

impl Lease {
    /// The lease an ACK received at `now_ms` grants. T2 defaults to 87.5 %
    /// and T1 to 50 % of the lease when absent or out of order (RFC 2131
    /// 4.4.5); leases under [`MIN_LEASE_SECS`] count as that long.
    pub fn from_ack(ack: &Message, now_ms: u64) -> Result<Self, AckError> {
        if ack.yiaddr.is_unspecified() || ack.yiaddr.is_broadcast() {
            return Err(AckError::NoAddress);
        }
        let prefix = ack
            .ip_option(opt::SUBNET_MASK)
            .and_then(prefix_of)
            .ok_or(AckError::NoMask)?;
        let lease_secs = ack
            .secs_option(opt::LEASE_TIME)
            .ok_or(AckError::NoLeaseTime)?
            .max(MIN_LEASE_SECS);
        let server = ack.ip_option(opt::SERVER_ID).ok_or(AckError::NoServer)?;
        let t2_default = u32::try_from(u64::from(lease_secs) * 7 / 8).unwrap_or(u32::MAX);
        let t2_secs = ack
            .secs_option(opt::REBINDING_TIME)
            .filter(|t| *t <= lease_secs)
            .unwrap_or(t2_default);
        let t1_secs = ack
            .secs_option(opt::RENEWAL_TIME)
            .filter(|t| *t <= t2_secs)
            .unwrap_or(lease_secs / 2);
        Ok(Self {
            address: ack.yiaddr,
            prefix,
            server,
            acked_ms: now_ms,
            lease_secs,
            t1_secs,
            t2_secs,
            options: ack.options.clone(),
        })
    }

    fn at(&self, secs: u32) -> u64 {
        self.acked_ms.saturating_add(u64::from(secs) * 1000)
    }

    /// Expiry (Unix ms); `u64::MAX` for an infinite lease.
    pub fn expiry_ms(&self) -> u64 {
        if self.lease_secs == u32::MAX {
            u64::MAX
        } else {
            self.at(self.lease_secs)
        }
    }

    /// The phase at `now_ms`.
    pub fn phase(&self, now_ms: u64) -> Phase {
        if self.lease_secs == u32::MAX {
            return Phase::Bound { until_ms: u64::MAX };
        }
        let (t1, t2, end) = (
            self.at(self.t1_secs),
            self.at(self.t2_secs),
            self.expiry_ms(),
        );
        if now_ms < t1 {
            Phase::Bound { until_ms: t1 }
        } else if now_ms < t2 {
            Phase::Renewing { until_ms: t2 }
        } else if now_ms < end {
            Phase::Rebinding { until_ms: end }
        } else {
            Phase::Expired
        }
    }

    /// How long to wait for a reply before retransmitting in the renewing
    /// or rebinding phase: half the time left to `until_ms` (RFC 2131
    /// 4.4.5), at least 1 s and at most `max_ms`.
    pub fn retry_ms(now_ms: u64, until_ms: u64, max_ms: u64) -> u64 {
        (until_ms.saturating_sub(now_ms) / 2).clamp(1000, max_ms.max(1000))
    }

    fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// The first router (option 3).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        ip_list(self.option(opt::ROUTER)?).into_iter().next()
    }

    /// Routes: classless static routes (option 121) when present (RFC 3442:
    /// then options 33 and 3 are ignored), else static routes (33) and a
    /// default route through the router.
    pub fn routes(&self) -> Vec<Route> {
        let classless = self
            .option(opt::CLASSLESS_ROUTES)
            .map(classless_routes)
            .unwrap_or_default();
        if !classless.is_empty() {
            return classless;
        }
        let mut out: Vec<Route> = self
            .option(opt::STATIC_ROUTES)
            .map(static_routes)
            .unwrap_or_default();
        if let Some(gw) = self.gateway() {
            out.push(Route::new(
                IpNet::V4(Ipv4Net::default()),
                Some(IpAddr::V4(gw)),
            ));
        }
        out
    }

    /// The IPAM result: the address with its prefix, the router as gateway, the routes.
    pub fn result(&self) -> CniResult {
        let address = Ipv4Net::new(self.address, self.prefix).unwrap_or_default();
        CniResult {
            ips: vec![IpConfig {
                address: IpNet::V4(address),
                gateway: self.gateway().map(IpAddr::V4),
                interface: None,
            }],
            routes: self.routes(),
            ..CniResult::default()
        }
    }
}

/// Option 33: (classful destination, router) pairs; class D/E destinations are skipped.
pub fn static_routes(v: &[u8]) -> Vec<Route> {
    v.chunks_exact(8)
        .filter_map(|c| {
            let dst = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            let gw = Ipv4Addr::new(c[4], c[5], c[6], c[7]);
            let len = match c[0] {
                0..=127 => 8,
                128..=191 => 16,
                192..=223 => 24,
                _ => return None,
            };
            let net = Ipv4Net::new(dst, len).ok()?;
            Some(Route::new(IpNet::V4(net), Some(IpAddr::V4(gw))))
        })
        .collect()
}

/// Option 121 (RFC 3442): width, significant octets, router; a malformed
/// tail ends the list.
pub fn classless_routes(mut v: &[u8]) -> Vec<Route> {
    let mut out = Vec::new();
    while let Some((&width, rest)) = v.split_first() {
        if width > 32 {
            break;
        }
        let n = usize::from(width).div_ceil(8);
        let (Some(dst), Some(gw)) = (rest.get(..n), rest.get(n..n + 4)) else {
            break;
        };
        let mut d = [0u8; 4];
        d[..n].copy_from_slice(dst);
        let Ok(net) = Ipv4Net::new(Ipv4Addr::from(d), width) else {
            break;
        };
        let gw = Ipv4Addr::new(gw[0], gw[1], gw[2], gw[3]);
        let gw = (!gw.is_unspecified()).then_some(IpAddr::V4(gw));
        out.push(Route::new(IpNet::V4(net.trunc()), gw));
        v = &rest[n + 4..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever options an ACK carries, a lease, its phases, routes
        /// and result come out without a panic.
        #[test]
        fn any_ack_is_safe(
            yiaddr in any::<u32>(),
            opts in proptest::collection::vec((1u8..=254, proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
            now in any::<u64>(),
        ) {
            let mut m = Message::request(1, [2, 0, 0, 0, 0, 9]);
            m.op = OP_REPLY;
            m.yiaddr = Ipv4Addr::from(yiaddr);
            for (c, v) in opts {
                m.set_option(c, v);
            }
            if let Ok(l) = Lease::from_ack(&m, now) {
                let _ = l.phase(now);
                let _ = l.phase(u64::MAX);
                let _ = l.expiry_ms();
                let r = l.result();
                prop_assert_eq!(r.ips.len(), 1);
                prop_assert!(r.to_json("1.0.0").is_ok());
                prop_assert!(l.t1_secs <= l.t2_secs && l.t2_secs <= l.lease_secs);
            }
            for (_, v) in &m.options {
                let _ = classless_routes(v);
                let _ = static_routes(v);
            }
        }
    }

    fn opts() -> ClientOptions {
        ClientOptions {
            client_id: client_id("c1", "net", "eth0"),
            mac: [2, 0, 0, 0, 0, 9],
            provide: vec![(opt::HOST_NAME, b"pod".to_vec())],
            request: vec![1, 3],
        }
    }

    fn ack(xid: u32) -> Message {
        let mut m = Message::request(xid, [2, 0, 0, 0, 0, 9]);
        m.op = OP_REPLY;
        m.yiaddr = Ipv4Addr::new(10, 7, 0, 50);
        m.set_option(opt::MESSAGE_TYPE, vec![MessageType::Ack as u8]);
        m.set_option(opt::SUBNET_MASK, vec![255, 255, 255, 0]);
        m.set_option(opt::LEASE_TIME, 120u32.to_be_bytes().to_vec());
        m.set_option(opt::SERVER_ID, vec![10, 7, 0, 1]);
        m.set_option(opt::ROUTER, vec![10, 7, 0, 1]);
        m
    }

    #[test]
    fn client_id_like_the_reference() {
        assert_eq!(client_id("abc", "n", "eth0"), "abc/n/eth0");
        assert_eq!(client_id(&"x".repeat(300), "n", "eth0").len(), 254);
        let d = opts().discover(7, None);
        assert_eq!(d.option(opt::CLIENT_ID).unwrap(), b"\0c1/net/eth0");
        assert_eq!(d.flags, FLAG_BROADCAST);
        assert_eq!(d.option(opt::HOST_NAME).unwrap(), b"pod");
        let r = opts().release(8, Ipv4Addr::new(10, 7, 0, 50), Ipv4Addr::new(10, 7, 0, 1));
        assert!(r.option(opt::HOST_NAME).is_none());
        assert_eq!(r.ciaddr, Ipv4Addr::new(10, 7, 0, 50));
    }

    #[test]
    fn answers_only_our_transaction() {
        let o = opts();
        let a = ack(42);
        assert!(o.answers(&a, 42, &[MessageType::Ack, MessageType::Nak]));
        assert!(!o.answers(&a, 43, &[MessageType::Ack]));
        assert!(!o.answers(&a, 42, &[MessageType::Offer]));
        let mut other = a.clone();
        other.chaddr[5] = 1;
        assert!(!o.answers(&other, 42, &[MessageType::Ack]));
        let mut req = a;
        req.op = 1;
        assert!(!o.answers(&req, 42, &[MessageType::Ack]));
    }

    #[test]
    fn timers_and_phases() {
        let l = Lease::from_ack(&ack(1), 1_000_000).unwrap();
        assert_eq!((l.t1_secs, l.t2_secs), (60, 105));
        assert_eq!(
            l.phase(1_000_000),
            Phase::Bound {
                until_ms: 1_060_000
            }
        );
        assert_eq!(
            l.phase(1_060_000),
            Phase::Renewing {
                until_ms: 1_105_000
            }
        );
        assert_eq!(
            l.phase(1_110_000),
            Phase::Rebinding {
                until_ms: 1_120_000
            }
        );
        assert_eq!(l.phase(1_120_000), Phase::Expired);
        let mut a = ack(1);
        a.set_option(opt::RENEWAL_TIME, 20u32.to_be_bytes().to_vec());
        a.set_option(opt::REBINDING_TIME, 200u32.to_be_bytes().to_vec());
        let l = Lease::from_ack(&a, 0).unwrap();
        assert_eq!((l.t1_secs, l.t2_secs), (20, 105));
        assert_eq!(Lease::retry_ms(0, 100_000, 62_000), 50_000);
        assert_eq!(Lease::retry_ms(0, 500, 62_000), 1000);
    }

    #[test]
    fn bad_acks() {
        let mut a = ack(1);
        a.set_option(opt::SUBNET_MASK, vec![255, 0, 255, 0]);
        assert_eq!(Lease::from_ack(&a, 0), Err(AckError::NoMask));
        let mut a = ack(1);
        a.options.retain(|(c, _)| *c != opt::LEASE_TIME);
        assert_eq!(Lease::from_ack(&a, 0), Err(AckError::NoLeaseTime));
        let mut a = ack(1);
        a.yiaddr = Ipv4Addr::UNSPECIFIED;
        assert_eq!(Lease::from_ack(&a, 0), Err(AckError::NoAddress));
    }

    #[test]
    fn result_and_routes() {
        let l = Lease::from_ack(&ack(1), 0).unwrap();
        let r = l.result();
        assert_eq!(r.ips[0].address.to_string(), "10.7.0.50/24");
        assert_eq!(r.ips[0].gateway, Some("10.7.0.1".parse().unwrap()));
        assert_eq!(
            r.routes,
            vec![Route::new(
                "0.0.0.0/0".parse().unwrap(),
                Some("10.7.0.1".parse().unwrap())
            )]
        );
        let mut a = ack(1);
        a.set_option(
            opt::STATIC_ROUTES,
            vec![172, 16, 0, 0, 10, 7, 0, 2, 224, 0, 0, 0, 1, 1, 1, 1],
        );
        let l = Lease::from_ack(&a, 0).unwrap();
        assert_eq!(
            l.routes()[0],
            Route::new(
                "172.16.0.0/16".parse().unwrap(),
                Some("10.7.0.2".parse().unwrap())
            )
        );
        assert_eq!(l.routes().len(), 2);
        a.set_option(
            opt::CLASSLESS_ROUTES,
            vec![24, 192, 168, 5, 10, 7, 0, 3, 0, 10, 7, 0, 1, 40],
        );
        let l = Lease::from_ack(&a, 0).unwrap();
        assert_eq!(
            l.routes(),
            vec![
                Route::new(
                    "192.168.5.0/24".parse().unwrap(),
                    Some("10.7.0.3".parse().unwrap())
                ),
                Route::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.7.0.1".parse().unwrap())
                ),
            ]
        );
        assert!(classless_routes(&[33, 1, 2, 3, 4, 5, 6, 7, 8]).is_empty());
        assert!(classless_routes(&[24, 1, 2]).is_empty());
    }
}
