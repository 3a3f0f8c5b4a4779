//! host-local configuration: parsing every key the reference accepts and
//! validating it with the same rules and messages (`LoadIPAMConfig`,
//! `Range.Canonicalize`, `RangeSet.Canonicalize`). Errors are code 7
//! (the reference reports them as untyped 999), CNI_ARGS errors code 4.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use super::ipmath::{canonical, next, to_u128};
use crate::error::CniError;
use crate::skel::check_cni_args;
use crate::spec::{Route, Version};

/// Where leases live when `dataDir` is not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One validated pool: `[range_start, range_end]` inside `subnet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet (network address, no host bits).
    pub subnet: IpNet,
    /// First address, inclusive.
    pub range_start: IpAddr,
    /// Last address, inclusive.
    pub range_end: IpAddr,
    /// Gateway (defaults to the subnet's first address); never handed out.
    pub gateway: IpAddr,
}

fn cmp(a: IpAddr, b: IpAddr) -> std::cmp::Ordering {
    to_u128(a).cmp(&to_u128(b))
}

impl Range {
    /// True when `ip` is of this family, in the subnet and within the bounds.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.subnet.addr().is_ipv4()
            && self.subnet.contains(&ip)
            && cmp(ip, self.range_start).is_ge()
            && cmp(ip, self.range_end).is_le()
    }

    /// True when the two ranges share an address.
    pub fn overlaps(&self, o: &Self) -> bool {
        self.range_start.is_ipv4() == o.range_start.is_ipv4()
            && (self.contains(o.range_start)
                || self.contains(o.range_end)
                || o.contains(self.range_start)
                || o.contains(self.range_end))
    }

    /// True when `ip` may be handed out: not the gateway, the network
    /// address or the IPv4 broadcast address.
    pub fn assignable(&self, ip: IpAddr) -> bool {
        ip != self.gateway
            && ip != self.subnet.network()
            && !(ip.is_ipv4() && ip == self.subnet.broadcast())
    }

    /// How many addresses this range can hand out.
    pub fn capacity(&self) -> u128 {
        let (s, e) = (to_u128(self.range_start), to_u128(self.range_end));
        let mut n = (e - s).saturating_add(1);
        let mut skip = vec![self.gateway, self.subnet.network()];
        if self.subnet.addr().is_ipv4() {
            skip.push(self.subnet.broadcast());
        }
        skip.sort_by(|a, b| cmp(*a, *b));
        skip.dedup();
        for ip in skip {
            if self.contains(ip) {
                n -= 1;
            }
        }
        n
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// A set of pools of one family; one address is taken from each set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// True when any range holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// The range holding `ip`.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// True when any range of each set overlaps.
    pub fn overlaps(&self, o: &Self) -> bool {
        self.0.iter().any(|a| o.0.iter().any(|b| a.overlaps(b)))
    }

    /// Addresses the set can hand out.
    pub fn capacity(&self) -> u128 {
        self.0
            .iter()
            .map(Range::capacity)
            .fold(0u128, u128::saturating_add)
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The validated host-local configuration.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// Network name (the lease directory).
    pub name: String,
    /// cniVersion as written.
    pub cni_version: String,
    /// Range sets in allocation order (runtime `ipRanges`, legacy range, `ranges`).
    pub ranges: Vec<RangeSet>,
    /// Routes to return.
    pub routes: Vec<Route>,
    /// Lease root (`dataDir`).
    pub data_dir: PathBuf,
    /// resolv.conf-format file to return as DNS.
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses (CNI_ARGS `IP`, `args.cni.ips`, `runtimeConfig.ips`).
    pub requested: Vec<IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(flatten)]
    legacy: RawRange,
    #[serde(default)]
    routes: Option<Vec<Route>>,
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    resolv_conf: Option<String>,
    #[serde(default)]
    ranges: Option<Vec<Vec<RawRange>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRuntime {
    #[serde(default)]
    ip_ranges: Option<Vec<Vec<RawRange>>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCniArgs {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawArgs {
    #[serde(default)]
    cni: Option<RawCniArgs>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNet {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    ipam: Option<RawIpam>,
    #[serde(default)]
    runtime_config: Option<RawRuntime>,
    #[serde(default)]
    args: Option<RawArgs>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg, "")
}

/// Parses an address, or an address with a prefix (`ip.ParseIP` semantics).
fn parse_ip_or_cidr(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))
        .map(canonical)
}

fn canonicalize_range(raw: &RawRange) -> Result<Range, String> {
    let subnet_s = raw.subnet.as_deref().unwrap_or("");
    let subnet: IpNet = subnet_s
        .parse()
        .map_err(|_| format!("invalid CIDR address: {subnet_s}"))?;
    let subnet = match subnet {
        IpNet::V6(n) => match n.addr().to_ipv4_mapped() {
            Some(a) if n.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(a), n.prefix_len() - 96).map_err(|e| e.to_string())?
            }
            _ => subnet,
        },
        IpNet::V4(_) => subnet,
    };
    let (ones, bits) = (subnet.prefix_len(), subnet.max_prefix_len());
    let network = subnet.trunc();
    if ones > bits - 2 {
        return Err(format!("Network {network} too small to allocate from"));
    }
    if subnet.addr() != network.addr() {
        return Err(format!(
            "Network has host bits set. For a subnet mask of length {ones} the network address is {}",
            network.addr()
        ));
    }
    let ip = |s: &Option<String>| -> Result<Option<IpAddr>, String> {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>()
                    .map(canonical)
                    .map_err(|_| format!("invalid IP address: {s}"))
            })
            .transpose()
    };
    let gateway = ip(&raw.gateway)?.unwrap_or_else(|| next(network.addr()));
    let start = ip(&raw.range_start)?;
    let end = ip(&raw.range_end)?;
    let fam_ok = |a: IpAddr| a.is_ipv4() == network.addr().is_ipv4() && network.contains(&a);
    let start_v = start.unwrap_or_else(|| next(network.addr()));
    if let Some(s) = start
        && (!fam_ok(s) || end.is_some_and(|e| e.is_ipv4() == s.is_ipv4() && cmp(s, e).is_gt()))
    {
        return Err(format!("RangeStart {s} not in network {network}"));
    }
    let end_v = match end {
        Some(e) => {
            if !fam_ok(e) || cmp(e, start_v).is_lt() {
                return Err(format!("RangeEnd {e} not in network {network}"));
            }
            e
        }
        None => {
            let last = network.broadcast();
            match last {
                IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) - 1)),
                IpAddr::V6(_) => last,
            }
        }
    };
    Ok(Range {
        subnet: network,
        range_start: start_v,
        range_end: end_v,
        gateway,
    })
}

