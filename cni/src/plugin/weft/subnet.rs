//! `subnet.env`, the file the node agent (weftd, or flanneld) writes for
//! the weft/flannel CNI plugin: `FLANNEL_NETWORK` (comma-separated),
//! `FLANNEL_SUBNET`, `FLANNEL_IPV6_NETWORK`, `FLANNEL_IPV6_SUBNET`,
//! `FLANNEL_MTU`, `FLANNEL_IPMASQ`. Parsed like flannel's plugin: unknown
//! lines are ignored, prefixes are reduced to their network, and at least
//! one family plus MTU and IPMASQ must be present.

use ipnet::IpNet;

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetEnv {
    /// Cluster networks (IPv4).
    pub networks: Vec<IpNet>,
    /// This node's pod subnet (IPv4).
    pub subnet: Option<IpNet>,
    /// Cluster networks (IPv6).
    pub ip6_networks: Vec<IpNet>,
    /// This node's pod subnet (IPv6).
    pub ip6_subnet: Option<IpNet>,
    /// MTU for pod interfaces.
    pub mtu: Option<u32>,
    /// Whether the node agent masquerades (so the plugin must not).
    pub ipmasq: Option<bool>,
}

fn cidr(key: &str, v: &str) -> Result<IpNet, String> {
    v.trim()
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|e| format!("{key}: invalid CIDR {v:?}: {e}"))
}

fn cidrs(key: &str, v: &str) -> Result<Vec<IpNet>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| cidr(key, s))
        .collect()
}

impl SubnetEnv {
    /// Parses the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, String> {
        let mut e = Self::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "FLANNEL_NETWORK" => e.networks = cidrs(k, v)?,
                "FLANNEL_SUBNET" => e.subnet = Some(cidr(k, v)?),
                "FLANNEL_IPV6_NETWORK" => e.ip6_networks = cidrs(k, v)?,
                "FLANNEL_IPV6_SUBNET" => e.ip6_subnet = Some(cidr(k, v)?),
                "FLANNEL_MTU" => {
                    e.mtu = Some(
                        v.trim()
                            .parse()
                            .map_err(|err| format!("{k}: invalid MTU {v:?}: {err}"))?,
                    );
                }
                "FLANNEL_IPMASQ" => e.ipmasq = Some(v == "true"),
                _ => {}
            }
        }
        let mut missing = Vec::new();
        if e.networks.is_empty() && e.ip6_networks.is_empty() {
            missing.extend(["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]);
        }
        if e.subnet.is_none() && e.ip6_subnet.is_none() {
            missing.extend(["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]);
        }
        if e.mtu.is_none() {
            missing.push("FLANNEL_MTU");
        }
        if e.ipmasq.is_none() {
            missing.push("FLANNEL_IPMASQ");
        }
        if missing.is_empty() {
            Ok(e)
        } else {
            Err(format!("{file} is missing {}", missing.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flanneld_file() {
        let t = "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
                 FLANNEL_IPV6_NETWORK=fd44::/56\nFLANNEL_IPV6_SUBNET=fd44:0:0:1::1/64\n\
                 FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n# comment\nOTHER=1\n";
        let e = SubnetEnv::parse(t, "f").unwrap();
        assert_eq!(e.networks.len(), 2);
        assert_eq!(e.subnet, Some("10.244.1.0/24".parse().unwrap()));
        assert_eq!(e.ip6_subnet, Some("fd44:0:0:1::/64".parse().unwrap()));
        assert_eq!((e.mtu, e.ipmasq), (Some(1450), Some(true)));
    }

    #[test]
    fn missing_and_bad_values() {
        let err = SubnetEnv::parse("FLANNEL_MTU=1450\n", "/run/weft/subnet.env").unwrap_err();
        assert_eq!(
            err,
            "/run/weft/subnet.env is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, \
             FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_IPMASQ"
        );
        assert!(SubnetEnv::parse("FLANNEL_SUBNET=10.1.0.0/33\n", "f").is_err());
        assert!(SubnetEnv::parse("FLANNEL_MTU=big\n", "f").is_err());
        let v6only = "FLANNEL_IPV6_NETWORK=fd44::/56\nFLANNEL_IPV6_SUBNET=fd44::/64\n\
                      FLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n";
        let e = SubnetEnv::parse(v6only, "f").unwrap();
        assert_eq!((e.subnet, e.ipmasq), (None, Some(false)));
    }
}
