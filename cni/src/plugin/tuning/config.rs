//! The `tuning` plugin's configuration, pure: keys, their precedence, the
//! sysctl key rules and the saved-values file format.
//!
//! Precedence (later wins, as the reference): the config's `mac`, then
//! `CNI_ARGS` `MAC=`, then `runtimeConfig.mac` (the `mac` capability), then
//! `args.cni.mac`; `args.cni.{sysctl,promisc,mtu,allmulti,txQLen}` override
//! the config's keys (`sysctl` entries are merged).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::CniError;
use crate::link::{LinkTuning, parse_mac};
use crate::skel::check_cni_args;

/// Where the original values are saved unless `dataDir` says otherwise
/// (the reference's default).
pub const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";

/// `sysctl` entries in config order; a repeated key is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlList(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for SysctlList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SysctlList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of sysctl keys to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SysctlList, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if out.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(
                            "duplicated sysctl keys are not allowed",
                        ));
                    }
                    out.push((k, v));
                }
                Ok(SysctlList(out))
            }
            fn visit_unit<E>(self) -> Result<SysctlList, E> {
                Ok(SysctlList::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Knobs {
    #[serde(default)]
    sysctl: Option<SysctlList>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    promisc: Option<bool>,
    #[serde(default)]
    mtu: Option<i64>,
    #[serde(default)]
    allmulti: Option<bool>,
    #[serde(default, rename = "txQLen")]
    txqlen: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTuning {
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(flatten)]
    knobs: Knobs,
    #[serde(default)]
    runtime_config: Option<Value>,
    #[serde(default)]
    args: Option<Value>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuningConf {
    /// Directory of the saved-values files.
    pub data_dir: PathBuf,
    /// Sysctls to write, keys as configured (before [`sysctl_path`]).
    pub sysctl: Vec<(String, String)>,
    /// Link properties to set.
    pub link: LinkTuning,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg, "")
}

fn mac(s: &str) -> Result<[u8; 6], CniError> {
    let m = parse_mac(&s.replace('-', ":"))
        .ok_or_else(|| bad(format!("invalid args {s} for MAC addr")))?;
    if m[0] & 1 == 1 {
        return Err(bad(format!(
            "invalid args {s} for MAC addr: a multicast address cannot be an interface address"
        )));
    }
    Ok(m)
}

impl TuningConf {
    /// Parses the config with the raw `CNI_ARGS`.
    pub fn load(stdin: &[u8], cni_args: &str) -> Result<Self, CniError> {
        let raw: RawTuning = serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("failed to load netconf: {e}"), ""))?;
        check_cni_args(cni_args, &["MAC"])?;
        let mut k = raw.knobs;
        let mut sysctl = k.sysctl.take().unwrap_or_default().0;
        if let Some(m) = cni_args
            .split(';')
            .filter_map(|p| p.split_once('='))
            .find(|(key, _)| *key == "MAC")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
        {
            k.mac = Some(m.to_owned());
        }
        if let Some(m) = raw
            .runtime_config
            .as_ref()
            .and_then(|r| r.get("mac"))
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        {
            k.mac = Some(m.to_owned());
        }
        if let Some(cni) = raw.args.as_ref().and_then(|a| a.get("cni")) {
            let a: Knobs =
                serde_json::from_value(cni.clone()).map_err(|e| bad(format!("args.cni: {e}")))?;
            for (key, v) in a.sysctl.unwrap_or_default().0 {
                match sysctl.iter_mut().find(|(x, _)| *x == key) {
                    Some(e) => e.1 = v,
                    None => sysctl.push((key, v)),
                }
            }
            k.mac = a.mac.or(k.mac);
            k.promisc = a.promisc.or(k.promisc);
            k.mtu = a.mtu.or(k.mtu);
            k.allmulti = a.allmulti.or(k.allmulti);
            k.txqlen = a.txqlen.or(k.txqlen);
        }
        let mtu = match k.mtu.unwrap_or(0) {
            0 => None,
            m @ 68..=65535 => u32::try_from(m).ok(),
            m => return Err(bad(format!("mtu: {m} out of range (68..65535)"))),
        };
        let txqlen = match k.txqlen {
            None => None,
            Some(q) => {
                Some(u32::try_from(q).map_err(|_| bad(format!("txQLen: {q} out of range")))?)
            }
        };
        let link = LinkTuning {
            mac: k
                .mac
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(mac)
                .transpose()?,
            mtu,
            // As the reference: `promisc: false` leaves the mode alone.
            promisc: k.promisc.filter(|p| *p),
            allmulti: k.allmulti,
            txqlen,
        };
        Ok(Self {
            data_dir: PathBuf::from(raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into())),
            sysctl,
            link,
        })
    }

    /// True when a link property is to be changed (and saved first).
    pub fn changes_link(&self) -> bool {
        self.link != LinkTuning::default()
    }

    /// The sysctls with their keys resolved for `ifname` (see [`sysctl_path`]).
    pub fn sysctl_paths(&self, ifname: &str) -> Result<Vec<(String, String)>, CniError> {
        self.sysctl
            .iter()
            .map(|(k, v)| Ok((sysctl_path(k, ifname)?, v.clone())))
            .collect()
    }
}

