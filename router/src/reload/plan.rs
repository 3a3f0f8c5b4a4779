//! What a reload changes, computed purely from the running config and the
//! file's new one: the static routes and BGP peers to apply live, and the
//! fields that only a restart applies (named by field path, not applied).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use weft_bgp::PeerConfig;

use crate::cidr::Cidr;
use crate::config::{Config, StaticRoute};
use crate::route_table::PeerRoute;

/// The changes between the running config and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    /// The new static routes, when they differ from the running ones.
    pub static_routes: Option<Vec<PeerRoute>>,
    /// Counts of the static route changes.
    pub statics: StaticCounts,
    /// Peers to start.
    pub peers_added: Vec<PeerConfig>,
    /// Peers to stop (by address).
    pub peers_removed: Vec<IpAddr>,
    /// Peers whose settings changed: stopped, then started anew.
    pub peers_changed: Vec<PeerConfig>,
    /// Field paths that changed but need a restart; not applied.
    pub restart_needed: Vec<String>,
}

/// Static routes added, removed and changed by a reload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticCounts {
    /// New pod ranges.
    pub added: usize,
    /// Pod ranges gone.
    pub removed: usize,
    /// Pod ranges whose gateway or VTEP MAC changed.
    pub changed: usize,
}

impl ReloadPlan {
    /// True when nothing applies live (restart-only changes aside).
    pub fn is_empty(&self) -> bool {
        self.static_routes.is_none()
            && self.peers_added.is_empty()
            && self.peers_removed.is_empty()
            && self.peers_changed.is_empty()
    }
}

fn peer_route(r: &StaticRoute) -> PeerRoute {
    PeerRoute {
        pod_cidr: r.pod_cidr,
        via: r.via,
        vtep_mac: r.vtep_mac,
    }
}

/// The plan to go from `old` (running) to `new` (the file now).
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let (static_routes, statics) = static_changes(&old.static_routes, &new.static_routes);
    let (peers_added, peers_removed, peers_changed) = match (&old.bgp, &new.bgp) {
        (Some(o), Some(n)) => peer_changes(&o.peers, &n.peers),
        _ => (Vec::new(), Vec::new(), Vec::new()),
    };
    ReloadPlan {
        static_routes,
        statics,
        peers_added,
        peers_removed,
        peers_changed,
        restart_needed: restart_needed(old, new),
    }
}

fn static_changes(
    old: &[StaticRoute],
    new: &[StaticRoute],
) -> (Option<Vec<PeerRoute>>, StaticCounts) {
    let o: BTreeMap<Cidr, PeerRoute> = old.iter().map(|r| (r.pod_cidr, peer_route(r))).collect();
    let n: BTreeMap<Cidr, PeerRoute> = new.iter().map(|r| (r.pod_cidr, peer_route(r))).collect();
    let mut counts = StaticCounts::default();
    for (c, r) in &n {
        match o.get(c) {
            None => counts.added += 1,
            Some(x) if x != r => counts.changed += 1,
            Some(_) => {}
        }
    }
    counts.removed = o.keys().filter(|c| !n.contains_key(c)).count();
    let changed = counts != StaticCounts::default();
    (changed.then(|| n.into_values().collect()), counts)
}

type PeerChanges = (Vec<PeerConfig>, Vec<IpAddr>, Vec<PeerConfig>);

fn peer_changes(old: &[PeerConfig], new: &[PeerConfig]) -> PeerChanges {
    let key = |p: &PeerConfig| p.address.to_canonical();
    let o: BTreeMap<IpAddr, &PeerConfig> = old.iter().map(|p| (key(p), p)).collect();
    let n: BTreeMap<IpAddr, &PeerConfig> = new.iter().map(|p| (key(p), p)).collect();
    let added = new
        .iter()
        .filter(|p| !o.contains_key(&key(p)))
        .cloned()
        .collect();
    let removed = old
        .iter()
        .filter(|p| !n.contains_key(&key(p)))
        .map(|p| p.address)
        .collect();
    let changed = new
        .iter()
        .filter(|p| o.get(&key(p)).is_some_and(|x| *x != *p))
        .cloned()
        .collect();
    (added, removed, changed)
}

