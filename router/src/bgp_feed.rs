//! BGP glue: runs the `weft_bgp` speaker from the `[bgp]` table, announces
//! this node's pod CIDRs with the underlay IP as next hop, and turns the
//! speaker's route events into `RouteUpdate`s on the same feed as the
//! static routes (source `Bgp`, so a static route for a range wins).
//!
//! ```text
//!  [bgp] ─► SpeakerConfig ─► Speaker ─► Vec<RouteEvent> ─► to_updates ─► RouteFeed (one batch)
//!  pod_cidr(s) ─► announce          ▲ peers      └─► complete End-of-RIB ─► RouteFeed
//! ```
//!
//! After a graceful restart weftd keeps the routes it finds in the kernel
//! until BGP has relearned the table: until every configured peer has sent
//! End-of-RIB for each family of its session (RFC 4724), or the restart
//! time is over (`stale_hold`; the router core keeps the count).

use std::net::{IpAddr, Ipv4Addr};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weft_bgp::{Prefix, RouteEvent, Speaker, SpeakerConfig, SpeakerHandle};

use crate::cidr::Cidr;
use crate::config::Config;
use crate::core::StaleHold;
use crate::feed::{FeedItem, RouteFeed};
use crate::route_table::{PeerRoute, RouteSource, RouteUpdate};

fn prefix_of(c: Cidr) -> Option<Prefix> {
    Prefix::new(c.addr(), c.prefix_len())
}

fn cidr_of(p: &Prefix) -> Option<Cidr> {
    Cidr::new(p.addr(), p.len())
}

/// The prefixes this node announces: its pod CIDR(s).
pub fn own_prefixes(cfg: &Config) -> Vec<Prefix> {
    cfg.own_pod_cidrs()
        .into_iter()
        .filter_map(prefix_of)
        .collect()
}

/// The speaker configuration for `cfg` (None without a `[bgp]` table).
/// `restarting`: we stopped gracefully before and peers kept our routes.
pub fn speaker_config(cfg: &Config, restarting: bool) -> Option<SpeakerConfig> {
    let mut b = cfg.bgp.clone()?;
    let router_id = b.router_id.unwrap_or(match cfg.underlay_ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    });
    // Our prefixes' next hop is the underlay IP, whatever address the
    // session runs on.
    match cfg.underlay_ip {
        IpAddr::V4(v4) => {
            b.next_hop_v4.get_or_insert(v4);
        }
        IpAddr::V6(v6) => {
            b.next_hop_v6.get_or_insert(v6);
        }
    }
    let import = [Some(cfg.cluster_cidr), cfg.cluster_cidr_v6]
        .into_iter()
        .flatten()
        .filter_map(prefix_of)
        .collect();
    let mut sc = SpeakerConfig::new(b, router_id, import);
    sc.restarting = restarting;
    Some(sc)
}

/// Route table updates for a batch of speaker events. Routes to our own
/// pod ranges are dropped (withdrawn), and so are next hops that are our
/// own underlay IP. Several next hops (`[bgp] multipath`) make one
/// multipath update; the route table decides whether the mode can use
/// them all.
pub fn to_updates(cfg: &Config, events: Vec<RouteEvent>) -> Vec<RouteUpdate> {
    let own = cfg.own_pod_cidrs();
    events
        .into_iter()
        .filter_map(|e| {
            let (prefix, mut hops) = match e {
                RouteEvent::Reachable { prefix, next_hops } => (prefix, next_hops),
                RouteEvent::Unreachable { prefix } => (prefix, Vec::new()),
                RouteEvent::EndOfRib { .. } => return None,
            };
            let pod_cidr = cidr_of(&prefix)?;
            hops.retain(|h| *h != cfg.underlay_ip && !h.is_unspecified());
            if own.iter().any(|o| o.overlaps(&pod_cidr)) {
                hops.clear();
            }
            Some(match hops[..] {
                [] => RouteUpdate::Withdraw {
                    pod_cidr,
                    source: RouteSource::Bgp,
                },
                [via] => RouteUpdate::Upsert {
                    route: PeerRoute {
                        pod_cidr,
                        via,
                        vtep_mac: None,
                    },
                    source: RouteSource::Bgp,
                },
                _ => RouteUpdate::UpsertMultipath {
                    pod_cidr,
                    via: hops,
                    source: RouteSource::Bgp,
                },
            })
        })
        .collect()
}

