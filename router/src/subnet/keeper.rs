//! The running subnet manager: keeps this node's lease (renewed before it
//! expires, re-created if it disappears) and feeds every other node's
//! lease into the route table as `RouteSource::Etcd` routes.
//!
//! It lists `<prefix>/subnets/`, sends the difference against what it
//! sent before as one batch, then watches from the listing's revision.
//! When etcd goes away it keeps every route (nothing is withdrawn for an
//! absent store), retries with backoff, and on return lists again and
//! sends only the difference; a compacted watch also lists again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::EventType;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cidr::Cidr;
use crate::dataplane::wireguard::key_book::{KeyBook, LearnedKey};
use crate::feed::{FeedItem, RouteFeed};
use crate::route_table::{PeerRoute, RouteSource, RouteUpdate};
use crate::subnet::alloc::{renew_after, route_for};
use crate::subnet::lease::{Lease, LeaseAttrs, parse_lease};
use crate::subnet::network::Network;
use crate::subnet::store::{OwnLease, StoreError, SubnetStore};

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The lease keeper's inputs.
pub struct LeaseKeeper {
    /// The store (reconnects by itself through its channel).
    pub store: SubnetStore,
    /// The network config read at start.
    pub net: Network,
    /// This node's lease.
    pub own: OwnLease,
    /// What this node publishes.
    pub attrs: LeaseAttrs,
    /// Where route batches go.
    pub feed: RouteFeed,
    /// wireguard: where the other nodes' keys go (None in other modes).
    pub wireguard_keys: Option<Arc<KeyBook>>,
    /// wireguard: the port of leases that name none.
    pub wireguard_port: u16,
}

/// Why the keeper's loop went back to listing.
enum Restart {
    /// etcd failed; wait before trying again.
    Failed(StoreError),
    /// The watch was compacted or cancelled; list again at once.
    Relist,
    /// The daemon is stopping.
    Stop,
}

impl LeaseKeeper {
    /// Runs until `stop` turns true. The lease stays in etcd on stop (a
    /// restart takes it over).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut sent: BTreeMap<Cidr, PeerRoute> = BTreeMap::new();
        let mut renew_at = Instant::now() + renew_after(self.own.ttl);
        let mut backoff = Duration::from_millis(250);
        let mut last_error: Option<String> = None;
        loop {
            match self.cycle(&mut sent, &mut renew_at, &mut stop).await {
                Restart::Stop => return,
                Restart::Relist => {}
                Restart::Failed(e) => {
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(&msg) {
                        warn!(error = %msg, "etcd unavailable, keeping every route and retrying");
                        last_error = Some(msg);
                    }
                    // Another member first; wait only when none answers.
                    let moved = tokio::select! {
                        r = self.store.reconnect() => r.is_ok(),
                        _ = stop.changed() => return,
                    };
                    if !moved {
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => return,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    continue;
                }
            }
            backoff = Duration::from_millis(250);
            if last_error.take().is_some() {
                info!("etcd reachable again");
            }
        }
    }

