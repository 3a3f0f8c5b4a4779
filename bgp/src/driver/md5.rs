//! TCP MD5 signatures (RFC 2385) through `setsockopt(TCP_MD5SIG)`: the only
//! unsafe code of the crate (neither nix nor socket2 exposes this option).
#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// `struct tcp_md5sig` from `<linux/tcp.h>`; the address is a
/// `sockaddr_storage` (128 bytes, so the following fields keep C offsets).
#[repr(C)]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; 80],
}

/// Installs (or with an empty key, removes) the MD5 key for `peer` on
/// `sock`. On a listening socket it covers connections accepted from `peer`.
/// An IPv4 peer on an IPv6 socket is keyed by its v4-mapped address.
pub(crate) fn set_md5(
    sock: &impl AsRawFd,
    socket_is_v6: bool,
    peer: IpAddr,
    key: &[u8],
) -> io::Result<()> {
    if key.len() > 80 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "MD5 key longer than 80 bytes",
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: [0; 128],
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; 80],
    };
    sig.key[..key.len()].copy_from_slice(key);
    let peer = match peer {
        IpAddr::V4(a) if socket_is_v6 => IpAddr::V6(a.to_ipv6_mapped()),
        p => p,
    };
    match peer {
        IpAddr::V4(a) => {
            sig.addr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            sig.addr[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            sig.addr[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            sig.addr[8..24].copy_from_slice(&a.octets());
        }
    }
    let len = std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t;
    // SAFETY: `sig` is a live, fully initialised repr(C) value of `len`
    // bytes laid out as the kernel's struct tcp_md5sig; the fd is open for
    // the duration of the call (borrowed from `sock`).
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
        assert_eq!(std::mem::offset_of!(TcpMd5Sig, keylen), 130);
        assert_eq!(std::mem::offset_of!(TcpMd5Sig, key), 136);
    }

    #[test]
    fn keys_install_on_v4_and_v6_sockets() {
        let v4 = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_md5(&v4, false, "127.0.0.2".parse().unwrap(), b"secret").unwrap();
        set_md5(&v4, false, "127.0.0.2".parse().unwrap(), b"").unwrap();
        if let Ok(v6) = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None) {
            set_md5(&v6, true, "::1".parse().unwrap(), b"secret").unwrap();
            set_md5(&v6, true, "127.0.0.2".parse().unwrap(), b"secret").unwrap();
        }
        assert!(set_md5(&v4, false, "127.0.0.2".parse().unwrap(), &[0; 81]).is_err());
    }
}
