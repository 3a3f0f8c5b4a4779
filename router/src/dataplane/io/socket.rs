//! Underlay sockets for the overlay: a UDP socket (vxlan, flannel udp) with
//! UDP GSO (`UDP_SEGMENT`) and GRO (`UDP_GRO`), batched `recvmmsg` /
//! `sendmmsg`, big buffers and no outer fragmentation; and a raw
//! `IPPROTO_IPIP` socket for IP-in-IP. The only place with socket `unsafe`.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Largest datagram a receive buffer must hold (a GRO batch).
pub const MAX_DATAGRAM: usize = 65_535;
/// Most segments one UDP GSO send may carry (kernel UDP_MAX_SEGMENTS).
pub const MAX_GSO_SEGMENTS: usize = 64;

const SOL_UDP: libc::c_int = 17;
/// Outer TTL of IP-in-IP packets.
const IPIP_TTL: libc::c_int = 64;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: fd is an open socket; the option value is a c_int on the stack
    // whose size is passed alongside.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const val).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
    s
}

fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(s.sin_port),
    )
}

/// Receive buffer of underlay sockets. Every queued 1500-byte datagram is
/// charged its skb truesize (2-4 KiB), so 8 MiB held only a few thousand
/// and overflowed (`UdpRcvbufErrors`) when four TCP flows burst at once
/// while the ingress thread waited for a CPU.
const RCV_BUF: libc::c_int = 32 << 20;
/// Send buffer of underlay sockets.
const SND_BUF: libc::c_int = 8 << 20;

/// Sets large send/receive buffers (forced as root, else best effort).
fn big_buffers(fd: RawFd) {
    for (force, plain, bytes) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCV_BUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SND_BUF),
    ] {
        if set_int(fd, libc::SOL_SOCKET, force, bytes).is_err() {
            let _ = set_int(fd, libc::SOL_SOCKET, plain, bytes);
        }
    }
}

/// What every underlay socket gets: large buffers, and DF on every outer
/// packet without the kernel's PMTU cache (`IP_PMTUDISC_PROBE`): weftd sizes
/// the TUN MTU itself and never lets an outer packet be fragmented.
fn underlay_options(fd: RawFd) -> io::Result<()> {
    big_buffers(fd);
    set_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    )
}

/// Waits up to `timeout` for `fd` to become readable. Returns true when it is.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd on the stack.
    let r = unsafe { libc::poll(&raw mut p, 1, ms) };
    match r {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Runs a byte-count syscall until it is not interrupted by a signal.
fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        match usize::try_from(call()) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Reads once from `fd` into `buf` (a TUN queue: one packet per read).
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, writable buffer of the stated length.
    retry_eintr(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Writes `iov` to `fd` with one `writev` (a TUN takes it as one frame).
pub fn write_vectored(fd: RawFd, iov: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let n = libc::c_int::try_from(iov.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the
    // call and the kernel only reads them.
    retry_eintr(|| unsafe { libc::writev(fd, iov.as_ptr().cast::<libc::iovec>(), n) })
}

/// Preallocated state for one `recvmmsg` call: buffers, lengths, sources
/// and the GRO segment size of each message.
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    srcs: Vec<SocketAddrV4>,
    seg: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    ctrl: Vec<[u64; 8]>,
}

impl RecvBatch {
    /// `n` messages of up to `buf_len` bytes each.
    pub fn new(n: usize, buf_len: usize) -> Self {
        // SAFETY: sockaddr_in is plain old data; all-zero is valid.
        let zero_addr: libc::sockaddr_in = unsafe { zeroed() };
        Self {
            bufs: vec![vec![0u8; buf_len]; n],
            lens: vec![0; n],
            srcs: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); n],
            seg: vec![0; n],
            addrs: vec![zero_addr; n],
            ctrl: vec![[0u64; 8]; n],
        }
    }

    /// The receive buffers (message `i` of the last receive is a prefix of
    /// buffer `i`).
    pub fn bufs(&self) -> &[Vec<u8>] {
        &self.bufs
    }

    /// Message `i` of the last receive: its bytes, source and GRO segment
    /// size (the datagrams inside are `seg` bytes each, the last one may be
    /// shorter; equal to the length when not coalesced).
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4, usize) {
        let len = self.lens[i];
        let seg = if self.seg[i] == 0 { len } else { self.seg[i] };
        (&self.bufs[i][..len], self.srcs[i], seg.max(1))
    }
}

