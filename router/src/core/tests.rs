//! Unit tests of the router core: small sequences, and a randomized run
//! against a model kernel and dataplane (with failing and foreign
//! deletions) that must converge to the route table after every event.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use super::*;
use crate::mode::Mode;
use crate::reconcile::{RouteVia, overlaps};
use crate::route_table::{NextHop, PeerRoute, RouteSource};

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn up(cidr: &str, via: &str, source: RouteSource) -> RouteUpdate {
    RouteUpdate::Upsert {
        route: PeerRoute {
            pod_cidr: c(cidr),
            via: ip(via),
            vtep_mac: None,
        },
        source,
    }
}

fn gw(dst: &str, via: &str) -> KernelRoute {
    KernelRoute {
        dst: c(dst),
        via: RouteVia::Gateway(ip(via)),
    }
}

const T0: Duration = Duration::ZERO;

#[test]
fn routes_before_start_wait_for_the_first_sync() {
    let mut core = RouterCore::new(CoreConfig::new(Mode::HostGw, 1500));
    let batch = vec![up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)];
    assert!(core.handle(T0, Event::Routes(batch)).is_empty());
    assert!(core.handle(T0, Event::Kernel(KernelEvent::Link)).is_empty());
    assert_eq!(core.poll_timeout(), None);
    assert_eq!(
        core.handle(T0, Event::Start),
        vec![Action::DumpRoutes {
            reason: SyncReason::Start
        }]
    );
    // The first sync installs the static route: no separate flush after.
    assert_eq!(
        core.handle(T0, Event::Dumped { routes: vec![] }),
        vec![Action::ApplyRoutes {
            ops: vec![RouteOp::Replace(gw("10.244.2.0/24", "172.31.0.2"))]
        }]
    );
    let a = core.handle(Duration::from_millis(5), Event::Applied);
    assert_eq!(a.last(), Some(&Action::Readiness(Readiness::Ready)));
    assert_eq!(
        core.poll_timeout(),
        Some(Duration::from_millis(5 + RESYNC_EVERY_MS))
    );
}

#[test]
fn unexpected_answers_are_ignored() {
    let mut core = RouterCore::new(CoreConfig::new(Mode::HostGw, 1500));
    assert!(core.handle(T0, Event::Applied).is_empty());
    assert!(core.handle(T0, Event::Dumped { routes: vec![] }).is_empty());
    let _ = core.handle(T0, Event::Start);
    // Waiting for a dump: an `Applied` does not complete it.
    assert!(core.handle(T0, Event::Applied).is_empty());
    assert_eq!(
        core.handle(T0, Event::Dumped { routes: vec![] }),
        vec![Action::Readiness(Readiness::Ready)]
    );
}

#[test]
fn stale_hold_deadline_and_resync_share_the_timer() {
    let mut cfg = CoreConfig::new(Mode::HostGw, 1500);
    cfg.stale_hold = Some(StaleHold {
        peers: [ip("172.31.0.2")].into(),
        restart_time_ms: 120_000,
    });
    let mut core = RouterCore::new(cfg);
    let _ = core.handle(Duration::from_secs(1), Event::Start);
    assert_eq!(core.poll_timeout(), Some(Duration::from_secs(121)));
    let _ = core.handle(Duration::from_secs(2), Event::Dumped { routes: vec![] });
    assert_eq!(core.poll_timeout(), Some(Duration::from_secs(32)));
    // End-of-RIB from a peer not awaited changes nothing.
    let a = core.handle(
        Duration::from_secs(3),
        Event::EndOfRib {
            peer: ip("172.31.0.9"),
        },
    );
    assert!(a.is_empty());
    let a = core.handle(Duration::from_secs(121), Event::Timeout);
    assert_eq!(
        a[0],
        Action::Log(Note::StaleReleased {
            by: Released::RestartTimeOver
        })
    );
    assert_eq!(
        a[1],
        Action::DumpRoutes {
            reason: SyncReason::StaleReleased
        }
    );
}

#[test]
fn end_of_rib_before_start_counts() {
    let mut cfg = CoreConfig::new(Mode::HostGw, 1500);
    cfg.stale_hold = Some(StaleHold {
        peers: [ip("172.31.0.2")].into(),
        restart_time_ms: 120_000,
    });
    let mut core = RouterCore::new(cfg);
    let a = core.handle(
        T0,
        Event::EndOfRib {
            peer: ip("172.31.0.2"),
        },
    );
    assert_eq!(
        a,
        vec![Action::Log(Note::StaleReleased {
            by: Released::EndOfRib
        })]
    );
    let _ = core.handle(T0, Event::Start);
    assert_eq!(core.poll_timeout(), None);
    // The first sync deletes: a stale route goes at once.
    let a = core.handle(
        T0,
        Event::Dumped {
            routes: vec![gw("10.244.9.0/24", "172.31.0.9")],
        },
    );
    assert_eq!(
        a,
        vec![Action::ApplyRoutes {
            ops: vec![RouteOp::Delete(gw("10.244.9.0/24", "172.31.0.9"))]
        }]
    );
}

