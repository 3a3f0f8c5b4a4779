//! flannel's subnet leases: the key `<prefix>/subnets/10.244.1.0-24` and
//! the `LeaseAttrs` JSON value.
//!
//! Lease values are written by other programs too (flanneld, other weft
//! versions), so they are parsed tolerantly: unknown fields are ignored
//! (`PublicIPv6`, `BackendV6Data`, ...), and `BackendData` is kept as raw
//! JSON and read only for the fields weft uses. A foreign node's VTEP MAC
//! comes from its `BackendData.VtepMAC`, never derived.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use weft_encap::MacAddr;

use crate::cidr::Cidr;
use crate::mode::Mode;
use crate::wg_key::PublicKey;

/// The key suffix under `<prefix>/subnets/` for a subnet: `10.244.1.0-24`.
pub fn subnet_key(subnet: Cidr) -> String {
    format!("{}-{}", subnet.addr(), subnet.prefix_len())
}

/// Parses a key suffix such as `10.244.1.0-24` (flannel also writes
/// `10.244.1.0-24&fd00:1::-64` for dual-stack leases; the IPv6 half is
/// ignored). `None` for anything else.
pub fn parse_subnet_key(key: &str) -> Option<Cidr> {
    let v4 = key.split('&').next()?;
    let (addr, len) = v4.split_once('-')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    Cidr::new(IpAddr::V4(addr), len).filter(Cidr::is_network)
}

/// flannel's `LeaseAttrs`: what a node publishes with its subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    /// The node's underlay address.
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    /// flannel's backend name (`vxlan`, `host-gw`, `udp`, `ipip`, ...).
    #[serde(
        rename = "BackendType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub backend_type: String,
    /// Backend specific data, kept as raw JSON.
    #[serde(
        rename = "BackendData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub backend_data: Option<serde_json::Value>,
}

impl LeaseAttrs {
    /// The attributes weft publishes for itself in `mode`; vxlan carries
    /// the VNI and the VTEP MAC, the other modes no `BackendData` (as
    /// flannel's host-gw and ipip backends write them).
    pub fn own(public_ip: Ipv4Addr, mode: Mode, vni: u32, vtep_mac: MacAddr) -> Self {
        let backend_data = (mode == Mode::Vxlan)
            .then(|| serde_json::json!({ "VNI": vni, "VtepMAC": vtep_mac.to_string() }));
        Self {
            public_ip,
            backend_type: mode.to_string(),
            backend_data,
        }
    }

    /// Adds flannel's wireguard `BackendData`: `{"PublicKey": .., "Port": ..}`.
    pub fn with_wireguard(mut self, public: &PublicKey, port: u16) -> Self {
        self.backend_data =
            Some(serde_json::json!({ "PublicKey": public.to_string(), "Port": port }));
        self
    }

    /// `BackendData.PublicKey` (and `Port`, `default_port` when absent),
    /// when present and a valid key.
    pub fn wireguard(&self, default_port: u16) -> Option<(PublicKey, u16)> {
        let d = self.backend_data.as_ref()?;
        let key = PublicKey::parse(d.get("PublicKey")?.as_str()?).ok()?;
        let port = match d.get("Port") {
            Some(p) => u16::try_from(p.as_u64()?).ok().filter(|p| *p != 0)?,
            None => default_port,
        };
        Some((key, port))
    }

    /// `BackendData.VtepMAC`, when present and a unicast MAC.
    pub fn vtep_mac(&self) -> Option<MacAddr> {
        let s = self.backend_data.as_ref()?.get("VtepMAC")?.as_str()?;
        s.parse::<MacAddr>().ok().filter(|m| m.is_unicast())
    }

    /// The JSON value as stored in etcd.
    pub fn to_json(&self) -> String {
        // A struct of strings, an address and a JSON value always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One node's lease as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The leased subnet.
    pub subnet: Cidr,
    /// What the node published with it.
    pub attrs: LeaseAttrs,
}

/// Why a key/value pair under `subnets/` is not a usable lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLease {
    /// The key is not `a.b.c.d-len`.
    #[error("key {0:?} is not a subnet")]
    Key(String),
    /// The value is not `LeaseAttrs` JSON.
    #[error("value of {key} is not a flannel lease: {msg}")]
    Value {
        /// The key.
        key: String,
        /// serde's message.
        msg: String,
    },
}

impl BadLease {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Key(_) => "bad_key",
            Self::Value { .. } => "bad_value",
        }
    }
}

/// Parses one entry under `<prefix>/subnets/` (`key` is the part after it).
pub fn parse_lease(key: &str, value: &[u8]) -> Result<Lease, BadLease> {
    let subnet = parse_subnet_key(key).ok_or_else(|| BadLease::Key(key.to_owned()))?;
    let attrs = serde_json::from_slice(value).map_err(|e| BadLease::Value {
        key: key.to_owned(),
        msg: e.to_string(),
    })?;
    Ok(Lease { subnet, attrs })
}