/// The stale-route hold after a graceful restart: every configured peer's
/// End-of-RIB is awaited, for the restart time at most (None without
/// `[bgp]`).
pub fn stale_hold(cfg: &Config) -> Option<StaleHold> {
    let b = cfg.bgp.as_ref()?;
    Some(StaleHold {
        peers: b.peers.iter().map(|p| p.address).collect(),
        restart_time_ms: u64::from(b.restart_time) * 1000,
    })
}

/// A running speaker feeding the route table.
#[derive(Debug)]
pub struct BgpFeed {
    handle: SpeakerHandle,
    forward: JoinHandle<()>,
    graceful_restart: bool,
}

impl BgpFeed {
    /// Starts the speaker for `cfg` (None without `[bgp]`), announces our
    /// pod CIDRs and forwards learned routes into `feed`: each speaker
    /// batch as one batch, then an End-of-RIB item for every peer whose
    /// table it completed. Must run inside a tokio runtime.
    pub async fn start(
        cfg: &Config,
        feed: RouteFeed,
        restarting: bool,
    ) -> Result<Option<Self>, weft_bgp::Error> {
        let Some(sc) = speaker_config(cfg, restarting) else {
            return Ok(None);
        };
        let graceful_restart = sc.bgp.graceful_restart;
        info!(
            asn = sc.bgp.asn, router_id = %sc.router_id, peers = sc.bgp.peers.len(),
            listen_port = sc.bgp.listen_port, restarting, "starting BGP speaker"
        );
        let (handle, events) = Speaker::spawn(sc)?;
        handle.announce(own_prefixes(cfg)).await?;
        let forward = tokio::spawn(forward(cfg.clone(), events, feed));
        Ok(Some(Self {
            handle,
            forward,
            graceful_restart,
        }))
    }

    /// The speaker (for status queries).
    pub fn handle(&self) -> &SpeakerHandle {
        &self.handle
    }

    /// True when `[bgp].graceful_restart` is on.
    pub fn graceful_restart(&self) -> bool {
        self.graceful_restart
    }

    /// Stops every session. With `graceful` (and graceful restart
    /// configured) peers keep our routes for the restart time.
    pub async fn stop(self, graceful: bool) {
        let graceful = graceful && self.graceful_restart;
        if let Err(e) = self.handle.shutdown(graceful).await {
            warn!(error = %e, "BGP shutdown");
        }
        self.forward.abort();
        info!(graceful, "BGP speaker stopped");
    }
}

/// The peers whose table a batch completes (End-of-RIB for every family).
fn completed(batch: &[RouteEvent]) -> Vec<IpAddr> {
    batch
        .iter()
        .filter_map(|e| match e {
            RouteEvent::EndOfRib {
                peer,
                complete: true,
                ..
            } => Some(*peer),
            _ => None,
        })
        .collect()
}

