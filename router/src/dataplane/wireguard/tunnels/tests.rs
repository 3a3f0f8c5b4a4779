//! Two nodes' `Tunnels` wired back to back in memory: handshake, data
//! both ways, replay, wrong keys, cookies under load, roaming, and
//! arbitrary datagrams (the receive path's fuzz body, run on stable).

use super::*;
use crate::wg_key::PublicKey;

const A: &str = "172.31.0.1:51820";
const B: &str = "172.31.0.2:51820";

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn spec(key: &PrivateKey, at: &str) -> PeerSpec {
    let ep = addr(at);
    PeerSpec {
        public: key.public,
        endpoint: ep,
        vias: vec![*ep.ip()],
    }
}

/// Nodes a and b, each knowing the other; their private keys' bytes.
fn pair() -> (Tunnels, Tunnels) {
    let (ka, kb) = (
        PrivateKey::from_bytes([1; 32]),
        PrivateKey::from_bytes([2; 32]),
    );
    let sa = spec(&ka, A);
    let sb = spec(&kb, B);
    (Tunnels::new(ka, &[sb], None), Tunnels::new(kb, &[sa], None))
}

fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let len = 20 + payload;
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// Runs the handshake a → b, started by a packet a sends; returns the
/// data datagram that carried it.
fn handshake(a: &Tunnels, b: &Tunnels, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let n = a.encapsulate(0, pkt, &mut buf).expect("handshake init");
    assert_eq!(n, 148);
    let r = b.receive(addr(A), &buf[..n], &mut out);
    let Received::Reply {
        to,
        len,
        peer: Some(0),
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((to, len), (addr(A), 92));
    let r = a.receive(addr(B), &out[..len], &mut buf);
    let Received::Reply {
        len, peer: Some(0), ..
    } = r
    else {
        panic!("{r:?}")
    };
    // The keepalive that confirms the session, then the queued packet.
    assert_eq!(len, 32);
    assert_eq!(b.receive(addr(A), &buf[..len], &mut out), Received::Nothing);
    let n = a.queued(0, &mut buf).expect("queued packet");
    assert_eq!(a.queued(0, &mut out), None);
    buf[..n].to_vec()
}

#[test]
fn handshake_then_data_both_ways() {
    let (a, b) = pair();
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 100);
    let d = handshake(&a, &b, &p);
    let mut out = vec![0u8; 2048];
    assert_eq!(
        b.receive(addr(A), &d, &mut out),
        Received::Packet {
            peer: 0,
            len: p.len()
        }
    );
    assert_eq!(&out[..p.len()], &p[..]);
    let q = ipv4([10, 244, 2, 3], [10, 244, 1, 2], 1000);
    let mut buf = vec![0u8; 2048];
    let n = b.encapsulate(0, &q, &mut buf).unwrap();
    assert_eq!(n, q.len() + 32);
    assert_eq!(
        a.receive(addr(B), &buf[..n], &mut out),
        Received::Packet {
            peer: 0,
            len: q.len()
        }
    );
}

#[test]
fn replayed_data_is_dropped() {
    let (a, b) = pair();
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 10);
    let d = handshake(&a, &b, &p);
    let mut out = vec![0u8; 2048];
    assert!(matches!(
        b.receive(addr(A), &d, &mut out),
        Received::Packet { .. }
    ));
    assert_eq!(
        b.receive(addr(A), &d, &mut out),
        Received::Drop(Reason::WG_REPLAY, Some(0))
    );
}

#[test]
fn an_unknown_key_gets_no_session() {
    let (a, _) = pair();
    // c knows a's key, but a does not know c's.
    let kc = PrivateKey::from_bytes([3; 32]);
    let c = Tunnels::new(kc, &[spec(&PrivateKey::from_bytes([1; 32]), A)], None);
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let n = c
        .encapsulate(0, &ipv4([1; 4], [2; 4], 8), &mut buf)
        .unwrap();
    assert_eq!(
        a.receive(addr("172.31.0.3:51820"), &buf[..n], &mut out),
        Received::Drop(Reason::WG_INVALID, None)
    );
    // A handshake for another node's key fails its MAC.
    let (_, b) = pair();
    assert_eq!(
        b.receive(addr("172.31.0.3:51820"), &buf[..n], &mut out),
        Received::Drop(Reason::WG_INVALID, None)
    );
}

