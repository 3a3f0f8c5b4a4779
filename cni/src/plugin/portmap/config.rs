//! The portmap plugin's configuration keys (reference names and defaults).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// One `runtimeConfig.portMappings` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: i64,
    /// Port in the pod.
    pub container_port: i64,
    /// `tcp` (default), `udp` or `sctp`.
    #[serde(default)]
    pub protocol: String,
    /// Host address; empty, `0.0.0.0` or `::` mean any.
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
}

/// portmap plugin config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapConf {
    /// Masquerade hairpin and localhost traffic (default true).
    #[serde(default)]
    pub snat: Option<bool>,
    /// Mark bit used to flag traffic for masquerade (default 13).
    #[serde(default)]
    pub mark_masq_bit: Option<i64>,
    /// A chain (in table `inet weft-cni`) that marks for masquerade instead
    /// of our own mark + masquerade.
    #[serde(default)]
    pub external_set_mark_chain: Option<String>,
    /// Masquerade all traffic to host ports, not only hairpin/localhost.
    #[serde(default)]
    pub masq_all: bool,
    /// Extra match conditions (iptables-style tokens) for IPv4 DNAT rules.
    #[serde(default)]
    pub conditions_v4: Option<Vec<String>>,
    /// Extra match conditions for IPv6 DNAT rules.
    #[serde(default)]
    pub conditions_v6: Option<Vec<String>>,
    /// Accepted for compatibility; nftables is always used.
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    runtime_config: Option<RuntimeConfig>,
}

/// A validated mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mapping {
    /// IP protocol number (6, 17, 132).
    pub proto: u8,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// Host address (None = any local address of that family scope).
    pub host_ip: HostIp,
}

/// Which host addresses a mapping applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostIp {
    /// Any local address, both families.
    Any,
    /// Any local IPv4 address (`0.0.0.0`).
    AnyV4,
    /// Any local IPv6 address (`::`).
    AnyV6,
    /// One address.
    Addr(IpAddr),
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Source in (or, negated, not in) a prefix.
    Source(IpNet, bool),
    /// Destination in (or not in) a prefix.
    Dest(IpNet, bool),
    /// Input interface is (or is not) this name.
    InIface(String, bool),
}

/// The validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Mappings, deduplicated.
    pub mappings: Vec<Mapping>,
    /// snat.
    pub snat: bool,
    /// Mark bit value (1 << markMasqBit).
    pub mark: u32,
    /// External mark chain.
    pub external_chain: Option<String>,
    /// masqAll.
    pub masq_all: bool,
    /// IPv4 conditions.
    pub cond_v4: Vec<Condition>,
    /// IPv6 conditions.
    pub cond_v6: Vec<Condition>,
}

fn parse_conditions(tokens: &[String], v6: bool, errs: &mut Vec<String>) -> Vec<Condition> {
    let key = if v6 { "conditionsV6" } else { "conditionsV4" };
    let mut out = Vec::new();
    let mut it = tokens.iter().flat_map(|t| t.split_whitespace()).peekable();
    while let Some(tok) = it.next() {
        let (neg, flag) = if tok == "!" {
            match it.next() {
                Some(f) => (true, f),
                None => {
                    errs.push(format!("{key}: dangling '!'"));
                    break;
                }
            }
        } else {
            (false, tok)
        };
        let Some(val) = it.next() else {
            errs.push(format!("{key}: {flag} needs a value"));
            break;
        };
        let net = || -> Option<IpNet> {
            let n = val
                .parse::<IpNet>()
                .ok()
                .or_else(|| val.parse::<IpAddr>().ok().map(IpNet::from))?;
            (n.addr().is_ipv6() == v6).then_some(n)
        };
        match flag {
            "-s" | "--source" => match net() {
                Some(n) => out.push(Condition::Source(n, neg)),
                None => errs.push(format!("{key}: bad source {val:?}")),
            },
            "-d" | "--destination" => match net() {
                Some(n) => out.push(Condition::Dest(n, neg)),
                None => errs.push(format!("{key}: bad destination {val:?}")),
            },
            "-i" | "--in-interface" if !val.is_empty() && val.len() <= 15 => {
                out.push(Condition::InIface(val.to_string(), neg));
            }
            _ => errs.push(format!(
                "{key}: unsupported condition {flag:?} (supported: -s, -d, -i, with optional !)"
            )),
        }
    }
    out
}

impl PortMapConf {
    /// Parses the plugin keys from the raw config.
    pub fn parse(stdin: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(stdin).map_err(|e| format!("failed to parse config: {e}"))
    }

