//! The weft (flannel) plugin's keys and the delegate config it renders from
//! them and `subnet.env`, with flannel's defaults: type `bridge`, `ipMasq`
//! the inverse of `FLANNEL_IPMASQ`, `mtu` from `FLANNEL_MTU`, `isGateway`
//! for bridge, host-local IPAM over the node subnet(s) with routes to the
//! cluster network(s) after any `ipam.routes` given. Pure.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::subnet::SubnetEnv;
use crate::error::CniError;

/// Where weftd writes the subnet file by default.
pub const DEFAULT_SUBNET_FILE: &str = "/run/weft/subnet.env";
/// Where rendered delegate configs are kept by default (flannel's path).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";

/// The plugin's own keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeftConf {
    /// cniVersion (copied to the delegate when set).
    #[serde(default)]
    pub cni_version: String,
    /// Network name (the delegate's `name`).
    #[serde(default)]
    pub name: String,
    /// IPAM keys merged into the delegate's IPAM.
    #[serde(default)]
    pub ipam: Option<Map<String, Value>>,
    /// The subnet file.
    #[serde(default)]
    pub subnet_file: Option<String>,
    /// Directory of the rendered delegate configs, by container id.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Delegate keys (no `name` or `ipam`: those are set here).
    #[serde(default)]
    pub delegate: Option<Map<String, Value>>,
    /// Passed to the delegate as its `runtimeConfig`.
    #[serde(default)]
    pub runtime_config: Option<Value>,
}

fn or_default(v: Option<&String>, d: &str) -> String {
    v.filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| d.to_string())
}

impl WeftConf {
    /// Parses the keys.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("failed to load netconf: {e}"), ""))
    }

    /// The subnet file path.
    pub fn subnet_file(&self) -> String {
        or_default(self.subnet_file.as_ref(), DEFAULT_SUBNET_FILE)
    }

    /// The data directory.
    pub fn data_dir(&self) -> String {
        or_default(self.data_dir.as_ref(), DEFAULT_DATA_DIR)
    }

    /// Renders the delegate config.
    pub fn delegate(&self, env: &SubnetEnv) -> Result<Map<String, Value>, CniError> {
        let mut d = self.delegate.clone().unwrap_or_default();
        if d.get("type").is_some_and(|t| !t.is_string()) {
            return Err(CniError::config(
                "'delegate' dictionary, if present, must have (string) 'type' field",
                "",
            ));
        }
        for k in ["name", "ipam"] {
            if d.contains_key(k) {
                return Err(CniError::config(
                    format!(
                        "'delegate' dictionary must not have '{k}' field, it'll be set by flannel"
                    ),
                    "",
                ));
            }
        }
        if let Some(rc) = &self.runtime_config {
            d.insert("runtimeConfig".into(), rc.clone());
        }
        d.insert("name".into(), json!(self.name));
        d.entry("type").or_insert_with(|| json!("bridge"));
        if let Some(m) = env.ipmasq {
            d.entry("ipMasq").or_insert_with(|| json!(!m));
        }
        if let Some(mtu) = env.mtu {
            d.entry("mtu").or_insert_with(|| json!(mtu));
        }
        if d.get("type") == Some(&json!("bridge")) {
            d.entry("isGateway").or_insert_with(|| json!(true));
        }
        if !self.cni_version.is_empty() {
            d.insert("cniVersion".into(), json!(self.cni_version));
        }
        d.insert("ipam".into(), Value::Object(self.ipam(env)?));
        Ok(d)
    }

    fn ipam(&self, env: &SubnetEnv) -> Result<Map<String, Value>, CniError> {
        let mut ipam = self.ipam.clone().unwrap_or_default();
        ipam.entry("type").or_insert_with(|| json!("host-local"));
        let ranges: Vec<Value> = [env.subnet, env.ip6_subnet]
            .into_iter()
            .flatten()
            .map(|s| json!([{"subnet": s.to_string()}]))
            .collect();
        ipam.insert("ranges".into(), Value::Array(ranges));
        let mut routes = match ipam.get("routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a))
                if a.iter().all(|r| r.get("dst").is_some_and(Value::is_string)) =>
            {
                a.clone()
            }
            Some(_) => {
                return Err(CniError::config(
                    "failed to assemble Delegate IPAM: failed to read IPAM routes: ipam.routes must be a list of {\"dst\": ...}",
                    "",
                ));
            }
        };
        for n in env.networks.iter().chain(&env.ip6_networks) {
            routes.push(json!({"dst": n.to_string()}));
        }
        ipam.insert("routes".into(), Value::Array(routes));
        Ok(ipam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> SubnetEnv {
        SubnetEnv::parse(
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
            "f",
        )
        .unwrap()
    }

    #[test]
    fn flannel_defaults() {
        let c = WeftConf::parse(
            br#"{"cniVersion":"0.3.1","name":"cbr0","type":"flannel",
                "delegate":{"hairpinMode":true,"isDefaultGateway":true}}"#,
        )
        .unwrap();
        let d = c.delegate(&env()).unwrap();
        assert_eq!(
            Value::Object(d),
            json!({"cniVersion":"0.3.1","name":"cbr0","type":"bridge","hairpinMode":true,
                "isDefaultGateway":true,"isGateway":true,"ipMasq":false,"mtu":1450,
                "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],
                        "routes":[{"dst":"10.244.0.0/16"}]}})
        );
        assert_eq!(c.subnet_file(), DEFAULT_SUBNET_FILE);
        assert_eq!(c.data_dir(), DEFAULT_DATA_DIR);
    }

    #[test]
    fn given_keys_win_and_bad_delegates_are_refused() {
        let c = WeftConf::parse(
            br#"{"name":"n","delegate":{"type":"ptp","ipMasq":true,"mtu":1400},
                "ipam":{"dataDir":"/tmp/x","routes":[{"dst":"0.0.0.0/0"}]}}"#,
        )
        .unwrap();
        let d = c.delegate(&env()).unwrap();
        assert_eq!(d["ipMasq"], json!(true));
        assert_eq!(d["mtu"], json!(1400));
        assert!(d.get("isGateway").is_none());
        assert!(d.get("cniVersion").is_none());
        assert_eq!(d["ipam"]["dataDir"], json!("/tmp/x"));
        assert_eq!(
            d["ipam"]["routes"],
            json!([{"dst":"0.0.0.0/0"},{"dst":"10.244.0.0/16"}])
        );
        for bad in [
            r#"{"delegate":{"type":7}}"#,
            r#"{"delegate":{"name":"x"}}"#,
            r#"{"delegate":{"ipam":{}}}"#,
            r#"{"ipam":{"routes":"x"}}"#,
        ] {
            let c = WeftConf::parse(bad.as_bytes()).unwrap();
            assert_eq!(c.delegate(&env()).unwrap_err().code(), 7, "{bad}");
        }
    }
}
