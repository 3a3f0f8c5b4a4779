//! Forwarding modes of a cluster: the kernel baselines (computed here as
//! plain command lists) and the weft modes (run by [`crate::weftd`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::topology::Topology;

/// Name of the flannel-style kernel vxlan device.
pub const VXLAN_DEV: &str = "flannel.1";
/// flannel's VXLAN port.
pub const VXLAN_PORT: u16 = 8472;
/// flannel's VNI.
pub const VXLAN_VNI: u32 = 1;
/// The node's underlay interface name.
pub const UNDERLAY_IF: &str = "eth0";

/// A weft dataplane mode (weftd `[dataplane] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeftMode {
    /// Kernel routes via peers' underlay IPs, programmed by weftd.
    HostGw,
    /// TUN + VXLAN encapsulation.
    Vxlan,
    /// TUN + flannel's UDP format.
    Udp,
    /// TUN + IP-in-IP over a raw socket.
    Ipip,
}

impl WeftMode {
    /// Parses weftd's config name (`host-gw`, `vxlan`, `udp`, `ipip`).
    pub fn from_config_name(s: &str) -> Option<Self> {
        [Self::HostGw, Self::Vxlan, Self::Udp, Self::Ipip]
            .into_iter()
            .find(|m| m.config_name() == s)
    }

    /// The name in weftd's config.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
            Self::Udp => "udp",
            Self::Ipip => "ipip",
        }
    }
}

/// How pod traffic crosses nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Static kernel routes `pod_cidr via peer_underlay_ip`.
    KernelHostGw,
    /// A kernel vxlan device per node, set up as flanneld does.
    KernelVxlan,
    /// weftd running in every node.
    Weft(WeftMode),
}

impl Mode {
    /// Every mode, kernel first.
    pub const ALL: [Self; 6] = [
        Self::KernelHostGw,
        Self::KernelVxlan,
        Self::Weft(WeftMode::HostGw),
        Self::Weft(WeftMode::Vxlan),
        Self::Weft(WeftMode::Udp),
        Self::Weft(WeftMode::Ipip),
    ];

    /// The command-line name (`kernel-hostgw`, `kernel-vxlan`, `host-gw`, `vxlan`, `udp`, `ipip`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KernelHostGw => "kernel-hostgw",
            Self::KernelVxlan => "kernel-vxlan",
            Self::Weft(w) => w.config_name(),
        }
    }

    /// Whether weftd runs in this mode.
    pub fn is_weft(self) -> bool {
        matches!(self, Self::Weft(_))
    }

    /// Pod MTU for this mode on an underlay of `underlay_mtu`.
    pub fn pod_mtu(self, underlay_mtu: u32) -> u32 {
        match self {
            Self::KernelHostGw | Self::Weft(WeftMode::HostGw) => underlay_mtu,
            Self::KernelVxlan | Self::Weft(WeftMode::Vxlan) => underlay_mtu - 50,
            Self::Weft(WeftMode::Udp) => underlay_mtu - 28,
            Self::Weft(WeftMode::Ipip) => underlay_mtu - 20,
        }
    }

    /// Parses a comma-separated list of modes.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        s.split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "kernel-hostgw" | "kernel-host-gw" => Self::KernelHostGw,
            "kernel-vxlan" => Self::KernelVxlan,
            "host-gw" | "hostgw" | "weft-hostgw" | "weft-host-gw" => Self::Weft(WeftMode::HostGw),
            "vxlan" | "weft-vxlan" => Self::Weft(WeftMode::Vxlan),
            "udp" | "weft-udp" => Self::Weft(WeftMode::Udp),
            "ipip" | "weft-ipip" => Self::Weft(WeftMode::Ipip),
            other => {
                return Err(Error::Mode {
                    mode: other.to_owned(),
                    msg: "unknown (kernel-hostgw, kernel-vxlan, host-gw, vxlan, udp, ipip)".into(),
                });
            }
        })
    }
}

/// One command to run against a node namespace: `ip -n NS ...` or `bridge -n NS ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `ip` or `bridge`.
    pub tool: &'static str,
    /// Arguments after `-n NS`.
    pub args: Vec<String>,
}