#[test]
fn a_stop_waits_for_the_request_in_flight() {
    let mut core = RouterCore::new(CoreConfig::new(Mode::HostGw, 1500));
    let _ = core.handle(T0, Event::Start);
    let a = core.handle(T0, Event::Stop { graceful: false });
    assert_eq!(a, vec![Action::Readiness(Readiness::Stopping)]);
    // The start dump answers first; then the stop's own dump.
    let a = core.handle(
        T0,
        Event::Dumped {
            routes: vec![gw("10.244.9.0/24", "172.31.0.9")],
        },
    );
    assert_eq!(
        a,
        vec![Action::ApplyRoutes {
            ops: vec![RouteOp::Delete(gw("10.244.9.0/24", "172.31.0.9"))]
        }]
    );
    let a = core.handle(T0, Event::Applied);
    assert_eq!(
        a.last(),
        Some(&Action::DumpRoutes {
            reason: SyncReason::Stop
        })
    );
    let a = core.handle(T0, Event::Dumped { routes: vec![] });
    assert_eq!(a, vec![Action::Exit { error: None }]);
    assert!(core.is_done());
    assert!(core.handle(T0, Event::Start).is_empty());
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The kernel, the dataplane's peer table and a driver, as models.
struct World {
    core: RouterCore,
    kernel: BTreeSet<KernelRoute>,
    peers: BTreeMap<Cidr, NextHop>,
    answers: VecDeque<Event>,
    now: Duration,
    fail_next_apply: bool,
    /// Flushes failed on purpose, foreign deletions repaired by a resync.
    failed: usize,
    resyncs: usize,
}

impl World {
    fn feed(&mut self, ev: Event) {
        // Only an incremental flush (after a batch or an earlier flush)
        // may fail: a failed full sync stops weftd by design.
        let may_fail = matches!(ev, Event::Routes(_) | Event::Applied);
        let actions = self.core.handle(self.now, ev);
        for a in actions {
            match a {
                Action::DumpRoutes { reason } => {
                    if reason == SyncReason::RouteDeleted {
                        self.resyncs += 1;
                    }
                    self.answers.push_back(Event::Dumped {
                        routes: self.kernel.iter().cloned().collect(),
                    });
                }
                Action::ApplyRoutes { ops } => {
                    let fail = may_fail && std::mem::take(&mut self.fail_next_apply);
                    let n = if fail { ops.len() / 2 } else { ops.len() };
                    self.failed += usize::from(fail);
                    for op in &ops[..n] {
                        match op {
                            RouteOp::Replace(r) => {
                                // IPv4 replaces in place; IPv6 replaces a
                                // route sharing a next hop, keeps others.
                                self.kernel.retain(|k| {
                                    k.dst != r.dst || !(r.dst.is_ipv4() || overlaps(k, r))
                                });
                                self.kernel.insert(r.clone());
                            }
                            RouteOp::Delete(r) => {
                                self.kernel.remove(r);
                            }
                        }
                    }
                    self.answers.push_back(if fail {
                        Event::ApplyFailed {
                            error: "injected".into(),
                        }
                    } else {
                        Event::Applied
                    });
                }
                Action::UpdatePeers { changes } => {
                    for (cidr, hop) in changes {
                        match hop {
                            Some(h) => self.peers.insert(cidr, h),
                            None => self.peers.remove(&cidr),
                        };
                    }
                }
                Action::ReadUnderlay => {
                    self.answers
                        .push_back(Event::UnderlayMtu { mtu: Some(1500) });
                }
                _ => {}
            }
        }
    }

    /// Hands back every answer (and what they cause) until quiet.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let Some(a) = self.answers.pop_front() else {
                return;
            };
            self.feed(a);
        }
        panic!("the core never settles");
    }
}