fn canonicalize_set(raw: &[RawRange]) -> Result<RangeSet, String> {
    if raw.is_empty() {
        return Err("empty range set".into());
    }
    let mut out: Vec<Range> = Vec::with_capacity(raw.len());
    for r in raw {
        let r = canonicalize_range(r)?;
        if out
            .first()
            .is_some_and(|f| f.range_start.is_ipv4() != r.range_start.is_ipv4())
        {
            return Err("mixed address families".into());
        }
        out.push(r);
    }
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            if a.overlaps(b) {
                return Err(format!("subnets {a} and {b} overlap"));
            }
        }
    }
    Ok(RangeSet(out))
}

impl IpamConfig {
    /// Parses and validates the config on stdin plus `CNI_ARGS`.
    pub fn load(stdin: &[u8], cni_args: &str) -> Result<Self, CniError> {
        let n: RawNet = serde_json::from_slice(stdin).map_err(|e| bad(e.to_string()))?;
        let Some(ipam) = n.ipam else {
            return Err(bad("IPAM config missing 'ipam' key"));
        };
        let mut requested = Vec::new();
        if !cni_args.is_empty() {
            check_cni_args(cni_args, &["IP"])?;
            for (k, v) in crate::skel::split_cni_args(cni_args) {
                if k != "IP" {
                    continue;
                }
                for item in v.split(',').filter(|s| !s.is_empty()) {
                    let ip = parse_ip_or_cidr(item).ok_or_else(|| {
                        CniError::env(
                            format!("ARGS: error parsing value of pair \"IP={v}\""),
                            format!("invalid IP address: {item}"),
                        )
                    })?;
                    requested.push(ip);
                }
            }
        }
        let mut more = |list: Option<Vec<String>>| -> Result<(), CniError> {
            for s in list.unwrap_or_default() {
                let ip = parse_ip_or_cidr(&s)
                    .ok_or_else(|| bad(format!("cannot understand ip: invalid IP address: {s}")))?;
                requested.push(ip);
            }
            Ok(())
        };
        more(n.args.and_then(|a| a.cni).and_then(|c| c.ips))?;
        let runtime = n.runtime_config.unwrap_or_default();
        more(runtime.ips)?;

        let mut raw_sets: Vec<Vec<RawRange>> = runtime.ip_ranges.unwrap_or_default();
        if ipam.legacy.subnet.as_deref().is_some_and(|s| !s.is_empty()) {
            // The legacy range goes before `ranges` but after runtime ipRanges.
            raw_sets.push(vec![ipam.legacy]);
        }
        raw_sets.extend(ipam.ranges.unwrap_or_default());
        if raw_sets.is_empty() {
            return Err(bad("no IP ranges specified"));
        }
        let mut ranges = Vec::with_capacity(raw_sets.len());
        let (mut v4, mut v6) = (0, 0);
        for (i, raw) in raw_sets.iter().enumerate() {
            let set =
                canonicalize_set(raw).map_err(|e| bad(format!("invalid range set {i}: {e}")))?;
            if set.0[0].range_start.is_ipv4() {
                v4 += 1;
            } else {
                v6 += 1;
            }
            ranges.push(set);
        }
        if (v4 > 1 || v6 > 1)
            && Version::parse(&n.cni_version).map_or(true, |v| v < Version(0, 3, 0))
        {
            return Err(bad(format!(
                "CNI version {} does not support more than 1 address per family",
                n.cni_version
            )));
        }
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(bad(format!("range set {i} overlaps with {j}")));
                }
            }
        }
        Ok(Self {
            name: n.name,
            cni_version: n.cni_version,
            ranges,
            routes: ipam.routes.unwrap_or_default(),
            data_dir: PathBuf::from(
                ipam.data_dir
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()),
            ),
            resolv_conf: ipam
                .resolv_conf
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            requested,
        })
    }
}