    /// One list + watch cycle.
    async fn cycle(
        &mut self,
        sent: &mut BTreeMap<Cidr, PeerRoute>,
        renew_at: &mut Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Restart {
        let listing = match self.store.list().await {
            Ok(l) => l,
            Err(e) => return Restart::Failed(e),
        };
        for bad in &listing.bad {
            ignored(bad.label(), &bad.to_string());
        }
        if !listing.leases.iter().any(|l| self.is_own(l)) {
            if let Err(e) = self.reclaim().await {
                return Restart::Failed(e);
            }
        }
        let mut wanted = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for l in &listing.leases {
            if let Some(r) = self.route(l) {
                wanted.insert(r.pod_cidr, r);
                if let Some(k) = self.learned_key(l) {
                    keys.insert(l.subnet, k);
                }
            }
        }
        if let Some(book) = &self.wireguard_keys {
            book.replace(keys);
        }
        let batch = diff(sent, &wanted);
        if !batch.is_empty() {
            info!(
                leases = wanted.len(),
                changes = batch.len(),
                "etcd leases listed"
            );
            if self.feed.send(FeedItem::Routes(batch)).await.is_err() {
                return Restart::Stop;
            }
        }
        *sent = wanted;
        let mut stream = match self.store.watch(listing.revision + 1).await {
            Ok(s) => s,
            Err(e) => return Restart::Failed(e),
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                () = tokio::time::sleep_until(*renew_at) => {
                    match self.store.put_lease(self.own.subnet, &self.attrs).await {
                        Ok(own) => {
                            info!(subnet = %own.subnet, "lease renewed");
                            self.own = own;
                            *renew_at = Instant::now() + renew_after(own.ttl);
                        }
                        Err(e) => {
                            *renew_at = Instant::now() + Duration::from_secs(10);
                            return Restart::Failed(e);
                        }
                    }
                    continue;
                }
                _ = stop.changed() => return Restart::Stop,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return Restart::Relist,
                Err(e) => return Restart::Failed(e.into()),
            };
            if resp.compact_revision() > 0 || resp.canceled() {
                info!(
                    compacted = resp.compact_revision(),
                    "lease watch ended, listing again"
                );
                return Restart::Relist;
            }
            let mut batch = Vec::new();
            let mut reclaim = false;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let prefix = self.store.subnets_prefix();
                let suffix = key.strip_prefix(prefix.as_str()).unwrap_or(&key);
                match ev.event_type() {
                    EventType::Put => match parse_lease(suffix, kv.value()) {
                        Ok(l) => {
                            let route = self.route(&l);
                            if let Some(book) = &self.wireguard_keys {
                                let k = route.and(self.learned_key(&l));
                                book.set(l.subnet, k);
                            }
                            batch.extend(change(sent, l.subnet, route));
                        }
                        Err(bad) => ignored(bad.label(), &bad.to_string()),
                    },
                    EventType::Delete => {
                        let Some(subnet) = crate::subnet::parse_subnet_key(suffix) else {
                            continue;
                        };
                        if subnet == self.own.subnet {
                            reclaim = true;
                        }
                        if let Some(book) = &self.wireguard_keys {
                            book.set(subnet, None);
                        }
                        batch.extend(change(sent, subnet, None));
                    }
                }
            }
            if !batch.is_empty() && self.feed.send(FeedItem::Routes(batch)).await.is_err() {
                return Restart::Stop;
            }
            if reclaim {
                warn!(subnet = %self.own.subnet, "own lease disappeared, creating it again");
                if let Err(e) = self.reclaim().await {
                    return Restart::Failed(e);
                }
                *renew_at = Instant::now() + renew_after(self.own.ttl);
            }
        }
    }

    fn is_own(&self, l: &Lease) -> bool {
        l.subnet == self.own.subnet && l.attrs.public_ip == self.attrs.public_ip
    }

    /// The WireGuard key `l` publishes (wireguard mode only).
    fn learned_key(&self, l: &Lease) -> Option<LearnedKey> {
        self.wireguard_keys.as_ref()?;
        let (public, port) = l.attrs.wireguard(self.wireguard_port)?;
        Some(LearnedKey {
            via: l.attrs.public_ip,
            public,
            port,
        })
    }

    /// The route to `l`, or `None` (own lease, or ignored and counted).
    fn route(&self, l: &Lease) -> Option<PeerRoute> {
        match route_for(&self.net, self.own.subnet, self.attrs.public_ip, l) {
            Ok(r) => r,
            Err(why) => {
                ignored(
                    why.label(),
                    &format!("lease {} from {}", l.subnet, l.attrs.public_ip),
                );
                None
            }
        }
    }

    /// Creates this node's lease again for the same subnet.
    async fn reclaim(&mut self) -> Result<(), StoreError> {
        match self
            .store
            .create_lease(self.own.subnet, &self.attrs)
            .await?
        {
            Some(own) => {
                info!(subnet = %own.subnet, "lease created again");
                self.own = own;
            }
            None => {
                // Someone holds it: with our address it is ours (a race
                // with our own renewal); otherwise keep the subnet in use
                // and say so, the pods on it cannot move.
                let holder = self.store.holder(self.own.subnet).await?;
                if holder != Some(self.attrs.public_ip) {
                    warn!(subnet = %self.own.subnet, ?holder,
                        "another node took this node's subnet; its lease is ignored");
                }
            }
        }
        Ok(())
    }
}

