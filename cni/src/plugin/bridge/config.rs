//! The bridge plugin's configuration keys (reference names and defaults).
//! Unknown keys are ignored, as the reference does: conflists carry keys for
//! other tools, and a drop-in must accept them.

use serde::Deserialize;
use serde_json::Value;

use crate::link::parse_mac;

/// One `vlanTrunk` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Trunk {
    /// A single VLAN id.
    #[serde(default)]
    pub id: Option<i64>,
    /// Range start.
    #[serde(default, rename = "minID")]
    pub min_id: Option<i64>,
    /// Range end.
    #[serde(default, rename = "maxID")]
    pub max_id: Option<i64>,
}

/// bridge plugin config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    /// Bridge name.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Give the bridge the gateway address.
    #[serde(default)]
    pub is_gateway: bool,
    /// Add a default route via the gateway in the container (implies isGateway).
    #[serde(default)]
    pub is_default_gateway: bool,
    /// Replace a different address of the same family on the bridge.
    #[serde(default)]
    pub force_address: bool,
    /// `ipMasq`, `ipMasqBackend`, `mtu` (of bridge and veth).
    #[serde(flatten)]
    pub veth: crate::plugin::veth::VethKeys,
    /// Hairpin mode on the host port.
    #[serde(default)]
    pub hairpin_mode: bool,
    /// Promiscuous mode on the bridge.
    #[serde(default)]
    pub promisc_mode: bool,
    /// Access VLAN for the port.
    #[serde(default)]
    pub vlan: i64,
    /// Trunk VLANs for the port.
    #[serde(default)]
    pub vlan_trunk: Vec<Trunk>,
    /// Keep VLAN 1 on the port (default true).
    #[serde(default)]
    pub preserve_default_vlan: Option<bool>,
    /// Drop frames from the pod with a source MAC other than its own.
    #[serde(default)]
    pub macspoofchk: bool,
    /// Keep IPv6 duplicate address detection on.
    #[serde(default)]
    pub enabledad: bool,
    /// Leave the container interface down and unconfigured.
    #[serde(default)]
    pub disable_container_interface: bool,
    /// Isolate the port from other isolated ports.
    #[serde(default)]
    pub port_isolation: bool,
    /// Requested container MAC (also via args / runtimeConfig / CNI_ARGS MAC).
    #[serde(default)]
    pub mac: Option<String>,
}

fn default_bridge() -> String {
    "cni0".to_string()
}

/// A validated VLAN setup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VlanPlan {
    /// Access VLAN (PVID, untagged), 0 for none.
    pub access: u16,
    /// Tagged trunk VLANs.
    pub trunk: Vec<u16>,
    /// Keep default VLAN 1.
    pub preserve_default: bool,
}

impl VlanPlan {
    /// True when the bridge needs VLAN filtering.
    pub fn needed(&self) -> bool {
        self.access != 0 || !self.trunk.is_empty()
    }
}

impl BridgeConf {
    /// Parses the plugin keys from the raw config.
    pub fn parse(stdin: &[u8]) -> Result<Self, String> {
        let mut c: Self =
            serde_json::from_slice(stdin).map_err(|e| format!("failed to load netconf: {e}"))?;
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        Ok(c)
    }

