//! The WireGuard sessions: one `boringtun` noise `Tunn` per peer behind
//! its own lock, the peer's current endpoint (roaming: the source of its
//! last authenticated message), and the one rate limiter that answers
//! handshakes with cookie replies under load. [`Tunnels::receive`] is the
//! whole receive decision for one datagram, without sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::PublicKey as DalekPublic;

use super::key_book::KeyBook;
use super::key_file::PrivateKey;
use super::peers::{Message, PeerIndex, PeerSpec, merge};
use crate::dataplane::counters::Reason;
use crate::wg_key::PublicKey;

/// Handshakes per second the node answers before it asks for cookies
/// (boringtun's device uses the same figure).
pub(crate) const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// One peer's session state.
pub(crate) struct Tunnel {
    tunn: Mutex<Tunn>,
    /// Endpoint as `ip << 16 | port`.
    endpoint: AtomicU64,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

fn pack(a: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

fn unpack(v: u64) -> SocketAddrV4 {
    #[allow(clippy::cast_possible_truncation)] // the fields were packed from these widths
    SocketAddrV4::new(Ipv4Addr::from((v >> 16) as u32), v as u16)
}

impl Tunnel {
    /// Where the peer is now.
    pub(crate) fn endpoint(&self) -> SocketAddrV4 {
        unpack(self.endpoint.load(Ordering::Relaxed))
    }

    /// The session, locked.
    pub(crate) fn lock(&self) -> Option<MutexGuard<'_, Tunn>> {
        self.tunn.lock().ok()
    }

    fn roam(&self, to: SocketAddrV4) {
        let v = pack(to);
        if self.endpoint.load(Ordering::Relaxed) != v {
            self.endpoint.store(v, Ordering::Relaxed);
        }
    }
}

/// What one received datagram amounts to; lengths are of `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// A decrypted inner packet `out[..len]` from WireGuard peer `peer`.
    Packet {
        /// WireGuard peer.
        peer: usize,
        /// Inner length.
        len: usize,
    },
    /// Send `out[..len]` to `to` (handshake response, keepalive, cookie).
    /// With `peer`: then send what the peer queued ([`Tunnels::queued`]).
    Reply {
        /// Destination.
        to: SocketAddrV4,
        /// Message length.
        len: usize,
        /// The peer whose session answered (None: a cookie reply).
        peer: Option<usize>,
    },
    /// Nothing to do (a keepalive, a cookie the session took).
    Nothing,
    /// Dropped: why, and the peer when one was identified.
    Drop(Reason, Option<usize>),
}

/// The peers at one moment: [`PeerIndex`] position `i` is `peers[i]`,
/// whose session indices are `i << 8 | n`. Peers are only ever appended,
/// so an index means the same peer in every later set.
pub(crate) struct PeerSet {
    pub(crate) index: PeerIndex,
    peers: Vec<Arc<Tunnel>>,
}

impl std::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSet")
            .field("peers", &self.peers)
            .finish()
    }
}

impl PeerSet {
    /// Peer `i`'s session.
    pub(crate) fn peer(&self, i: usize) -> Option<&Tunnel> {
        self.peers.get(i).map(|t| &**t)
    }

    /// Number of peers.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Encrypts `pkt` for peer `peer` into `out` (at least `pkt.len() +
    /// 32` and 148 bytes): the datagram's length, or None when the packet
    /// waits for a handshake already sent (or the peer is unknown).
    pub(crate) fn encapsulate(&self, peer: usize, pkt: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut tunn = self.peer(peer)?.lock()?;
        match tunn.encapsulate(pkt, out) {
            TunnResult::WriteToNetwork(m) => Some(m.len()),
            _ => None,
        }
    }

    /// Runs peer `peer`'s timers (rekey, keepalive, handshake retry,
    /// expiry): a message to send to its endpoint in `out[..len]`, if any.
    pub(crate) fn tick(&self, peer: usize, out: &mut [u8]) -> Option<usize> {
        let mut tunn = self.peer(peer)?.lock()?;
        match tunn.update_timers(out) {
            TunnResult::WriteToNetwork(m) => Some(m.len()),
            _ => None,
        }
    }

    /// After a [`Received::Reply`] with a peer: the next packet that peer
    /// queued while it had no session, in `out[..len]`.
    pub(crate) fn queued(&self, peer: usize, out: &mut [u8]) -> Option<usize> {
        let mut tunn = self.peer(peer)?.lock()?;
        match tunn.decapsulate(None, &[], out) {
            TunnResult::WriteToNetwork(m) => Some(m.len()),
            _ => None,
        }
    }
}

