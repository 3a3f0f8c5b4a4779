//! The TTL floor on received packets (`IP_MINTTL`, `IPV6_MINHOPCOUNT`),
//! used by single-hop BFD (RFC 5881 §5) and GTSM (RFC 5082): the kernel
//! drops packets that arrive with a lower TTL. socket2 does not expose
//! these options, so this is a `setsockopt` of one `int`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// Sets the lowest TTL (IPv4) or hop limit (IPv6) `sock` accepts.
pub(crate) fn set_min_ttl(sock: &impl AsRawFd, v6: bool, ttl: u8) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    let val = libc::c_int::from(ttl);
    // SAFETY: `val` is a live c_int and the length passed is its size; the
    // fd is open for the duration of the call (borrowed from `sock`).
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const val).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// GTSM for one hop on a TCP socket: TTL (hop limit) 255 on what it
/// sends, nothing below 255 accepted.
pub(crate) fn set_gtsm<S: std::os::fd::AsFd + AsRawFd>(sock: &S, v6: bool) -> io::Result<()> {
    let s = socket2::SockRef::from(sock);
    if v6 {
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl_v4(255)?;
    }
    set_min_ttl(sock, v6, 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_installs_on_v4_and_v6_sockets() {
        let v4 = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        set_min_ttl(&v4, false, 255).unwrap();
        if let Ok(v6) = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None) {
            set_min_ttl(&v6, true, 255).unwrap();
        }
    }
}
