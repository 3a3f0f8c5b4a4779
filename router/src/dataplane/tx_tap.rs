//! The egress fast path for vxlan and udp: a TX-only TAP device into which
//! weftd writes whole encapsulated TSO bursts (outer Ethernet + IPv4 + UDP
//! [+ VXLAN + inner Ethernet] in front of the inner GSO packet, as read
//! from the TUN), marked UDP-tunnel GSO in the virtio_net_hdr (Linux 6.17+,
//! `TUN_F_UDP_TUNNEL_GSO`). The kernel forwards each burst to the underlay
//! and segments it after encapsulation, exactly as its own vxlan device
//! does: one write per 64 KiB instead of per-segment work in user space,
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
use std::net::Ipv4Addr;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tun_rs::VirtioNetHdr;
use weft_encap::{ETHERTYPE_IPV4, checksum, vxlan};

use super::gro::VIRTIO_NET_HDR_F_NEEDS_CSUM;
use super::socket::cvt;

/// virtio_net_hdr_v1_hash_tunnel: the v1 header (12 bytes), hash fields
/// (8) and the outer transport / inner network header offsets (2 + 2).
pub(crate) const TNL_HDR_LEN: usize = 24;
/// Outer Ethernet header.
const ETH_LEN: usize = 14;

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

const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4: u8 = 0x20;

/// Outer TTL before forwarding (the kernel takes one off).
const OUTER_TTL: u8 = 65;

/// A GSO packet (TSO / USO), not a single one.
pub(crate) fn is_gso(vh: &VirtioNetHdr) -> bool {
    vh.gso_type & !VIRTIO_NET_HDR_GSO_ECN != 0
}

/// Segments the packet of `len` bytes becomes (1 without GSO).
pub(crate) fn segments(vh: &VirtioNetHdr, len: usize) -> usize {
    let payload = len.saturating_sub(usize::from(vh.hdr_len));
    match (is_gso(vh), usize::from(vh.gso_size)) {
        (true, s) if s > 0 => payload.div_ceil(s).max(1),
        _ => 1,
    }
}

/// Where one burst goes and how it is wrapped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wrap {
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    /// VXLAN header and inner MACs; None for flannel udp.
    pub(crate) vxlan: Option<vxlan::Header>,
}

/// Room the frame needs in front of the inner packet: the tunnel
/// virtio_net_hdr, outer Ethernet, IPv4 and UDP, and for VXLAN its header
/// and the inner Ethernet header.
pub(crate) const FRAME_HEADROOM: usize = TNL_HDR_LEN + ETH_LEN + 28 + vxlan::HEADROOM;

/// Largest inner packet a single frame can carry (the outer IPv4 total
/// length is 16 bits).
pub(crate) fn max_inner(vxlan: bool) -> usize {
    usize::from(u16::MAX) - 28 - if vxlan { vxlan::HEADROOM } else { 0 }
}

