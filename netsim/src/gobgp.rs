//! GoBGP (`gobgpd`) in a namespace, driven through its `gobgp` CLI over
//! the gRPC API on the namespace's loopback: a third BGP implementation
//! to peer with, beside BIRD ([`crate::bgp::Bird`]) and FRR
//! ([`crate::frr::Frr`]).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::ChildGuard;

/// Where `gobgpd` serves its API inside the namespace by default.
pub const DEFAULT_API: &str = "127.0.0.1:50077";

/// A `gobgpd` inside a namespace with a private config; killed on drop.
#[derive(Debug)]
pub struct Gobgp {
    child: ChildGuard,
    ns: String,
    api: String,
}

impl Gobgp {
    /// Writes `conf` (gobgpd's TOML) to `dir/<tag>-gobgpd.toml`, runs
    /// gobgpd inside `ns` with its API on `api` (`host:port`), and waits
    /// (10 s at most) until the API answers. Its log is
    /// `dir/<tag>-gobgpd.log`.
    pub fn start(ns: &Netns, conf: &str, dir: &Path, tag: &str, api: &str) -> Result<Self> {
        let path = dir.join(format!("{tag}-gobgpd.toml"));
        std::fs::write(&path, conf)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        let mut cmd = ns.command("gobgpd");
        cmd.arg("-f")
            .arg(&path)
            .args(["-t", "toml", "--api-hosts", api, "--pprof-disable"]);
        let log = dir.join(format!("{tag}-gobgpd.log"));
        let me = Self {
            child: ChildGuard::spawn(cmd, "gobgpd", Some(&log))?,
            ns: ns.name().to_owned(),
            api: api.to_owned(),
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !me.cli(&["global"]).contains("AS") {
            if Instant::now() > end {
                return Err(Error::Topology(format!(
                    "gobgpd API on {api} never came up: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    /// Runs `gobgp args..` against this daemon; its stdout (empty when
    /// the CLI could not run).
    pub fn cli(&self, args: &[&str]) -> String {
        let (host, port) = self.api.rsplit_once(':').unwrap_or((&self.api, "50051"));
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-u", host, "-p", port])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }
}