fn recv_batch(fd: RawFd, b: &mut RecvBatch) -> io::Result<usize> {
    let n = b.bufs.len();
    // The iovecs and headers point into `b`, which outlives the call.
    let mut iovs: [libc::iovec; 64] =
        // SAFETY: iovec is plain old data; all-zero is valid.
        unsafe { zeroed() };
    // SAFETY: mmsghdr is plain old data; all-zero is valid.
    let mut hdrs: [libc::mmsghdr; 64] = unsafe { zeroed() };
    let n = n.min(64);
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: b.bufs[i].as_mut_ptr().cast(),
            iov_len: b.bufs[i].len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&raw mut b.addrs[i]).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = &raw mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = b.ctrl[i].as_mut_ptr().cast();
        h.msg_controllen = size_of::<[u64; 8]>();
        hdrs[i].msg_len = 0;
    }
    // SAFETY: every header points at live buffers of the stated sizes.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    for (i, hdr) in hdrs.iter().enumerate().take(got) {
        b.lens[i] = hdr.msg_len as usize;
        b.srcs[i] = from_sockaddr(&b.addrs[i]);
        b.seg[i] = 0;
        let h = &hdr.msg_hdr;
        // SAFETY: walking the control buffer the kernel filled, with the
        // libc CMSG helpers bounded by msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    b.seg[i] = usize::try_from(v).unwrap_or(0);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
    }
    Ok(got)
}

/// Sends datagrams `get(0..n)` (destination, bytes) with `sendmmsg`,
/// retrying the rest after a partial send. Returns how many were sent;
/// stops at the first error.
fn send_batch<'a>(
    fd: RawFd,
    n: usize,
    get: impl Fn(usize) -> (SocketAddrV4, &'a [u8]),
) -> io::Result<usize> {
    let mut sent = 0;
    while sent < n {
        let chunk_len = (n - sent).min(64);
        // SAFETY: plain old data arrays, zero is valid.
        let mut iovs: [libc::iovec; 64] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; 64] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut addrs: [libc::sockaddr_in; 64] = unsafe { zeroed() };
        for i in 0..chunk_len {
            let (dst, d) = get(sent + i);
            addrs[i] = sockaddr(dst);
            iovs[i] = libc::iovec {
                iov_base: d.as_ptr().cast_mut().cast(),
                iov_len: d.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&raw mut addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &raw mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: headers point at live buffers; the kernel only reads them.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), chunk_len as libc::c_uint, 0) };
        match usize::try_from(r) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if sent == 0 {
                    return Err(e);
                }
                break;
            }
        }
    }
    Ok(sent)
}

/// A UDP socket on the underlay.
#[derive(Debug)]
pub struct UdpSock {
    fd: OwnedFd,
    /// UDP GSO (`UDP_SEGMENT`) works.
    pub gso: bool,
    /// UDP GRO is on.
    pub gro: bool,
}

