//! End-to-end scenarios on one cluster as real nodes run it: pods
//! attached through weft's CNI chain with the conflist weftd wrote, routes
//! from BGP through BIRD reflecting on the ToR, host-gw. In order, on the
//! same cluster: pod-to-pod (ping matrix, checked TCP, same node and
//! across), CNI CHECK, hostPort (from another node, from the node, hairpin),
//! masquerade to an "internet" namespace, node join, graceful restart under
//! traffic (no loss), node failure (SIGKILL), route reflector failure, pod
//! churn. The steps are `common::scenario`'s, which the overlay modes run
//! too (`tests/scenarios_overlay.rs`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::churn::churn;
use common::scenario::Scenario;
use netsim::WeftMode;
use netsim::netns::privileged_or_skip;

#[test]
fn cluster_scenarios_host_gw_with_bird_reflector() {
    if !privileged_or_skip(
        "cluster_scenarios_host_gw_with_bird_reflector",
        common::TOOLS,
    ) {
        return;
    }
    let t_all = Instant::now();
    // Node 4 joins later.
    let mut s = Scenario::new(WeftMode::HostGw, 4, 2);
    s.start(&[0, 1, 2]);

    // Pod-to-pod, same node and across.
    s.matrix(&[0, 1, 2], "3 nodes");
    s.c.tcp_transfer_check((0, 0), (0, 1), 4 << 20).unwrap();
    s.c.tcp_transfer_check((0, 0), (2, 1), 4 << 20).unwrap();
    s.c.check_pod((1, 0)).unwrap();

    s.drills();
    churn(&s.c);
    eprintln!("all scenarios in {:?}", t_all.elapsed());
}
