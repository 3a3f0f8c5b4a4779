//! The `[subnet]` table, and the config of a node whose pod range is
//! leased from etcd: the file may leave out `pod_cidr`, `cluster_cidr` and
//! `dataplane.mode`; flannel's network config and the lease fill them in.
//! A value the file does set must agree with the network config.

use std::path::PathBuf;

use serde::Deserialize;
use toml::{Table, Value};

use super::{Config, ConfigError, ConfigErrors, MetricsConfig};
use crate::cidr::Cidr;
use crate::mode::Mode;

/// What the etcd network config gives a node whose pod range is leased
/// (see `crate::subnet::Network::lease_defaults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseDefaults {
    /// `Network`: becomes `cluster_cidr`.
    pub network: Cidr,
    /// `Backend.Type`: becomes `dataplane.mode`.
    pub mode: Mode,
    /// `Backend.VNI`.
    pub vni: Option<u32>,
    /// `Backend.Port` (vxlan or udp).
    pub port: Option<u16>,
    /// `Backend.DirectRouting`.
    pub direct_routing: Option<bool>,
}

/// `[subnet]`: where the pod range leases live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    /// etcd client URLs, one or more members (`http://host:2379`).
    pub etcd_endpoints: Vec<String>,
    /// The key prefix; flannel's default.
    #[serde(default = "default_prefix")]
    pub etcd_prefix: String,
    /// CA bundle for `https` endpoints.
    #[serde(default)]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate for `https` endpoints.
    #[serde(default)]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key for `https` endpoints.
    #[serde(default)]
    pub etcd_key_file: Option<PathBuf>,
}

fn default_prefix() -> String {
    "/coreos.com/network".to_owned()
}

impl SubnetConfig {
    /// Problems in `[subnet]`, with field paths.
    pub(super) fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |path: String, msg: String| errs.push(ConfigError { path, msg });
        if self.etcd_endpoints.is_empty() {
            err(
                "subnet.etcd_endpoints".into(),
                "needs at least one URL".into(),
            );
        }
        let tls = self
            .etcd_endpoints
            .first()
            .is_some_and(|e| e.starts_with("https://"));
        let scheme = if tls { "https://" } else { "http://" };
        for (i, e) in self.etcd_endpoints.iter().enumerate() {
            let path = format!("subnet.etcd_endpoints[{i}]");
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                err(path, format!("{e:?} is not an http:// or https:// URL"));
            } else if !e.starts_with(scheme) {
                err(
                    path,
                    format!("{e}: every member must use {scheme} like the first one"),
                );
            } else if e.len() <= scheme.len() {
                err(path, format!("{e:?} has no host"));
            }
        }
        if !self.etcd_prefix.starts_with('/') || self.etcd_prefix.trim_matches('/').is_empty() {
            err(
                "subnet.etcd_prefix".into(),
                format!(
                    "{:?} must be an absolute key such as /coreos.com/network",
                    self.etcd_prefix
                ),
            );
        }
        let files = [
            ("etcd_ca_file", &self.etcd_ca_file),
            ("etcd_cert_file", &self.etcd_cert_file),
            ("etcd_key_file", &self.etcd_key_file),
        ];
        if tls {
            if self.etcd_ca_file.is_none() {
                err(
                    "subnet.etcd_ca_file".into(),
                    "https:// endpoints need the CA bundle that signs the members' certificates"
                        .into(),
                );
            }
            match (&self.etcd_cert_file, &self.etcd_key_file) {
                (Some(_), None) => err(
                    "subnet.etcd_key_file".into(),
                    "needed with subnet.etcd_cert_file".into(),
                ),
                (None, Some(_)) => err(
                    "subnet.etcd_cert_file".into(),
                    "needed with subnet.etcd_key_file".into(),
                ),
                _ => {}
            }
            for (f, v) in files {
                if let Some(p) = v
                    && let Err(e) = std::fs::metadata(p)
                {
                    err(format!("subnet.{f}"), format!("{}: {e}", p.display()));
                }
            }
        } else {
            for (f, v) in files {
                if v.is_some() {
                    err(
                        format!("subnet.{f}"),
                        "only used with https:// endpoints".into(),
                    );
                }
            }
        }
        errs
    }
}