impl UdpSock {
    /// Binds `addr` (port 0: an ephemeral port). Sets big buffers, DF on
    /// every datagram (`IP_PMTUDISC_PROBE`: never fragmented), and when
    /// `offload` is true probes UDP GSO and enables UDP GRO.
    pub fn bind(addr: SocketAddrV4, reuseport: bool, offload: bool) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if reuseport {
            set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        underlay_options(raw)?;
        let sa = sockaddr(addr);
        // SAFETY: sa is a valid sockaddr_in of the stated size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })?;
        let (gso, gro) = if offload {
            // A per-socket UDP_SEGMENT of 0 is accepted only by kernels that
            // support the per-call cmsg as well.
            let gso = set_int(raw, SOL_UDP, UDP_SEGMENT, 0).is_ok();
            let gro = set_int(raw, SOL_UDP, UDP_GRO, 1).is_ok();
            (gso, gro)
        } else {
            (false, false)
        };
        Ok(Self { fd, gso, gro })
    }

    /// Sends IPv4 UDP datagrams without a UDP checksum (`SO_NO_CHECK`),
    /// as the kernel's vxlan does by default: the inner packet carries its
    /// own checksums, and the receiver then skips verification.
    pub fn no_udp_checksum(&self) -> io::Result<()> {
        set_int(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        // SAFETY: zeroed sockaddr_in is valid; getsockname fills it.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: pointers to live stack values with their sizes.
        cvt(unsafe { libc::getsockname(self.fd.as_raw_fd(), (&raw mut sa).cast(), &raw mut len) })?;
        Ok(from_sockaddr(&sa))
    }

    /// Receives up to a batch without blocking (`WouldBlock` when empty).
    pub fn recv_batch(&self, b: &mut RecvBatch) -> io::Result<usize> {
        recv_batch(self.fd.as_raw_fd(), b)
    }

    /// Sends datagrams `get(0..n)` (one `sendmmsg` per 64).
    pub fn send_batch<'a>(
        &self,
        n: usize,
        get: impl Fn(usize) -> (SocketAddrV4, &'a [u8]),
    ) -> io::Result<usize> {
        send_batch(self.fd.as_raw_fd(), n, get)
    }

    /// Sends `segs` to `dst` as one UDP GSO super-datagram: every segment
    /// but the last is exactly `seg_size` bytes, the last at most that.
    pub fn send_gso(&self, dst: SocketAddrV4, segs: &[&[u8]], seg_size: u16) -> io::Result<()> {
        let n = segs.len().min(MAX_GSO_SEGMENTS);
        // SAFETY: plain old data arrays; zero is valid.
        let mut iovs: [libc::iovec; MAX_GSO_SEGMENTS] = unsafe { zeroed() };
        for (i, s) in segs[..n].iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: s.as_ptr().cast_mut().cast(),
                iov_len: s.len(),
            };
        }
        let mut addr = sockaddr(dst);
        let mut ctrl = [0u64; 4];
        // SAFETY: zeroed msghdr is valid; every pointer set below refers to
        // a live stack value of the stated size.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&raw mut addr).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = n;
        if n > 1 {
            msg.msg_control = ctrl.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a pure size computation.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            // SAFETY: the control buffer is large enough for one u16 cmsg.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&raw const msg);
                (*c).cmsg_level = SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg_size);
            }
        }
        loop {
            // SAFETY: msg is fully initialised above.
            let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &raw const msg, 0) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// The raw descriptor (for polling).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A raw IP socket for protocol 4 (IP-in-IP). The kernel writes the outer
/// header (no `IP_HDRINCL`: a header-including raw send is routed with
/// `FLOWI_FLAG_KNOWN_NH`, which makes the kernel allocate and free a route
/// per packet; without it the cached route is used), DF always set
/// (`IP_PMTUDISC_PROBE`: never fragmented), TTL 64. Receives see whole
/// outer packets.
#[derive(Debug)]
pub struct RawIpip {
    fd: OwnedFd,
}