/// Checks sysctl keys against the text of a sysctl allowlist (the
/// reference's `/etc/cni/tuning/allowlist.conf`): one regular expression a
/// line, blank lines ignored, a key is allowed when any expression matches
/// somewhere in it (as Go's `regexp.MatchString`). Code 7 for a key no line
/// allows or a line that is not a valid expression.
pub fn check_allowlist<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    allowlist: &str,
) -> Result<(), CniError> {
    let lines: Vec<&str> = allowlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let res = lines
        .iter()
        .map(|l| {
            regex_lite::Regex::new(l)
                .map_err(|e| bad(format!("sysctl allowlist: invalid expression {l:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for k in keys {
        if !res.iter().any(|r| r.is_match(k)) {
            return Err(bad(format!(
                "Sysctl {k} is not allowed. Only the following sysctls are allowed: {lines:?}"
            )));
        }
    }
    Ok(())
}

/// Resolves a sysctl key (`net.ipv4.conf.IFNAME.arp_notify`, or with `/`)
/// to its path under `/proc/sys` (`net/ipv4/conf/eth0/arp_notify`): dots
/// become slashes, the first `IFNAME` becomes `ifname`. Only keys of the
/// network subsystem of the pod's namespace are allowed: the path must
/// start with `net/` and may not contain `.` or `..` components.
pub fn sysctl_path(key: &str, ifname: &str) -> Result<String, CniError> {
    let k = key.replace('.', "/").replacen("IFNAME", ifname, 1);
    let parts: Vec<&str> = k.split('/').filter(|p| !p.is_empty()).collect();
    let refuse = || bad(format!("invalid net sysctl key: {key:?}"));
    if parts.len() < 2 || parts[0] != "net" || parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(refuse());
    }
    Ok(parts.join("/"))
}

/// The values saved before ADD changed them, restored by DEL. The link
/// fields use the reference's file format (`mac`, `promisc`, `mtu`,
/// `allmulti`, `txQLen`), so either implementation can restore the other's;
/// `sysctl` (original sysctl values) and `owner` are ours and ignored by
/// the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    /// Hardware address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Promiscuous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promisc: Option<bool>,
    /// MTU (0: not saved).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    /// All-multicast mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allmulti: Option<bool>,
    /// Transmit queue length.
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    pub txqlen: Option<u32>,
    /// Original sysctl values by `/proc/sys` path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// The attachment the values belong to (absent in the reference's
    /// files, which GC therefore leaves alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// The attachment a saved-values file belongs to. `dataDir` is shared by
/// every network, so GC of one network removes only files naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The network name.
    pub network: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Saved {
    /// True when no value is saved (the owner aside).
    pub fn is_empty(&self) -> bool {
        self.restore() == LinkTuning::default() && self.sysctl.is_empty()
    }

    /// The link changes that put the saved values back.
    pub fn restore(&self) -> LinkTuning {
        LinkTuning {
            mac: parse_mac(&self.mac),
            mtu: (self.mtu != 0).then_some(self.mtu),
            promisc: self.promisc,
            allmulti: self.allmulti,
            txqlen: self.txqlen,
        }
    }
}

/// The saved-values file of an attachment (the reference's name).
pub fn saved_file(data_dir: &std::path::Path, container_id: &str, ifname: &str) -> PathBuf {
    data_dir.join(format!("{container_id}_{ifname}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_path("net.ipv4.conf.IFNAME.arp_notify", "eth0").unwrap(),
            "net/ipv4/conf/eth0/arp_notify"
        );
        assert_eq!(
            sysctl_path("net/ipv6/conf/IFNAME/accept_ra", "eth0.5").unwrap(),
            "net/ipv6/conf/eth0.5/accept_ra"
        );
        assert_eq!(
            sysctl_path("net.core.somaxconn", "x").unwrap(),
            "net/core/somaxconn"
        );
        // Dots are separators, so `..` cannot climb out of `net/`.
        assert_eq!(
            sysctl_path("net/../kernel/hostname", "eth0").unwrap(),
            "net/kernel/hostname"
        );
        assert_eq!(
            sysctl_path("/net/./ipv4//ip_forward", "eth0").unwrap(),
            "net/ipv4/ip_forward"
        );
        for k in [
            "kernel.hostname",
            "net",
            "",
            "/proc/sys/kernel/x",
            "vm.overcommit_memory",
        ] {
            let e = sysctl_path(k, "eth0").unwrap_err();
            assert_eq!(e.code(), 7, "{k}");
        }
        // "IFNAME" is replaced once, after the dots: a crafted ifname cannot escape.
        assert!(sysctl_path("net.IFNAME", "..").is_err());
    }

    #[test]
    fn precedence_and_merge() {
        let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"tuning","mac":"02:00:00:00:00:01",
            "sysctl":{"net.core.somaxconn":"500","net.ipv4.conf.IFNAME.arp_notify":"1"},
            "mtu":1400,"promisc":true,"allmulti":false,"txQLen":5,"dataDir":"/tmp/x",
            "runtimeConfig":{"mac":"02:00:00:00:00:03"},
            "args":{"cni":{"sysctl":{"net.core.somaxconn":"600","net.ipv4.ip_forward":"1"},"mtu":1300}}}"#;
        let c =
            TuningConf::load(conf, "IgnoreUnknown=1;MAC=02:00:00:00:00:02;K8S_POD_NAME=p").unwrap();
        assert_eq!(c.link.mac, Some([2, 0, 0, 0, 0, 3]));
        assert_eq!(c.link.mtu, Some(1300));
        assert_eq!(c.link.promisc, Some(true));
        assert_eq!(c.link.allmulti, Some(false));
        assert_eq!(c.link.txqlen, Some(5));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(
            c.sysctl,
            vec![
                ("net.core.somaxconn".to_string(), "600".to_string()),
                ("net.ipv4.conf.IFNAME.arp_notify".into(), "1".into()),
                ("net.ipv4.ip_forward".into(), "1".into()),
            ]
        );
        let c = TuningConf::load(conf, "MAC=02:00:00:00:00:02").map(|c| c.link.mac);
        assert_eq!(c.unwrap(), Some([2, 0, 0, 0, 0, 3]));
        let bare =
            br#"{"cniVersion":"1.0.0","name":"n","type":"tuning","mac":"02:00:00:00:00:01"}"#;
        let c = TuningConf::load(bare, "MAC=02:00:00:00:00:02").unwrap();
        assert_eq!(c.link.mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(c.changes_link());
        let none = TuningConf::load(br#"{"promisc":false,"sysctl":null}"#, "").unwrap();
        assert!(!none.changes_link());
        assert!(none.sysctl.is_empty());
    }

    #[test]
    fn bad_configs() {
        let code = |c: &str, a: &str| TuningConf::load(c.as_bytes(), a).unwrap_err().code();
        assert_eq!(code(r#"{"sysctl":{"a":"1","a":"2"}}"#, ""), 6);
        assert_eq!(code(r#"{"sysctl":{"a":1}}"#, ""), 6);
        assert_eq!(code(r#"{"mac":"nope"}"#, ""), 7);
        assert_eq!(code(r#"{"mac":"01:00:5e:00:00:01"}"#, ""), 7);
        assert_eq!(code(r#"{"mtu":10}"#, ""), 7);
        assert_eq!(code(r#"{"mtu":70000}"#, ""), 7);
        assert_eq!(code(r#"{"txQLen":-1}"#, ""), 7);
        assert_eq!(code(r#"{"args":{"cni":{"mtu":"x"}}}"#, ""), 7);
        assert_eq!(code(r#"{}"#, "FOO=1"), 4);
        assert_eq!(code(r#"{}"#, "MAC=zz"), 7);
        assert_eq!(code("[", ""), 6);
    }

    #[test]
    fn allowlist() {
        let list = "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n\n  ^net\\.core\\.somaxconn$ \n";
        assert!(
            check_allowlist(
                ["net.ipv4.conf.IFNAME.arp_notify", "net.core.somaxconn"],
                list
            )
            .is_ok()
        );
        let e = check_allowlist(["net.ipv4.ip_forward"], list).unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("is not allowed"));
        // Unanchored expressions match anywhere, as in the reference.
        assert!(check_allowlist(["net.core.somaxconn"], "somax").is_ok());
        assert!(check_allowlist(["net.x"], "").is_err());
        assert!(check_allowlist(std::iter::empty(), "").is_ok());
        assert_eq!(check_allowlist(["net.x"], "(").unwrap_err().code(), 7);
    }

    #[test]
    fn saved_file_format() {
        let s = Saved {
            mac: "0a:00:00:00:00:01".into(),
            promisc: Some(false),
            mtu: 1500,
            allmulti: None,
            txqlen: Some(1000),
            sysctl: BTreeMap::from([("net/core/somaxconn".into(), "4096".into())]),
            owner: Some(Owner {
                network: "n".into(),
                container_id: "c1".into(),
                ifname: "eth0".into(),
            }),
        };
        assert!(!s.is_empty());
        assert!(
            Saved {
                owner: s.owner.clone(),
                ..Saved::default()
            }
            .is_empty()
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["txQLen"], 1000);
        assert_eq!(v["owner"]["containerID"], "c1");
        assert!(v.get("allmulti").is_none());
        let back: Saved = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        // The reference's file (no sysctl) reads fine.
        let r: Saved = serde_json::from_str(r#"{"mac":"0a:00:00:00:00:01","mtu":1400}"#).unwrap();
        assert_eq!(r.restore().mtu, Some(1400));
        assert_eq!(r.restore().mac, Some([0x0a, 0, 0, 0, 0, 1]));
        assert_eq!(r.restore().promisc, None);
        assert_eq!(
            saved_file(std::path::Path::new("/d"), "c1", "eth0"),
            PathBuf::from("/d/c1_eth0.json")
        );
    }
}
