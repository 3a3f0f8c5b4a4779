//! FRR's daemons in a namespace: zebra with bgpd as a node's routing
//! daemon instead of weftd (it announces the node's pod CIDR to a route
//! reflector and installs what it learns into the node's kernel, so a
//! cluster can mix FRR and weftd nodes), with bfdd and bgpd as a BFD
//! peer or top-of-rack router in tests, or bgpd alone as a BGP peer.

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

/// FRR's daemons running in a namespace with private sockets under the
/// run directory; killed on drop (in reverse order: zebra last).
///
/// zebra runs without `-n`: with it zebra takes every network namespace
/// on the host for a VRF, and bfdd then opens its UDP 3784 sockets in all
/// of them (other tests' too), where they take the packets of the BFD
/// sessions that live there.
#[derive(Debug)]
pub struct Frr {
    procs: Vec<ChildGuard>,
    dir: PathBuf,
}

impl Drop for Frr {
    fn drop(&mut self) {
        // The daemons that talk to zebra stop before it does.
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
    }
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
        Self::start_daemons(ns, run_dir, tag, &[("bgpd", bgpd_conf)])
    }

    /// Starts zebra, then each of `daemons` (`bfdd`, `bgpd`, ...) with its
    /// config, in order, inside `ns`; files under `run_dir/<tag>-frr/`.
    /// Each daemon's log is `<daemon>.log` there.
    pub fn start_daemons(
        ns: &Netns,
        run_dir: &Path,
        tag: &str,
        daemons: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = run_dir.join(format!("{tag}-frr"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let write = |name: &str, text: &str| {
            let conf = dir.join(format!("{name}.conf"));
            std::fs::write(&conf, text)
                .map(|()| conf)
                .map_err(|e| Error::io(format!("write {}", dir.display()), e))
        };
        let mut confs = vec![("zebra", write("zebra", &format!("hostname {tag}\n"))?)];
        for (name, text) in daemons {
            confs.push((name, write(name, text)?));
        }
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
        let mut me = Self {
            procs: Vec::new(),
            dir,
        };
        for (name, conf) in confs {
            me.spawn(ns, name, &conf, &["-u", "frr", "-g", "frr", "-P", "0"])?;
        }
        Ok(me)
    }

    /// bgpd alone inside `ns`, without zebra (`-Z`: it installs nothing in
    /// the kernel) and as root (`-S`), with `conf`; files under
    /// `run_dir/<tag>-frr/`. For a BGP peer that only speaks the protocol.
    pub fn start_bgpd_alone(ns: &Netns, conf: &str, run_dir: &Path, tag: &str) -> Result<Self> {
        let dir = run_dir.join(format!("{tag}-frr"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let path = dir.join("bgpd.conf");
        std::fs::write(&path, conf)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        let mut me = Self {
            procs: Vec::new(),
            dir,
        };
        me.spawn(ns, "bgpd", &path, &["-S", "-Z", "-n", "-P", "0"])?;
        Ok(me)
    }

    /// Starts daemon `name` with `flags` and config `conf`, sockets and pid
    /// file in the directory; waits for its vty socket (zebra: its zserv).
    fn spawn(&mut self, ns: &Netns, name: &str, conf: &Path, flags: &[&str]) -> Result<()> {
        let zserv = self.dir.join("zserv.api");
        let mut cmd = ns.command(&format!("{FRR_DIR}/{name}"));
        cmd.args(flags)
            .arg("-f")
            .arg(conf)
            .arg("-i")
            .arg(self.dir.join(format!("{name}.pid")))
            .arg("--vty_socket")
            .arg(&self.dir)
            .arg("-z")
            .arg(&zserv);
        if name == "bfdd" {
            cmd.arg("--bfdctl").arg(self.dir.join("bfdd.sock"));
        }
        let log = self.dir.join(format!("{name}.log"));
        self.procs.push(ChildGuard::spawn(cmd, name, Some(&log))?);
        let ready = if name == "zebra" {
            zserv
        } else {
            self.dir.join(format!("{name}.vty"))
        };
        wait_file(&ready, name, &log)
    }

    /// The pid of daemon `name` (`bgpd`, `zebra`, ...), if it runs here.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|p| p.what() == name)
            .and_then(ChildGuard::pid)
    }

    /// Runs `vtysh -c cmd` against every daemon.
    pub fn vtysh(&self, cmd: &str) -> String {
        self.vtysh_daemon(None, &[cmd])
    }

    /// Runs `vtysh [-d daemon] -c cmd...`.
    pub fn vtysh_daemon(&self, daemon: Option<&str>, cmds: &[&str]) -> String {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(&self.dir);
        if let Some(d) = daemon {
            c.args(["-d", d]);
        }
        for x in cmds {
            c.args(["-c", x]);
        }
        c.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The directory holding the configs, sockets and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
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
