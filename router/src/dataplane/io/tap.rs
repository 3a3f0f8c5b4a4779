//! The TX TAP, the egress fast path for vxlan and udp: a TX-only TAP
//! device into which weftd writes whole encapsulated TSO bursts (built by
//! `weft_encap::tunnel_frame`: outer Ethernet + IPv4 + UDP [+ VXLAN + inner
//! Ethernet] in front of the inner GSO packet, as read from the TUN),
//! marked UDP-tunnel GSO in the virtio_net_hdr (Linux 6.17+,
//! `TUN_F_UDP_TUNNEL_GSO`). This module opens and configures it.
//!
//! The kernel forwards each burst to the underlay and segments it after
//! encapsulation, exactly as its own vxlan device does: one write per 64 KiB instead of per-segment work in user space,
//! a UDP socket send path and an outer UDP checksum (left zero, as kernel
//! vxlan sends it).
//!
//! The frame arrives on the TAP as if received, so the node must forward
//! (`net.ipv4.ip_forward = 1`, which a Kubernetes node has anyway) and
//! accept a local source address on the TAP (`accept_local`, with reverse
//! path filtering off: `conf.all.rp_filter = 0`, the kernel default). When
//! any of that is missing, [`TxTap::open`] says why and weftd sends through
//! its UDP sockets instead.

use std::fs;
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use weft_encap::tunnel_frame::TUNNEL_HDR_LEN;

use super::socket::cvt;

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x80;

fn ifreq(name: &str, flags: libc::c_short) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} is empty or too long"),
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags;
    Ok(ifr)
}

fn open_queue(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: plain open(2) of a path literal.
    let raw = cvt(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    })?;
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE)?;
    // SAFETY: TUNSETIFF reads and writes the ifreq on our stack.
    cvt(unsafe { libc::ioctl(raw, TUNSETIFF, &raw mut ifr) })?;
    Ok(fd)
}

fn sysctl_path(name: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{name}/{key}")
}

fn read_sysctl(path: &str) -> io::Result<String> {
    fs::read_to_string(path).map(|s| s.trim().to_owned())
}

/// The TX TAP, one descriptor per worker queue.
#[derive(Debug)]
pub struct TxTap {
    queues: Vec<OwnedFd>,
    /// The TAP's own MAC (destination of every frame written).
    pub(crate) mac: [u8; 6],
    /// Interface name.
    pub name: String,
}

impl TxTap {
    /// Opens `name` with `queues` queues and the UDP-tunnel GSO offload,
    /// brings it up and sets its forwarding sysctls. Errors say which
    /// precondition is missing; the caller falls back to UDP sockets.
    pub fn open(name: &str, queues: usize, underlay: &str) -> io::Result<Self> {
        let why = |what: &str| io::Error::new(io::ErrorKind::Unsupported, what.to_owned());
        if !finishes_checksums(underlay)? {
            return Err(why(&format!(
                "{underlay} is a virtual device with tx checksum offload on: \
                 it would pass tunnelled bursts on with unfinished inner checksums"
            )));
        }
        if read_sysctl("/proc/sys/net/ipv4/ip_forward")? != "1" {
            return Err(why("net.ipv4.ip_forward is 0"));
        }
        if read_sysctl(&sysctl_path("all", "rp_filter"))? != "0" {
            return Err(why("net.ipv4.conf.all.rp_filter is not 0"));
        }
        let mut fds = Vec::with_capacity(queues);
        for _ in 0..queues.max(1) {
            fds.push(open_queue(name)?);
        }
        let fd = fds[0].as_raw_fd();
        let sz: libc::c_int = TUNNEL_HDR_LEN as libc::c_int;
        // SAFETY: the ioctl reads one int from our stack.
        cvt(unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ, &raw const sz) })?;
        let offloads = TUN_F_CSUM
            | TUN_F_TSO4
            | TUN_F_TSO6
            | TUN_F_TSO_ECN
            | TUN_F_USO4
            | TUN_F_USO6
            | TUN_F_UDP_TUNNEL_GSO;
        // SAFETY: TUNSETOFFLOAD takes the flags by value.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, libc::c_ulong::from(offloads)) } < 0 {
            return Err(why(&format!(
                "the kernel has no UDP-tunnel GSO on TUN/TAP (Linux 6.17+): {}",
                io::Error::last_os_error()
            )));
        }
        // Forwarding sysctls of the TAP; IPv6 off (nothing to say there).
        for (key, val) in [("accept_local", "1"), ("rp_filter", "0")] {
            fs::write(sysctl_path(name, key), val)?;
        }
        let _ = fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let ctl = Ctl::new()?;
        let mac = ctl.mac(name)?;
        ctl.up(name)?;
        Ok(Self {
            queues: fds,
            mac,
            name: name.to_owned(),
        })
    }

    /// The descriptor of queue `q` (wrapping).
    pub fn queue_fd(&self, q: usize) -> RawFd {
        self.queues[q % self.queues.len()].as_raw_fd()
    }
}

