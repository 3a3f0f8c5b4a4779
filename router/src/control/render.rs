//! The `weft` CLI's text output: `status` in the style of `birdc show
//! protocols` / `calicoctl node status`, `peers` and `routes` as tables.
//! Pure: schema values in, text out.

use std::fmt::Write;

use super::schema::{NodeStatus, PeerReport, ReloadReport, RouteReport};

/// `weft status`.
pub fn status(s: &NodeStatus) -> String {
    let mut o = String::new();
    let cidrs: Vec<String> = s.pod_cidrs.iter().map(ToString::to_string).collect();
    let offloads = if s.offloads.is_empty() {
        "none".to_owned()
    } else {
        s.offloads.join(", ")
    };
    let _ = writeln!(o, "node      {}", s.node);
    let _ = writeln!(o, "mode      {}", s.mode);
    let _ = writeln!(o, "mtu       {} (underlay {})", s.mtu, s.underlay_mtu);
    let _ = writeln!(o, "offloads  {offloads}");
    let _ = writeln!(o, "pod cidrs {}", cidrs.join(", "));
    let _ = writeln!(o, "uptime    {}", duration(s.uptime_seconds));
    let _ = writeln!(o, "routes    {}", s.routes);
    if let Some(k) = &s.wireguard_public_key {
        let _ = writeln!(o, "wg key    {k}");
    }
    if s.ready {
        let _ = writeln!(o, "ready     yes");
    } else {
        let _ = writeln!(o, "ready     no: {}", s.not_ready.join("; "));
    }
    if !s.peers.is_empty() {
        o.push('\n');
        o.push_str(&peers(&s.peers));
    }
    o
}

/// `weft peers`: one line per BGP peer.
pub fn peers(p: &[PeerReport]) -> String {
    let mut rows = vec![
        [
            "PEER",
            "ASN",
            "TYPE",
            "STATE",
            "SINCE",
            "RECV/ACC/ADV",
            "BFD",
            "LAST ERROR",
        ]
        .map(str::to_owned),
    ];
    for p in p {
        rows.push([
            p.address.to_string(),
            p.asn.to_string(),
            p.kind.clone(),
            p.state.clone(),
            duration(p.since_seconds),
            format!(
                "{}/{}/{}",
                p.prefixes_received, p.prefixes_accepted, p.prefixes_advertised
            ),
            p.bfd.clone().unwrap_or_else(|| "-".to_owned()),
            p.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table(&rows)
}

/// `weft routes`: one line per pod range.
pub fn routes(r: &[RouteReport]) -> String {
    let mut rows = vec![
        [
            "POD CIDR", "NEXT HOP", "MODE", "SOURCE", "TX PKTS", "TX BYTES", "RX PKTS", "RX BYTES",
            "DROPS",
        ]
        .map(str::to_owned),
    ];
    for r in r {
        let source = serde_json::to_value(r.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let t = r.tunnel.map(|t| {
            [t.tx_packets, t.tx_bytes, t.rx_packets, t.rx_bytes, t.drops].map(|v| v.to_string())
        });
        let [a, b, c, d, e] = t.unwrap_or_else(|| ["-"; 5].map(str::to_owned));
        rows.push([
            r.pod_cidr.to_string(),
            if r.next_hops.len() > 1 {
                r.next_hops
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                r.next_hop.to_string()
            },
            r.mode.clone(),
            source,
            a,
            b,
            c,
            d,
            e,
        ]);
    }
    table(&rows)
}

/// `weft reload`.
pub fn reload(r: &ReloadReport) -> String {
    format!("reloaded: {}\n", r.summary)
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut o = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        o.push_str(line.trim_end());
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::schema::TunnelCounters;
    use crate::route_table::RouteSource;

    fn peer() -> PeerReport {
        PeerReport {
            address: "172.31.0.2".parse().unwrap_or_else(|_| unreachable!()),
            asn: 64512,
            kind: "ibgp".into(),
            state: "established".into(),
            since_seconds: 3725,
            prefixes_received: 2,
            prefixes_accepted: 1,
            prefixes_advertised: 1,
            updates_received: 4,
            end_of_rib: true,
            last_error: None,
            bfd: Some("up".into()),
        }
    }

    #[test]
    fn peers_line_up_like_birdc() {
        let t = peers(&[peer()]);
        assert_eq!(
            t,
            "PEER        ASN    TYPE  STATE        SINCE  RECV/ACC/ADV  BFD  LAST ERROR\n\
             172.31.0.2  64512  ibgp  established  1h2m   2/1/1         up   -\n"
        );
    }

    #[test]
    fn status_says_why_not_ready() {
        let s = NodeStatus {
            node: "node-1".into(),
            mode: "vxlan".into(),
            mtu: 1450,
            underlay_mtu: 1500,
            offloads: vec![],
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap_or_else(|_| unreachable!())],
            uptime_seconds: 61,
            ready: false,
            not_ready: vec!["routes not programmed yet".into()],
            routes: 0,
            peers: vec![peer()],
            wireguard_public_key: None,
        };
        let t = status(&s);
        assert!(t.contains("offloads  none\n"), "{t}");
        assert!(t.contains("uptime    1m1s\n"), "{t}");
        assert!(
            t.contains("ready     no: routes not programmed yet\n"),
            "{t}"
        );
        assert!(t.contains("172.31.0.2  64512"), "{t}");
    }

    #[test]
    fn routes_show_tunnel_counters_for_overlay_only() {
        let r = |mode: &str, tunnel| RouteReport {
            pod_cidr: "10.244.2.0/24".parse().unwrap_or_else(|_| unreachable!()),
            next_hop: "172.31.0.2".parse().unwrap_or_else(|_| unreachable!()),
            next_hops: vec!["172.31.0.2".parse().unwrap_or_else(|_| unreachable!())],
            mode: mode.into(),
            source: RouteSource::Bgp,
            tunnel,
        };
        let t = routes(&[
            r("host-gw", None),
            r(
                "vxlan",
                Some(TunnelCounters {
                    tx_packets: 5,
                    ..TunnelCounters::default()
                }),
            ),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].ends_with("host-gw  bgp     -        -         -        -         -"),
            "{t}"
        );
        assert!(lines[2].contains("vxlan    bgp     5        0"), "{t}");
        assert_eq!(duration(90_000), "1d1h");
    }
}
