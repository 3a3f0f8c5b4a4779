//! FRR (zebra + bgpd) as a node's routing daemon instead of weftd: it
//! announces the node's pod CIDR to a route reflector and installs what it
//! learns into the node's kernel, so a cluster can mix FRR and weftd nodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bgp::CLUSTER_ASN;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::ChildGuard;

/// Where Debian installs FRR's daemons.
pub const FRR_DIR: &str = "/usr/lib/frr";

/// bgpd's config for a node at `router_id` announcing `pod_cidr` to the
/// iBGP route reflector at `rr` (hold 3 s, graceful restart on).
pub fn bgpd_conf(router_id: &str, pod_cidr: &str, rr: &str) -> String {
    format!(
        "frr defaults traditional\nhostname frr-{router_id}\n\
         router bgp {CLUSTER_ASN}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n\
         no bgp network import-check\n bgp graceful-restart\n\
         neighbor {rr} remote-as {CLUSTER_ASN}\n neighbor {rr} timers 1 3\n\
         neighbor {rr} timers connect 1\n\
         address-family ipv4 unicast\n  network {pod_cidr}\n exit-address-family\n"
    )
}

/// zebra and bgpd running in a node namespace with private sockets under
/// the run directory; killed on drop.
#[derive(Debug)]
pub struct Frr {
    _bgpd: ChildGuard,
    _zebra: ChildGuard,
    dir: PathBuf,
}

fn wait_file(path: &Path, what: &str, log: &Path) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        if Instant::now() > end {
            return Err(Error::Topology(format!(
                "{what} did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Frr {
    /// Starts zebra, then bgpd with `bgpd_conf`, inside `ns`; files under
    /// `run_dir/<tag>-frr/`.
    pub fn start(ns: &Netns, bgpd_conf: &str, run_dir: &Path, tag: &str) -> Result<Self> {
        let dir = run_dir.join(format!("{tag}-frr"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let zconf = dir.join("zebra.conf");
        let bconf = dir.join("bgpd.conf");
        std::fs::write(&zconf, format!("hostname {tag}\n"))
            .and_then(|()| std::fs::write(&bconf, bgpd_conf))
            .map_err(|e| Error::io(format!("write {}", dir.display()), e))?;
        // The daemons drop to the frr user (which FRR requires to be in
        // its vty group); their directory must be theirs.
        let owned = Command::new("chown")
            .arg("-R")
            .arg("frr:frr")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !owned {
            return Err(Error::Topology(format!(
                "chown frr:frr {} failed (is FRR installed?)",
                dir.display()
            )));
        }
        let zserv = dir.join("zserv.api");
        let common = |cmd: &mut Command, name: &str, conf: &Path| {
            cmd.args(["-u", "frr", "-g", "frr", "-P", "0", "-f"])
                .arg(conf)
                .arg("-i")
                .arg(dir.join(format!("{name}.pid")))
                .arg("--vty_socket")
                .arg(&dir)
                .arg("-z")
                .arg(&zserv);
        };
        let mut z = ns.command(&format!("{FRR_DIR}/zebra"));
        common(&mut z, "zebra", &zconf);
        let zlog = dir.join("zebra.log");
        let zebra = ChildGuard::spawn(z, "zebra", Some(&zlog))?;
        wait_file(&zserv, "zebra", &zlog)?;
        let mut b = ns.command(&format!("{FRR_DIR}/bgpd"));
        common(&mut b, "bgpd", &bconf);
        let blog = dir.join("bgpd.log");
        let bgpd = ChildGuard::spawn(b, "bgpd", Some(&blog))?;
        wait_file(&dir.join("bgpd.vty"), "bgpd", &blog)?;
        Ok(Self {
            _bgpd: bgpd,
            _zebra: zebra,
            dir,
        })
    }

    /// Runs `vtysh -c cmd` against bgpd.
    pub fn vtysh(&self, cmd: &str) -> String {
        Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgpd_conf_announces_the_pod_cidr_to_the_reflector() {
        let c = bgpd_conf("172.31.0.4", "10.244.4.0/24", "172.31.0.254");
        assert!(c.contains("router bgp 64512"));
        assert!(c.contains("neighbor 172.31.0.254 remote-as 64512"));
        assert!(c.contains("network 10.244.4.0/24"));
    }
}