fn ip(args: &[&str]) -> Step {
    Step {
        tool: "ip",
        args: args.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The VTEP MAC derived from an underlay address: `02:57:a:b:c:d` (the same
/// derivation weftd uses, so kernel and weft VTEPs interoperate).
pub fn vtep_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:57:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Commands that put node `index` into a kernel mode. Weft modes have none.
pub fn kernel_setup(mode: Mode, topo: &Topology, index: usize) -> Result<Vec<Step>> {
    let plans = topo.plans()?;
    let me = topo.node_plan(index)?;
    let peers = plans.iter().filter(|p| p.number != me.number);
    let mut steps = Vec::new();
    match mode {
        Mode::KernelHostGw => {
            for p in peers {
                steps.push(ip(&[
                    "route",
                    "replace",
                    &p.pod_cidr.to_string(),
                    "via",
                    &p.underlay_ip.to_string(),
                    "dev",
                    UNDERLAY_IF,
                ]));
            }
        }
        Mode::KernelVxlan => {
            let mtu = mode.pod_mtu(topo.underlay_mtu).to_string();
            steps.push(ip(&[
                "link",
                "add",
                VXLAN_DEV,
                "address",
                &vtep_mac(me.underlay_ip),
                "type",
                "vxlan",
                "id",
                &VXLAN_VNI.to_string(),
                "local",
                &me.underlay_ip.to_string(),
                "dev",
                UNDERLAY_IF,
                "dstport",
                &VXLAN_PORT.to_string(),
                "nolearning",
            ]));
            steps.push(ip(&["link", "set", VXLAN_DEV, "mtu", &mtu, "up"]));
            steps.push(ip(&[
                "addr",
                "add",
                &format!("{}/32", me.pod_cidr.addr),
                "dev",
                VXLAN_DEV,
            ]));
            for p in peers {
                let vtep_ip = p.pod_cidr.addr.to_string();
                let mac = vtep_mac(p.underlay_ip);
                steps.push(ip(&[
                    "neigh",
                    "replace",
                    &vtep_ip,
                    "lladdr",
                    &mac,
                    "dev",
                    VXLAN_DEV,
                    "nud",
                    "permanent",
                ]));
                steps.push(Step {
                    tool: "bridge",
                    args: [
                        "fdb",
                        "append",
                        &mac,
                        "dev",
                        VXLAN_DEV,
                        "dst",
                        &p.underlay_ip.to_string(),
                        "self",
                        "permanent",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                });
                steps.push(ip(&[
                    "route",
                    "replace",
                    &p.pod_cidr.to_string(),
                    "via",
                    &vtep_ip,
                    "dev",
                    VXLAN_DEV,
                    "onlink",
                ]));
            }
        }
        Mode::Weft(_) => {}
    }
    Ok(steps)
}

/// Commands that undo [`kernel_setup`] (errors from them are ignored).
pub fn kernel_teardown(mode: Mode, topo: &Topology, index: usize) -> Result<Vec<Step>> {
    let me = topo.node_plan(index)?;
    Ok(match mode {
        Mode::KernelHostGw => topo
            .plans()?
            .iter()
            .filter(|p| p.number != me.number)
            .map(|p| ip(&["route", "del", &p.pod_cidr.to_string()]))
            .collect(),
        Mode::KernelVxlan => vec![ip(&["link", "del", VXLAN_DEV])],
        Mode::Weft(_) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &Step) -> String {
        format!("{} {}", s.tool, s.args.join(" "))
    }

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
        assert_eq!(
            "weft-vxlan".parse::<Mode>().unwrap(),
            Mode::Weft(WeftMode::Vxlan)
        );
        assert!("vxlan2".parse::<Mode>().is_err());
        assert_eq!(
            Mode::parse_list("kernel-hostgw, kernel-vxlan").unwrap(),
            vec![Mode::KernelHostGw, Mode::KernelVxlan]
        );
    }

    #[test]
    fn hostgw_routes_every_peer_via_its_underlay_ip() {
        let t = Topology {
            nodes: 3,
            ..Topology::default()
        };
        let lines: Vec<_> = kernel_setup(Mode::KernelHostGw, &t, 0)
            .unwrap()
            .iter()
            .map(line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "ip route replace 10.244.2.0/24 via 172.31.0.2 dev eth0",
                "ip route replace 10.244.3.0/24 via 172.31.0.3 dev eth0",
            ]
        );
    }

    #[test]
    fn vxlan_is_set_up_like_flanneld() {
        let t = Topology {
            nodes: 2,
            ..Topology::default()
        };
        let lines: Vec<_> = kernel_setup(Mode::KernelVxlan, &t, 1)
            .unwrap()
            .iter()
            .map(line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "ip link add flannel.1 address 02:57:ac:1f:00:02 type vxlan id 1 local 172.31.0.2 dev eth0 dstport 8472 nolearning",
                "ip link set flannel.1 mtu 1450 up",
                "ip addr add 10.244.2.0/32 dev flannel.1",
                "ip neigh replace 10.244.1.0 lladdr 02:57:ac:1f:00:01 dev flannel.1 nud permanent",
                "bridge fdb append 02:57:ac:1f:00:01 dev flannel.1 dst 172.31.0.1 self permanent",
                "ip route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
            ]
        );
        assert_eq!(
            kernel_teardown(Mode::KernelVxlan, &t, 1)
                .unwrap()
                .iter()
                .map(line)
                .collect::<Vec<_>>(),
            vec!["ip link del flannel.1"]
        );
    }

    #[test]
    fn mtus_follow_the_overheads() {
        assert_eq!(Mode::KernelHostGw.pod_mtu(1500), 1500);
        assert_eq!(Mode::KernelVxlan.pod_mtu(1500), 1450);
        assert_eq!(Mode::Weft(WeftMode::Udp).pod_mtu(1500), 1472);
        assert_eq!(Mode::Weft(WeftMode::Ipip).pod_mtu(1500), 1480);
    }
}
