//! Byte-for-byte interop with the Linux kernel (root; namespaces it makes
//! and removes). Two namespaces `a` and `b` joined by a veth underlay
//! (192.168.77.1/.2, tx checksum offload off):
//!
//! * VXLAN, kernel -> us: a kernel `vxlan` device in `a` (VNI 1, port 8472,
//!   nolearning, static fdb + neighbour entries) sends UDP over IPv4 and
//!   IPv6; a plain UDP socket on 8472 in `b` captures the datagrams. Our
//!   decoder must read them and our encoder must rebuild them byte for byte.
//! * VXLAN, us -> kernel: datagrams we encode are sent from a UDP socket in
//!   `b` to the vxlan device; a socket behind it must receive the inner UDP
//!   payload, while datagrams with a wrong VNI or reserved bits (which our
//!   decoder rejects too) must be dropped by the kernel.
//! * flannel udp: kernel-built inner packets carried over UDP 8285.
//! * ipip (no ipip module here): raw sockets. Our full packet goes out an
//!   `IPPROTO_RAW` socket and arrives unchanged at an `IPPROTO_IPIP` raw
//!   socket; the kernel-built outer header of a plain `IPPROTO_IPIP` send
//!   must pass our decoder and equal what our encoder builds.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use weft_encap::{DecapError, InnerPacket, MacAddr, ipip, udp, vxlan};

const UL_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const UL_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const OV_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OV_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0x0a, 0x01]);
const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0x0b, 0x01]);
const TIMEOUT: Duration = Duration::from_secs(3);

fn ov6_a() -> Ipv6Addr {
    "fd77::1".parse().unwrap()
}
fn ov6_b() -> Ipv6Addr {
    "fd77::2".parse().unwrap()
}

/// Two namespaces joined by veth `ul0` (tx checksum offload off).
struct Pair {
    a: Netns,
    b: Netns,
}

fn pair() -> Pair {
    let p = unique_prefix("ec");
    let a = Netns::create(&format!("{p}-a")).unwrap();
    let b = Netns::create(&format!("{p}-b")).unwrap();
    a.ip(&[
        "link",
        "add",
        "ul0",
        "type",
        "veth",
        "peer",
        "name",
        "ul0",
        "netns",
        b.name(),
    ])
    .unwrap();
    for (ns, addr) in [(&a, "192.168.77.1/24"), (&b, "192.168.77.2/24")] {
        ns.ip(&["addr", "add", addr, "dev", "ul0"]).unwrap();
        ns.ip(&["link", "set", "ul0", "up"]).unwrap();
        ns.run("ethtool", &["-K", "ul0", "tx", "off"]).unwrap();
    }
    Pair { a, b }
}

/// Kernel vxlan device `vx0` in `ns` (VNI 1, port 8472) toward 192.168.77.2.
fn kernel_vxlan(ns: &Netns) {
    let mac = MAC_A.to_string();
    let peer_mac = MAC_B.to_string();
    let cmds: [&[&str]; 6] = [
        &[
            "link",
            "add",
            "vx0",
            "address",
            &mac,
            "type",
            "vxlan",
            "id",
            "1",
            "dstport",
            "8472",
            "local",
            "192.168.77.1",
            "dev",
            "ul0",
            "nolearning",
        ],
        &["addr", "add", "10.77.0.1/24", "dev", "vx0"],
        &["addr", "add", "fd77::1/64", "dev", "vx0", "nodad"],
        &["link", "set", "vx0", "up"],
        &[
            "neigh",
            "replace",
            "10.77.0.2",
            "lladdr",
            &peer_mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ],
        &[
            "neigh",
            "replace",
            "fd77::2",
            "lladdr",
            &peer_mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ],
    ];
    for c in cmds {
        ns.ip(c).unwrap();
    }
    ns.run(
        "bridge",
        &[
            "fdb",
            "append",
            &peer_mac,
            "dev",
            "vx0",
            "dst",
            "192.168.77.2",
            "self",
            "permanent",
        ],
    )
    .unwrap();
}

fn udp_in(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    let s = ns.run_in(move || UdpSocket::bind(addr)).unwrap().unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

fn raw_in(ns: &Netns, proto: i32) -> Socket {
    let s = ns
        .run_in(move || Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(proto))))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// An inner IPv4/IPv6 UDP packet with valid checksums.
fn inner_udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("mixed families"),
    }
    .udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Receives datagrams on `rx` until one satisfies `want` (bounded).
