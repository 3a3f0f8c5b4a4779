//! Configuration: the `[bgp]` and `[[bgp.peers]]` tables of weftd's config
//! file (serde, unknown fields refused), plus what weftd adds at runtime.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

fn default_listen_port() -> u16 {
    179
}
fn default_hold_time() -> u16 {
    90
}
fn default_true() -> bool {
    true
}
fn default_restart_time() -> u16 {
    120
}
fn default_connect_retry() -> u64 {
    5
}

/// The `[bgp]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// Our AS number.
    pub asn: u32,
    /// BGP identifier; weftd defaults it to the underlay IP.
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    /// TCP port to listen on; 0 = do not listen.
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
    /// Addresses to listen on (default: 0.0.0.0 and, if any peer is IPv6, ::).
    #[serde(default)]
    pub listen_addresses: Vec<IpAddr>,
    /// Hold time we propose, seconds (0 or ≥ 3).
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Advertise graceful restart (RFC 4724) and help restarting peers.
    #[serde(default = "default_true")]
    pub graceful_restart: bool,
    /// Restart time we advertise, seconds.
    #[serde(default = "default_restart_time")]
    pub restart_time: u16,
    /// Seconds between outgoing connection attempts.
    #[serde(default = "default_connect_retry")]
    pub connect_retry: u64,
    /// Route reflector cluster id (default: the router id).
    #[serde(default)]
    pub cluster_id: Option<Ipv4Addr>,
    /// Next hop for our IPv4 prefixes (default: the session's local address).
    #[serde(default)]
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for our IPv6 prefixes (default: the session's local address
    /// when it is IPv6).
    #[serde(default)]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Communities ("65000:100") attached to our prefixes.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Equal-cost paths from different peers become one multipath route
    /// (at most [`crate::rib::MAX_PATHS`] next hops); off: the best path's
    /// next hop only.
    #[serde(default)]
    pub multipath: bool,
    /// BFD timers for the peers with `bfd = true`.
    #[serde(default)]
    pub bfd: BfdTimersConfig,
    /// Peers.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

fn default_bfd_interval() -> u32 {
    300
}
fn default_bfd_multiplier() -> u8 {
    3
}

/// The `[bgp.bfd]` table: timers of every BFD session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BfdTimersConfig {
    /// Desired Min TX and Required Min RX once Up, milliseconds.
    #[serde(default = "default_bfd_interval")]
    pub interval_ms: u32,
    /// Detect Mult: missed packets before the session goes down.
    #[serde(default = "default_bfd_multiplier")]
    pub multiplier: u8,
}

impl Default for BfdTimersConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_bfd_interval(),
            multiplier: default_bfd_multiplier(),
        }
    }
}

/// One `[[bgp.peers]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Peer address.
    pub address: IpAddr,
    /// Peer AS (equal to ours: iBGP).
    pub asn: u32,
    /// Peer TCP port.
    #[serde(default = "default_listen_port")]
    pub port: u16,
    /// TCP MD5 signature key (RFC 2385).
    #[serde(default)]
    pub password: Option<String>,
    /// Never connect out.
    #[serde(default)]
    pub passive: bool,
    /// We are this peer's route reflector.
    #[serde(default)]
    pub route_reflector_client: bool,
    /// Hold time for this peer (default: `[bgp].hold_time`).
    #[serde(default)]
    pub hold_time: Option<u16>,
    /// Source address for connections to this peer (default: the kernel's choice).
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    /// Run single-hop BFD with this peer; the BGP session goes down when
    /// BFD detects a failure.
    #[serde(default)]
    pub bfd: bool,
    /// GTSM (RFC 5082): send with TTL 255 and refuse segments that arrive
    /// with a lower TTL, i.e. from anything but a directly connected peer.
    #[serde(default)]
    pub ttl_security: bool,
}