/// The field paths outside `static_routes` and `bgp.peers` that differ.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |path: &str, same: bool| {
        if !same {
            out.push(path.to_owned());
        }
    };
    cmp("node_name", old.node_name == new.node_name);
    cmp("underlay_ip", old.underlay_ip == new.underlay_ip);
    cmp("pod_cidr", old.pod_cidr == new.pod_cidr);
    cmp("cluster_cidr", old.cluster_cidr == new.cluster_cidr);
    cmp("pod_cidr_v6", old.pod_cidr_v6 == new.pod_cidr_v6);
    cmp(
        "cluster_cidr_v6",
        old.cluster_cidr_v6 == new.cluster_cidr_v6,
    );
    let (a, b) = (&old.dataplane, &new.dataplane);
    cmp("dataplane.mode", a.mode == b.mode);
    cmp("dataplane.tun_name", a.tun_name == b.tun_name);
    cmp("dataplane.vxlan_vni", a.vxlan_vni == b.vxlan_vni);
    cmp("dataplane.vxlan_port", a.vxlan_port == b.vxlan_port);
    cmp("dataplane.udp_port", a.udp_port == b.udp_port);
    cmp("dataplane.mtu", a.mtu == b.mtu);
    cmp("dataplane.vtep_mac", a.vtep_mac == b.vtep_mac);
    cmp(
        "dataplane.direct_routing",
        a.direct_routing == b.direct_routing,
    );
    cmp("dataplane.offload", a.offload == b.offload);
    cmp(
        "dataplane.tunnel_offload",
        a.tunnel_offload == b.tunnel_offload,
    );
    cmp("dataplane.queues", a.queues == b.queues);
    cmp("ip_masq", old.ip_masq == new.ip_masq);
    cmp("cni", old.cni == new.cni);
    cmp("subnet", old.subnet == new.subnet);
    cmp("log", old.log == new.log);
    cmp("control", old.control == new.control);
    cmp("metrics", old.metrics == new.metrics);
    cmp(
        "graceful_restart",
        old.graceful_restart == new.graceful_restart,
    );
    match (&old.bgp, &new.bgp) {
        (Some(o), Some(n)) => out.extend(bgp_fields(o, n)),
        (None, None) => {}
        _ => out.push("bgp".to_owned()),
    }
    out
}

/// The `[bgp]` keys other than `peers` that differ.
fn bgp_fields(old: &weft_bgp::BgpConfig, new: &weft_bgp::BgpConfig) -> Vec<String> {
    let table = |b: &weft_bgp::BgpConfig| match serde_json::to_value(b) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.remove("peers");
            m
        }
        _ => serde_json::Map::new(),
    };
    let (o, n) = (table(old), table(new));
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| format!("bgp.{k}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(statics: &str, peers: &str, extra_dp: &str) -> Config {
        Config::parse(&format!(
            r#"
node_name = "n1"
underlay_ip = "172.31.0.1"
pod_cidr = "10.244.1.0/24"
cluster_cidr = "10.244.0.0/16"
[dataplane]
mode = "host-gw"
{extra_dp}
{statics}
[bgp]
asn = 64512
{peers}
"#
        ))
        .unwrap()
    }

    const S2: &str = "[[static_routes]]\npod_cidr = \"10.244.2.0/24\"\nvia = \"172.31.0.2\"\n";
    const S3: &str = "[[static_routes]]\npod_cidr = \"10.244.3.0/24\"\nvia = \"172.31.0.3\"\n";
    const S3B: &str = "[[static_routes]]\npod_cidr = \"10.244.3.0/24\"\nvia = \"172.31.0.33\"\n";
    const P2: &str = "[[bgp.peers]]\naddress = \"172.31.0.2\"\nasn = 64512\n";
    const P3: &str = "[[bgp.peers]]\naddress = \"172.31.0.3\"\nasn = 64512\n";
    const P3B: &str = "[[bgp.peers]]\naddress = \"172.31.0.3\"\nasn = 64513\n";

    #[test]
    fn the_same_config_changes_nothing() {
        let a = cfg(S2, P2, "");
        let p = plan(&a, &a.clone());
        assert!(p.is_empty() && p.restart_needed.is_empty(), "{p:?}");
    }

    #[test]
    fn static_routes_and_peers_apply_live() {
        let old = cfg(&format!("{S2}{S3}"), P2, "");
        let new = cfg(S3B, &format!("{P2}{P3}"), "");
        let p = plan(&old, &new);
        assert_eq!(
            p.statics,
            StaticCounts {
                added: 0,
                removed: 1,
                changed: 1
            }
        );
        let routes = p.static_routes.clone().unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].via, "172.31.0.33".parse::<IpAddr>().unwrap());
        assert_eq!(p.peers_added.len(), 1);
        assert!(p.peers_removed.is_empty() && p.peers_changed.is_empty());
        assert!(p.restart_needed.is_empty(), "{:?}", p.restart_needed);

        let p = plan(&new, &cfg(S3B, P3B, ""));
        assert_eq!(
            p.peers_removed,
            vec!["172.31.0.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(p.peers_changed[0].asn, 64513);
        assert!(p.static_routes.is_none());
    }

    #[test]
    fn other_fields_are_named_for_a_restart() {
        let old = cfg(S2, P2, "");
        let mut new = cfg(S2, P2, "queues = 3\n");
        new.node_name = "n9".into();
        let mut b = new.bgp.clone().unwrap();
        b.hold_time = 30;
        new.bgp = Some(b);
        new.log.level = "debug".into();
        new.control.group = Some("adm".into());
        new.metrics.listen = Some(String::new());
        let p = plan(&old, &new);
        assert_eq!(
            p.restart_needed,
            vec![
                "node_name",
                "dataplane.queues",
                "log",
                "control",
                "metrics",
                "bgp.hold_time"
            ]
        );
        assert!(p.is_empty());
    }
}