#[test]
fn the_peer_roams_to_the_source_of_authenticated_messages() {
    let (a, b) = pair();
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 10);
    let d = handshake(&a, &b, &p);
    let mut out = vec![0u8; 2048];
    let moved = addr("198.51.100.7:40000");
    assert!(matches!(
        b.receive(moved, &d, &mut out),
        Received::Packet { .. }
    ));
    assert_eq!(b.peer(0).unwrap().endpoint(), moved);
    // A forged message from elsewhere moves nothing.
    let mut fake = vec![0u8; 2048];
    let n = a.encapsulate(0, &p, &mut fake).unwrap();
    fake.truncate(n);
    fake[20] ^= 1;
    let r = b.receive(addr("203.0.113.1:1"), &fake, &mut out);
    assert_eq!(r, Received::Drop(Reason::WG_INVALID, Some(0)));
    assert_eq!(b.peer(0).unwrap().endpoint(), moved);
}

#[test]
fn a_handshake_flood_gets_cookie_replies() {
    let (a, _) = pair();
    let mut out = vec![0u8; 2048];
    let mut cookies = 0;
    for i in 0..(HANDSHAKE_RATE_LIMIT + 50) {
        // Fresh initiators that know a's public key (valid mac1).
        let k = PrivateKey::from_bytes([u8::try_from(i % 200).unwrap() + 10; 32]);
        let t = Tunnels::new(k, &[spec(&PrivateKey::from_bytes([1; 32]), A)], None);
        let mut buf = vec![0u8; 2048];
        let n = t
            .encapsulate(0, &ipv4([1; 4], [2; 4], 8), &mut buf)
            .unwrap();
        if let Received::Reply {
            len: 64,
            peer: None,
            ..
        } = a.receive(addr("203.0.113.9:1000"), &buf[..n], &mut out)
        {
            cookies += 1;
            assert_eq!(out[0], 3, "cookie reply type");
        }
    }
    assert!(cookies >= 40, "{cookies} cookie replies");
    a.reset_rate_limit();
}

/// The receive path's fuzz body: arbitrary datagrams, and real messages
/// with bits flipped or cut short, never panic.
pub(crate) fn receive_never_panics(t: &Tunnels, data: &[u8], out: &mut [u8]) {
    let _ = t.receive(addr("192.0.2.1:9"), data, out);
}

#[test]
fn arbitrary_datagrams_never_panic() {
    let (a, b) = pair();
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 64);
    let d = handshake(&a, &b, &p);
    let mut init = vec![0u8; 2048];
    let (c, _) = pair();
    let n = c.encapsulate(0, &p, &mut init).unwrap();
    let seeds = [d, init[..n].to_vec()];
    let mut out = vec![0u8; 2048];
    // xorshift: reproducible without a fuzzing engine.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000 {
        let seed = &seeds[round % seeds.len()];
        let mut m = seed.clone();
        let r = next();
        match r % 4 {
            0 => m.truncate(usize::try_from(r >> 8).unwrap() % (seed.len() + 1)),
            1 => {
                let i = usize::try_from(r >> 8).unwrap() % m.len();
                m[i] ^= 1 << (r >> 40 & 7);
            }
            2 => {
                let len = usize::try_from(r >> 8).unwrap() % 200;
                m = (0..len).map(|_| (next() & 0xff) as u8).collect();
                if let Some(b0) = m.first_mut() {
                    *b0 = u8::try_from(r >> 50 & 3).unwrap() + 1;
                }
                for b in m.iter_mut().skip(1).take(3) {
                    *b = 0;
                }
            }
            _ => m.extend((0..(r >> 8) % 64).map(|_| (next() & 0xff) as u8)),
        }
        receive_never_panics(&b, &m, &mut out);
        receive_never_panics(&a, &m, &mut out);
    }
    let _ = PublicKey([0; 32]);
}
