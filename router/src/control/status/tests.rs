use super::*;

fn snapshot(readiness: Readiness) -> RouterSnapshot {
    RouterSnapshot {
        readiness,
        underlay_mtu: 1500,
        offloads: None,
        routes: Vec::new(),
    }
}

#[test]
fn ready_needs_routes_files_and_end_of_rib() {
    let files = NodeFiles::default();
    let mut g = Gathered {
        router: Some(snapshot(Readiness::Ready)),
        peers: None,
        files: Some(files.clone()),
    };
    assert!(not_ready(&g, false).is_empty());
    assert_eq!(not_ready(&g, true), vec!["the BGP speaker does not answer"]);
    g.peers = Some(Vec::new());
    assert_eq!(
        not_ready(&g, true),
        vec!["no End-of-RIB from any BGP peer yet (0 of 0 established)"]
    );
    g.router = Some(snapshot(Readiness::Starting));
    g.files = Some(NodeFiles {
        errors: vec!["/etc/cni/net.d/10-weft.conflist: Read-only file system".into()],
        ..files
    });
    let why = not_ready(&g, false);
    assert_eq!(why[0], "routes not programmed yet");
    assert_eq!(
        why[1],
        "CNI config not written: /etc/cni/net.d/10-weft.conflist: Read-only file system"
    );
    g.router = None;
    g.files = None;
    assert_eq!(
        not_ready(&g, false),
        vec!["the router is not running", "CNI config not written yet"]
    );
}

#[test]
fn tunnel_counters_come_from_the_rendered_series() {
    let text = "# TYPE weft_dataplane_tx_packets_total counter\n\
        weft_dataplane_tx_packets_total{peer=\"172.31.0.2\"} 7\n\
        weft_dataplane_tx_bytes_total{peer=\"172.31.0.2\"} 700\n\
        weft_dataplane_rx_packets_total{peer=\"172.31.0.2\"} 3\n\
        weft_dataplane_rx_bytes_total{peer=\"172.31.0.2\"} 300\n\
        weft_dataplane_peer_drops_total{peer=\"172.31.0.2\"} 1\n\
        weft_dataplane_tx_packets_total{peer=\"172.31.0.3\"} 1e3\n\
        weft_dataplane_drops_total{reason=\"no_route\"} 9\n\
        weft_bgp_prefixes_received{peer=\"172.31.0.9\",type=\"ibgp\"} 2\n";
    let c = tunnel_counters(text);
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap_or_else(|_| unreachable!());
    assert_eq!(
        c[&ip("172.31.0.2")],
        TunnelCounters {
            tx_packets: 7,
            tx_bytes: 700,
            rx_packets: 3,
            rx_bytes: 300,
            drops: 1
        }
    );
    assert_eq!(c[&ip("172.31.0.3")].tx_packets, 1000);
    assert!(!c.contains_key(&ip("172.31.0.9")));
}
