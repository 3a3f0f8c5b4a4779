//! Golden tests of the router core (no root needed): every
//! `tests/golden/<case>.events.jsonl` is replayed through a fresh
//! `RouterCore` and the actions it returns are compared, line by line, with
//! `tests/golden/<case>.actions.jsonl`. `WEFT_BLESS=1` rewrites the
//! expectations from what the core does now (review the diff before
//! committing it). The 10k-route bursts are generated here and checked
//! against actions built independently from the generated routes.
//!
//! Format (see router/README.md, "Router core"): the events file starts
//! with `{"setup": CoreConfig}`, then one `{"at_ms": N, "event": Event}` a
//! line (`#` lines are comments); the actions file has one
//! `{"step": N, "action": Action}` a line, `step` being the 1-based index
//! of the event that produced it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_router::cidr::Cidr;
use weft_router::core::{Action, CoreConfig, Event, Readiness, RouterCore, SyncReason, TunLink};
use weft_router::mode::Mode;
use weft_router::reconcile::{KernelRoute, RouteOp, RouteVia};
use weft_router::route_table::{NextHop, OverlayPeer, PeerRoute, RouteSource, RouteUpdate};
use weft_router::vtep::derived_mac;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    setup: CoreConfig,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    at_ms: u64,
    event: Event,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ActionLine {
    step: usize,
    action: Action,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The events of a case file, with its setup.
fn read_case(path: &Path) -> (CoreConfig, Vec<EventLine>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let (_, first) = lines.next().expect("empty case file");
    let setup: Setup = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("{}: first line must be the setup: {e}", path.display()));
    let events = lines
        .map(|(n, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: {e}\n{l}", path.display(), n + 1))
        })
        .collect();
    (setup.setup, events)
}

/// Replays `events` through a new core; every action with its step.
fn replay(cfg: CoreConfig, events: Vec<EventLine>) -> Vec<ActionLine> {
    let mut core = RouterCore::new(cfg);
    let mut out = Vec::new();
    let mut last = 0;
    for (i, e) in events.into_iter().enumerate() {
        assert!(e.at_ms >= last, "time goes backwards at event {}", i + 1);
        last = e.at_ms;
        // Every event survives a round trip through its JSON form.
        let json = serde_json::to_string(&e.event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e.event);
        for action in core.handle(Duration::from_millis(e.at_ms), e.event) {
            out.push(ActionLine {
                step: i + 1,
                action,
            });
        }
    }
    out
}

fn to_jsonl(lines: &[ActionLine]) -> String {
    lines.iter().fold(String::new(), |mut s, l| {
        let _ = writeln!(s, "{}", serde_json::to_string(l).unwrap());
        s
    })
}

/// The first difference between two texts, with a little context.
fn first_diff(want: &str, got: &str) -> Option<String> {
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let i = (0..w.len().max(g.len())).find(|&i| w.get(i) != g.get(i))?;
    let from = i.saturating_sub(2);
    let mut s = format!("first difference at line {}:\n", i + 1);
    for line in &w[from..i.min(w.len())] {
        let _ = writeln!(s, "  {line}");
    }
    let _ = writeln!(s, "- {}", w.get(i).unwrap_or(&"<end>"));
    let _ = writeln!(s, "+ {}", g.get(i).unwrap_or(&"<end>"));
    Some(s)
}

