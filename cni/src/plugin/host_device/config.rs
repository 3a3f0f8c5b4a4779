//! host-device's keys (reference names; unknown keys ignored) and the
//! record of a moved device's host-side state, kept under `dataDir` so DEL
//! can give the device back as it was.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;
use crate::nft::owner_id;

/// Where the host-side state of moved devices is kept by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/host-device";

/// host-device config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDeviceConf {
    /// The host interface by name.
    #[serde(default)]
    pub device: Option<String>,
    /// The host interface by MAC address.
    #[serde(default)]
    pub hwaddr: Option<String>,
    /// The host interface by sysfs device path (`/sys/devices/...`).
    #[serde(default)]
    pub kernelpath: Option<String>,
    /// PCI address: not supported (see the README).
    #[serde(default, rename = "pciBusID")]
    pub pci_bus_id: Option<String>,
    /// DPDK mode: not supported.
    #[serde(default)]
    pub dpdk_mode: Option<bool>,
    /// Directory for the moved devices' host-side state.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// `runtimeConfig` (its `deviceID` is a PCI address).
    #[serde(default)]
    pub runtime_config: Option<Value>,
}

/// How the host device is selected, in the reference's precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// By name.
    Name(String),
    /// By MAC address.
    Mac([u8; 6]),
    /// The first interface under `<path>/net`.
    KernelPath(PathBuf),
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.is_empty())
}

impl HostDeviceConf {
    /// Parses the keys.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("failed to load netconf: {e}"), ""))
    }

    /// The selector, or why the config cannot name a device.
    pub fn selector(&self) -> Result<Selector, CniError> {
        let device_id = self
            .runtime_config
            .as_ref()
            .and_then(|r| r.get("deviceID"))
            .and_then(Value::as_str);
        if nonempty(self.pci_bus_id.as_deref()).is_some() || nonempty(device_id).is_some() {
            return Err(CniError::UnsupportedField(
                "pciBusID / runtimeConfig.deviceID: PCI devices are not supported by this host-device".into(),
            ));
        }
        if self.dpdk_mode == Some(true) {
            return Err(CniError::UnsupportedField(
                "dpdkMode: DPDK devices are not supported by this host-device".into(),
            ));
        }
        if let Some(n) = nonempty(self.device.as_deref()) {
            return Ok(Selector::Name(n.to_string()));
        }
        if let Some(m) = nonempty(self.hwaddr.as_deref()) {
            return crate::link::parse_mac(m)
                .map(Selector::Mac)
                .ok_or_else(|| CniError::config(format!("failed to parse MAC address {m:?}"), ""));
        }
        if let Some(p) = nonempty(self.kernelpath.as_deref()) {
            if !p.starts_with("/sys/devices/") {
                return Err(CniError::config(
                    format!(
                        "kernel device path {p:?} must be absolute and begin with /sys/devices/"
                    ),
                    "",
                ));
            }
            return Ok(Selector::KernelPath(PathBuf::from(p)));
        }
        Err(CniError::config(
            r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
            "",
        ))
    }

    /// The state file of attachment (network, container id, ifname).
    pub fn state_path(&self, net: &str, cid: &str, ifname: &str) -> PathBuf {
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        dir.join(owner_id(&[net, cid, ifname]))
    }
}

/// What the device looked like in the host before ADD moved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// Its name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// Its addresses (link-local excluded: the kernel makes those).
    pub addrs: Vec<IpNet>,
}

impl HostState {
    /// Writes the record (directory created 0700, file 0600).
    pub fn save(&self, path: &Path) -> Result<(), CniError> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        crate::plugin::private_file::write_private(path, &body, "host-device state")
    }

    /// Reads the record; `None` when there is none (or it is unreadable).
    pub fn load(path: &Path) -> Option<Self> {
        let b = std::fs::read(path).ok()?;
        serde_json::from_slice(&b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_precedence_and_errors() {
        let c = |s: &str| HostDeviceConf::parse(s.as_bytes()).unwrap();
        assert_eq!(
            c(r#"{"device":"eth9","hwaddr":"02:00:00:00:00:01"}"#)
                .selector()
                .unwrap(),
            Selector::Name("eth9".into())
        );
        assert_eq!(
            c(r#"{"hwaddr":"02:00:00:00:00:01"}"#).selector().unwrap(),
            Selector::Mac([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(c("{}").selector().unwrap_err().code(), 7);
        assert_eq!(c(r#"{"hwaddr":"zz"}"#).selector().unwrap_err().code(), 7);
        assert_eq!(
            c(r#"{"kernelpath":"/etc"}"#).selector().unwrap_err().code(),
            7
        );
        assert_eq!(
            c(r#"{"pciBusID":"0000:00:1f.6"}"#)
                .selector()
                .unwrap_err()
                .code(),
            2
        );
        assert_eq!(
            c(r#"{"device":"x","runtimeConfig":{"deviceID":"0000:00:1f.6"}}"#)
                .selector()
                .unwrap_err()
                .code(),
            2
        );
    }

    #[test]
    fn state_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let c = HostDeviceConf {
            data_dir: Some(d.path().join("hd")),
            ..Default::default()
        };
        let p = c.state_path("n", "c", "eth1");
        assert_eq!(HostState::load(&p), None);
        let s = HostState {
            name: "hd0".into(),
            up: true,
            addrs: vec![
                "10.9.9.1/24".parse().unwrap(),
                "fd09::1/64".parse().unwrap(),
            ],
        };
        s.save(&p).unwrap();
        assert_eq!(HostState::load(&p), Some(s));
    }
}
