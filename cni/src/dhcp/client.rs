//! The DHCP client's socket edge: a UDP socket on port 68 created inside
//! the pod's network namespace and bound to its interface, and the
//! transactions over it (acquire, renew/rebind, release) with bounded
//! retransmission. Every packet decision comes from [`super::lease`].
//!
//! Why a UDP socket and not a packet socket: a socket stays in the
//! namespace it was created in, so a short-lived thread that joined the
//! pod's namespace ([`crate::ns::NetNs::run`]) creates it and the daemon's
//! runtime drives it from its own namespace; `SO_BINDTODEVICE` pins it to
//! `CNI_IFNAME`. Linux delivers limited-broadcast datagrams to it before
//! the interface has an address, so DISCOVER and REQUEST ask for broadcast
//! replies. All of it goes through nix's safe wrappers: the crate keeps
//! `#![forbid(unsafe_code)]`.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use tokio::net::UdpSocket;

use super::lease::{ClientOptions, Lease};
use super::wire::{Message, MessageType};
use crate::link::Netlink;
use crate::ns::{NetNs, NsError};

/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// Longest wait for a freshly raised link to become operational.
pub const RUNNING_WAIT: Duration = Duration::from_secs(2);

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The namespace could not be entered (or is gone).
    #[error("{0}")]
    Netns(#[from] NsError),
    /// The interface is missing or could not be brought up.
    #[error("{0}")]
    Link(String),
    /// A socket call failed.
    #[error("DHCP socket: {0}")]
    Socket(#[from] std::io::Error),
    /// No acceptable reply in time.
    #[error("no DHCP {0} within {1:?}")]
    Timeout(&'static str, Duration),
    /// The server refused.
    #[error("DHCP server sent DHCPNAK")]
    Nak,
    /// The ACK lacked what a lease needs.
    #[error("{0}")]
    Ack(#[from] super::lease::AckError),
}

impl ClientError {
    /// True when the pod's namespace no longer exists.
    pub fn netns_gone(&self) -> bool {
        matches!(self, Self::Netns(e) if e.is_missing())
    }
}

fn udp_socket(ifname: &str) -> std::io::Result<std::net::UdpSocket> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true)?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(ifname))?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, CLIENT_PORT))?;
    Ok(std::net::UdpSocket::from(fd))
}

/// True when a datagram from `ifname` to `dst` would leave with a source
/// address (a unicast from 0.0.0.0 is dropped by the receiver as martian).
fn has_source_for(ifname: &str, dst: Ipv4Addr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket::setsockopt(&s, sockopt::BindToDevice, &OsString::from(ifname))?;
        s.connect(SocketAddrV4::new(dst, SERVER_PORT))?;
        Ok(!s.local_addr()?.ip().is_unspecified())
    };
    probe().unwrap_or(false)
}

/// A client socket in a pod's namespace, bound to one interface.
#[derive(Debug)]
pub struct ClientSocket {
    sock: UdpSocket,
    /// Whether unicast to the server can leave with a source address.
    unicast: bool,
}

impl ClientSocket {
    /// Opens the socket inside `netns` on `ifname`; `server`, when known,
    /// is probed for a usable unicast source address. Needs a tokio runtime.
    pub fn open(netns: &Path, ifname: &str, server: Option<Ipv4Addr>) -> Result<Self, ClientError> {
        let ns = NetNs::open(netns)?;
        let name = ifname.to_owned();
        let (std_sock, unicast) = ns.run(move || {
            let unicast = server.is_some_and(|s| has_source_for(&name, s));
            udp_socket(&name).map(|s| (s, unicast))
        })??;
        Ok(Self {
            sock: UdpSocket::from_std(std_sock)?,
            unicast,
        })
    }

    async fn send(&self, msg: &Message, dst: Ipv4Addr) -> std::io::Result<()> {
        let to = SocketAddr::V4(SocketAddrV4::new(dst, SERVER_PORT));
        self.sock.send_to(&msg.emit(), to).await.map(drop)
    }