async fn forward(cfg: Config, mut events: mpsc::Receiver<Vec<RouteEvent>>, feed: RouteFeed) {
    while let Some(batch) = events.recv().await {
        let n = batch.len();
        let synced = completed(&batch);
        let updates = to_updates(&cfg, batch);
        if !updates.is_empty() && feed.send(FeedItem::Routes(updates)).await.is_err() {
            return;
        }
        // After the routes before it are on the feed.
        for peer in synced {
            if feed.send(FeedItem::EndOfRib { peer }).await.is_err() {
                return;
            }
        }
        debug!(events = n, "BGP routes fed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<Config, crate::config::ConfigErrors> {
        Config::parse(&format!(
            r#"
node_name = "n1"
underlay_ip = "172.31.0.1"
pod_cidr = "10.244.1.0/24"
cluster_cidr = "10.244.0.0/16"
[dataplane]
mode = "host-gw"
{extra}
"#
        ))
    }

    #[test]
    fn parses_the_issue_example_and_defaults_router_id_and_next_hop() {
        let c = cfg("[bgp]\nasn = 64512\n[[bgp.peers]]\naddress = \"172.31.0.254\"\nasn = 64512\n")
            .unwrap();
        let sc = speaker_config(&c, false).unwrap();
        assert_eq!(sc.router_id, Ipv4Addr::new(172, 31, 0, 1));
        assert_eq!(sc.bgp.next_hop_v4, Some(Ipv4Addr::new(172, 31, 0, 1)));
        assert_eq!(sc.import, vec!["10.244.0.0/16".parse::<Prefix>().unwrap()]);
        assert_eq!(sc.bgp.listen_port, 179);
        assert!(sc.bgp.graceful_restart);
        assert_eq!(own_prefixes(&c), vec!["10.244.1.0/24".parse().unwrap()]);
        assert!(speaker_config(&cfg("").unwrap(), false).is_none());
    }

    #[test]
    fn bgp_errors_carry_paths() {
        let e = cfg(
            "[bgp]\nasn = 0\n[[bgp.peers]]\naddress = \"172.31.0.1\"\nasn = 1\nhold_time = 2\n",
        )
        .unwrap_err();
        assert!(e.mentions("bgp.asn"), "{e}");
        assert!(e.mentions("bgp.peers[0].hold_time"), "{e}");
        assert!(e.mentions("bgp.peers[0].address"), "{e}");
        assert!(cfg("[bgp]\nasn = 1\nbogus = 1\n").is_err());
    }

    #[test]
    fn events_become_bgp_updates_without_our_own_routes() {
        let c = cfg("[bgp]\nasn = 64512\n").unwrap();
        let p = |s: &str| s.parse::<Prefix>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ups = to_updates(
            &c,
            vec![
                RouteEvent::Reachable {
                    prefix: p("10.244.2.0/24"),
                    next_hops: vec![ip("172.31.0.3"), ip("172.31.0.2")],
                },
                RouteEvent::Reachable {
                    prefix: p("10.244.1.0/24"),
                    next_hops: vec![ip("172.31.0.2")],
                },
                RouteEvent::Reachable {
                    prefix: p("10.244.4.0/24"),
                    next_hops: vec![ip("172.31.0.1")],
                },
                // Our own IP leaves the set.
                RouteEvent::Reachable {
                    prefix: p("10.244.5.0/24"),
                    next_hops: vec![ip("172.31.0.1"), ip("172.31.0.5")],
                },
                RouteEvent::Unreachable {
                    prefix: p("10.244.3.0/24"),
                },
            ],
        );
        let c2 = |s: &str| s.parse::<Cidr>().unwrap();
        assert_eq!(
            ups,
            vec![
                RouteUpdate::UpsertMultipath {
                    pod_cidr: c2("10.244.2.0/24"),
                    via: vec![ip("172.31.0.3"), ip("172.31.0.2")],
                    source: RouteSource::Bgp
                },
                RouteUpdate::Withdraw {
                    pod_cidr: c2("10.244.1.0/24"),
                    source: RouteSource::Bgp
                },
                RouteUpdate::Withdraw {
                    pod_cidr: c2("10.244.4.0/24"),
                    source: RouteSource::Bgp
                },
                RouteUpdate::Upsert {
                    route: PeerRoute {
                        pod_cidr: c2("10.244.5.0/24"),
                        via: ip("172.31.0.5"),
                        vtep_mac: None
                    },
                    source: RouteSource::Bgp
                },
                RouteUpdate::Withdraw {
                    pod_cidr: c2("10.244.3.0/24"),
                    source: RouteSource::Bgp
                },
            ]
        );
    }

    #[test]
    fn stale_hold_awaits_every_configured_peer_for_the_restart_time() {
        let c = cfg("[bgp]\nasn = 64512\nrestart_time = 90\n[[bgp.peers]]\naddress = \"172.31.0.2\"\nasn = 64512\n[[bgp.peers]]\naddress = \"172.31.0.3\"\nasn = 64512\n")
            .unwrap();
        let h = stale_hold(&c).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(h.peers, [ip("172.31.0.2"), ip("172.31.0.3")].into());
        assert_eq!(h.restart_time_ms, 90_000);
        assert!(stale_hold(&cfg("").unwrap()).is_none());
        // Only complete End-of-RIBs count.
        let family = weft_bgp::wire::Family::Ipv4Unicast;
        let batch = [
            RouteEvent::EndOfRib {
                peer: ip("172.31.0.2"),
                family,
                complete: false,
            },
            RouteEvent::EndOfRib {
                peer: ip("172.31.0.3"),
                family,
                complete: true,
            },
        ];
        assert_eq!(completed(&batch), vec![ip("172.31.0.3")]);
    }

    #[test]
    fn end_of_rib_is_no_route_update() {
        let c = cfg("[bgp]\nasn = 64512\n").unwrap();
        let ups = to_updates(
            &c,
            vec![RouteEvent::EndOfRib {
                peer: "172.31.0.2".parse().unwrap(),
                family: weft_bgp::wire::Family::Ipv4Unicast,
                complete: true,
            }],
        );
        assert!(ups.is_empty());
    }
}