fn one(path: &str, msg: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        path: path.to_owned(),
        msg,
    }])
}

fn syntax(e: impl std::fmt::Display) -> ConfigErrors {
    one("", e.to_string().trim_end().to_owned())
}

impl Config {
    /// The `[subnet]` table of a document, when it has one.
    pub fn subnet_of(text: &str) -> Result<Option<SubnetConfig>, ConfigErrors> {
        let table: Table = toml::from_str(text).map_err(syntax)?;
        let Some(v) = table.get("subnet") else {
            return Ok(None);
        };
        let sc = SubnetConfig::deserialize(v.clone())
            .map_err(|e| one("subnet", e.to_string().trim_end().to_owned()))?;
        let errs = sc.validate();
        if errs.is_empty() {
            Ok(Some(sc))
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// The `[metrics]` table of a document alone, so the endpoint can
    /// serve (`/readyz` not ready) while the pod range is being leased;
    /// the whole document is checked once it is.
    pub fn metrics_of(text: &str) -> Result<MetricsConfig, ConfigErrors> {
        let table: Table = toml::from_str(text).map_err(syntax)?;
        let Some(v) = table.get("metrics") else {
            return Ok(MetricsConfig::default());
        };
        let mc = MetricsConfig::deserialize(v.clone())
            .map_err(|e| one("metrics", e.to_string().trim_end().to_owned()))?;
        let errs = mc.validate();
        if errs.is_empty() {
            Ok(mc)
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// Parses and validates the document of a node whose pod range is
    /// `pod_cidr`, leased in `net`: `cluster_cidr` and `dataplane.mode`
    /// come from `net` unless the file sets them (then they must agree),
    /// and so do `vxlan_vni`, the backend port and `direct_routing`.
    pub fn parse_leased(
        text: &str,
        net: &LeaseDefaults,
        pod_cidr: Cidr,
    ) -> Result<Self, ConfigErrors> {
        let mut table: Table = toml::from_str(text).map_err(syntax)?;
        let mut errs = Vec::new();
        if table.contains_key("pod_cidr") {
            errs.push(ConfigError {
                path: "pod_cidr".into(),
                msg: "comes from the etcd lease when [subnet] is set; remove it".into(),
            });
        }
        table.insert("pod_cidr".into(), Value::String(pod_cidr.to_string()));
        match table.get("cluster_cidr").and_then(Value::as_str) {
            Some(c) if c.parse::<Cidr>().ok() != Some(net.network) => errs.push(ConfigError {
                path: "cluster_cidr".into(),
                msg: format!(
                    "{c} disagrees with the etcd network config's Network {}",
                    net.network
                ),
            }),
            Some(_) => {}
            None => {
                table.insert(
                    "cluster_cidr".into(),
                    Value::String(net.network.to_string()),
                );
            }
        }
        let dp = table
            .entry("dataplane")
            .or_insert_with(|| Value::Table(Table::new()));
        let Some(dp) = dp.as_table_mut() else {
            return Err(one("dataplane", "must be a table".into()));
        };
        let backend = net;
        let mode = match dp.get("mode").and_then(Value::as_str) {
            Some(m) => {
                if m != backend.mode.to_string() {
                    errs.push(ConfigError {
                        path: "dataplane.mode".into(),
                        msg: format!(
                            "{m} disagrees with the etcd network config's Backend.Type {}",
                            backend.mode
                        ),
                    });
                }
                m.to_owned()
            }
            None => {
                dp.insert("mode".into(), Value::String(backend.mode.to_string()));
                backend.mode.to_string()
            }
        };
        let mut fill = |key: &str, v: Option<i64>| {
            if let Some(v) = v {
                dp.entry(key).or_insert(Value::Integer(v));
            }
        };
        fill("vxlan_vni", backend.vni.map(i64::from));
        let port_key = if mode == Mode::Udp.to_string() {
            "udp_port"
        } else if mode == Mode::Wireguard.to_string() {
            "wireguard_port"
        } else {
            "vxlan_port"
        };
        fill(port_key, backend.port.map(i64::from));
        if let Some(d) = backend.direct_routing {
            dp.entry("direct_routing").or_insert(Value::Boolean(d));
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        let cfg = Config::deserialize(Value::Table(table)).map_err(syntax)?;
        let errs = cfg.validate();
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errs))
        }
    }
}

impl Config {
    /// Checks the document of a node whose range is leased, without etcd:
    /// with a stand-in network config that agrees with what the file sets
    /// (`cluster_cidr`, `dataplane.mode`), so every problem reported is the
    /// file's own.
    pub fn check_leased(text: &str) -> Result<(), ConfigErrors> {
        let table: Table = toml::from_str(text).map_err(syntax)?;
        let network = match table.get("cluster_cidr").and_then(Value::as_str) {
            Some(c) => c
                .parse::<Cidr>()
                .map_err(|e| one("cluster_cidr", format!("{c:?}: {e}")))?,
            None => Cidr::new(std::net::Ipv4Addr::new(10, 0, 0, 0).into(), 8)
                .ok_or_else(|| one("cluster_cidr", "no default".into()))?,
        };
        let mode = match table.get("dataplane").and_then(|d| d.get("mode")) {
            Some(m) => Mode::deserialize(m.clone())
                .map_err(|e| one("dataplane.mode", e.to_string().trim_end().to_owned()))?,
            None => Mode::Vxlan,
        };
        // flannel's default subnet length for this network.
        let len = network.prefix_len();
        let sub = if len <= 22 { 24 } else { (len + 2).min(32) };
        let first = Cidr::new(network.network().addr(), sub)
            .ok_or_else(|| one("cluster_cidr", format!("{network}: no subnet to lease")))?;
        let defaults = LeaseDefaults {
            network,
            mode,
            vni: None,
            port: None,
            direct_routing: None,
        };
        Self::parse_leased(text, &defaults, first).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASED: &str = r#"
node_name = "n1"
underlay_ip = "172.31.0.1"
[subnet]
etcd_endpoints = ["http://172.31.0.254:2379"]
"#;

    fn net(network: &str, mode: Mode, vni: Option<u32>, port: Option<u16>) -> LeaseDefaults {
        LeaseDefaults {
            network: network.parse().expect("cidr"),
            mode,
            vni,
            port,
            direct_routing: None,
        }
    }

    fn c(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn the_lease_and_network_fill_in_what_the_file_leaves_out() {
        let sc = Config::subnet_of(LEASED).expect("valid").expect("present");
        assert_eq!(sc.etcd_prefix, "/coreos.com/network");
        let n = net("10.244.0.0/16", Mode::Vxlan, Some(4096), Some(4789));
        let cfg = Config::parse_leased(LEASED, &n, c("10.244.7.0/24")).expect("valid");
        assert_eq!(cfg.pod_cidr, c("10.244.7.0/24"));
        assert_eq!(cfg.cluster_cidr, c("10.244.0.0/16"));
        assert_eq!(cfg.dataplane.mode, Mode::Vxlan);
        assert_eq!(cfg.dataplane.vxlan_vni, 4096);
        assert_eq!(cfg.dataplane.vxlan_port, 4789);
        assert_eq!(cfg.subnet, Some(sc));
    }

    #[test]
    fn file_values_win_over_backend_fields_but_must_agree_on_mode_and_network() {
        let n = net("10.244.0.0/16", Mode::HostGw, None, None);
        let text = format!("{LEASED}\n[dataplane]\nmode = \"vxlan\"\nvxlan_vni = 7\n");
        let e = Config::parse_leased(&text, &n, c("10.244.7.0/24")).expect_err("mode");
        assert!(e.mentions("dataplane.mode"), "{e}");
        assert!(
            e.to_string().contains("vxlan") && e.to_string().contains("host-gw"),
            "{e}"
        );
        let text = format!("cluster_cidr = \"10.9.0.0/16\"\n{LEASED}");
        let e = Config::parse_leased(&text, &n, c("10.244.7.0/24")).expect_err("network");
        assert!(
            e.to_string().contains("10.9.0.0/16") && e.to_string().contains("10.244.0.0/16"),
            "{e}"
        );
        let n = net("10.244.0.0/16", Mode::Vxlan, Some(4096), None);
        let text = format!("{LEASED}\n[dataplane]\nvxlan_vni = 7\n");
        let cfg = Config::parse_leased(&text, &n, c("10.244.7.0/24")).expect("valid");
        assert_eq!(cfg.dataplane.vxlan_vni, 7);
    }

    #[test]
    fn subnet_table_problems_name_their_field() {
        for (table, path) in [
            ("etcd_endpoints = []", "subnet.etcd_endpoints"),
            (
                "etcd_endpoints = [\"172.31.0.254:2379\"]",
                "subnet.etcd_endpoints[0]",
            ),
            (
                "etcd_endpoints = [\"https://e:2379\"]",
                "subnet.etcd_ca_file",
            ),
            (
                "etcd_endpoints = [\"https://e:2379\", \"http://f:2379\"]\netcd_ca_file = \"/\"",
                "subnet.etcd_endpoints[1]",
            ),
            (
                "etcd_endpoints = [\"https://e:2379\"]\netcd_ca_file = \"/nonexistent/ca.pem\"",
                "subnet.etcd_ca_file",
            ),
            (
                "etcd_endpoints = [\"https://e:2379\"]\netcd_ca_file = \"/\"\netcd_cert_file = \"/\"",
                "subnet.etcd_key_file",
            ),
            (
                "etcd_endpoints = [\"http://e:2379\"]\netcd_prefix = \"x\"",
                "subnet.etcd_prefix",
            ),
            (
                "etcd_endpoints = [\"http://e:2379\"]\netcd_ca_file = \"/ca\"",
                "subnet.etcd_ca_file",
            ),
        ] {
            let text = format!("node_name = \"n\"\n[subnet]\n{table}\n");
            let e = Config::subnet_of(&text).expect_err(table);
            assert!(e.mentions(path), "{table}: {e}");
        }
        let e = Config::subnet_of("[subnet]\netcd_endpoint = []\n").expect_err("unknown");
        assert!(e.to_string().contains("etcd_endpoint"), "{e}");
        assert_eq!(
            Config::subnet_of("node_name = \"n\"\n").expect("valid"),
            None
        );
    }

    #[test]
    fn leased_configs_check_without_etcd() {
        assert_eq!(Config::check_leased(LEASED), Ok(()));
        let text = format!(
            "cluster_cidr = \"10.50.0.0/16\"\n{LEASED}\n[dataplane]\nmode = \"host-gw\"\nqueues = 99\n"
        );
        let e = Config::check_leased(&text).expect_err("queues");
        assert!(e.mentions("dataplane.queues"), "{e}");
        let text = format!("{LEASED}\n[dataplane]\nmode = \"geneve\"\n");
        assert!(
            Config::check_leased(&text)
                .expect_err("mode")
                .mentions("dataplane.mode")
        );
    }

    #[test]
    fn a_pod_cidr_in_the_file_is_refused() {
        let n = net("10.244.0.0/16", Mode::Udp, None, None);
        let text = format!("pod_cidr = \"10.244.9.0/24\"\n{LEASED}");
        let e = Config::parse_leased(&text, &n, c("10.244.7.0/24")).expect_err("pod_cidr");
        assert!(e.mentions("pod_cidr"), "{e}");
    }
}
