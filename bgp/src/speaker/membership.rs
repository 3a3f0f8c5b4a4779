//! Peers joining and leaving a running speaker (a config reload): the
//! peer task and its slot, the listener's routing map, the listener's MD5
//! key and the BFD session. Other peers' sessions are not touched.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tracing::info;

use super::stats::PeerStats;
use super::{PeerSlot, SpeakerTask};
use crate::bfd::BfdState;
use crate::config::{BgpConfig, PeerConfig};
use crate::driver::session::{self, PeerParams};
use crate::driver::{PeerCmd, PeerEvent, md5};
use crate::error::Error;
use crate::fsm::{Backoff, GrConfig, Session, SessionConfig, State};
use crate::rib::PeerKey;
use crate::wire::Family;

/// What every peer's session shares, from the speaker's config.
pub(super) struct PeerDefaults<'a> {
    pub(super) bgp: &'a BgpConfig,
    pub(super) router_id: std::net::Ipv4Addr,
    /// Set the R bit (only for the peers configured at start).
    pub(super) restarting: bool,
    pub(super) max_backoff: Duration,
}

/// Starts the task of peer `pc` under `key` and returns its slot.
pub(super) fn spawn_peer(
    d: &PeerDefaults<'_>,
    key: PeerKey,
    pc: &PeerConfig,
    seed: u64,
    events: tokio::sync::mpsc::Sender<PeerEvent>,
) -> PeerSlot {
    let b = d.bgp;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let session = Session::new(SessionConfig {
        local_asn: b.asn,
        peer_asn: pc.asn,
        router_id: d.router_id,
        hold_time: pc.hold_time.unwrap_or(b.hold_time),
        connect_retry: Duration::from_secs(b.connect_retry.max(1)),
        passive: pc.passive,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        graceful_restart: b.graceful_restart.then_some(GrConfig {
            restart_time: b.restart_time,
            restarting: d.restarting,
        }),
        extended_next_hop: true,
        backoff: Backoff {
            base: Duration::from_secs(1),
            max: d.max_backoff,
        },
        seed,
    });
    let task = session::spawn(
        PeerParams {
            key,
            addr: SocketAddr::new(pc.address, pc.port),
            password: pc.password.clone(),
            local: pc.local_address,
            connect_timeout: Duration::from_secs(b.connect_retry.max(1)),
            ttl_security: pc.ttl_security,
        },
        session,
        rx,
        events,
    );
    PeerSlot {
        cfg: pc.clone(),
        key,
        cmd: tx,
        task: Some(task),
        info: None,
        last_info: None,
        negotiated: None,
        local: None,
        state: State::Idle,
        adj_out: std::collections::HashSet::new(),
        last_error: None,
        eor: Vec::new(),
        bfd: pc.bfd.then_some(BfdState::Down),
        bfd_reset: false,
        stats: PeerStats::new(std::time::Instant::now()),
    }
}

impl SpeakerTask {
    /// Adds peer `pc`: its session starts and gets our table once
    /// established, as at start.
    pub(super) fn add_peer(&mut self, pc: PeerConfig) -> Result<(), Error> {
        let addr = pc.address.to_canonical();
        if self
            .peers
            .iter()
            .any(|p| p.cfg.address.to_canonical() == addr)
        {
            return Err(Error::PeerExists(pc.address));
        }
        let mut with = self.cfg.bgp.clone();
        with.peers.push(pc.clone());
        let errs = with.validate();
        if !errs.is_empty() {
            return Err(Error::Config(errs));
        }
        if pc.bfd && self.bfd.is_none() {
            return Err(Error::NeedsRestart {
                peer: pc.address,
                what: "BFD (no configured peer used it at start)",
            });
        }
        if let Some(key) = &pc.password {
            for (local, sock) in &self.listen_socks {
                if pc.address.is_ipv6() && !local.is_ipv6() {
                    continue;
                }
                md5::set_md5(sock, local.is_ipv6(), pc.address, key.as_bytes()).map_err(
                    |source| Error::Md5 {
                        peer: pc.address,
                        source,
                    },
                )?;
            }
        }
        let key = PeerKey(self.next_key);
        self.next_key = self.next_key.saturating_add(1);
        let seed = std::hash::BuildHasher::hash_one(&self.random, (key.0, pc.address));
        let defaults = PeerDefaults {
            bgp: &self.cfg.bgp,
            router_id: self.cfg.router_id,
            restarting: false,
            max_backoff: self.cfg.max_backoff,
        };
        let slot = spawn_peer(&defaults, key, &pc, seed, self.peer_tx.clone());
        let cmd = slot.cmd.clone();
        self.routes.send_modify(|m| {
            m.insert(addr, cmd);
        });
        if let Some(b) = &self.bfd
            && pc.bfd
        {
            b.add(pc.address);
        }
        info!(peer = %pc.address, asn = pc.asn, "peer added");
        self.cfg.bgp.peers.push(pc);
        self.peers.push(slot);
        Ok(())
    }

    /// Removes peer `addr`: its session ends with a Cease NOTIFICATION and
    /// the routes learned from it are withdrawn (returned as changes).
    pub(super) async fn remove_peer(
        &mut self,
        addr: IpAddr,
    ) -> Result<Vec<crate::rib::Change>, Error> {
        let canon = addr.to_canonical();
        let Some(i) = self
            .peers
            .iter()
            .position(|p| p.cfg.address.to_canonical() == canon)
        else {
            return Err(Error::NoSuchPeer(addr));
        };
        let mut slot = self.peers.remove(i);
        self.cfg
            .bgp
            .peers
            .retain(|p| p.address.to_canonical() != canon);
        self.routes.send_modify(|m| {
            m.remove(&canon);
        });
        if let Some(b) = &self.bfd
            && slot.cfg.bfd
        {
            b.remove(slot.cfg.address);
        }
        let _ = slot.cmd.send(PeerCmd::Stop { graceful: false }).await;
        if let Some(t) = slot.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        info!(peer = %addr, "peer removed");
        Ok(self.rib.peer_down(slot.key))
    }
}