/// All peers' sessions: static ones and those learned from etcd leases.
pub(crate) struct Tunnels {
    key: PrivateKey,
    public: DalekPublic,
    limiter: Arc<RateLimiter>,
    keepalive_s: Option<u16>,
    statics: Vec<PeerSpec>,
    book: Option<Arc<KeyBook>>,
    book_seen: AtomicU64,
    set: Mutex<Arc<PeerSet>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("public", &self.key.public)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Tunnels {
    /// Sessions for `statics` and the keys in `book` (none established).
    pub(crate) fn new(
        key: PrivateKey,
        statics: &[PeerSpec],
        keepalive_s: Option<u16>,
        book: Option<Arc<KeyBook>>,
    ) -> Self {
        let public = DalekPublic::from(key.public.0);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        let t = Self {
            key,
            public,
            limiter,
            keepalive_s,
            statics: statics.to_vec(),
            book,
            book_seen: AtomicU64::new(u64::MAX),
            set: Mutex::new(Arc::new(PeerSet {
                index: PeerIndex::default(),
                peers: Vec::new(),
            })),
            generation: AtomicU64::new(0),
        };
        t.refresh_keys();
        t
    }

    /// The current peers and their generation.
    pub(crate) fn current(&self) -> (u64, Arc<PeerSet>) {
        let generation = self.generation.load(Ordering::Acquire);
        let set = self.set.lock().map(|s| Arc::clone(&s)).unwrap_or_else(|_| {
            Arc::new(PeerSet {
                index: PeerIndex::default(),
                peers: Vec::new(),
            })
        });
        (generation, set)
    }

    /// Generation of the peer set (one atomic load, per batch).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Rebuilds the peer set when the key book changed (and at start).
    pub(crate) fn refresh_keys(&self) {
        let seen = self.book.as_ref().map_or(0, |b| b.generation());
        if self.book_seen.swap(seen, Ordering::AcqRel) == seen {
            return;
        }
        let learned = self.book.as_ref().map(|b| b.entries()).unwrap_or_default();
        let Ok(mut cur) = self.set.lock() else {
            return;
        };
        let known: Vec<PublicKey> = (0..cur.index.len())
            .filter_map(|i| cur.index.key(i))
            .collect();
        let specs = merge(&known, &self.statics, &learned);
        let mut peers = cur.peers.clone();
        for (i, s) in specs.iter().enumerate().skip(peers.len()) {
            peers.push(Arc::new(Tunnel {
                // A per-peer limiter of the session's own: the shared one
                // screens every handshake before the peer is known.
                tunn: Mutex::new(Tunn::new(
                    self.key.secret(),
                    DalekPublic::from(s.public.0),
                    None,
                    self.keepalive_s,
                    u32::try_from(i).unwrap_or(u32::MAX) & 0x00ff_ffff,
                    None,
                )),
                endpoint: AtomicU64::new(pack(s.endpoint)),
            }));
        }
        tracing::info!(
            peers = specs.iter().filter(|s| !s.vias.is_empty()).count(),
            "WireGuard peers"
        );
        *cur = Arc::new(PeerSet {
            index: PeerIndex::new(&specs),
            peers,
        });
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Once a second: lets handshakes through again.
    pub(crate) fn reset_rate_limit(&self) {
        self.limiter.reset_count();
    }

    /// The receive decision for one datagram from `src` with the peers of
    /// `set`; `out` must hold the datagram's length (and 148 bytes).
    pub(crate) fn receive(
        &self,
        set: &PeerSet,
        src: SocketAddrV4,
        dgram: &[u8],
        out: &mut [u8],
    ) -> Received {
        let Some(msg) = Message::classify(dgram) else {
            return Received::Drop(Reason::WG_INVALID, None);
        };
        let from = Some(IpAddr::V4(*src.ip()));
        let peer = match msg.peer() {
            Some(p) => p,
            None => match self.limiter.verify_packet(from, dgram, out) {
                Err(TunnResult::WriteToNetwork(c)) => {
                    let len = c.len();
                    return Received::Reply {
                        to: src,
                        len,
                        peer: None,
                    };
                }
                Ok(Packet::HandshakeInit(p)) => {
                    match parse_handshake_anon(&self.key.secret(), &self.public, &p)
                        .ok()
                        .and_then(|h| set.index.by_key(&h.peer_static_public))
                    {
                        Some(i) => i,
                        None => return Received::Drop(Reason::WG_INVALID, None),
                    }
                }
                _ => return Received::Drop(Reason::WG_INVALID, None),
            },
        };
        let Some(t) = set.peer(peer) else {
            return Received::Drop(Reason::WG_INVALID, None);
        };
        let Some(mut tunn) = t.lock() else {
            return Received::Drop(Reason::WG_INVALID, Some(peer));
        };
        let authenticated = !matches!(msg, Message::CookieReply { .. });
        let res = match tunn.decapsulate(from, dgram, out) {
            TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                Received::Packet { peer, len: p.len() }
            }
            TunnResult::WriteToNetwork(m) => Received::Reply {
                to: src,
                len: m.len(),
                peer: Some(peer),
            },
            TunnResult::Done => Received::Nothing,
            TunnResult::Err(WireGuardError::DuplicateCounter) => {
                return Received::Drop(Reason::WG_REPLAY, Some(peer));
            }
            TunnResult::Err(_) => return Received::Drop(Reason::WG_INVALID, Some(peer)),
        };
        // A cookie reply under load is an answer, not proof of the peer.
        if authenticated && !matches!(res, Received::Reply { peer: None, .. }) {
            t.roam(src);
        }
        res
    }
}

#[cfg(test)]
mod tests;
