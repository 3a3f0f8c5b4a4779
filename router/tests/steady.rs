//! A steady 5 s single-stream TCP run through weftd's vxlan overlay on two
//! nodes must leave the TUN's tx dropped and every checksum / UDP buffer
//! error counter (`nstat`) of both nodes and both pods where they were.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::iperf_gbps;
use common::{Cluster, Opts, pod_ip};
use netsim::health::{DEFAULT_TUN, NetHealth};

#[test]
fn vxlan_steady_run_has_no_tun_drops_or_checksum_errors() {
    let test = "vxlan_steady_run_has_no_tun_drops_or_checksum_errors";
    if !netsim::netns::privileged_or_skip(test, &["ip", "iperf3", "nstat", "ethtool", "timeout"]) {
        return;
    }
    // Software checksums on the underlay, as netsim bench runs it: a bad
    // outer UDP or inner TCP checksum shows up as an error counter.
    let opts = Opts {
        underlay_csum_off: true,
        ..Opts::default()
    };
    let mut c = Cluster::new("dp", 2, opts);
    c.start_all("vxlan", "");
    assert!(c.ping(1, &pod_ip(2)), "no connectivity:\n{}", c.logs());
    let namespaces = [&c.node(1).ns, &c.node(1).pod, &c.node(2).ns, &c.node(2).pod];
    // Alone on the machine, as any throughput run.
    let lock = netsim::measure::BenchLock::acquire().unwrap();
    let before = NetHealth::take(&namespaces, DEFAULT_TUN).unwrap();
    let gbps = iperf_gbps(&c, 1, 5);
    let after = NetHealth::take(&namespaces, DEFAULT_TUN).unwrap();
    drop(lock);
    let d = after.since(&before);
    println!("vxlan 5 s: {gbps:.2} Gbit/s, {d:?}");
    assert!(gbps > 0.05, "iperf3 moved nothing:\n{}", c.logs());
    assert!(
        d.is_clean(),
        "counters moved in a steady run: {:?}\n{}",
        d.counters,
        c.logs()
    );
}
