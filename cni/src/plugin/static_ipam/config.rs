//! The `static` IPAM plugin's configuration, pure: the `ipam` section's
//! `addresses`, `routes` and `dns`, overridden by `CNI_ARGS` `IP=`/`GATEWAY=`,
//! `args.cni.ips` and the `ips` capability (`runtimeConfig.ips`), in the
//! reference plugin's order:
//!
//! 1. `ipam.addresses` (each `address` in CIDR notation, optional `gateway`);
//! 2. `CNI_ARGS` `IP=` (comma-separated CIDRs) are appended, then every
//!    address whose subnet contains a `GATEWAY=` address gets it as gateway;
//! 3. `args.cni.ips` replaces the list (no gateways);
//! 4. `runtimeConfig.ips` replaces the list (no gateways).
//!
//! Spec 0.1.0/0.2.0 results hold one address per family, so more is an error there.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::error::CniError;
use crate::skel::check_cni_args;
use crate::spec::{Dns, Route, Version, effective_version};

/// One configured address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddr {
    /// Address with prefix length (host bits kept).
    pub address: IpNet,
    /// Gateway, if any.
    pub gateway: Option<IpAddr>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StaticConf {
    /// Addresses, in result order.
    pub addresses: Vec<StaticAddr>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

#[derive(Debug, Deserialize)]
struct RawAddress {
    #[serde(default)]
    address: Value,
    #[serde(default)]
    gateway: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RawIpam {
    #[serde(default)]
    addresses: Option<Vec<RawAddress>>,
    #[serde(default)]
    routes: Option<Vec<Value>>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNet {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    ipam: Option<Value>,
    #[serde(default)]
    runtime_config: Option<Value>,
    #[serde(default)]
    args: Option<Value>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg, "")
}

/// Parses `s` as `addr/prefix` (host bits kept); `what` names the field
/// in the error.
fn cidr(s: &str, what: &str) -> Result<IpNet, CniError> {
    s.parse::<IpNet>().map_err(|_| {
        bad(format!(
            "the '{what}' field is expected to be in CIDR notation, got: '{s}'"
        ))
    })
}

fn ip_list(v: &Value, what: &str) -> Result<Vec<StaticAddr>, CniError> {
    let Some(items) = v.as_array() else {
        return Err(bad(format!("'{what}' must be a list of CIDR strings")));
    };
    items
        .iter()
        .map(|it| {
            let s = it.as_str().unwrap_or_default();
            s.parse::<IpNet>()
                .map(|address| StaticAddr {
                    address,
                    gateway: None,
                })
                .map_err(|_| {
                    bad(format!(
                        "an entry in the '{what}' field is NOT in CIDR notation, got: '{s}'"
                    ))
                })
        })
        .collect()
}

fn route(v: &Value) -> Result<Route, CniError> {
    let dst = v.get("dst").and_then(Value::as_str).unwrap_or_default();
    let dst: IpNet = dst
        .parse()
        .map_err(|_| bad(format!("routes: invalid CIDR address: {dst}")))?;
    let gw = match v
        .get("gw")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(g) => Some(
            g.parse::<IpAddr>()
                .map_err(|_| bad(format!("routes: invalid IP address: {g}")))?,
        ),
    };
    let num = |k: &str| -> Result<Option<u32>, CniError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("routes: {k} must be a non-negative integer"))),
        }
    };
    Ok(Route {
        mtu: num("mtu")?,
        advmss: num("advmss")?,
        priority: num("priority")?,
        table: num("table")?,
        scope: num("scope")?,
        ..Route::new(dst, gw)
    })
}

