//! Counters that must not move in a steady run: checksum errors and UDP
//! buffer errors (`nstat -asz` in each namespace) and packets the TUN
//! dropped on transmit (the kernel handing packets to weftd faster than
//! it reads them: `ip -s link`'s tx dropped).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::netns::Netns;

/// The TUN name weftd uses unless configured otherwise.
pub const DEFAULT_TUN: &str = "weft0";

/// Summed counters over a set of namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetHealth {
    /// Every `*CsumErrors` counter (IpExtInCsumErrors, TcpInCsumErrors,
    /// UdpInCsumErrors, Icmp…, Udp6…).
    pub csum_errors: u64,
    /// UDP receive/send buffer errors (`Udp{,Lite,6}{Rcv,Snd}bufErrors`).
    pub udp_buf_errors: u64,
    /// tx dropped of the TUN devices (0 where there is none).
    pub tun_tx_dropped: u64,
    /// The non-zero counters behind the sums, by name.
    pub counters: BTreeMap<String, u64>,
}

/// True for the nstat counters summed into [`NetHealth::csum_errors`].
fn is_csum(name: &str) -> bool {
    name.ends_with("CsumErrors")
}

/// True for the nstat counters summed into [`NetHealth::udp_buf_errors`].
fn is_buf(name: &str) -> bool {
    name.starts_with("Udp") && (name.ends_with("RcvbufErrors") || name.ends_with("SndbufErrors"))
}

/// `(name, value)` pairs of `nstat -asz` output.
pub fn parse_nstat(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((name.to_owned(), v))
        })
        .collect()
}

/// tx dropped from `ip -s -j link show dev X` output (0 when unparsable).
pub fn parse_tx_dropped(json: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v.get(0)
        .and_then(|l| l.get("stats64"))
        .and_then(|s| s.get("tx"))
        .and_then(|t| t.get("dropped"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

impl NetHealth {
    /// Reads the counters of `namespaces` (nstat) and the tx dropped of a
    /// TUN named `tun` in each of them, if it exists.
    pub fn take(namespaces: &[&Netns], tun: &str) -> Result<Self> {
        let mut h = Self::default();
        for ns in namespaces {
            let out = ns.run("nstat", &["-asz"])?;
            for (name, v) in parse_nstat(&String::from_utf8_lossy(&out.stdout)) {
                h.add(&format!("{}:{name}", ns.name()), &name, v);
            }
            if let Ok(out) = ns.ip(&["-s", "-j", "link", "show", "dev", tun]) {
                let d = parse_tx_dropped(&String::from_utf8_lossy(&out.stdout));
                h.tun_tx_dropped += d;
                if d > 0 {
                    h.counters
                        .insert(format!("{}:{tun}:tx_dropped", ns.name()), d);
                }
            }
        }
        Ok(h)
    }

    fn add(&mut self, key: &str, name: &str, v: u64) {
        if is_csum(name) {
            self.csum_errors += v;
        } else if is_buf(name) {
            self.udp_buf_errors += v;
        } else {
            return;
        }
        if v > 0 {
            self.counters.insert(key.to_owned(), v);
        }
    }

    /// What moved between `before` and `self` (counters that went down,
    /// e.g. a TUN re-created in between, count from zero).
    pub fn since(&self, before: &Self) -> Self {
        let d = |a: u64, b: u64| if a >= b { a - b } else { a };
        let counters = self
            .counters
            .iter()
            .filter_map(|(k, &v)| {
                let x = d(v, before.counters.get(k).copied().unwrap_or(0));
                (x > 0).then(|| (k.clone(), x))
            })
            .collect();
        Self {
            csum_errors: d(self.csum_errors, before.csum_errors),
            udp_buf_errors: d(self.udp_buf_errors, before.udp_buf_errors),
            tun_tx_dropped: d(self.tun_tx_dropped, before.tun_tx_dropped),
            counters,
        }
    }

    /// Adds another delta into this one.
    pub fn accumulate(&mut self, other: &Self) {
        self.csum_errors += other.csum_errors;
        self.udp_buf_errors += other.udp_buf_errors;
        self.tun_tx_dropped += other.tun_tx_dropped;
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// True when nothing moved.
    pub fn is_clean(&self) -> bool {
        self.csum_errors == 0 && self.udp_buf_errors == 0 && self.tun_tx_dropped == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nstat_and_sums_the_right_counters() {
        let text = "#kernel\nIpInReceives 120 0.0\nTcpInCsumErrors 3 0.0\n\
                    UdpInCsumErrors 0 0.0\nIpExtInCsumErrors 2 0.0\nUdpRcvbufErrors 5 0.0\n\
                    Udp6SndbufErrors 1 0.0\nUdpInErrors 9 0.0\n";
        let parsed = parse_nstat(text);
        assert_eq!(parsed.len(), 7);
        let mut h = NetHealth::default();
        for (n, v) in &parsed {
            h.add(&format!("ns:{n}"), n, *v);
        }
        assert_eq!(h.csum_errors, 5);
        assert_eq!(h.udp_buf_errors, 6);
        assert_eq!(h.counters.len(), 4);
        assert!(!h.is_clean());
    }

    #[test]
    fn tx_dropped_from_ip_json() {
        let j = r#"[{"ifname":"weft0","stats64":{"rx":{"bytes":1,"dropped":4},"tx":{"bytes":9,"dropped":7}}}]"#;
        assert_eq!(parse_tx_dropped(j), 7);
        assert_eq!(parse_tx_dropped("garbage"), 0);
    }

    #[test]
    fn deltas_and_accumulation() {
        let mut a = NetHealth::default();
        a.add("x:TcpInCsumErrors", "TcpInCsumErrors", 4);
        a.tun_tx_dropped = 10;
        let mut b = a.clone();
        b.add("x:TcpInCsumErrors", "TcpInCsumErrors", 0);
        b.csum_errors = 6;
        b.counters.insert("x:TcpInCsumErrors".into(), 6);
        b.tun_tx_dropped = 3; // device re-created: counts from zero
        let d = b.since(&a);
        assert_eq!((d.csum_errors, d.tun_tx_dropped), (2, 3));
        assert_eq!(d.counters.get("x:TcpInCsumErrors"), Some(&2));
        let mut sum = NetHealth::default();
        sum.accumulate(&d);
        sum.accumulate(&d);
        assert_eq!((sum.csum_errors, sum.tun_tx_dropped), (4, 6));
        assert!(NetHealth::default().is_clean());
    }
}