#[test]
fn golden_cases() {
    let bless = std::env::var("WEFT_BLESS").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".events.jsonl"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let (cfg, events) = read_case(case);
        let got = to_jsonl(&replay(cfg, events));
        let expected_path = PathBuf::from(
            case.to_string_lossy()
                .replace(".events.jsonl", ".actions.jsonl"),
        );
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        // Parse the expectations too, so a malformed file is reported as such.
        for (n, l) in want.lines().enumerate() {
            if let Err(e) = serde_json::from_str::<ActionLine>(l) {
                failures.push(format!("{}:{}: {e}", expected_path.display(), n + 1));
            }
        }
        if let Some(d) = first_diff(&want, &got) {
            failures.push(format!("{}: {d}", case.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(WEFT_BLESS=1 rewrites the expectations)",
        failures.join("\n")
    );
}

// ---- generated 10k-route bursts, checked against independent expectations

const BURST: u32 = 10_000;

fn peer(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(172, 31, 0, (i % 250) as u8 + 2))
}

/// Route `i`: 10.128.0.0/9 cut into /26s, via one of 250 peers.
fn burst_route(i: u32) -> PeerRoute {
    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 64);
    PeerRoute {
        pod_cidr: Cidr::new(IpAddr::V4(addr), 26).unwrap(),
        via: peer(i),
        vtep_mac: None,
    }
}

fn upsert(r: PeerRoute) -> RouteUpdate {
    RouteUpdate::Upsert {
        route: r,
        source: RouteSource::Bgp,
    }
}

fn withdraw(r: PeerRoute) -> RouteUpdate {
    RouteUpdate::Withdraw {
        pod_cidr: r.pod_cidr,
        source: RouteSource::Bgp,
    }
}

/// A started core whose first sync found an empty kernel.
fn ready_core(cfg: CoreConfig) -> RouterCore {
    let mut core = RouterCore::new(cfg);
    let a = core.handle(Duration::ZERO, Event::Start);
    assert!(a.contains(&Action::DumpRoutes {
        reason: SyncReason::Start
    }));
    let a = core.handle(Duration::ZERO, Event::Dumped { routes: vec![] });
    assert_eq!(a, vec![Action::Readiness(Readiness::Ready)]);
    core
}

/// What the kernel route of `r` is in `cfg`'s mode.
fn kernel_route(r: &PeerRoute, tun: Option<u32>) -> KernelRoute {
    KernelRoute {
        dst: r.pod_cidr,
        via: match tun {
            Some(i) => RouteVia::Dev(i),
            None => RouteVia::Gateway(r.via),
        },
    }
}

fn overlay_hop(r: &PeerRoute) -> NextHop {
    let IpAddr::V4(underlay) = r.via else {
        unreachable!()
    };
    NextHop::Overlay(OverlayPeer {
        underlay,
        vtep_mac: derived_mac(underlay),
        mode: Mode::Vxlan,
    })
}

/// One 10k-route batch in, then its withdrawal: the kernel operations and
/// the dataplane's peer updates are exactly those of the generated routes,
/// in prefix order.
fn burst(mode: Mode) {
    let tun = (mode != Mode::HostGw).then_some(7);
    let mut cfg = CoreConfig::new(mode, 1500);
    cfg.tun = tun.map(|ifindex| TunLink {
        ifindex,
        fixed_mtu: false,
    });
    let mut core = ready_core(cfg);
    // Generated in a scrambled order; expected in prefix order.
    let mut routes: Vec<PeerRoute> = (0..BURST)
        .map(|k| burst_route(k.wrapping_mul(7_919) % BURST))
        .collect();
    let batch: Vec<RouteUpdate> = routes.iter().copied().map(upsert).collect();
    routes.sort_by_key(|r| r.pod_cidr);
    routes.dedup_by_key(|r| r.pod_cidr);
    assert_eq!(routes.len(), BURST as usize, "generator repeats a prefix");

    let got = core.handle(Duration::from_millis(10), Event::Routes(batch));
    let mut want = Vec::new();
    if tun.is_some() {
        want.push(Action::UpdatePeers {
            changes: routes
                .iter()
                .map(|r| (r.pod_cidr, Some(overlay_hop(r))))
                .collect(),
        });
    }
    want.push(Action::ApplyRoutes {
        ops: routes
            .iter()
            .map(|r| RouteOp::Replace(kernel_route(r, tun)))
            .collect(),
    });
    assert_actions(&got, &want);
    let got = core.handle(Duration::from_millis(20), Event::Applied);
    assert_eq!(
        got,
        vec![Action::Summary {
            installed: BURST as usize,
            removed: 0,
            routes: BURST as usize,
        }]
    );
    assert_eq!(core.table().len(), BURST as usize);

    let batch: Vec<RouteUpdate> = routes.iter().rev().copied().map(withdraw).collect();
    let got = core.handle(Duration::from_millis(30), Event::Routes(batch));
    let mut want = Vec::new();
    if tun.is_some() {
        want.push(Action::UpdatePeers {
            changes: routes.iter().map(|r| (r.pod_cidr, None)).collect(),
        });
    }
    want.push(Action::ApplyRoutes {
        ops: routes
            .iter()
            .map(|r| RouteOp::Delete(kernel_route(r, tun)))
            .collect(),
    });
    assert_actions(&got, &want);
    let got = core.handle(Duration::from_millis(40), Event::Applied);
    assert_eq!(
        got,
        vec![Action::Summary {
            installed: 0,
            removed: BURST as usize,
            routes: 0,
        }]
    );
    assert!(core.table().is_empty());
}

