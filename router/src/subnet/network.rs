//! flannel's network config (`<prefix>/config` in etcd): the cluster
//! network, the subnet length and pool bounds, and the backend.
//!
//! The JSON is another program's data, so unknown fields are accepted
//! (flannel adds fields over time: `EnableNFTables`, `IPv6Network`, ...).
//! Defaults follow flannel's `CheckNetworkConfig`: a `/24` per node when
//! the network is `/22` or wider (otherwise four subnets), the first
//! subnet skipped, and the backend `udp` when `Backend` is absent.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::cidr::Cidr;
use crate::config::LeaseDefaults;
use crate::mode::Mode;
use crate::subnet::SubnetError;

/// The network config as flannel writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetwork {
    network: Option<String>,
    subnet_len: Option<u8>,
    subnet_min: Option<Ipv4Addr>,
    subnet_max: Option<Ipv4Addr>,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    backend: Option<RawBackend>,
}

#[derive(Debug, Default, Deserialize)]
struct RawBackend {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "VNI")]
    vni: Option<u32>,
    #[serde(rename = "Port")]
    port: Option<u16>,
    #[serde(rename = "DirectRouting")]
    direct_routing: Option<bool>,
}

/// The backend settings of the network config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// `Backend.Type`, as a weft mode.
    pub mode: Mode,
    /// `Backend.VNI` (vxlan), when set.
    pub vni: Option<u32>,
    /// `Backend.Port` (vxlan, udp), when set.
    pub port: Option<u16>,
    /// `Backend.DirectRouting` (vxlan), when set.
    pub direct_routing: Option<bool>,
}

/// A validated network config with flannel's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// `Network`: the cluster's pod range.
    pub network: Cidr,
    /// `SubnetLen`: the prefix length of each node's subnet.
    pub subnet_len: u8,
    /// `SubnetMin`: the first subnet that may be leased.
    pub subnet_min: Ipv4Addr,
    /// `SubnetMax`: the last subnet that may be leased.
    pub subnet_max: Ipv4Addr,
    /// The backend.
    pub backend: Backend,
}

impl Network {
    /// Parses and checks flannel's JSON. Every problem is named by its
    /// JSON field.
    pub fn parse(json: &[u8]) -> Result<Self, SubnetError> {
        let raw: RawNetwork = serde_json::from_slice(json)
            .map_err(|e| SubnetError::NetworkConfig(format!("not flannel's JSON: {e}")))?;
        let bad = |msg: String| Err(SubnetError::NetworkConfig(msg));
        if raw.enable_ipv6 == Some(true) {
            return bad("EnableIPv6: IPv6 subnet leases are not supported by weft".into());
        }
        if raw.enable_ipv4 == Some(false) {
            return bad("EnableIPv4: false leaves nothing to lease".into());
        }
        let Some(text) = raw.network else {
            return bad("Network: missing".into());
        };
        let network: Cidr = match text.parse() {
            Ok(c) => c,
            Err(e) => return bad(format!("Network: {text:?}: {e}")),
        };
        let std::net::IpAddr::V4(base) = network.addr() else {
            return bad(format!("Network: {network} is not IPv4"));
        };
        if !network.is_network() {
            return bad(format!("Network: {network} has host bits set"));
        }
        let plen = network.prefix_len();
        let subnet_len = match raw.subnet_len {
            Some(0) | None if plen > 28 => {
                return bad(format!(
                    "Network: {network} is too small, the smallest useful network is a /28"
                ));
            }
            Some(0) | None if plen <= 22 => 24,
            Some(0) | None => plen + 2,
            Some(l) if l > 30 => return bad(format!("SubnetLen: {l} must be 30 or less")),
            Some(l) if l < plen + 2 => {
                return bad(format!(
                    "SubnetLen: /{l} in {network} leaves fewer than four subnets"
                ));
            }
            Some(l) => l,
        };
        let size = 1u32 << (32 - subnet_len);
        let first = u32::from(base);
        let last_subnet = (u64::from(first) + (1u64 << (32 - plen)) - u64::from(size)) as u32;
        let mask = !(size - 1);
        let bound =
            |name: &str, v: Option<Ipv4Addr>, default: u32| -> Result<Ipv4Addr, SubnetError> {
                let Some(ip) = v.filter(|ip| !ip.is_unspecified()) else {
                    return Ok(Ipv4Addr::from(default));
                };
                if !network.contains(ip.into()) {
                    return Err(SubnetError::NetworkConfig(format!(
                        "{name}: {ip} is outside Network {network}"
                    )));
                }
                if u32::from(ip) & mask != u32::from(ip) {
                    return Err(SubnetError::NetworkConfig(format!(
                        "{name}: {ip} is not on a /{subnet_len} boundary"
                    )));
                }
                Ok(ip)
            };
        let subnet_min = bound("SubnetMin", raw.subnet_min, first + size)?;
        let subnet_max = bound("SubnetMax", raw.subnet_max, last_subnet)?;
        if u32::from(subnet_min) > u32::from(subnet_max) {
            return bad(format!(
                "SubnetMin: {subnet_min} is above SubnetMax {subnet_max}"
            ));
        }
        let rb = raw.backend.unwrap_or_default();
        let kind = rb.kind.unwrap_or_else(|| "udp".into());
        let mode = match kind.as_str() {
            "vxlan" => Mode::Vxlan,
            "host-gw" => Mode::HostGw,
            "udp" => Mode::Udp,
            "ipip" => Mode::Ipip,
            "wireguard" => Mode::Wireguard,
            other => {
                return bad(format!(
                    "Backend.Type: {other:?} is not one weft forwards (vxlan, host-gw, udp, ipip, wireguard)"
                ));
            }
        };
        Ok(Self {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
            backend: Backend {
                mode,
                vni: rb.vni,
                port: rb.port,
                direct_routing: rb.direct_routing,
            },
        })
    }

