//! The `ipam` keys of a `dhcp` network config: the daemon socket, options
//! the client provides (`provide`) and options it asks for (`request`), as
//! the reference plugin reads them.

use std::path::PathBuf;

use serde::Deserialize;

use super::wire::{RawOptions, opt};
use crate::error::CniError;

/// Where the daemon listens unless the config or `-socketpath` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";

/// `ipam.provide[]`: an option value sent to the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provide {
    /// Option name or number.
    pub option: String,
    /// Literal value.
    #[serde(default)]
    pub value: String,
    /// Take the value from this `CNI_ARGS` key instead (wins when present).
    #[serde(default, rename = "fromArg")]
    pub from_arg: String,
}

/// `ipam.request[]`: an option to put in the parameter request list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Option name or number (may be empty with `skipDefault`).
    #[serde(default)]
    pub option: String,
    /// Do not add the default requests (subnet mask, routers).
    #[serde(default, rename = "skipDefault")]
    pub skip_default: bool,
}

/// The `ipam` section.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DhcpIpam {
    /// Plugin type (`dhcp`).
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The daemon's socket.
    #[serde(default, rename = "daemonSocketPath")]
    pub daemon_socket_path: String,
    /// Options provided.
    #[serde(default)]
    pub provide: Vec<Provide>,
    /// Options requested.
    #[serde(default)]
    pub request: Vec<Request>,
}

#[derive(Debug, Deserialize)]
struct Top {
    #[serde(default)]
    ipam: Option<DhcpIpam>,
}

impl DhcpIpam {
    /// The `ipam` section of a network config (an absent section is empty).
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let top: Top = serde_json::from_slice(stdin)
            .map_err(|e| CniError::config(format!("error parsing netconf: {e}"), ""))?;
        Ok(top.ipam.unwrap_or_default())
    }

    /// The daemon socket path.
    pub fn socket(&self) -> PathBuf {
        if self.daemon_socket_path.is_empty() {
            PathBuf::from(DEFAULT_SOCKET)
        } else {
            PathBuf::from(&self.daemon_socket_path)
        }
    }

    /// `(provided options, parameter request list)` with `CNI_ARGS` pairs
    /// applied. Errors (code 7) name the bad option.
    pub fn options(&self, args: &[(String, String)]) -> Result<(RawOptions, Vec<u8>), CniError> {
        let mut provide: RawOptions = Vec::new();
        for p in &self.provide {
            let code = option_code(&p.option)?;
            let mut value = p.value.as_bytes().to_vec();
            if let Some((_, v)) = args
                .iter()
                .find(|(k, _)| !p.from_arg.is_empty() && *k == p.from_arg)
            {
                value = v.as_bytes().to_vec();
            }
            if value.len() > 255 {
                return Err(CniError::config(
                    format!("value too long for option {:?}", p.option),
                    "",
                ));
            }
            if value.is_empty() {
                continue;
            }
            match provide.iter_mut().find(|(c, _)| *c == code) {
                Some((_, v)) => *v = value,
                None => provide.push((code, value)),
            }
        }
        let mut request: Vec<u8> = Vec::new();
        let mut skip_default = false;
        for r in &self.request {
            skip_default |= r.skip_default;
            if r.option.is_empty() && r.skip_default {
                continue;
            }
            let code = option_code(&r.option)?;
            if !request.contains(&code) {
                request.push(code);
            }
        }
        if !skip_default {
            for code in [opt::SUBNET_MASK, opt::ROUTER] {
                if !request.contains(&code) {
                    request.push(code);
                }
            }
        }
        Ok((provide, request))
    }
}

/// An option by dhcp-options(5) name (the ones the reference knows) or number.
pub fn option_code(name: &str) -> Result<u8, CniError> {
    let code = match name {
        "dhcp-client-identifier" => Some(opt::CLIENT_ID),
        "subnet-mask" => Some(opt::SUBNET_MASK),
        "routers" => Some(opt::ROUTER),
        "host-name" => Some(opt::HOST_NAME),
        "user-class" => Some(77),
        "vendor-class-identifier" => Some(60),
        "classless-static-routes" => Some(opt::CLASSLESS_ROUTES),
        "static-routes" => Some(opt::STATIC_ROUTES),
        "domain-name-servers" => Some(opt::DNS),
        "domain-name" => Some(opt::DOMAIN_NAME),
        n => n.parse::<u8>().ok(),
    };
    code.filter(|c| *c != opt::PAD && *c != opt::END)
        .ok_or_else(|| CniError::config(format!("Can not parse option {name:?}"), ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_config_and_args() {
        let conf = br#"{"ipam":{"type":"dhcp","provide":[{"option":"host-name","value":"a","fromArg":"K8S_POD_NAME"},{"option":"60","value":"v"}],"request":[{"option":"classless-static-routes"}]}}"#;
        let ipam = DhcpIpam::parse(conf).unwrap();
        let args = vec![("K8S_POD_NAME".to_string(), "web-1".to_string())];
        let (p, r) = ipam.options(&args).unwrap();
        assert_eq!(p, vec![(12, b"web-1".to_vec()), (60, b"v".to_vec())]);
        assert_eq!(r, vec![121, 1, 3]);
        let (p, _) = ipam.options(&[]).unwrap();
        assert_eq!(p[0], (12, b"a".to_vec()));
        assert_eq!(ipam.socket(), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn skip_default_and_errors() {
        let ipam =
            DhcpIpam::parse(br#"{"ipam":{"request":[{"skipDefault":true},{"option":"6"}]}}"#)
                .unwrap();
        assert_eq!(ipam.options(&[]).unwrap().1, vec![6]);
        let bad = DhcpIpam::parse(br#"{"ipam":{"request":[{"option":"nope"}]}}"#).unwrap();
        assert_eq!(bad.options(&[]).unwrap_err().code(), 7);
        let bad =
            DhcpIpam::parse(br#"{"ipam":{"provide":[{"option":"300","value":"x"}]}}"#).unwrap();
        assert_eq!(bad.options(&[]).unwrap_err().code(), 7);
        assert_eq!(
            DhcpIpam::parse(br#"{"ipam":{"provide":[{"opt":1}]}}"#)
                .unwrap_err()
                .code(),
            7
        );
        assert_eq!(DhcpIpam::parse(b"[").unwrap_err().code(), 7);
    }
}
