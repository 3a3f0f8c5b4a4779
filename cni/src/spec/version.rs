//! CNI spec versions: parsing, ordering and the VERSION reply.

use serde_json::{Value, json};

use crate::error::CniError;

/// The newest spec version this crate implements.
pub const LATEST: &str = "1.1.0";

/// Every spec version our plugins accept (the reference's list plus 1.1.0).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A parsed `major.minor.patch` spec version, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parses `"x.y.z"` (an empty string means 0.1.0, as in libcni).
    pub fn parse(s: &str) -> Result<Self, CniError> {
        if s.is_empty() {
            return Ok(Self(0, 1, 0));
        }
        let bad = || CniError::decode(format!("invalid version {s:?}"), "");
        let mut it = s.split('.');
        let mut next = || -> Result<u32, CniError> {
            it.next().ok_or_else(bad)?.parse::<u32>().map_err(|_| bad())
        };
        let v = Self(next()?, next()?, next()?);
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    /// True for versions whose results use the `ip4`/`ip6` legacy shape.
    pub fn is_legacy(self) -> bool {
        self < Self(0, 3, 0)
    }

    /// True for versions whose `ips[]` entries carry a `version` key.
    pub fn has_ip_version(self) -> bool {
        self >= Self(0, 3, 0) && self < Self(1, 0, 0)
    }
}

/// The version a config declares: empty means "0.1.0" (libcni's rule).
pub fn effective_version(cni_version: &str) -> &str {
    if cni_version.is_empty() {
        "0.1.0"
    } else {
        cni_version
    }
}

/// True when `v` is one of [`SUPPORTED_VERSIONS`].
pub fn is_supported(v: &str, supported: &[&str]) -> bool {
    supported.contains(&effective_version(v))
}

/// The VERSION command's reply.
pub fn version_info(supported: &[&str]) -> Value {
    json!({ "cniVersion": LATEST, "supportedVersions": supported })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("").unwrap(), Version(0, 1, 0));
        assert!(Version::parse("0.3.1").unwrap() < Version::parse("0.4.0").unwrap());
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.4.0").unwrap());
        assert!(Version::parse("1.0").is_err());
        assert!(Version::parse("1.0.0.0").is_err());
        assert!(Version::parse("a.b.c").is_err());
        assert!(Version::parse("0.2.0").unwrap().is_legacy());
        assert!(Version::parse("0.4.0").unwrap().has_ip_version());
        assert!(!Version::parse("1.1.0").unwrap().has_ip_version());
        assert!(is_supported("", SUPPORTED_VERSIONS));
        assert!(!is_supported("1.2.0", SUPPORTED_VERSIONS));
    }
}