impl RawIpip {
    /// Opens the socket, bound to `local` so only packets to this node's
    /// underlay address arrive.
    pub fn open(local: Ipv4Addr) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IPIP,
            )
        })?;
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        underlay_options(raw)?;
        set_int(raw, libc::IPPROTO_IP, libc::IP_TTL, IPIP_TTL)?;
        let sa = sockaddr(SocketAddrV4::new(local, 0));
        // SAFETY: sa is a valid sockaddr_in of the stated size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })?;
        Ok(Self { fd })
    }

    /// Receives whole outer IPv4 packets without blocking.
    pub fn recv_batch(&self, b: &mut RecvBatch) -> io::Result<usize> {
        recv_batch(self.fd.as_raw_fd(), b)
    }

    /// Sends inner IPv4 packets `get(0..n)` to the given underlay
    /// addresses (the port is ignored); the kernel adds the outer header.
    pub fn send_batch<'a>(
        &self,
        n: usize,
        get: impl Fn(usize) -> (SocketAddrV4, &'a [u8]),
    ) -> io::Result<usize> {
        send_batch(self.fd.as_raw_fd(), n, get)
    }

    /// The raw descriptor (for polling).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The underlay side of a worker.
#[derive(Debug, Clone)]
pub(crate) enum Underlay {
    /// vxlan / udp.
    Udp(Arc<UdpSock>),
    /// ipip.
    Raw(Arc<RawIpip>),
}

impl Underlay {
    pub(crate) fn raw_fd(&self) -> i32 {
        match self {
            Self::Udp(s) => s.raw_fd(),
            Self::Raw(s) => s.raw_fd(),
        }
    }

    pub(crate) fn recv_batch(&self, b: &mut RecvBatch) -> io::Result<usize> {
        match self {
            Self::Udp(s) => s.recv_batch(b),
            Self::Raw(s) => s.recv_batch(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_batch_and_gso_over_loopback() {
        let lo = Ipv4Addr::LOCALHOST;
        let rx = UdpSock::bind(SocketAddrV4::new(lo, 0), false, true).unwrap();
        let tx = UdpSock::bind(SocketAddrV4::new(lo, 0), false, true).unwrap();
        let dst = rx.local_addr().unwrap();
        let a = [1u8; 100];
        let b = [2u8; 50];
        let msgs = [(dst, &a[..]), (dst, &b[..])];
        assert_eq!(tx.send_batch(2, |i| msgs[i]).unwrap(), 2);
        let mut batch = RecvBatch::new(8, MAX_DATAGRAM);
        assert!(wait_readable(rx.raw_fd(), Duration::from_secs(2)).unwrap());
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while got.len() < 150 && std::time::Instant::now() < deadline {
            match rx.recv_batch(&mut batch) {
                Ok(n) => {
                    for i in 0..n {
                        let (d, src, _) = batch.get(i);
                        assert_eq!(src, tx.local_addr().unwrap());
                        got.extend_from_slice(d);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_readable(rx.raw_fd(), Duration::from_millis(100)).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got[..100], &a[..]);
        assert_eq!(&got[100..], &b[..]);

        if tx.gso {
            let segs: Vec<Vec<u8>> = (0..5u8)
                .map(|i| vec![i; if i == 4 { 30 } else { 200 }])
                .collect();
            let refs: Vec<&[u8]> = segs.iter().map(Vec::as_slice).collect();
            tx.send_gso(dst, &refs, 200).unwrap();
            let mut total = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while total.len() < 5 && std::time::Instant::now() < deadline {
                match rx.recv_batch(&mut batch) {
                    Ok(n) => {
                        for i in 0..n {
                            let (d, _, seg) = batch.get(i);
                            for chunk in d.chunks(seg) {
                                total.push(chunk.to_vec());
                            }
                        }
                    }
                    Err(_) => {
                        wait_readable(rx.raw_fd(), Duration::from_millis(100)).unwrap();
                    }
                }
            }
            let total: Vec<Vec<u8>> = total;
            assert_eq!(total.len(), 5, "GSO send must arrive as 5 datagrams");
            assert_eq!(total[4], vec![4u8; 30]);
            assert_eq!(total[1], vec![1u8; 200]);
        }
    }
}