    /// Unicast to `server` when the interface can, else broadcast (the
    /// message's server id option still names the server).
    async fn send_to_server(&self, msg: &Message, server: Ipv4Addr) -> std::io::Result<()> {
        if self.unicast && self.send(msg, server).await.is_ok() {
            return Ok(());
        }
        self.send(msg, Ipv4Addr::BROADCAST).await
    }

    /// Waits until `deadline` for a reply that answers `xid` with one of
    /// `kinds`; anything else (malformed, foreign) is dropped.
    async fn reply(
        &self,
        opts: &ClientOptions,
        xid: u32,
        kinds: &[MessageType],
        deadline: Instant,
    ) -> Option<Message> {
        let mut buf = vec![0u8; 1500];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let Ok(Ok((n, _))) = tokio::time::timeout(left, self.sock.recv_from(&mut buf)).await
            else {
                return None;
            };
            let Some(data) = buf.get(..n) else { continue };
            match Message::parse(data) {
                Ok(m) if opts.answers(&m, xid, kinds) => return Some(m),
                _ => {}
            }
        }
    }

    /// Sends `msg` to `dst` and retransmits it (0.25 s, 0.5 s, 1 s, 2 s, ...
    /// apart, at most 16 s) until an answer or `deadline`: a first packet
    /// lost to a link that just came up costs a quarter of a second.
    async fn exchange(
        &self,
        opts: &ClientOptions,
        msg: &Message,
        dst: Ipv4Addr,
        kinds: &[MessageType],
        deadline: Instant,
    ) -> Result<Option<Message>, ClientError> {
        let mut wait = Duration::from_millis(250);
        while Instant::now() < deadline {
            self.send(msg, dst).await?;
            let until = (Instant::now() + wait).min(deadline);
            if let Some(m) = self.reply(opts, msg.xid, kinds, until).await {
                return Ok(Some(m));
            }
            wait = (wait * 2).min(Duration::from_secs(16));
        }
        Ok(None)
    }

    /// DISCOVER, OFFER, REQUEST, ACK within `timeout` (restarting after a
    /// NAK), asking for `requested` when resuming a known address.
    pub async fn acquire(
        &self,
        opts: &ClientOptions,
        requested: Option<Ipv4Addr>,
        timeout: Duration,
    ) -> Result<Lease, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut requested = requested;
        while Instant::now() < deadline {
            let discover = opts.discover(new_xid(), requested);
            let Some(offer) = self
                .exchange(
                    opts,
                    &discover,
                    Ipv4Addr::BROADCAST,
                    &[MessageType::Offer],
                    deadline,
                )
                .await?
            else {
                break;
            };
            let Some(request) = opts.select(new_xid(), &offer) else {
                continue;
            };
            let kinds = [MessageType::Ack, MessageType::Nak];
            match self
                .exchange(opts, &request, Ipv4Addr::BROADCAST, &kinds, deadline)
                .await?
            {
                Some(ack) if ack.message_type() == Some(MessageType::Ack) => {
                    return Ok(Lease::from_ack(&ack, now_ms())?);
                }
                // NAK: start over without insisting on the old address.
                Some(_) => requested = None,
                None => break,
            }
        }
        Err(ClientError::Timeout("DHCPACK", timeout))
    }

    /// One renewing (unicast to the granting server) or rebinding
    /// (broadcast) REQUEST, waiting `wait` for the answer.
    pub async fn extend(
        &self,
        opts: &ClientOptions,
        lease: &Lease,
        rebind: bool,
        wait: Duration,
    ) -> Result<Lease, ClientError> {
        let msg = opts.extend(new_xid(), lease.address);
        if rebind {
            self.send(&msg, Ipv4Addr::BROADCAST).await?;
        } else {
            self.send_to_server(&msg, lease.server).await?;
        }
        let kinds = [MessageType::Ack, MessageType::Nak];
        match self
            .reply(opts, msg.xid, &kinds, Instant::now() + wait)
            .await
        {
            Some(ack) if ack.message_type() == Some(MessageType::Ack) => {
                Ok(Lease::from_ack(&ack, now_ms())?)
            }
            Some(_) => Err(ClientError::Nak),
            None => Err(ClientError::Timeout("DHCPACK", wait)),
        }
    }

    /// Sends DHCPRELEASE (no reply exists).
    pub async fn release(&self, opts: &ClientOptions, lease: &Lease) -> Result<(), ClientError> {
        let msg = opts.release(new_xid(), lease.address, lease.server);
        // Unicast (RFC 2131) unless the address was never configured on the
        // interface (e.g. DEL after a failed ADD).
        self.send_to_server(&msg, lease.server).await?;
        Ok(())
    }
}