#[test]
fn random_changes_converge_to_the_table() {
    for (seed, mode) in [(1u64, Mode::HostGw), (2, Mode::Vxlan), (3, Mode::HostGw)] {
        let mut cfg = CoreConfig::new(mode, 1500);
        let tun = mode.is_overlay().then_some(9);
        cfg.tun = tun.map(|ifindex| TunLink {
            ifindex,
            fixed_mtu: false,
        });
        let mut w = World {
            core: RouterCore::new(cfg),
            kernel: BTreeSet::new(),
            peers: BTreeMap::new(),
            answers: VecDeque::new(),
            now: T0,
            fail_next_apply: false,
            failed: 0,
            resyncs: 0,
        };
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        // A leftover of an earlier run, to be removed by the first sync.
        w.kernel.insert(gw("10.250.0.0/24", "172.31.0.99"));
        w.feed(Event::Start);
        w.settle();
        let mut multipath_seen = false;
        for step in 0..2000 {
            w.now += Duration::from_millis(rng.below(50));
            let cidr = if rng.below(4) == 0 {
                format!("fd10:244:{}::/64", rng.below(40))
            } else {
                format!("10.244.{}.0/24", rng.below(40))
            };
            let via = if cidr.contains(':') {
                format!("fd00::{}", rng.below(5) + 2)
            } else {
                format!("172.31.0.{}", rng.below(5) + 2)
            };
            let source = if rng.below(5) == 0 {
                RouteSource::Static
            } else {
                RouteSource::Bgp
            };
            match rng.below(10) {
                0..=5 => {
                    let n = rng.below(8) + 1;
                    let batch = (0..n)
                        .map(|k| {
                            if rng.below(3) == 0 {
                                RouteUpdate::Withdraw {
                                    pod_cidr: c(&cidr),
                                    source,
                                }
                            } else if k == 0 && source == RouteSource::Bgp && rng.below(3) == 0 {
                                // Equal-cost paths (BGP multipath).
                                let n = rng.below(3) + 1;
                                let via = (0..n)
                                    .map(|_| {
                                        let h = rng.below(5) + 2;
                                        if cidr.contains(':') {
                                            format!("fd00::{h}").parse().unwrap()
                                        } else {
                                            format!("172.31.0.{h}").parse().unwrap()
                                        }
                                    })
                                    .collect();
                                RouteUpdate::UpsertMultipath {
                                    pod_cidr: c(&cidr),
                                    via,
                                    source,
                                }
                            } else if k == 0 {
                                up(&cidr, &via, source)
                            } else {
                                up(
                                    &format!("10.244.{}.0/24", rng.below(40)),
                                    &format!("172.31.0.{}", rng.below(5) + 2),
                                    source,
                                )
                            }
                        })
                        .collect();
                    w.feed(Event::Routes(batch));
                }
                6 => w.fail_next_apply = true,
                7 => {
                    // Someone else deletes one of weftd's routes.
                    let k = rng.below(w.kernel.len().max(1) as u64) as usize;
                    if let Some(r) = w.kernel.iter().nth(k).cloned() {
                        w.kernel.remove(&r);
                        w.feed(Event::Kernel(KernelEvent::RouteGone(r)));
                    }
                }
                8 => w.feed(Event::Kernel(KernelEvent::Link)),
                _ => w.feed(Event::Timeout),
            }
            // Answers come back sometimes at once, sometimes after more
            // events (the core must cope with both).
            if rng.below(3) != 0 {
                w.settle();
                // After a failed flush the resync has run: everything agrees.
                let desired: BTreeSet<KernelRoute> =
                    desired_routes(&w.core.table().next_hops(), tun)
                        .into_iter()
                        .collect();
                assert_eq!(w.kernel, desired, "seed {seed} step {step}: kernel");
                multipath_seen |= w
                    .kernel
                    .iter()
                    .any(|r| matches!(r.via, RouteVia::Multipath(_)));
                if tun.is_some() {
                    let table: BTreeMap<Cidr, NextHop> =
                        w.core.table().next_hops().into_iter().collect();
                    assert_eq!(w.peers, table, "seed {seed} step {step}: peer table");
                }
            }
        }
        // The run did exercise the repairs, and multipath where the mode
        // has it.
        assert_eq!(multipath_seen, mode == Mode::HostGw, "seed {seed}");
        assert!(w.failed > 10, "seed {seed}: {} failed flushes", w.failed);
        assert!(w.resyncs > 10, "seed {seed}: {} repair resyncs", w.resyncs);
        w.feed(Event::Stop { graceful: true });
        w.settle();
        assert!(w.core.is_done());
        assert!(w.kernel.is_empty(), "routes left after stop");
    }
}

#[test]
fn a_static_reload_touches_only_the_changed_ranges() {
    let mut core = RouterCore::new(CoreConfig::new(Mode::HostGw, 1500));
    let r = |cidr: &str, via: &str| PeerRoute {
        pod_cidr: c(cidr),
        via: ip(via),
        vtep_mac: None,
    };
    let batch = vec![
        up("10.244.2.0/24", "172.31.0.2", RouteSource::Static),
        up("10.244.3.0/24", "172.31.0.3", RouteSource::Static),
    ];
    let _ = core.handle(T0, Event::Routes(batch));
    let _ = core.handle(T0, Event::Start);
    let _ = core.handle(T0, Event::Dumped { routes: vec![] });
    let _ = core.handle(T0, Event::Applied);
    let out = core.handle(
        T0,
        Event::StaticRoutes(vec![
            r("10.244.2.0/24", "172.31.0.2"),
            r("10.244.4.0/24", "172.31.0.4"),
        ]),
    );
    assert_eq!(
        out,
        vec![
            Action::Log(Note::StaticRoutesReloaded {
                added: 1,
                removed: 1,
                changed: 0
            }),
            Action::ApplyRoutes {
                ops: vec![
                    RouteOp::Replace(gw("10.244.4.0/24", "172.31.0.4")),
                    RouteOp::Delete(gw("10.244.3.0/24", "172.31.0.3")),
                ]
            }
        ]
    );
    let _ = core.handle(T0, Event::Applied);
    // Unchanged: a log line, no kernel operation.
    let out = core.handle(
        T0,
        Event::StaticRoutes(vec![
            r("10.244.2.0/24", "172.31.0.2"),
            r("10.244.4.0/24", "172.31.0.4"),
        ]),
    );
    assert_eq!(
        out,
        vec![Action::Log(Note::StaticRoutesReloaded {
            added: 0,
            removed: 0,
            changed: 0
        })]
    );
}
