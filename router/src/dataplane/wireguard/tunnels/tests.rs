//! Two nodes' `Tunnels` wired back to back in memory: handshake, data
//! both ways, replay, wrong keys, cookies under load, roaming, and
//! arbitrary datagrams (the receive path's fuzz body, run on stable).

use super::*;
use crate::wg_key::PublicKey;

/// The old single-set calls, on the current peer set.
trait Harness {
    fn send(&self, peer: usize, pkt: &[u8], out: &mut [u8]) -> Option<usize>;
    fn recv(&self, src: SocketAddrV4, d: &[u8], out: &mut [u8]) -> Received;
    fn pending(&self, peer: usize, out: &mut [u8]) -> Option<usize>;
    fn endpoint_of(&self, peer: usize) -> SocketAddrV4;
}

impl Harness for Tunnels {
    fn send(&self, peer: usize, pkt: &[u8], out: &mut [u8]) -> Option<usize> {
        self.current().1.encapsulate(peer, pkt, out)
    }
    fn recv(&self, src: SocketAddrV4, d: &[u8], out: &mut [u8]) -> Received {
        let (_, set) = self.current();
        self.receive(&set, src, d, out)
    }
    fn pending(&self, peer: usize, out: &mut [u8]) -> Option<usize> {
        self.current().1.queued(peer, out)
    }
    fn endpoint_of(&self, peer: usize) -> SocketAddrV4 {
        self.current().1.peer(peer).unwrap().endpoint()
    }
}

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
    (
        Tunnels::new(ka, &[sb], None, None),
        Tunnels::new(kb, &[sa], None, None),
    )
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
    let n = a.send(0, pkt, &mut buf).expect("handshake init");
    assert_eq!(n, 148);
    let r = b.recv(addr(A), &buf[..n], &mut out);
    let Received::Reply {
        to,
        len,
        peer: Some(0),
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((to, len), (addr(A), 92));
    let r = a.recv(addr(B), &out[..len], &mut buf);
    let Received::Reply {
        len, peer: Some(0), ..
    } = r
    else {
        panic!("{r:?}")
    };
    // The keepalive that confirms the session, then the queued packet.
    assert_eq!(len, 32);
    assert_eq!(b.recv(addr(A), &buf[..len], &mut out), Received::Nothing);
    let n = a.pending(0, &mut buf).expect("queued packet");
    assert_eq!(a.pending(0, &mut out), None);
    buf[..n].to_vec()
}

#[test]
fn handshake_then_data_both_ways() {
    let (a, b) = pair();
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 100);
    let d = handshake(&a, &b, &p);
    let mut out = vec![0u8; 2048];
    assert_eq!(
        b.recv(addr(A), &d, &mut out),
        Received::Packet {
            peer: 0,
            len: p.len()
        }
    );
    assert_eq!(&out[..p.len()], &p[..]);
    let q = ipv4([10, 244, 2, 3], [10, 244, 1, 2], 1000);
    let mut buf = vec![0u8; 2048];
    let n = b.send(0, &q, &mut buf).unwrap();
    assert_eq!(n, q.len() + 32);
    assert_eq!(
        a.recv(addr(B), &buf[..n], &mut out),
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
        b.recv(addr(A), &d, &mut out),
        Received::Packet { .. }
    ));
    assert_eq!(
        b.recv(addr(A), &d, &mut out),
        Received::Drop(Reason::WG_REPLAY, Some(0))
    );
}