impl StaticConf {
    /// Parses and validates the config bytes with the raw `CNI_ARGS`.
    /// Every failure is code 7 (config) or 4 (`CNI_ARGS`).
    pub fn load(stdin: &[u8], cni_args: &str) -> Result<Self, CniError> {
        let net: RawNet = serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("failed to load netconf: {e}"), ""))?;
        let Some(ipam @ Value::Object(_)) = net.ipam else {
            return Err(bad("IPAM config missing 'ipam' key"));
        };
        let ipam: RawIpam = serde_json::from_value(ipam).map_err(|e| bad(format!("ipam: {e}")))?;
        let mut conf = Self {
            dns: ipam.dns.unwrap_or_default(),
            ..Self::default()
        };
        for (i, a) in ipam.addresses.unwrap_or_default().iter().enumerate() {
            let s = a.address.as_str().unwrap_or_default();
            let address = cidr(s, "address")?;
            let gateway = match a.gateway.as_ref().filter(|g| !g.is_null()) {
                None => None,
                Some(g) => {
                    let gs = g.as_str().unwrap_or_default();
                    Some(gs.parse::<IpAddr>().map_err(|_| {
                        bad(format!("addresses[{i}].gateway: invalid IP address: {gs}"))
                    })?)
                }
            };
            conf.addresses.push(StaticAddr { address, gateway });
        }
        for r in ipam.routes.unwrap_or_default() {
            conf.routes.push(route(&r)?);
        }
        conf.apply_cni_args(cni_args)?;
        if let Some(ips) = net
            .args
            .as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips"))
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            conf.addresses = ip_list(ips, "ips")?;
        }
        if let Some(ips) = net
            .runtime_config
            .as_ref()
            .and_then(|r| r.get("ips"))
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            conf.addresses = ip_list(ips, "ips")?;
        }
        let version = Version::parse(effective_version(&net.cni_version))?;
        let count = |v4: bool| {
            conf.addresses
                .iter()
                .filter(|a| a.address.addr().is_ipv4() == v4)
                .count()
        };
        if version.is_legacy() && (count(true) > 1 || count(false) > 1) {
            return Err(bad(format!(
                "CNI version {} does not support more than 1 address per family",
                effective_version(&net.cni_version)
            )));
        }
        Ok(conf)
    }

    fn apply_cni_args(&mut self, raw: &str) -> Result<(), CniError> {
        check_cni_args(raw, &["IP", "GATEWAY"])?;
        let get = |key: &str| {
            raw.split(';')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .filter(|v| !v.is_empty())
        };
        if let Some(ips) = get("IP") {
            for item in ips.split(',') {
                let address = item.trim().parse::<IpNet>().map_err(|_| {
                    CniError::env(
                        format!(
                            "the 'ip' field is expected to be in CIDR notation, got: '{}'",
                            item.trim()
                        ),
                        "",
                    )
                })?;
                self.addresses.push(StaticAddr {
                    address,
                    gateway: None,
                });
            }
        }
        if let Some(gws) = get("GATEWAY") {
            for item in gws.split(',') {
                let gw: IpAddr = item
                    .trim()
                    .parse()
                    .map_err(|_| CniError::env(format!("invalid gateway address: {item}"), ""))?;
                for a in &mut self.addresses {
                    if a.address.trunc().contains(&gw) {
                        a.gateway = Some(gw);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(conf: &str, args: &str) -> Result<StaticConf, CniError> {
        StaticConf::load(conf.as_bytes(), args)
    }

    const BASE: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"static","ipam":{"type":"static",
        "addresses":[{"address":"10.10.0.1/24","gateway":"10.10.0.254"},{"address":"3ffe:ffff:0:01ff::1/64"}],
        "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.10.5.1","mtu":1400}],
        "dns":{"nameservers":["8.8.8.8"],"domain":"example.com"}}}"#;

    #[test]
    fn addresses_routes_dns() {
        let c = load(BASE, "").unwrap();
        assert_eq!(c.addresses.len(), 2);
        assert_eq!(c.addresses[0].address.to_string(), "10.10.0.1/24");
        assert_eq!(c.addresses[0].gateway, Some("10.10.0.254".parse().unwrap()));
        assert_eq!(c.addresses[1].address.to_string(), "3ffe:ffff:0:1ff::1/64");
        assert_eq!(c.addresses[1].gateway, None);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, Some("10.10.5.1".parse().unwrap()));
        assert_eq!(c.routes[1].mtu, Some(1400));
        assert_eq!(c.dns.nameservers, vec!["8.8.8.8".to_string()]);
        assert_eq!(c.dns.domain, "example.com");
    }

    #[test]
    fn empty_ipam_is_no_address() {
        let c = load(r#"{"cniVersion":"1.0.0","ipam":{"type":"static"}}"#, "").unwrap();
        assert!(c.addresses.is_empty());
    }

    #[test]
    fn cni_args_append_then_gateway() {
        let c = load(
            BASE,
            "IP=10.2.0.5/16, fd00::3/64;GATEWAY=10.2.0.1,10.10.0.9",
        )
        .unwrap();
        let got: Vec<String> = c
            .addresses
            .iter()
            .map(|a| format!("{} {:?}", a.address, a.gateway))
            .collect();
        assert_eq!(
            got,
            [
                "10.10.0.1/24 Some(10.10.0.9)",
                "3ffe:ffff:0:1ff::1/64 None",
                "10.2.0.5/16 Some(10.2.0.1)",
                "fd00::3/64 None"
            ]
        );
    }

    #[test]
    fn args_and_runtime_config_replace() {
        let with = |extra: &str| {
            format!(
                r#"{{"cniVersion":"1.0.0","ipam":{{"type":"static","addresses":[{{"address":"10.10.0.1/24"}}]}}{extra}}}"#
            )
        };
        let c = load(
            &with(r#","args":{"cni":{"ips":["10.4.0.5/16"]}}"#),
            "IP=10.2.0.5/16",
        )
        .unwrap();
        assert_eq!(c.addresses.len(), 1);
        assert_eq!(c.addresses[0].address.to_string(), "10.4.0.5/16");
        let c = load(
            &with(r#","args":{"cni":{"ips":["10.4.0.5/16"]}},"runtimeConfig":{"ips":["10.3.0.5/16","fd00::5/64"]}"#),
            "",
        )
        .unwrap();
        let got: Vec<String> = c.addresses.iter().map(|a| a.address.to_string()).collect();
        assert_eq!(got, ["10.3.0.5/16", "fd00::5/64"]);
        // An empty list leaves the addresses alone.
        let c = load(&with(r#","runtimeConfig":{"ips":[]}"#), "").unwrap();
        assert_eq!(c.addresses[0].address.to_string(), "10.10.0.1/24");
    }

    #[test]
    fn errors_and_codes() {
        let code = |conf: &str, args: &str| load(conf, args).unwrap_err().code();
        let addr = |a: &str| {
            format!(r#"{{"cniVersion":"1.0.0","ipam":{{"type":"static","addresses":[{a}]}}}}"#)
        };
        assert_eq!(code(r#"{"cniVersion":"1.0.0"}"#, ""), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","ipam":3}"#, ""), 7);
        assert_eq!(code(&addr(r#"{"address":"10.10.0.1"}"#), ""), 7);
        assert_eq!(code(&addr(r#"{"address":"10.10.0.300/24"}"#), ""), 7);
        assert_eq!(code(&addr(r#"{"address":"10.10.0.1/33"}"#), ""), 7);
        assert_eq!(
            code(&addr(r#"{"address":"10.1.0.1/24","gateway":"x"}"#), ""),
            7
        );
        assert_eq!(code(&addr(r#"{"address":5}"#), ""), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","ipam":{"addresses":{}}}"#, ""),
            7
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","ipam":{"routes":[{"dst":"bad"}]}}"#,
                ""
            ),
            7
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","ipam":{"routes":[{"dst":"0.0.0.0/0","gw":"nope"}]}}"#,
                ""
            ),
            7
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","ipam":{},"runtimeConfig":{"ips":["10.3.0.5"]}}"#,
                ""
            ),
            7
        );
        assert_eq!(
            code(&addr(r#"{"address":"10.1.0.1/24"}"#), "IP=10.2.0.5"),
            4
        );
        assert_eq!(
            code(&addr(r#"{"address":"10.1.0.1/24"}"#), "GATEWAY=foo"),
            4
        );
        assert_eq!(code(&addr(r#"{"address":"10.1.0.1/24"}"#), "FOO=1"), 4);
        assert!(
            load(
                &addr(r#"{"address":"10.1.0.1/24"}"#),
                "IgnoreUnknown=1;FOO=1"
            )
            .is_ok()
        );
        assert_eq!(code("not json", ""), 6);
    }

    #[test]
    fn legacy_versions_take_one_address_per_family() {
        let two = r#"{"cniVersion":"0.2.0","ipam":{"addresses":[{"address":"10.10.0.1/24"},{"address":"10.11.0.1/24"}]}}"#;
        let e = load(two, "").unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(
            e.to_string()
                .contains("does not support more than 1 address per family")
        );
        let mixed = r#"{"cniVersion":"0.2.0","ipam":{"addresses":[{"address":"10.10.0.1/24"},{"address":"fd00::1/64"}]}}"#;
        assert!(load(mixed, "").is_ok());
        assert!(load(&two.replace("0.2.0", "0.3.0"), "").is_ok());
    }
}