/// Writes the frame headers in front of `buf[inner]` (one inner packet,
/// TUN header `vh`, at least [`FRAME_HEADROOM`] bytes after the buffer's
/// start): the tunnel virtio_net_hdr, outer Ethernet (to the TAP's own
/// MAC), IPv4, UDP and for VXLAN its header and the inner Ethernet header.
/// Returns the range of the whole frame, or None when the packet cannot be
/// carried this way (too long, no room, or a GSO type the kernel does not
/// tunnel).
pub(crate) fn build_frame(
    buf: &mut [u8],
    inner: Range<usize>,
    tap_mac: [u8; 6],
    w: &Wrap,
    vh: &VirtioNetHdr,
) -> Option<Range<usize>> {
    let len = inner.len();
    if len > max_inner(w.vxlan.is_some())
        || vh.gso_type & !VIRTIO_NET_HDR_GSO_ECN == VIRTIO_NET_HDR_GSO_UDP
    {
        return None; // too long for one outer packet, or UFO
    }
    let payload = match &w.vxlan {
        Some(h) => vxlan::encap_with(buf, inner.clone(), h).ok()?.start,
        None => inner.start,
    };
    let start = payload.checked_sub(TNL_HDR_LEN + ETH_LEN + 28)?;
    // From the outer Ethernet header to the inner IP header.
    let shift = u16::try_from(inner.start - start - TNL_HDR_LEN).ok()?;
    let (flags, gso_type, hdr_len, csum_start) = if is_gso(vh) {
        (
            VIRTIO_NET_HDR_F_NEEDS_CSUM,
            vh.gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
            vh.hdr_len.checked_add(shift)?,
            vh.csum_start.checked_add(shift)?,
        )
    } else if vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        (
            VIRTIO_NET_HDR_F_NEEDS_CSUM,
            0,
            0,
            vh.csum_start.checked_add(shift)?,
        )
    } else {
        (0, 0, 0, 0)
    };
    let f = &mut buf[start..payload];
    f.fill(0);
    // virtio_net_hdr_v1_hash_tunnel (little-endian); num_buffers and the
    // hash fields stay zero.
    f[0] = flags;
    f[1] = gso_type;
    f[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    f[4..6].copy_from_slice(&vh.gso_size.to_le_bytes());
    f[6..8].copy_from_slice(&csum_start.to_le_bytes());
    f[8..10].copy_from_slice(&vh.csum_offset.to_le_bytes());
    let outer_th = (ETH_LEN + 20) as u16;
    f[20..22].copy_from_slice(&outer_th.to_le_bytes());
    f[22..24].copy_from_slice(&shift.to_le_bytes());

    let f = &mut f[TNL_HDR_LEN..];
    // Outer Ethernet: to the TAP itself, so the kernel takes it as ours.
    f[0..6].copy_from_slice(&tap_mac);
    f[6..12].copy_from_slice(&[0x02, 0x57, 0, 0, 0, 0]);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = u16::try_from(inner.end - payload + 28).ok()?;
    let ip = &mut f[ETH_LEN..ETH_LEN + 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF: the underlay never fragments
    ip[8] = OUTER_TTL;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&w.src.octets());
    ip[16..20].copy_from_slice(&w.dst.octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[ETH_LEN + 20..ETH_LEN + 28];
    udp[0..2].copy_from_slice(&w.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&w.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(total - 20).to_be_bytes());
    // Checksum zero (RFC 7348 §5 allows it for IPv4; kernel vxlan's default).
    Some(start..inner.end)
}

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
        let sz: libc::c_int = TNL_HDR_LEN as libc::c_int;
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
    use weft_encap::MacAddr;

    fn wrap(vxlan: bool) -> Wrap {
        Wrap {
            src: Ipv4Addr::new(172, 31, 0, 1),
            dst: Ipv4Addr::new(172, 31, 0, 2),
            src_port: 40000,
            dst_port: if vxlan { 8472 } else { 8285 },
            vxlan: vxlan.then_some(vxlan::Header::new(
                1,
                MacAddr([2, 0x57, 1, 1, 1, 1]),
                MacAddr([2, 0x57, 2, 2, 2, 2]),
            )),
        }
    }

    /// A buffer with an inner packet of `len` bytes (IP version `v`) after
    /// the frame headroom.
    fn packet(len: usize, v: u8) -> (Vec<u8>, Range<usize>) {
        let mut buf = vec![0u8; FRAME_HEADROOM + len];
        buf[FRAME_HEADROOM] = v << 4 | 5;
        (buf, FRAME_HEADROOM..FRAME_HEADROOM + len)
    }

    #[test]
    fn tso_header_shifts_offsets_and_marks_the_tunnel() {
        let vh = VirtioNetHdr {
            flags: 1,
            gso_type: 1, // TCPv4
            hdr_len: 52,
            gso_size: 1398,
            csum_start: 20,
            csum_offset: 16,
        };
        let (mut buf, inner) = packet(20_052, 4);
        let frame = build_frame(&mut buf, inner.clone(), [9; 6], &wrap(true), &vh).unwrap();
        assert_eq!(
            frame,
            0..inner.end,
            "24 + 14 + 20 + 8 + 8 + 14 bytes in front"
        );
        let out = &buf[frame];
        assert_eq!(out[0], 1, "NEEDS_CSUM");
        assert_eq!(out[1], 0x21, "TCPv4 in a UDP tunnel over IPv4");
        assert_eq!(u16::from_le_bytes([out[2], out[3]]), 52 + 64);
        assert_eq!(u16::from_le_bytes([out[4], out[5]]), 1398);
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), 20 + 64);
        assert_eq!(u16::from_le_bytes([out[8], out[9]]), 16);
        assert_eq!(u16::from_le_bytes([out[20], out[21]]), 34, "outer UDP");
        assert_eq!(u16::from_le_bytes([out[22], out[23]]), 64, "inner IP");
        let f = &out[24..];
        assert_eq!(&f[0..6], &[9; 6], "to the TAP's MAC");
        let ip = &f[14..34];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 50 + 20_052);
        assert_eq!(
            checksum::checksum(ip),
            0,
            "valid outer IPv4 header checksum"
        );
        assert_eq!(ip[8], OUTER_TTL);
        assert_eq!(&f[34..38], &[0x9c, 0x40, 0x21, 0x18], "ports 40000 -> 8472");
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 30 + 20_052);
        assert_eq!(&f[40..42], &[0, 0], "no outer UDP checksum");
        assert_eq!(&f[42..50], &[8, 0, 0, 0, 0, 0, 1, 0], "VXLAN, VNI 1");
        assert_eq!(&f[50..56], &[2, 0x57, 2, 2, 2, 2], "inner dst MAC");
        assert_eq!(&f[62..64], &[8, 0]);
        assert_eq!(f[64], 0x45, "the inner packet follows");
    }

    #[test]
    fn single_packets_keep_a_partial_checksum_and_udp_mode_has_no_vxlan() {
        let vh = VirtioNetHdr {
            flags: 1,
            csum_start: 40,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        let (mut buf, inner) = packet(80, 6);
        let frame = build_frame(&mut buf, inner.clone(), [9; 6], &wrap(false), &vh).unwrap();
        assert_eq!(frame.len(), 24 + 14 + 20 + 8 + 80);
        let out = &buf[frame];
        assert_eq!(&out[0..4], &[1, 0, 0, 0], "NEEDS_CSUM, no GSO");
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), 40 + 42);
        assert_eq!(u16::from_le_bytes([out[22], out[23]]), 42, "inner IP");
        let (mut buf, inner) = packet(80, 4);
        let frame = build_frame(
            &mut buf,
            inner,
            [9; 6],
            &wrap(false),
            &VirtioNetHdr::default(),
        );
        assert_eq!(&buf[frame.unwrap()][0..10], &[0; 10]);
    }

    #[test]
    fn oversized_and_ufo_packets_are_refused() {
        let tso = VirtioNetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 52,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 16,
        };
        let (mut buf, inner) = packet(max_inner(true), 4);
        assert!(build_frame(&mut buf, inner, [0; 6], &wrap(true), &tso).is_some());
        let (mut buf, inner) = packet(max_inner(true) + 1, 4);
        assert!(build_frame(&mut buf, inner, [0; 6], &wrap(true), &tso).is_none());
        let ufo = VirtioNetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_UDP,
            ..tso
        };
        let (mut buf, inner) = packet(3000, 4);
        assert!(build_frame(&mut buf, inner, [0; 6], &wrap(true), &ufo).is_none());
        let (mut buf, inner) = packet(100, 4);
        let short = inner.start - 10..inner.end - 10;
        assert!(
            build_frame(&mut buf, short, [0; 6], &wrap(true), &tso).is_none(),
            "no room for the headers"
        );
    }

    #[test]
    fn segment_count() {
        let h = VirtioNetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 52,
            gso_size: 1398,
            csum_start: 20,
            csum_offset: 16,
        };
        assert!(is_gso(&h));
        assert_eq!(segments(&h, 52 + 1398 * 3), 3);
        assert_eq!(segments(&h, 52 + 1398 * 3 + 1), 4);
        assert_eq!(segments(&VirtioNetHdr::default(), 1000), 1);
    }

    #[test]
    fn tap_names_fit_fifteen_bytes() {
        assert_eq!(tap_name("weft0"), "weft0tx");
        assert_eq!(tap_name("abcdefghijklmno"), "abcdefghijklmtx");
        assert!(tap_name("abcdefghijklmno").len() <= 15);
    }
}