fn recv_matching(rx: &UdpSocket, want: impl Fn(&[u8]) -> bool) -> (Vec<u8>, SocketAddr) {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 2048];
    for _ in 0..50 {
        assert!(
            Instant::now() < deadline,
            "nothing matching arrived in time"
        );
        let (n, from) = rx.recv_from(&mut buf).expect("datagram before timeout");
        if want(&buf[..n]) {
            return (buf[..n].to_vec(), from);
        }
    }
    panic!("no matching datagram among 50");
}

#[test]
fn vxlan_kernel_to_us_and_back() {
    if !privileged_or_skip("vxlan_kernel_to_us_and_back", &["ip", "ethtool", "bridge"]) {
        return;
    }
    let p = pair();
    kernel_vxlan(&p.a);
    let capture = udp_in(&p.b, SocketAddr::from((UL_B, vxlan::DEFAULT_PORT)));

    // Kernel -> us, over IPv4 and IPv6 inner packets.
    let mut kernel_inner = Vec::new();
    for (src, dst) in [
        (SocketAddr::from((OV_A, 0)), SocketAddr::from((OV_B, 5555))),
        (
            SocketAddr::from((ov6_a(), 0)),
            SocketAddr::from((ov6_b(), 5555)),
        ),
    ] {
        let tx = udp_in(&p.a, src);
        let msg = format!("kernel says hi to {dst}");
        tx.send_to(msg.as_bytes(), dst).unwrap();
        let (dgram, from) = recv_matching(&capture, |d| d.ends_with(msg.as_bytes()));
        assert_eq!(from.ip(), IpAddr::V4(UL_A));
        assert!(vxlan::DEFAULT_SRC_PORTS.contains(&from.port()), "{from}");

        let f = vxlan::decap(&dgram, 1).unwrap();
        assert_eq!(f.vni, 1);
        assert_eq!(f.src_mac, MAC_A);
        assert_eq!(f.dst_mac, MAC_B);
        assert_eq!(f.inner.src(), src.ip());
        assert_eq!(f.inner.dst(), dst.ip());
        assert_eq!(f.inner.protocol(), 17);
        assert_eq!(f.inner_range.end, dgram.len());
        assert!(matches!(
            vxlan::decap(&dgram, 2),
            Err(DecapError::VniMismatch { got: 1, .. })
        ));

        // Our encoder, same inner packet, VNI and MACs: identical bytes.
        let inner = f.inner.bytes();
        let mut buf = vec![0u8; vxlan::HEADROOM + inner.len()];
        buf[vxlan::HEADROOM..].copy_from_slice(inner);
        let end = buf.len();
        let out = vxlan::encap(&mut buf, vxlan::HEADROOM..end, 1, MAC_A, MAC_B).unwrap();
        assert_eq!(
            &buf[out],
            &dgram[..],
            "encoder differs from kernel for {dst}"
        );
        kernel_inner.push(inner.to_vec());
    }

    // Us -> kernel: wrong VNI and reserved bits first (dropped by the
    // kernel), then the good datagram, per family.
    let tx = udp_in(&p.b, SocketAddr::from((UL_B, 0)));
    for (src, dst) in [
        (
            SocketAddr::from((OV_B, 6000)),
            SocketAddr::from((OV_A, 7777)),
        ),
        (
            SocketAddr::from((ov6_b(), 6000)),
            SocketAddr::from((ov6_a(), 7777)),
        ),
    ] {
        let rx = udp_in(&p.a, dst);
        let send = |vni: u32, tag: &str, reserved: bool| {
            let pkt = inner_udp(src.ip(), dst.ip(), src.port(), dst.port(), tag.as_bytes());
            let mut buf = vec![0u8; vxlan::HEADROOM + pkt.len()];
            buf[vxlan::HEADROOM..].copy_from_slice(&pkt);
            let end = buf.len();
            let out = vxlan::encap(&mut buf, vxlan::HEADROOM..end, vni, MAC_B, MAC_A).unwrap();
            if reserved {
                buf[1] = 0x80;
                assert_eq!(
                    vxlan::decap(&buf[out.clone()], vni),
                    Err(DecapError::VxlanReservedBits)
                );
            }
            tx.send_to(&buf[out], (UL_A, vxlan::DEFAULT_PORT)).unwrap();
        };
        send(2, "wrong vni", false);
        send(1, "reserved bits", true);
        send(1, "from weft-encap", false);
        let mut got = [0u8; 256];
        let (n, from) = rx
            .recv_from(&mut got)
            .expect("kernel delivered our datagram");
        assert_eq!(&got[..n], b"from weft-encap");
        assert_eq!(from, src);
    }

    // flannel udp: the kernel-built inner packets over a plain UDP socket.
    let rx = udp_in(&p.b, SocketAddr::from((UL_B, udp::DEFAULT_PORT)));
    let tx = udp_in(&p.a, SocketAddr::from((UL_A, 0)));
    for inner in &kernel_inner {
        let out = udp::encap(inner, 0..inner.len()).unwrap();
        tx.send_to(&inner[out], (UL_B, udp::DEFAULT_PORT)).unwrap();
        let mut got = [0u8; 2048];
        let (n, from) = rx.recv_from(&mut got).unwrap();
        assert_eq!(from.ip(), IpAddr::V4(UL_A));
        let view = udp::decap(&got[..n]).unwrap();
        let want = InnerPacket::parse(inner).unwrap();
        assert_eq!(view, want);
        assert_eq!(view.src(), want.src());
    }
}