#[test]
fn an_unknown_key_gets_no_session() {
    let (a, _) = pair();
    // c knows a's key, but a does not know c's.
    let kc = PrivateKey::from_bytes([3; 32]);
    let c = Tunnels::new(kc, &[spec(&PrivateKey::from_bytes([1; 32]), A)], None, None);
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let n = c.send(0, &ipv4([1; 4], [2; 4], 8), &mut buf).unwrap();
    assert_eq!(
        a.recv(addr("172.31.0.3:51820"), &buf[..n], &mut out),
        Received::Drop(Reason::WG_INVALID, None)
    );
    // A handshake for another node's key fails its MAC.
    let (_, b) = pair();
    assert_eq!(
        b.recv(addr("172.31.0.3:51820"), &buf[..n], &mut out),
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
        b.recv(moved, &d, &mut out),
        Received::Packet { .. }
    ));
    assert_eq!(b.endpoint_of(0), moved);
    // A forged message from elsewhere moves nothing.
    let mut fake = vec![0u8; 2048];
    let n = a.send(0, &p, &mut fake).unwrap();
    fake.truncate(n);
    fake[20] ^= 1;
    let r = b.recv(addr("203.0.113.1:1"), &fake, &mut out);
    assert_eq!(r, Received::Drop(Reason::WG_INVALID, Some(0)));
    assert_eq!(b.endpoint_of(0), moved);
}

#[test]
fn learned_keys_become_peers_and_sessions_survive_changes() {
    use super::super::key_book::{KeyBook, LearnedKey};
    let (ka, kb) = (
        PrivateKey::from_bytes([1; 32]),
        PrivateKey::from_bytes([2; 32]),
    );
    let (pa, pb) = (ka.public, kb.public);
    let book = Arc::new(KeyBook::default());
    let a = Tunnels::new(ka, &[], None, Some(Arc::clone(&book)));
    let b = Tunnels::new(kb, &[spec(&PrivateKey::from_bytes([1; 32]), A)], None, None);
    assert_eq!(a.current().1.len(), 0);
    let learned = |public| LearnedKey {
        via: *addr(B).ip(),
        public,
        port: 51820,
    };
    book.set("10.244.2.0/24".parse().unwrap(), Some(learned(pb)));
    a.refresh_keys();
    let (g1, set) = a.current();
    assert_eq!(set.index.by_via(*addr(B).ip()), Some(0));
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 10);
    let d = handshake(&a, &b, &p);
    let mut out = vec![0u8; 2048];
    assert!(matches!(
        b.recv(addr(A), &d, &mut out),
        Received::Packet { .. }
    ));
    // Another node's lease changes: a new set, the session goes on.
    book.set(
        "10.244.3.0/24".parse().unwrap(),
        Some(LearnedKey {
            via: "172.31.0.3".parse().unwrap(),
            public: pa,
            port: 1,
        }),
    );
    a.refresh_keys();
    let (g2, set) = a.current();
    assert!(g2 > g1);
    assert_eq!(set.len(), 2);
    let mut buf = vec![0u8; 2048];
    let n = set.encapsulate(0, &p, &mut buf).unwrap();
    assert_eq!(n, p.len() + 32, "the established session was kept");
    assert!(matches!(
        b.recv(addr(A), &buf[..n], &mut out),
        Received::Packet { .. }
    ));
}

#[test]
fn a_handshake_flood_gets_cookie_replies() {
    let (a, _) = pair();
    let mut out = vec![0u8; 2048];
    let mut cookies = 0;
    for i in 0..(HANDSHAKE_RATE_LIMIT + 50) {
        // Fresh initiators that know a's public key (valid mac1).
        let k = PrivateKey::from_bytes([u8::try_from(i % 200).unwrap() + 10; 32]);
        let t = Tunnels::new(k, &[spec(&PrivateKey::from_bytes([1; 32]), A)], None, None);
        let mut buf = vec![0u8; 2048];
        let n = t.send(0, &ipv4([1; 4], [2; 4], 8), &mut buf).unwrap();
        if let Received::Reply {
            len: 64,
            peer: None,
            ..
        } = a.recv(addr("203.0.113.9:1000"), &buf[..n], &mut out)
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
    let _ = t.recv(addr("192.0.2.1:9"), data, out);
}

#[test]
fn arbitrary_datagrams_never_panic() {
    let (a, b) = pair();
    let p = ipv4([10, 244, 1, 2], [10, 244, 2, 3], 64);
    let d = handshake(&a, &b, &p);
    let mut init = vec![0u8; 2048];
    let (c, _) = pair();
    let n = c.send(0, &p, &mut init).unwrap();
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
