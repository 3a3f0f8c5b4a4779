//! weftd's Prometheus exporter: the process-wide recorder behind the
//! `metrics` facade ([`install`]), the BGP series refreshed from the
//! speaker at every scrape ([`bgp`]), and the HTTP endpoint serving
//! `/metrics`, `/healthz` and `/readyz` ([`http`]).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::daemon::{ROUTE_PROGRAMMING, ROUTES_INSTALLED};
use crate::dataplane::counters::{
    DROPS, ICMP_TOO_BIG, PEER_DROPS, RX_BYTES, RX_PACKETS, TX_BYTES, TX_PACKETS,
};

pub mod bgp;
pub mod http;

/// Build information: one series, value 1, labelled with the version.
pub const BUILD_INFO: &str = "weft_build_info";

/// Buckets of `weft_route_programming_seconds`: 1 ms to 10 s.
pub const PROGRAMMING_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the Prometheus recorder for the whole process (before any
/// series is registered) and returns the handle that renders it; None when
/// a recorder is already installed.
pub fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(ROUTE_PROGRAMMING.to_owned()),
            &PROGRAMMING_BUCKETS,
        )
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

/// HELP lines for every series weftd exports.
fn describe() {
    describe_counter!(TX_PACKETS, "Inner packets encapsulated to an overlay peer.");
    describe_counter!(
        TX_BYTES,
        Unit::Bytes,
        "Inner bytes encapsulated to an overlay peer."
    );
    describe_counter!(RX_PACKETS, "Inner packets accepted from an overlay peer.");
    describe_counter!(
        RX_BYTES,
        Unit::Bytes,
        "Inner bytes accepted from an overlay peer."
    );
    describe_counter!(DROPS, "Packets the dataplane dropped, by reason.");
    describe_counter!(PEER_DROPS, "Drops of packets from a known overlay peer.");
    describe_counter!(ICMP_TOO_BIG, "ICMP too-big replies sent to pods.");
    describe_gauge!(
        ROUTES_INSTALLED,
        "Pod ranges of other nodes routed in the kernel."
    );
    describe_histogram!(
        ROUTE_PROGRAMMING,
        Unit::Seconds,
        "Time from a route change reaching the router to the kernel's netlink ACK."
    );
    describe_gauge!(BUILD_INFO, "weftd's version (value 1).");
    describe_counter!(
        "weft_subnet_leases_ignored_total",
        "Subnet leases in etcd weftd ignored, by reason."
    );
    bgp::describe();
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    use metrics::counter;
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// The scrape's worst case at 10 000 routes: every route's overlay
    /// peer has carried traffic, so each has its five per-peer series
    /// (50 000 series). Ignored: run with `--ignored --nocapture` to print
    /// the render time and size.
    #[test]
    #[ignore = "measurement"]
    fn render_cost_with_10k_overlay_peers() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for i in 0..10_000u32 {
                let peer = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i).to_string();
                for name in [TX_PACKETS, TX_BYTES, RX_PACKETS, RX_BYTES, PEER_DROPS] {
                    counter!(name, "peer" => peer.clone()).increment(u64::from(i) * 1500 + 1);
                }
            }
        });
        let mut times: Vec<Duration> = (0..11)
            .map(|_| {
                let t = Instant::now();
                let text = handle.render();
                let took = t.elapsed();
                assert!(text.len() > 1_000_000);
                took
            })
            .collect();
        times.sort();
        let bytes = handle.render().len();
        eprintln!(
            "render of 50 000 per-peer series (10 000 overlay peers): median {:?} (min {:?}, max {:?}), {bytes} bytes",
            times[5], times[0], times[10]
        );
    }
}
