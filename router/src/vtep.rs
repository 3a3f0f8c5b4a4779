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

/// serde `with` for a MAC written as a string (`aa:bb:cc:dd:ee:ff`).
pub(crate) mod mac_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use weft_encap::MacAddr;

    pub(crate) fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// serde `with` for an optional MAC written as a string (or null).
pub(crate) mod opt_mac_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use weft_encap::MacAddr;

    pub(crate) fn serialize<S: Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.collect_str(m),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<MacAddr>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