/// Counts and logs a lease that is not routed.
fn ignored(reason: &'static str, what: &str) {
    metrics::counter!("weft_subnet_leases_ignored_total", "reason" => reason).increment(1);
    warn!(reason, "{what}: not routed");
}

/// The updates that take the routes from `sent` to `wanted`.
fn diff(sent: &BTreeMap<Cidr, PeerRoute>, wanted: &BTreeMap<Cidr, PeerRoute>) -> Vec<RouteUpdate> {
    let mut out = Vec::new();
    for (c, r) in wanted {
        if sent.get(c) != Some(r) {
            out.push(RouteUpdate::Upsert {
                route: *r,
                source: RouteSource::Etcd,
            });
        }
    }
    for c in sent.keys() {
        if !wanted.contains_key(c) {
            out.push(RouteUpdate::Withdraw {
                pod_cidr: *c,
                source: RouteSource::Etcd,
            });
        }
    }
    out
}

/// The update (if any) for one lease now routed as `route`.
fn change(
    sent: &mut BTreeMap<Cidr, PeerRoute>,
    subnet: Cidr,
    route: Option<PeerRoute>,
) -> Option<RouteUpdate> {
    match route {
        Some(r) if sent.get(&subnet) != Some(&r) => {
            sent.insert(subnet, r);
            Some(RouteUpdate::Upsert {
                route: r,
                source: RouteSource::Etcd,
            })
        }
        Some(_) => None,
        None => sent.remove(&subnet).map(|_| RouteUpdate::Withdraw {
            pod_cidr: subnet,
            source: RouteSource::Etcd,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(c: &str, via: &str) -> PeerRoute {
        PeerRoute {
            pod_cidr: c.parse().expect("cidr"),
            via: via.parse().expect("ip"),
            vtep_mac: None,
        }
    }

    #[test]
    fn diff_sends_only_changes() {
        let a = r("10.244.2.0/24", "172.31.0.2");
        let b = r("10.244.3.0/24", "172.31.0.3");
        let b2 = r("10.244.3.0/24", "172.31.0.9");
        let sent = BTreeMap::from([(a.pod_cidr, a), (b.pod_cidr, b)]);
        assert!(diff(&sent, &sent).is_empty());
        let wanted = BTreeMap::from([(b.pod_cidr, b2)]);
        assert_eq!(
            diff(&sent, &wanted),
            vec![
                RouteUpdate::Upsert {
                    route: b2,
                    source: RouteSource::Etcd
                },
                RouteUpdate::Withdraw {
                    pod_cidr: a.pod_cidr,
                    source: RouteSource::Etcd
                },
            ]
        );
    }

    #[test]
    fn change_tracks_what_was_sent() {
        let a = r("10.244.2.0/24", "172.31.0.2");
        let mut sent = BTreeMap::new();
        assert!(change(&mut sent, a.pod_cidr, Some(a)).is_some());
        assert!(
            change(&mut sent, a.pod_cidr, Some(a)).is_none(),
            "same value again"
        );
        assert!(change(&mut sent, a.pod_cidr, None).is_some());
        assert!(
            change(&mut sent, a.pod_cidr, None).is_none(),
            "already withdrawn"
        );
    }
}