fn read_raw(s: &Socket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let n = (&*s).read(&mut buf).expect("raw packet before timeout");
    buf[..n].to_vec()
}

#[test]
fn ipip_over_raw_sockets() {
    if !privileged_or_skip("ipip_over_raw_sockets", &["ip", "ethtool"]) {
        return;
    }
    let p = pair();
    let rx_b = raw_in(&p.b, i32::from(ipip::PROTOCOL));
    let rx_a = raw_in(&p.a, i32::from(ipip::PROTOCOL));
    let inner_ab = inner_udp(
        IpAddr::V4(Ipv4Addr::new(10, 78, 1, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 78, 2, 1)),
        1111,
        2222,
        b"ipip from weft-encap",
    );

    // Our full packet (outer header by ipip::encap) via IPPROTO_RAW.
    let raw_tx = raw_in(&p.a, 255);
    let mut buf = vec![0u8; ipip::HEADROOM + inner_ab.len()];
    buf[ipip::HEADROOM..].copy_from_slice(&inner_ab);
    let end = buf.len();
    let outer = ipip::Outer {
        src: UL_A,
        dst: UL_B,
        ttl: 64,
        id: 0x1234,
    };
    let out = ipip::encap(&mut buf, ipip::HEADROOM..end, &outer).unwrap();
    let sent = buf[out].to_vec();
    raw_tx
        .send_to(&sent, &SockAddr::from(SocketAddrV4::new(UL_B, 0)))
        .unwrap();
    let got = read_raw(&rx_b);
    // The kernel recomputes the checksum of IP_HDRINCL packets: equal bytes
    // mean ours was what the kernel computes too.
    assert_eq!(got, sent);
    let d = ipip::decap(&got).unwrap();
    assert_eq!((d.outer_src, d.outer_dst, d.outer_ttl), (UL_A, UL_B, 64));
    assert_eq!(d.inner.bytes(), &inner_ab[..]);

    // Kernel-built outer header: send only the inner packet.
    let inner_ba = inner_udp(
        IpAddr::V4(Ipv4Addr::new(10, 78, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 78, 1, 1)),
        2222,
        1111,
        b"ipip from the kernel",
    );
    rx_b.send_to(&inner_ba, &SockAddr::from(SocketAddrV4::new(UL_A, 0)))
        .unwrap();
    let got = read_raw(&rx_a);
    let d = ipip::decap(&got).unwrap();
    assert_eq!((d.outer_src, d.outer_dst), (UL_B, UL_A));
    assert_eq!(d.inner.bytes(), &inner_ba[..]);
    // Rebuild with the kernel's ID and TTL: our header must be identical
    // (DF follows the inner packet's DF, TOS its TOS, both as the kernel did).
    let id = u16::from_be_bytes([got[4], got[5]]);
    let mut buf = vec![0u8; ipip::HEADROOM + inner_ba.len()];
    buf[ipip::HEADROOM..].copy_from_slice(&inner_ba);
    let end = buf.len();
    let outer = ipip::Outer {
        src: UL_B,
        dst: UL_A,
        ttl: d.outer_ttl,
        id,
    };
    let out = ipip::encap(&mut buf, ipip::HEADROOM..end, &outer).unwrap();
    assert_eq!(&buf[out], &got[..]);
}