    /// Checks every key; returns all problems.
    pub fn validate(&self) -> Result<VlanPlan, Vec<String>> {
        let mut errs = Vec::new();
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains(['/', ' ']) {
            errs.push(format!("bridge: invalid interface name {:?}", self.bridge));
        }
        if self.veth.mtu != 0 && !(68..=65535).contains(&self.veth.mtu) {
            errs.push(format!("mtu: {} out of range", self.veth.mtu));
        }
        if self.hairpin_mode && self.promisc_mode {
            errs.push("cannot set hairpin mode and promiscuous mode at the same time".into());
        }
        if let Some(m) = &self.mac {
            if parse_mac(m).is_none() {
                errs.push(format!("mac: invalid MAC address {m:?}"));
            }
        }
        let mut plan = VlanPlan {
            preserve_default: self.preserve_default_vlan.unwrap_or(true),
            ..Default::default()
        };
        let vid = |v: i64| -> Option<u16> {
            (1..=4094)
                .contains(&v)
                .then(|| u16::try_from(v).ok())
                .flatten()
        };
        if self.vlan != 0 {
            match vid(self.vlan) {
                Some(v) => plan.access = v,
                None => errs.push(format!(
                    "vlan: invalid VLAN ID {} (must be between 0 and 4094)",
                    self.vlan
                )),
            }
        }
        for (i, t) in self.vlan_trunk.iter().enumerate() {
            match (t.id, t.min_id, t.max_id) {
                (Some(id), None, None) => match vid(id) {
                    Some(v) => plan.trunk.push(v),
                    None => errs.push(format!("vlanTrunk[{i}].id: invalid VLAN ID {id}")),
                },
                (None, Some(lo), Some(hi)) => match (vid(lo), vid(hi)) {
                    (Some(a), Some(b)) if a <= b => plan.trunk.extend(a..=b),
                    _ => errs.push(format!("vlanTrunk[{i}]: invalid range {lo}..{hi}")),
                },
                _ => errs.push(format!(
                    "vlanTrunk[{i}]: set either id or both minID and maxID"
                )),
            }
        }
        if plan.access != 0 && !plan.trunk.is_empty() {
            errs.push("vlan and vlanTrunk cannot be used together".into());
        }
        plan.trunk.sort_unstable();
        plan.trunk.dedup();
        if errs.is_empty() { Ok(plan) } else { Err(errs) }
    }

    /// The requested container MAC: config `mac`, then CNI_ARGS `MAC`, then
    /// `args.cni.mac`, then `runtimeConfig.mac` (later wins, as the reference).
    pub fn requested_mac(
        &self,
        cni_args_mac: Option<&str>,
        args: Option<&Value>,
        rc: Option<&Value>,
    ) -> Result<Option<[u8; 6]>, String> {
        let mut chosen: Option<String> = self.mac.clone();
        if let Some(m) = cni_args_mac {
            chosen = Some(m.to_string());
        }
        if let Some(m) = args
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("mac"))
            .and_then(Value::as_str)
        {
            chosen = Some(m.to_string());
        }
        if let Some(m) = rc.and_then(|r| r.get("mac")).and_then(Value::as_str) {
            chosen = Some(m.to_string());
        }
        match chosen {
            None => Ok(None),
            Some(m) => parse_mac(&m)
                .map(Some)
                .ok_or_else(|| format!("invalid MAC address {m:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_implications() {
        let c =
            BridgeConf::parse(br#"{"name":"n","type":"bridge","isDefaultGateway":true,"other":1}"#)
                .unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(c.is_gateway);
        let v = c.validate().unwrap();
        assert!(!v.needed());
        assert!(v.preserve_default);
    }

    #[test]
    fn vlan_validation_collects_every_problem() {
        let c = BridgeConf::parse(
            br#"{"vlan":5000,"vlanTrunk":[{"id":0},{"minID":10,"maxID":5}],"mtu":10}"#,
        )
        .unwrap();
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        let c = BridgeConf::parse(
            br#"{"vlanTrunk":[{"id":7},{"minID":10,"maxID":12}],"preserveDefaultVlan":false}"#,
        )
        .unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.trunk, vec![7, 10, 11, 12]);
        let c = BridgeConf::parse(br#"{"hairpinMode":true,"promiscMode":true}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().len(), 1);
        assert!(!v.preserve_default);
        assert!(v.needed());
    }

    #[test]
    fn mac_precedence() {
        let c = BridgeConf::parse(br#"{"mac":"02:00:00:00:00:01"}"#).unwrap();
        let rc = serde_json::json!({"mac": "02:00:00:00:00:03"});
        let args = serde_json::json!({"cni": {"mac": "02:00:00:00:00:02"}});
        assert_eq!(
            c.requested_mac(None, None, None).unwrap(),
            Some([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(
            c.requested_mac(None, Some(&args), None).unwrap(),
            Some([2, 0, 0, 0, 0, 2])
        );
        assert_eq!(
            c.requested_mac(Some("02:00:00:00:00:09"), Some(&args), Some(&rc))
                .unwrap(),
            Some([2, 0, 0, 0, 0, 3])
        );
        assert!(c.requested_mac(Some("nope"), None, None).is_err());
    }
}
