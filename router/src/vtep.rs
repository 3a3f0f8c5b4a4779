//! VTEP MAC addresses: weft's derivation from an underlay address (the
//! same one a flannel-style kernel vxlan node is configured with) and the
//! config file's `aa:bb:cc:dd:ee:ff` form.

use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer};
use weft_encap::MacAddr;

/// weft's VTEP MAC for an underlay address: `02:57:a:b:c:d`.
pub fn derived_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x57, o[0], o[1], o[2], o[3]])
}

/// serde `deserialize_with` for an optional MAC written as a string.
pub(crate) fn deserialize_mac<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<MacAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}
