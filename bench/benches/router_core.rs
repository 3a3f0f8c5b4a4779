//! One route change at 10 000 overlay peers, end to end on the control
//! side: `RouterCore::handle` (table, kernel ops, peer update) plus
//! `Dataplane::update_routes` on a running vxlan dataplane holding 10 000
//! peers (until the workers' copy is published), and for a new pod range
//! also the kernel route added through `RouteSync`. The core alone is
//! measured without root as well, beside the cost of a whole 10k-route
//! batch.
//!
//! Run: `flock /tmp/weft-bench.lock cargo bench -p weft-bench --bench router_core`
//! (the dataplane part needs root; without it that part is skipped with a
//! message, and with CI=true it fails).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use weft_router::cidr::Cidr;
use weft_router::config::Config;
use weft_router::core::{Action, CoreConfig, Event, RouterCore, TunLink};
use weft_router::dataplane::Dataplane;
use weft_router::mode::Mode;
use weft_router::netlink::RouteSync;
use weft_router::route_table::{PeerRoute, RouteSource, RouteUpdate};

const PEERS: u32 = 10_000;
const CHANGES: u32 = 300;

/// Peer `i`'s underlay address: 172.16.0.0/12, past this node's.
fn peer_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xac10_0000 | (i + 2)))
}

/// Peer `i`'s pod /24: 10.1.0.0 + i.
fn range(i: u32) -> Cidr {
    Cidr::new(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + (i << 8))), 24).unwrap()
}

fn upsert(i: u32, via: IpAddr) -> RouteUpdate {
    RouteUpdate::Upsert {
        route: PeerRoute {
            pod_cidr: range(i),
            via,
            vtep_mac: None,
        },
        source: RouteSource::Bgp,
    }
}