/// Parses a resolv.conf-format file into DNS settings (like the reference's
/// `parseResolvConf`: nameserver, domain, search, options).
pub fn parse_resolv_conf(text: &str) -> crate::spec::Dns {
    let mut dns = crate::spec::Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut f = line.split_whitespace();
        let Some(key) = f.next() else { continue };
        let rest: Vec<String> = f.map(str::to_owned).collect();
        match key {
            "nameserver" => dns.nameservers.extend(rest.into_iter().take(1)),
            "domain" => {
                if let Some(d) = rest.into_iter().next() {
                    dns.domain = d;
                }
            }
            "search" => dns.search = rest,
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(ipam: &str) -> Result<IpamConfig, CniError> {
        let conf = format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#);
        IpamConfig::load(conf.as_bytes(), "")
    }

    fn err(ipam: &str) -> String {
        load(ipam).unwrap_err().to_string()
    }

    #[test]
    fn legacy_and_defaults() {
        let c = load(r#"{"type":"host-local","subnet":"10.1.0.0/24"}"#).unwrap();
        let r = &c.ranges[0].0[0];
        assert_eq!(r.range_start.to_string(), "10.1.0.1");
        assert_eq!(r.range_end.to_string(), "10.1.0.254");
        assert_eq!(r.gateway.to_string(), "10.1.0.1");
        assert_eq!(r.capacity(), 253);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let c = load(r#"{"ranges":[[{"subnet":"fd00::/120"}]]}"#).unwrap();
        assert_eq!(c.ranges[0].0[0].range_end.to_string(), "fd00::ff");
        assert_eq!(c.ranges[0].0[0].capacity(), 254);
    }

    #[test]
    fn validation_messages() {
        assert_eq!(
            err(r#"{"subnet":"10.0.0.0/31"}"#),
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(r#"{"subnet":"10.0.0.1/32"}"#),
            "invalid range set 0: Network 10.0.0.1/32 too small to allocate from"
        );
        assert!(err(r#"{"subnet":"10.0.0.5/24"}"#).contains(
            "host bits set. For a subnet mask of length 24 the network address is 10.0.0.0"
        ));
        assert_eq!(err(r#"{"type":"host-local"}"#), "no IP ranges specified");
        assert_eq!(
            err(r#"{"ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]}"#),
            "invalid range set 0: mixed address families"
        );
        assert_eq!(
            err(r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/25"}]]}"#),
            "range set 0 overlaps with 1"
        );
        assert_eq!(
            err(r#"{"ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.0/24"}]]}"#),
            "invalid range set 0: subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.0.254 overlap"
        );
        assert_eq!(
            err(r#"{"ranges":[[]]}"#),
            "invalid range set 0: empty range set"
        );
        assert_eq!(
            err(r#"{"subnet":"10.0.0.0/24","rangeStart":"10.0.1.1"}"#),
            "invalid range set 0: RangeStart 10.0.1.1 not in network 10.0.0.0/24"
        );
        assert_eq!(
            err(r#"{"subnet":"10.0.0.0/24","rangeEnd":"10.0.1.1"}"#),
            "invalid range set 0: RangeEnd 10.0.1.1 not in network 10.0.0.0/24"
        );
        assert_eq!(
            err(r#"{"subnet":"nope"}"#),
            "invalid range set 0: invalid CIDR address: nope"
        );
        assert!(load(r#"{"subnet":"10.0.0.0/24"}"#).is_ok());
        let e = IpamConfig::load(br#"{"name":"n"}"#, "").unwrap_err();
        assert_eq!(
            (e.code(), e.to_string()),
            (7, "IPAM config missing 'ipam' key".into())
        );
        let e = IpamConfig::load(br#"{"cniVersion":"0.2.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}}"#, "").unwrap_err();
        assert!(
            e.to_string()
                .contains("does not support more than 1 address per family")
        );
    }

    #[test]
    fn requested_ips_and_order() {
        let conf = br#"{"cniVersion":"1.0.0","name":"n","args":{"cni":{"ips":["10.0.0.7"]}},
            "runtimeConfig":{"ips":["10.0.0.8/24"],"ipRanges":[[{"subnet":"10.9.0.0/24"}]]},
            "ipam":{"subnet":"10.0.0.0/24","ranges":[[{"subnet":"10.5.0.0/24"}]]}}"#;
        let c = IpamConfig::load(conf, "IgnoreUnknown=1;IP=10.0.0.6;K8S_POD_NAME=x").unwrap();
        let ips: Vec<String> = c.requested.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.0.0.6", "10.0.0.7", "10.0.0.8"]);
        let subnets: Vec<String> = c.ranges.iter().map(|s| s.0[0].subnet.to_string()).collect();
        assert_eq!(subnets, ["10.9.0.0/24", "10.0.0.0/24", "10.5.0.0/24"]);
        assert_eq!(
            IpamConfig::load(conf, "K8S_POD_NAME=x").unwrap_err().code(),
            4
        );
        assert_eq!(IpamConfig::load(conf, "IP=bogus").unwrap_err().code(), 4);
    }

    #[test]
    fn contains_and_assignable() {
        let c = load(r#"{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.0","rangeEnd":"10.0.0.255","gateway":"10.0.0.9"}"#).unwrap();
        let r = &c.ranges[0].0[0];
        assert!(r.contains("10.0.0.0".parse().unwrap()));
        assert!(!r.assignable("10.0.0.0".parse().unwrap()));
        assert!(!r.assignable("10.0.0.255".parse().unwrap()));
        assert!(!r.assignable("10.0.0.9".parse().unwrap()));
        assert!(r.assignable("10.0.0.1".parse().unwrap()));
        assert_eq!(r.capacity(), 253);
    }

    #[test]
    fn resolv_conf() {
        let d = parse_resolv_conf(
            "# c\nnameserver 1.1.1.1\nnameserver 8.8.8.8\ndomain x.local\nsearch a b\noptions ndots:5 edns0\n",
        );
        assert_eq!(d.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(d.domain, "x.local");
        assert_eq!(d.search, ["a", "b"]);
        assert_eq!(d.options, ["ndots:5", "edns0"]);
    }
}