/// Compares long action lists by counts, a sample and then in full.
fn assert_actions(got: &[Action], want: &[Action]) {
    assert_eq!(got.len(), want.len(), "number of actions");
    for (g, w) in got.iter().zip(want) {
        match (g, w) {
            (Action::ApplyRoutes { ops: g }, Action::ApplyRoutes { ops: w }) => {
                assert_eq!(g.len(), w.len(), "number of route operations");
                for i in [0, g.len() / 2, g.len() - 1] {
                    assert_eq!(g[i], w[i], "route operation {i}");
                }
            }
            (Action::UpdatePeers { changes: g }, Action::UpdatePeers { changes: w }) => {
                assert_eq!(g.len(), w.len(), "number of peer updates");
            }
            _ => {}
        }
        assert_eq!(g, w);
    }
}

#[test]
fn burst_10k_host_gw() {
    burst(Mode::HostGw);
}

#[test]
fn burst_10k_vxlan() {
    burst(Mode::Vxlan);
}

/// Batches that arrive while an install is in flight are flushed together
/// when it completes: 10 batches of 1000 cost two netlink round trips.
#[test]
fn burst_10k_in_batches_coalesces_while_busy() {
    let mut core = ready_core(CoreConfig::new(Mode::HostGw, 1500));
    let routes: Vec<PeerRoute> = (0..BURST).map(burst_route).collect();
    let mut applies = Vec::new();
    for (k, chunk) in routes.chunks(1000).enumerate() {
        let batch = chunk.iter().copied().map(upsert).collect();
        for a in core.handle(Duration::from_millis(k as u64), Event::Routes(batch)) {
            if let Action::ApplyRoutes { ops } = a {
                applies.push(ops.len());
            }
        }
    }
    // The first batch goes out at once; the other nine wait for its answer.
    assert_eq!(applies, vec![1000]);
    let a = core.handle(Duration::from_millis(50), Event::Applied);
    let next: Vec<usize> = a
        .iter()
        .filter_map(|a| match a {
            Action::ApplyRoutes { ops } => Some(ops.len()),
            _ => None,
        })
        .collect();
    assert_eq!(next, vec![9000]);
    let a = core.handle(Duration::from_millis(60), Event::Applied);
    assert_eq!(
        a,
        vec![Action::Summary {
            installed: 9000,
            removed: 0,
            routes: BURST as usize,
        }]
    );
    // Every generated route was installed exactly once, in some flush.
    let installed: BTreeMap<Cidr, NextHop> = core.table().next_hops().into_iter().collect();
    assert_eq!(installed.len(), BURST as usize);
    for r in &routes {
        assert_eq!(installed.get(&r.pod_cidr), Some(&NextHop::HostGw(r.via)));
    }
}
