//! The ADD result. [`CniResult`] is the internal shape (spec 1.1.0); it is
//! converted on the way out to the version the config asked for, and on the
//! way in (a `prevResult`, a delegated plugin's output) from any version,
//! following libcni's conversion rules:
//! 0.1.0/0.2.0 use `ip4`/`ip6` (first address of each family, routes split by
//! family, at least one address required); 0.3.x/0.4.0 keep `ips[].version`;
//! 1.0.0 drops it; 1.1.0 adds route and interface fields.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::version::{Version, effective_version};
use crate::error::CniError;

/// An interface created or used by the plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Namespace path for container interfaces; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// Socket path (1.1.0).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// PCI id (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// One assigned address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length (host bits kept: `10.1.0.5/24`).
    pub address: IpNet,
    /// Gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; none means the default gateway of the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Priority / metric (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    /// A route with only `dst` and `gw`.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The result of ADD in the latest shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS.
    #[serde(default)]
    pub dns: Dns,
}

/// The legacy (0.1.0/0.2.0) per-family block.
#[derive(Debug, Deserialize)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<LegacyRoute>,
}

#[derive(Debug, Deserialize)]
struct LegacyRoute {
    dst: IpNet,
    #[serde(default)]
    gw: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
struct LegacyResult {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

fn to_value<T: Serialize>(t: &T) -> Value {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_value(t).unwrap_or(Value::Null)
}

impl CniResult {
    /// The result in the JSON shape of spec `version` (with `cniVersion` set).
    /// Fails (code 999, like libcni) when a legacy result would hold no address.
    pub fn to_json(&self, version: &str) -> Result<Value, CniError> {
        let version = effective_version(version);
        let v = Version::parse(version)?;
        if v.is_legacy() {
            return self.to_legacy(version);
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        let old = v < Version(1, 1, 0);
        if !self.interfaces.is_empty() {
            let ifs: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    if old {
                        i.mtu = None;
                        i.socket_path.clear();
                        i.pci_id.clear();
                    }
                    to_value(&i)
                })
                .collect();
            out.insert("interfaces".into(), Value::Array(ifs));
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut m = Map::new();
                    if v.has_ip_version() {
                        let fam = if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        };
                        m.insert("version".into(), json!(fam));
                    }
                    if let Value::Object(rest) = to_value(ip) {
                        m.extend(rest);
                    }
                    Value::Object(m)
                })
                .collect();
            out.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            let routes: Vec<Value> = self
                .routes
                .iter()
                .map(|r| {
                    if old {
                        to_value(&Route::new(r.dst, r.gw))
                    } else {
                        to_value(r)
                    }
                })
                .collect();
            out.insert("routes".into(), Value::Array(routes));
        }
        out.insert("dns".into(), to_value(&self.dns));
        Ok(Value::Object(out))
    }

    fn to_legacy(&self, version: &str) -> Result<Value, CniError> {
        let first = |v4: bool| self.ips.iter().find(|i| i.address.addr().is_ipv4() == v4);
        let block = |ip: &IpConfig| {
            let v4 = ip.address.addr().is_ipv4();
            let mut m = Map::new();
            m.insert("ip".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                m.insert("gateway".into(), json!(gw.to_string()));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv4() == v4)
                .map(|r| to_value(&Route::new(r.dst, r.gw)))
                .collect();
            if !routes.is_empty() {
                m.insert("routes".into(), Value::Array(routes));
            }
            Value::Object(m)
        };
        let (ip4, ip6) = (first(true), first(false));
        if ip4.is_none() && ip6.is_none() {
            return Err(CniError::internal(
                "cannot convert: no valid IP addresses",
                "",
            ));
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if let Some(ip) = ip4 {
            out.insert("ip4".into(), block(ip));
        }
        if let Some(ip) = ip6 {
            out.insert("ip6".into(), block(ip));
        }
        out.insert("dns".into(), to_value(&self.dns));
        Ok(Value::Object(out))
    }

    /// Parses a result written in spec `version`'s shape (a `prevResult`, a
    /// delegated plugin's stdout) into the internal shape.
    pub fn from_json(value: &Value, version: &str) -> Result<Self, CniError> {
        let v = Version::parse(effective_version(version))?;
        let bad = |e: serde_json::Error| {
            CniError::decode(
                format!("failed to parse result (version {version}): {e}"),
                "",
            )
        };
        if v.is_legacy() {
            let l: LegacyResult = serde_json::from_value(value.clone()).map_err(bad)?;
            let mut r = Self {
                dns: l.dns,
                ..Self::default()
            };
            for ip in [l.ip4, l.ip6].into_iter().flatten() {
                r.ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                r.routes
                    .extend(ip.routes.into_iter().map(|x| Route::new(x.dst, x.gw)));
            }
            return Ok(r);
        }
        // `ips[].version` (0.3.x/0.4.0) is ignored: the family follows from the address.
        let mut value = value.clone();
        if let Some(ips) = value.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                if let Some(m) = ip.as_object_mut() {
                    m.remove("version");
                }
            }
        }
        if let Some(m) = value.as_object_mut() {
            m.remove("cniVersion");
        }
        serde_json::from_value(value).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "0a:00:00:00:00:01".into(),
                mtu: Some(1500),
                sandbox: "/var/run/netns/x".into(),
                ..Interface::default()
            }],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![
                Route {
                    mtu: Some(1400),
                    ..Route::new("0.0.0.0/0".parse().unwrap(), None)
                },
                Route::new("::/0".parse().unwrap(), Some("fd00::1".parse().unwrap())),
            ],
            dns: Dns {
                nameservers: vec!["10.0.0.10".into()],
                ..Dns::default()
            },
        }
    }

    #[test]
    fn shapes_per_version() {
        let r = sample();
        let v110 = r.to_json("1.1.0").unwrap();
        assert_eq!(v110["routes"][0]["mtu"], 1400);
        assert_eq!(v110["interfaces"][0]["mtu"], 1500);
        let v100 = r.to_json("1.0.0").unwrap();
        assert_eq!(v100["cniVersion"], "1.0.0");
        assert!(v100["ips"][0].get("version").is_none());
        assert!(v100["routes"][0].get("mtu").is_none());
        assert!(v100["interfaces"][0].get("mtu").is_none());
        let v040 = r.to_json("0.4.0").unwrap();
        assert_eq!(v040["ips"][0]["version"], "4");
        assert_eq!(v040["ips"][1]["version"], "6");
        assert_eq!(v040["ips"][0]["interface"], 0);
        let v020 = r.to_json("0.2.0").unwrap();
        assert_eq!(v020["ip4"]["ip"], "10.1.0.5/24");
        assert_eq!(v020["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(v020["ip6"]["routes"][0]["gw"], "fd00::1");
        assert!(v020.get("ips").is_none());
        let v010 = r.to_json("").unwrap();
        assert_eq!(v010["cniVersion"], "0.1.0");
        assert_eq!(v010["dns"]["nameservers"][0], "10.0.0.10");
    }

    #[test]
    fn empty_dns_is_an_empty_object() {
        let r = CniResult::default();
        assert_eq!(
            r.to_json("1.0.0").unwrap(),
            json!({"cniVersion":"1.0.0","dns":{}})
        );
        assert_eq!(r.to_json("0.2.0").unwrap_err().code(), 999);
    }

    #[test]
    fn round_trips() {
        let r = sample();
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.1.0"] {
            let back = CniResult::from_json(&r.to_json(v).unwrap(), v).unwrap();
            if v == "1.1.0" {
                assert_eq!(back, r);
            } else {
                assert_eq!(back.ips, r.ips);
                assert_eq!(back.routes.len(), 2);
            }
        }
        let legacy = CniResult::from_json(&r.to_json("0.2.0").unwrap(), "0.2.0").unwrap();
        assert_eq!(legacy.ips.len(), 2);
        assert_eq!(legacy.ips[0].interface, None);
        assert_eq!(legacy.routes.len(), 2);
    }

    #[test]
    fn bad_input_is_a_decode_error() {
        let e = CniResult::from_json(&json!({"ips":[{"address":"nope"}]}), "1.0.0").unwrap_err();
        assert_eq!(e.code(), 6);
        let e = CniResult::from_json(&json!({"ip4": 3}), "0.2.0").unwrap_err();
        assert_eq!(e.code(), 6);
    }
}
