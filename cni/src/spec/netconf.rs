//! The common keys of a network configuration (one plugin's config as the
//! runtime passes it on stdin). Plugin-specific keys are parsed by each
//! plugin from the raw stdin with its own struct; unknown keys are ignored
//! here as libcni does (configs carry other plugins' keys).

use serde::Deserialize;
use serde_json::Value;

use super::result::Dns;
use crate::error::CniError;

/// Common network configuration keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// `cniVersion` as written (may be empty: means 0.1.0).
    #[serde(default)]
    pub cni_version: String,
    /// Network name.
    #[serde(default)]
    pub name: String,
    /// Plugin type (binary name).
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    /// The `ipam` section, raw (the IPAM plugin parses it).
    #[serde(default)]
    pub ipam: Option<Value>,
    /// The `dns` section.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// Result of the previous plugin in a chain, raw (in `cni_version`'s shape).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// Capability arguments inserted by the runtime.
    #[serde(default)]
    pub runtime_config: Option<Value>,
    /// `args` (conventionally `{"cni": {...}}`).
    #[serde(default)]
    pub args: Option<Value>,
    /// `capabilities` the plugin declared.
    #[serde(default)]
    pub capabilities: Option<Value>,
}

impl NetConf {
    /// Parses the common keys from the config bytes.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("error unmarshall network config: {e}"), ""))
    }

    /// The `ipam.type` value, if any.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// The previous result converted to the internal (latest) shape.
    pub fn prev(&self) -> Result<Option<super::CniResult>, CniError> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => super::CniResult::from_json(v, &self.cni_version).map(Some),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    #[serde(default)]
    ifname: String,
}

#[derive(Debug, Deserialize)]
struct GcConf {
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid: Option<Vec<Attachment>>,
}

/// The (container id, ifname) pairs of GC's `cni.dev/valid-attachments`
/// (empty when absent: nothing is valid).
pub fn valid_attachments(stdin: &[u8]) -> Result<Vec<(String, String)>, CniError> {
    let gc: GcConf = serde_json::from_slice(stdin)
        .map_err(|e| CniError::config(format!("cni.dev/valid-attachments: {e}"), ""))?;
    Ok(gc
        .valid
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect())
}