/// The subnet a previous run wrote to flannel's `subnet.env`
/// (`FLANNEL_SUBNET=10.244.7.1/24` -> `10.244.7.0/24`), asked for first
/// when no lease carries this node's address any more (its lease expired
/// or its address changed), as flanneld does. `None` when absent or
/// unreadable.
pub fn previous_subnet(subnet_env: &str) -> Option<Cidr> {
    let value = subnet_env
        .lines()
        .find_map(|l| l.trim().strip_prefix("FLANNEL_SUBNET="))?;
    let cidr: Cidr = value.trim().parse().ok()?;
    cidr.is_ipv4().then(|| cidr.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn keys_round_trip_and_reject_the_rest() {
        assert_eq!(subnet_key(c("10.244.3.0/24")), "10.244.3.0-24");
        assert_eq!(parse_subnet_key("10.244.3.0-24"), Some(c("10.244.3.0/24")));
        assert_eq!(
            parse_subnet_key("10.244.3.0-24&fd00:3::-64"),
            Some(c("10.244.3.0/24"))
        );
        for bad in [
            "",
            "10.244.3.0",
            "10.244.3.0-33",
            "10.244.3.1-24",
            "x-24",
            "10.244.3.0-",
            "fd00::-64",
        ] {
            assert_eq!(parse_subnet_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn flannel_vxlan_lease_with_fields_weft_does_not_use() {
        // As flanneld v0.2x writes it.
        let v = br#"{"PublicIP":"172.31.0.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"a6:0e:12:34:56:78"},"BackendV6Data":null}"#;
        let l = parse_lease("10.244.9.0-24", v).expect("lease");
        assert_eq!(l.subnet, c("10.244.9.0/24"));
        assert_eq!(l.attrs.public_ip, Ipv4Addr::new(172, 31, 0, 9));
        assert_eq!(l.attrs.backend_type, "vxlan");
        assert_eq!(
            l.attrs.vtep_mac(),
            Some(MacAddr([0xa6, 0x0e, 0x12, 0x34, 0x56, 0x78]))
        );
    }

    #[test]
    fn host_gw_lease_has_no_backend_data() {
        let l = parse_lease(
            "10.244.2.0-24",
            br#"{"PublicIP":"172.31.0.2","BackendType":"host-gw"}"#,
        )
        .expect("lease");
        assert_eq!(l.attrs.vtep_mac(), None);
        let own = LeaseAttrs::own(
            Ipv4Addr::new(172, 31, 0, 2),
            Mode::HostGw,
            1,
            MacAddr([2, 0, 0, 0, 0, 1]),
        );
        assert_eq!(
            own.to_json(),
            r#"{"PublicIP":"172.31.0.2","BackendType":"host-gw"}"#
        );
    }

    #[test]
    fn own_vxlan_attrs_are_flannels_shape() {
        let own = LeaseAttrs::own(
            Ipv4Addr::new(172, 31, 0, 1),
            Mode::Vxlan,
            1,
            MacAddr([0x02, 0x57, 0xac, 0x1f, 0x00, 0x01]),
        );
        assert_eq!(
            own.to_json(),
            r#"{"PublicIP":"172.31.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:57:ac:1f:00:01"}}"#
        );
        let back = parse_lease("10.244.1.0-24", own.to_json().as_bytes()).expect("lease");
        assert_eq!(back.attrs, own);
    }

    #[test]
    fn wireguard_backend_data_is_flannels_shape() {
        let k = PublicKey([5; 32]);
        let a = LeaseAttrs::own(
            Ipv4Addr::new(172, 31, 0, 1),
            Mode::Wireguard,
            1,
            MacAddr([2, 0, 0, 0, 0, 1]),
        )
        .with_wireguard(&k, 51821);
        let v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(v["BackendType"], "wireguard");
        assert_eq!(v["BackendData"]["PublicKey"], k.to_string());
        assert_eq!(v["BackendData"]["Port"], 51821);
        assert_eq!(a.wireguard(51820), Some((k, 51821)));
        // flannel's own wireguard leases carry the key only.
        let l = parse_lease(
            "10.244.2.0-24",
            format!(r#"{{"PublicIP":"172.31.0.2","BackendType":"wireguard","BackendData":{{"PublicKey":"{k}"}}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(l.attrs.wireguard(51820), Some((k, 51820)));
        let bad = LeaseAttrs {
            backend_data: Some(serde_json::json!({"PublicKey": "x", "Port": 1})),
            ..a
        };
        assert_eq!(bad.wireguard(51820), None);
    }

    #[test]
    fn malformed_values_are_named() {
        for v in [
            &b"{"[..],
            b"null",
            br#"{"PublicIP":"not-an-ip"}"#,
            br#"{"BackendType":"vxlan"}"#,
        ] {
            let e = parse_lease("10.244.1.0-24", v).expect_err("bad");
            assert_eq!(e.label(), "bad_value");
            assert!(e.to_string().contains("10.244.1.0-24"), "{e}");
        }
        assert_eq!(
            parse_lease("junk", b"{}").expect_err("bad").label(),
            "bad_key"
        );
        // A multicast VtepMAC is not used.
        let l = parse_lease(
            "10.244.1.0-24",
            br#"{"PublicIP":"172.31.0.1","BackendData":{"VtepMAC":"01:00:5e:00:00:01"}}"#,
        )
        .expect("lease");
        assert_eq!(l.attrs.vtep_mac(), None);
    }

    #[test]
    fn previous_subnet_comes_from_flannel_subnet() {
        let env = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\n";
        assert_eq!(previous_subnet(env), Some(c("10.244.7.0/24")));
        assert_eq!(previous_subnet("FLANNEL_NETWORK=10.244.0.0/16\n"), None);
        assert_eq!(previous_subnet("FLANNEL_SUBNET=garbage\n"), None);
        assert_eq!(previous_subnet("FLANNEL_SUBNET=fd00::1/64\n"), None);
    }
}