impl PeerConfig {
    /// A peer at `address` in AS `asn` on port 179, with every other field
    /// at its serde default (no password, active, not a reflector client,
    /// `[bgp].hold_time`, kernel-chosen source address).
    pub fn new(address: IpAddr, asn: u32) -> Self {
        Self {
            address,
            asn,
            port: default_listen_port(),
            password: None,
            passive: false,
            route_reflector_client: false,
            hold_time: None,
            local_address: None,
            bfd: false,
            ttl_security: false,
        }
    }
}

/// A configuration problem, with the path of the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    /// Field path, e.g. `bgp.peers[1].hold_time`.
    pub path: String,
    /// What is wrong.
    pub msg: String,
}

/// Parses "65000:100" or a plain number into a community value.
pub fn parse_community(s: &str) -> Option<u32> {
    match s.split_once(':') {
        Some((a, b)) => {
            Some((u32::from(a.parse::<u16>().ok()?) << 16) | u32::from(b.parse::<u16>().ok()?))
        }
        None => s.parse().ok(),
    }
}

impl BgpConfig {
    /// AS `asn` with `peers` and every other field at its serde default
    /// (kernel-chosen router id, port 179 on every address, hold time,
    /// graceful restart on, default BFD timers, no communities).
    pub fn new(asn: u32, peers: Vec<PeerConfig>) -> Self {
        Self {
            asn,
            router_id: None,
            listen_port: default_listen_port(),
            listen_addresses: Vec::new(),
            hold_time: default_hold_time(),
            graceful_restart: default_true(),
            restart_time: default_restart_time(),
            connect_retry: default_connect_retry(),
            cluster_id: None,
            next_hop_v4: None,
            next_hop_v6: None,
            communities: Vec::new(),
            multipath: false,
            bfd: BfdTimersConfig::default(),
            peers,
        }
    }

    /// Every problem found, empty when the config is usable.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |path: String, msg: &str| {
            errs.push(ConfigError {
                path,
                msg: msg.to_owned(),
            });
        };
        if self.asn == 0 {
            err("bgp.asn".into(), "must not be 0");
        }
        if matches!(self.hold_time, 1 | 2) {
            err("bgp.hold_time".into(), "must be 0 or at least 3");
        }
        if self.restart_time > 4095 {
            err("bgp.restart_time".into(), "at most 4095");
        }
        if !(10..=60_000).contains(&self.bfd.interval_ms) {
            err("bgp.bfd.interval_ms".into(), "10 to 60000 milliseconds");
        }
        if self.bfd.multiplier == 0 {
            err("bgp.bfd.multiplier".into(), "must not be 0");
        }
        for (i, c) in self.communities.iter().enumerate() {
            if parse_community(c).is_none() {
                err(
                    format!("bgp.communities[{i}]"),
                    "expected ASN:VALUE with 16-bit parts",
                );
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.asn == 0 {
                err(format!("bgp.peers[{i}].asn"), "must not be 0");
            }
            if matches!(p.hold_time, Some(1 | 2)) {
                err(
                    format!("bgp.peers[{i}].hold_time"),
                    "must be 0 or at least 3",
                );
            }
            if p.password
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > 80)
            {
                err(format!("bgp.peers[{i}].password"), "1 to 80 bytes");
            }
            if self.peers[..i].iter().any(|q| q.address == p.address) {
                err(format!("bgp.peers[{i}].address"), "duplicate peer");
            }
            if p.route_reflector_client && p.asn != self.asn {
                err(
                    format!("bgp.peers[{i}].route_reflector_client"),
                    "only iBGP peers can be clients",
                );
            }
        }
        errs
    }
}

/// Everything a [`crate::Speaker`] needs: the file's `[bgp]` table plus what
/// weftd knows at runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// The `[bgp]` table.
    pub bgp: BgpConfig,
    /// The resolved BGP identifier (`bgp.router_id` or the underlay IP).
    pub router_id: Ipv4Addr,
    /// Accept only prefixes inside these (the cluster CIDRs).
    pub import: Vec<Prefix>,
    /// We are restarting after a graceful shutdown: set the R bit.
    pub restarting: bool,
    /// Backoff ceiling after failed sessions.
    pub max_backoff: Duration,
}