/// Brings `ifname` in `netns` up if it is down and returns its MAC.
pub async fn prepare_link(netns: &Path, ifname: &str) -> Result<[u8; 6], ClientError> {
    let ns = NetNs::open(netns)?;
    let nl = Netlink::connect_in(&ns).map_err(|e| ClientError::Link(e.to_string()))?;
    let link = nl
        .link_by_name(ifname)
        .await
        .map_err(|e| ClientError::Link(e.to_string()))?
        .ok_or_else(|| ClientError::Link(format!("error looking up {ifname:?}: Link not found")))?;
    let mac = <[u8; 6]>::try_from(link.mac.as_slice())
        .map_err(|_| ClientError::Link(format!("{ifname} has no Ethernet address")))?;
    if !link.up {
        nl.set_link(link.index, true, None, None)
            .await
            .map_err(|e| ClientError::Link(e.to_string()))?;
    }
    // A link just brought up passes traffic only once the kernel's link
    // watch has seen its carrier (up to a second later; a bridge port on
    // the other side stays disabled until then): wait for IFF_RUNNING,
    // bounded, instead of losing the first DISCOVER to it.
    let deadline = Instant::now() + RUNNING_WAIT;
    while Instant::now() < deadline {
        match nl.link_by_name(ifname).await {
            Ok(Some(l)) if l.running => break,
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            _ => break,
        }
    }
    Ok(mac)
}

/// The wall clock in Unix milliseconds (what lease records hold).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh transaction id (not secret: it only matches replies to requests).
pub fn new_xid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // FNV-1a over (pid, time, counter).
    [std::process::id(), nanos, n]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::wire::{OP_REPLY, opt};

    #[tokio::test]
    async fn malformed_and_foreign_replies_are_dropped() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = sock.local_addr().unwrap();
        let cs = ClientSocket {
            sock,
            unicast: true,
        };
        let opts = ClientOptions {
            client_id: "c/n/eth0".into(),
            mac: [2, 0, 0, 0, 0, 7],
            ..ClientOptions::default()
        };
        let mut ack = Message::request(77, opts.mac);
        ack.op = OP_REPLY;
        ack.set_option(opt::MESSAGE_TYPE, vec![MessageType::Ack as u8]);
        let good = ack.emit();
        let mut bad_magic = good.clone();
        bad_magic[237] ^= 0xff;
        let mut truncated = good[..243].to_vec();
        truncated.extend_from_slice(&[54, 200, 1]);
        let mut foreign = ack.clone();
        foreign.xid = 78;
        let mut other_mac = ack.clone();
        other_mac.chaddr[0] = 9;
        let mut offer = ack.clone();
        offer.set_option(opt::MESSAGE_TYPE, vec![MessageType::Offer as u8]);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for d in [
            vec![],
            vec![1, 2, 3],
            bad_magic,
            truncated,
            foreign.emit(),
            other_mac.emit(),
            offer.emit(),
            vec![0xff; 1500],
            good,
        ] {
            tx.send_to(&d, to).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = cs.reply(&opts, 77, &[MessageType::Ack], deadline).await;
        assert_eq!(got, Some(ack));
        // Nothing else acceptable arrives: the wait ends at the deadline.
        let deadline = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            cs.reply(&opts, 77, &[MessageType::Ack], deadline).await,
            None
        );
    }
}