    /// What the node's config takes from this network config.
    pub fn lease_defaults(&self) -> LeaseDefaults {
        LeaseDefaults {
            network: self.network,
            mode: self.backend.mode,
            vni: self.backend.vni,
            port: self.backend.port,
            direct_routing: self.backend.direct_routing,
        }
    }

    /// The number of subnets between `SubnetMin` and `SubnetMax`.
    pub fn pool_size(&self) -> u32 {
        let size = 1u64 << (32 - self.subnet_len);
        ((u64::from(u32::from(self.subnet_max)) - u64::from(u32::from(self.subnet_min))) / size + 1)
            as u32
    }

    /// True when `subnet` is one this config could have leased: inside
    /// the pool and of the configured length.
    pub fn is_compatible(&self, subnet: Cidr) -> bool {
        let std::net::IpAddr::V4(a) = subnet.addr() else {
            return false;
        };
        subnet.prefix_len() == self.subnet_len
            && subnet.is_network()
            && (u32::from(self.subnet_min)..=u32::from(self.subnet_max)).contains(&u32::from(a))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (/{} subnets {} to {})",
            self.network, self.subnet_len, self.subnet_min, self.subnet_max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Network, SubnetError> {
        Network::parse(s.as_bytes())
    }

    #[test]
    fn flannel_kube_flannel_yml_config() {
        // net-conf.json from flannel's Documentation/kube-flannel.yml.
        let n = parse(r#"{"Network": "10.244.0.0/16", "EnableNFTables": false, "Backend": {"Type": "vxlan"}}"#)
            .expect("valid");
        assert_eq!(n.network.to_string(), "10.244.0.0/16");
        assert_eq!(n.subnet_len, 24);
        assert_eq!(n.subnet_min, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(n.subnet_max, Ipv4Addr::new(10, 244, 255, 0));
        assert_eq!(n.backend.mode, Mode::Vxlan);
        assert_eq!(n.pool_size(), 255);
    }

    #[test]
    fn explicit_bounds_and_backend_fields() {
        let n = parse(r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.254.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472,"DirectRouting":true}}"#)
            .expect("valid");
        assert_eq!(n.subnet_max, Ipv4Addr::new(10, 244, 254, 0));
        assert_eq!(n.pool_size(), 254);
        assert_eq!(n.backend.vni, Some(1));
        assert_eq!(n.backend.port, Some(8472));
        assert_eq!(n.backend.direct_routing, Some(true));
    }

    #[test]
    fn defaults_follow_flannel() {
        // No Backend: flannel's default is udp.
        let n = parse(r#"{"Network":"10.5.0.0/16"}"#).expect("valid");
        assert_eq!(n.backend.mode, Mode::Udp);
        // Narrower than /22: four subnets of len+2, the first skipped.
        let n = parse(r#"{"Network":"10.5.0.0/26"}"#).expect("valid");
        assert_eq!(n.subnet_len, 28);
        assert_eq!(n.subnet_min, Ipv4Addr::new(10, 5, 0, 16));
        assert_eq!(n.subnet_max, Ipv4Addr::new(10, 5, 0, 48));
        assert_eq!(n.pool_size(), 3);
    }

    #[test]
    fn every_problem_names_its_field() {
        for (json, field) in [
            (r#"{"SubnetLen":24}"#, "Network: missing"),
            (
                r#"{"Network":"10.5.0.0/30"}"#,
                "Network: 10.5.0.0/30 is too small",
            ),
            (r#"{"Network":"10.5.0.1/16"}"#, "host bits"),
            (r#"{"Network":"fd00::/48"}"#, "not IPv4"),
            (
                r#"{"Network":"10.5.0.0/16","SubnetLen":31}"#,
                "SubnetLen: 31",
            ),
            (
                r#"{"Network":"10.5.0.0/16","SubnetLen":17}"#,
                "SubnetLen: /17",
            ),
            (
                r#"{"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"}"#,
                "SubnetMin: 10.6.0.0 is outside",
            ),
            (
                r#"{"Network":"10.5.0.0/16","SubnetMax":"10.5.3.7"}"#,
                "SubnetMax: 10.5.3.7 is not on",
            ),
            (
                r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.3.0"}"#,
                "above SubnetMax",
            ),
            (
                r#"{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}"#,
                "Backend.Type: \"alloc\"",
            ),
            (
                r#"{"Network":"10.5.0.0/16","EnableIPv6":true}"#,
                "EnableIPv6",
            ),
            (
                r#"{"Network":"10.5.0.0/16","SubnetLen":"x"}"#,
                "not flannel's JSON",
            ),
            ("not json", "not flannel's JSON"),
        ] {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn compatible_subnets_are_in_the_pool_with_the_right_length() {
        let n = parse(r#"{"Network":"10.244.0.0/16","SubnetMax":"10.244.10.0"}"#).expect("valid");
        let ok = |s: &str| n.is_compatible(s.parse().expect("cidr"));
        assert!(ok("10.244.1.0/24"));
        assert!(ok("10.244.10.0/24"));
        assert!(!ok("10.244.0.0/24"), "below SubnetMin");
        assert!(!ok("10.244.11.0/24"), "above SubnetMax");
        assert!(!ok("10.244.2.0/25"), "wrong length");
        assert!(!ok("10.245.2.0/24"), "outside Network");
    }
}