impl SpeakerConfig {
    /// A config with the defaults weftd uses.
    pub fn new(bgp: BgpConfig, router_id: Ipv4Addr, import: Vec<Prefix>) -> Self {
        Self {
            bgp,
            router_id,
            import,
            restarting: false,
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_is_the_serde_defaults() {
        let parsed: BgpConfig = toml::from_str("asn = 64512").expect("valid");
        assert_eq!(BgpConfig::new(64512, Vec::new()), parsed);
    }

    #[test]
    fn parses_the_issue_example_with_defaults() {
        #[derive(Deserialize)]
        struct File {
            bgp: BgpConfig,
        }
        let f: File = toml::from_str(
            r#"
            [bgp]
            asn = 64512
            [[bgp.peers]]
            address = "172.31.0.254"
            asn = 64512
            "#,
        )
        .unwrap();
        let b = f.bgp;
        assert_eq!(
            (b.asn, b.listen_port, b.hold_time, b.graceful_restart),
            (64512, 179, 90, true)
        );
        assert_eq!(b.peers[0].port, 179);
        assert!(!b.peers[0].passive && b.peers[0].password.is_none());
        assert!(b.validate().is_empty());
        assert_eq!(b.bfd, BfdTimersConfig::default());
        assert!(!b.peers[0].bfd);
        assert!(!b.multipath);
        let m: BgpConfig = toml::from_str("asn = 1\nmultipath = true\n").unwrap();
        assert!(m.multipath && m.validate().is_empty());
    }

    #[test]
    fn bfd_keys_parse_and_validate() {
        let b: BgpConfig = toml::from_str(
            r#"
            asn = 64512
            [bfd]
            interval_ms = 300
            multiplier = 3
            [[peers]]
            address = "172.31.0.254"
            asn = 65000
            bfd = true
            ttl_security = true
            "#,
        )
        .unwrap();
        assert_eq!((b.bfd.interval_ms, b.bfd.multiplier), (300, 3));
        assert!(b.peers[0].bfd && b.peers[0].ttl_security && b.validate().is_empty());
        let bad: BgpConfig =
            toml::from_str("asn = 1\n[bfd]\ninterval_ms = 1\nmultiplier = 0\n").unwrap();
        let paths: Vec<String> = bad.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["bgp.bfd.interval_ms", "bgp.bfd.multiplier"]);
        assert!(toml::from_str::<BgpConfig>("asn = 1\n[bfd]\nx = 1\n").is_err());
    }

    #[test]
    fn peer_config_new_equals_the_serde_defaults() {
        let parsed: PeerConfig = toml::from_str("address = \"10.0.0.1\"\nasn = 65001\n").unwrap();
        let built = PeerConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 65001);
        assert_eq!(built, parsed);
        assert_eq!(built.port, 179);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<BgpConfig, _> = toml::from_str("asn = 1\nbogus = 2\n");
        assert!(r.is_err());
        let r: Result<BgpConfig, _> =
            toml::from_str("asn = 1\n[[peers]]\naddress = \"10.0.0.1\"\nasn = 2\nx = 1\n");
        assert!(r.is_err());
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let b: BgpConfig = toml::from_str(
            r#"
            asn = 0
            hold_time = 2
            communities = ["65000:1", "nope"]
            [[peers]]
            address = "10.0.0.1"
            asn = 65001
            hold_time = 1
            route_reflector_client = true
            [[peers]]
            address = "10.0.0.1"
            asn = 65000
            password = ""
            "#,
        )
        .unwrap();
        let paths: Vec<String> = b.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "bgp.asn",
                "bgp.hold_time",
                "bgp.communities[1]",
                "bgp.peers[0].hold_time",
                "bgp.peers[0].route_reflector_client",
                "bgp.peers[1].password",
                "bgp.peers[1].address",
            ]
        );
    }

    #[test]
    fn communities_parse() {
        assert_eq!(parse_community("65000:100"), Some(0xfde8_0064));
        assert_eq!(parse_community("7"), Some(7));
        assert_eq!(parse_community("70000:1"), None);
    }
}