/// True when segments the kernel sends out of `dev` carry finished inner
/// checksums: a device backed by hardware (a NIC computes them), or a
/// virtual one (veth, bridge, ...) with tx checksum offload off. A veth
/// with it on hands `CHECKSUM_PARTIAL` packets to the next namespace as
/// they are, and a user-space receiver there would read unfinished TCP
/// checksums (the trap kernel vxlan over veth falls into).
fn finishes_checksums(dev: &str) -> io::Result<bool> {
    let hardware = fs::metadata(format!("/sys/class/net/{dev}/device")).is_ok();
    Ok(hardware || !Ctl::new()?.tx_checksum(dev)?)
}

/// An AF_INET datagram socket for interface ioctls.
struct Ctl(OwnedFd);

impl Ctl {
    fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: raw is a fresh descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    fn mac(&self, name: &str) -> io::Result<[u8; 6]> {
        let mut ifr = ifreq(name, 0)?;
        // SAFETY: SIOCGIFHWADDR fills the ifreq on our stack.
        cvt(unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut ifr) })?;
        // SAFETY: the kernel just filled ifru_hwaddr.
        let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok(mac)
    }

    /// Whether tx checksum offload is on (`ETHTOOL_GTXCSUM`).
    fn tx_checksum(&self, name: &str) -> io::Result<bool> {
        const SIOCETHTOOL: libc::c_ulong = 0x8946;
        const ETHTOOL_GTXCSUM: u32 = 0x16;
        let mut val: [u32; 2] = [ETHTOOL_GTXCSUM, 0];
        let mut ifr = ifreq(name, 0)?;
        ifr.ifr_ifru.ifru_data = val.as_mut_ptr().cast();
        // SAFETY: the ioctl fills `val` (struct ethtool_value), which
        // outlives the call.
        cvt(unsafe { libc::ioctl(self.0.as_raw_fd(), SIOCETHTOOL, &raw mut ifr) })?;
        Ok(val[1] != 0)
    }

    fn up(&self, name: &str) -> io::Result<()> {
        let mut ifr = ifreq(name, 0)?;
        let fd = self.0.as_raw_fd();
        // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS on the ifreq on our stack.
        cvt(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut ifr) })?;
        // SAFETY: ifru_flags was just filled by the kernel.
        unsafe {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_NOARP) as libc::c_short;
        }
        // SAFETY: as above.
        cvt(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw mut ifr) }).map(drop)
    }
}

/// The TX TAP's name for TUN `tun_name`: `<tun_name>tx`, the TUN name cut
/// so the whole fits in 15 bytes.
pub fn tap_name(tun_name: &str) -> String {
    let keep = tun_name
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= 13)
        .last()
        .unwrap_or(0);
    format!("{}tx", &tun_name[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_fifteen_bytes() {
        assert_eq!(tap_name("weft0"), "weft0tx");
        assert_eq!(tap_name("abcdefghijklmno"), "abcdefghijklmtx");
        assert!(tap_name("abcdefghijklmno").len() <= 15);
    }
}