    /// Validates everything; returns all problems.
    pub fn settings(&self) -> Result<Settings, Vec<String>> {
        let mut errs = Vec::new();
        if self.mark_masq_bit.is_some() && self.external_set_mark_chain.is_some() {
            errs.push("Cannot specify externalSetMarkChain and markMasqBit".into());
        }
        let bit = self.mark_masq_bit.unwrap_or(13);
        if !(0..=31).contains(&bit) {
            errs.push(format!("MasqMarkBit must be between 0 and 31, got {bit}"));
        }
        let mut mappings = Vec::new();
        let empty = Vec::new();
        let pms = self
            .runtime_config
            .as_ref()
            .map_or(&empty, |r| &r.port_mappings);
        for (i, pm) in pms.iter().enumerate() {
            let host_port = u16::try_from(pm.host_port).ok().filter(|p| *p != 0);
            let container_port = u16::try_from(pm.container_port).ok().filter(|p| *p != 0);
            let proto = match pm.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => Some(6),
                "udp" => Some(17),
                "sctp" => Some(132),
                _ => None,
            };
            let host_ip = match pm.host_ip.as_str() {
                "" => Some(HostIp::Any),
                "0.0.0.0" => Some(HostIp::AnyV4),
                "::" => Some(HostIp::AnyV6),
                s => s.parse().ok().map(HostIp::Addr),
            };
            match (host_port, container_port, proto, host_ip) {
                (Some(h), Some(c), Some(p), Some(ip)) => {
                    let m = Mapping {
                        proto: p,
                        host_port: h,
                        container_port: c,
                        host_ip: ip,
                    };
                    if !mappings.contains(&m) {
                        mappings.push(m);
                    }
                }
                (None, ..) => errs.push(format!("Invalid host port number: {}", pm.host_port)),
                (_, None, ..) => errs.push(format!(
                    "Invalid container port number: {}",
                    pm.container_port
                )),
                (_, _, None, _) => errs.push(format!(
                    "portMappings[{i}]: unknown protocol {:?}",
                    pm.protocol
                )),
                (.., None) => errs.push(format!(
                    "portMappings[{i}]: invalid hostIP {:?}",
                    pm.host_ip
                )),
            }
        }
        let cond_v4 = parse_conditions(
            self.conditions_v4.as_deref().unwrap_or_default(),
            false,
            &mut errs,
        );
        let cond_v6 = parse_conditions(
            self.conditions_v6.as_deref().unwrap_or_default(),
            true,
            &mut errs,
        );
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Settings {
            mappings,
            snat: self.snat.unwrap_or(true),
            mark: 1u32 << u32::try_from(bit).unwrap_or(13),
            external_chain: self.external_set_mark_chain.clone(),
            masq_all: self.masq_all,
            cond_v4,
            cond_v6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_validated_and_deduplicated() {
        let c = PortMapConf::parse(
            br#"{"runtimeConfig":{"portMappings":[
                {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":8080,"containerPort":80,"protocol":"TCP"},
                {"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"0.0.0.0"},
                {"hostPort":9,"containerPort":9,"protocol":"sctp","hostIP":"192.0.2.1"}]}}"#,
        )
        .unwrap();
        let s = c.settings().unwrap();
        assert_eq!(s.mappings.len(), 3);
        assert_eq!(s.mappings[1].host_ip, HostIp::AnyV4);
        assert_eq!(
            s.mappings[2].host_ip,
            HostIp::Addr("192.0.2.1".parse().unwrap())
        );
        assert!(s.snat);
        assert_eq!(s.mark, 1 << 13);
    }

    #[test]
    fn every_problem_is_reported() {
        let c = PortMapConf::parse(
            br#"{"markMasqBit":40,"externalSetMarkChain":"x","conditionsV4":["-p","tcp"],
                 "runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80},
                 {"hostPort":1,"containerPort":70000},{"hostPort":1,"containerPort":1,"protocol":"icmp"}]}}"#,
        )
        .unwrap();
        let errs = c.settings().unwrap_err();
        assert_eq!(errs.len(), 6, "{errs:?}");
    }

    #[test]
    fn conditions_parse() {
        let c = PortMapConf::parse(br#"{"conditionsV4":["!","-s","10.0.0.0/8","-i eth0"],"conditionsV6":["-d","fd00::/8"]}"#).unwrap();
        let s = c.settings().unwrap();
        assert_eq!(
            s.cond_v4,
            vec![
                Condition::Source("10.0.0.0/8".parse().unwrap(), true),
                Condition::InIface("eth0".into(), false)
            ]
        );
        assert_eq!(
            s.cond_v6,
            vec![Condition::Dest("fd00::/8".parse().unwrap(), false)]
        );
    }
}