/// A vxlan core holding `PEERS` routes, each to its own peer, synced.
fn loaded_core(tun_ifindex: u32) -> (RouterCore, Vec<Action>) {
    let mut cfg = CoreConfig::new(Mode::Vxlan, 1500);
    cfg.tun = Some(TunLink {
        ifindex: tun_ifindex,
        fixed_mtu: false,
    });
    let mut core = RouterCore::new(cfg);
    let batch = (0..PEERS).map(|i| upsert(i, peer_ip(i))).collect();
    let _ = core.handle(Duration::ZERO, Event::Routes(batch));
    let mut first = core.handle(Duration::ZERO, Event::Start);
    let _ = core.handle(Duration::ZERO, Event::UnderlayMtu { mtu: Some(1500) });
    first.extend(core.handle(Duration::ZERO, Event::Dumped { routes: vec![] }));
    let _ = core.handle(Duration::ZERO, Event::Applied);
    (core, first)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The `pct`th percentile.
fn pctl(mut v: Vec<Duration>, pct: usize) -> Duration {
    v.sort();
    v[v.len() * pct / 100]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The core alone: one next-hop change, one new range, one 10k batch.
fn core_only() {
    let (mut core, _) = loaded_core(7);
    let mut change = Vec::new();
    for k in 0..CHANGES {
        let t = Instant::now();
        let a = core.handle(
            Duration::from_secs(1),
            Event::Routes(vec![upsert(k, peer_ip(PEERS + k))]),
        );
        change.push(t.elapsed());
        assert!(
            matches!(a.as_slice(), [Action::UpdatePeers { .. }]),
            "{a:?}"
        );
    }
    let mut batch_times = Vec::new();
    for round in 0..5u32 {
        let mut cfg = CoreConfig::new(Mode::Vxlan, 1500);
        cfg.tun = Some(TunLink {
            ifindex: 7,
            fixed_mtu: false,
        });
        let mut c = RouterCore::new(cfg);
        let _ = c.handle(Duration::ZERO, Event::Start);
        let _ = c.handle(Duration::ZERO, Event::UnderlayMtu { mtu: Some(1500) });
        let _ = c.handle(Duration::ZERO, Event::Dumped { routes: vec![] });
        let batch: Vec<RouteUpdate> = (0..PEERS).map(|i| upsert(i, peer_ip(i + round))).collect();
        let t = Instant::now();
        black_box(c.handle(Duration::from_secs(1), Event::Routes(batch)));
        batch_times.push(t.elapsed());
    }
    println!("router core alone, vxlan, {PEERS} peers (µs)");
    println!("| one next-hop change (median / p90 / p99) | one 10k-route batch (median of 5) |");
    println!("|---:|---:|");
    println!(
        "| {:.1} / {:.1} / {:.1} | {:.0} |",
        us(median(change.clone())),
        us(pctl(change.clone(), 90)),
        us(pctl(change, 99)),
        us(median(batch_times))
    );
}

/// Core + a running dataplane (+ the kernel for a new range), in a
/// namespace of its own.
fn end_to_end() {
    if !privileged_or_skip("router_core end_to_end", &["ip"]) {
        return;
    }
    let pfx = unique_prefix("wrc");
    let ns = Netns::create(&format!("{pfx}-dp")).unwrap();
    let (a, b) = (format!("{pfx}u0"), format!("{pfx}u1"));
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
        .unwrap();
    ns.ip(&["addr", "add", "172.31.0.1/24", "dev", &a]).unwrap();
    for dev in [a.as_str(), b.as_str(), "lo"] {
        ns.ip(&["link", "set", dev, "up"]).unwrap();
    }
    let tun = format!("{pfx}t");
    let cfg = Config::parse(&format!(
        "node_name = \"bench\"\nunderlay_ip = \"172.31.0.1\"\npod_cidr = \"10.0.0.0/24\"\n\
         cluster_cidr = \"10.0.0.0/8\"\n[dataplane]\nmode = \"vxlan\"\ntun_name = \"{tun}\"\nqueues = 2\n"
    ))
    .unwrap();
    let out = ns
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sync = RouteSync::new().unwrap();
                let link = sync.underlay_link(cfg.underlay_ip).await.unwrap().unwrap();
                let dp = Dataplane::start(&cfg, &link).unwrap();
                dp.set_routes(&[]);
                let ifindex = sync.link_index(&tun).await.unwrap().unwrap();
                let (mut core, first) = loaded_core(ifindex);
                // The dataplane gets the 10k peers the way the daemon hands
                // them over; the kernel its 10k routes.
                for a in first {
                    match a {
                        Action::UpdatePeers { changes } => dp.update_routes(&changes),
                        Action::ApplyRoutes { ops } => sync.apply_ops(&ops).await.unwrap(),
                        _ => {}
                    }
                }
                let mut change = Vec::new();
                let mut fresh = Vec::new();
                for k in 0..CHANGES {
                    // A known range moves to another peer: core + dataplane.
                    let t = Instant::now();
                    let acts = core.handle(
                        Duration::from_secs(1),
                        Event::Routes(vec![upsert(k, peer_ip(PEERS + k))]),
                    );
                    for a in acts {
                        if let Action::UpdatePeers { changes } = a {
                            dp.update_routes(&changes);
                        }
                    }
                    change.push(t.elapsed());
                    // A new range: core + dataplane + kernel route.
                    let i = PEERS + 1000 + k;
                    let t = Instant::now();
                    let acts = core.handle(
                        Duration::from_secs(1),
                        Event::Routes(vec![upsert(i, peer_ip(i))]),
                    );
                    for a in acts {
                        match a {
                            Action::UpdatePeers { changes } => dp.update_routes(&changes),
                            Action::ApplyRoutes { ops } => sync.apply_ops(&ops).await.unwrap(),
                            _ => {}
                        }
                    }
                    fresh.push(t.elapsed());
                    assert!(core.handle(Duration::from_secs(1), Event::Applied).len() == 1);
                }
                let n = sync.dump_own().await.unwrap().len();
                assert_eq!(n, (PEERS + CHANGES) as usize, "kernel routes");
                dp.stop();
                (change, fresh)
            })
        })
        .unwrap();
    let (change, fresh) = out;
    println!();
    println!(
        "one route change at {PEERS} peers, vxlan, core + running dataplane (µs, {CHANGES} changes)"
    );
    let over = |v: &[Duration]| v.iter().filter(|d| **d > Duration::from_millis(1)).count();
    println!(
        "| next hop of a known range: median / p90 / p99 (> 1 ms) | new range incl. kernel route add: median / p90 / p99 (> 1 ms) |"
    );
    println!("|---:|---:|");
    println!(
        "| {:.1} / {:.1} / {:.1} ({} of {CHANGES}) | {:.1} / {:.1} / {:.1} ({} of {CHANGES}) |",
        us(median(change.clone())),
        us(pctl(change.clone(), 90)),
        us(pctl(change.clone(), 99)),
        over(&change),
        us(median(fresh.clone())),
        us(pctl(fresh.clone(), 90)),
        us(pctl(fresh.clone(), 99)),
        over(&fresh)
    );
    drop(ns);
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    core_only();
    end_to_end();
}
