//! etcd members inside namespaces (Debian's `etcd-server`), for weftd's
//! subnet leases: one member, or a cluster of several. Each member is a
//! child process stopped by pid; its data directory lives in the caller's
//! scratch directory so a restarted member keeps its keys. With a
//! [`Pki`], clients reach it over `https` and must show a certificate the
//! CA signed (`--client-cert-auth`); members talk to each other over
//! plain `http`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::pki::Pki;
use crate::process::ChildGuard;

/// One etcd member.
#[derive(Debug)]
pub struct Etcd {
    child: Option<ChildGuard>,
    cmd_args: Vec<String>,
    ns_name: String,
    log_base: PathBuf,
    starts: u32,
    log: PathBuf,
    tls: Option<Pki>,
    /// Its client URL, `http://IP:2379` (`https` with TLS).
    pub client_url: String,
}

/// Where a member listens and who its peers are.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// The address it listens on (clients 2379, peers 2380).
    pub ip: String,
}

impl Etcd {
    /// Starts a single-member etcd on `ip` in `ns`, data and log under `dir`.
    pub fn single(ns: &Netns, ip: &str, dir: &Path) -> Result<Self> {
        let m = Member {
            name: "e0".into(),
            ip: ip.into(),
        };
        Self::member(ns, &m, std::slice::from_ref(&m), dir)
    }

    /// [`Etcd::single`] serving clients over TLS with `pki`'s server
    /// certificate and requiring client certificates signed by its CA.
    pub fn single_tls(ns: &Netns, ip: &str, dir: &Path, pki: &Pki) -> Result<Self> {
        let m = Member {
            name: "e0".into(),
            ip: ip.into(),
        };
        Self::start(ns, &m, std::slice::from_ref(&m), dir, Some(pki))
    }

    /// Starts member `me` of the cluster `all` in `ns`. The members of a
    /// new cluster start concurrently; each waits for a quorum by itself.
    pub fn member(ns: &Netns, me: &Member, all: &[Member], dir: &Path) -> Result<Self> {
        Self::start(ns, me, all, dir, None)
    }

    fn start(
        ns: &Netns,
        me: &Member,
        all: &[Member],
        dir: &Path,
        tls: Option<&Pki>,
    ) -> Result<Self> {
        let initial: Vec<String> = all
            .iter()
            .map(|m| format!("{}=http://{}:2380", m.name, m.ip))
            .collect();
        let data = dir.join(format!("etcd-{}", me.name));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{}:2379", me.ip);
        let mut args = vec![
            "--name".into(),
            me.name.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url.clone(),
            "--listen-peer-urls".into(),
            format!("http://{}:2380", me.ip),
            "--initial-advertise-peer-urls".into(),
            format!("http://{}:2380", me.ip),
            "--initial-cluster".into(),
            initial.join(","),
            "--initial-cluster-token".into(),
            "netsim".into(),
            "--heartbeat-interval".into(),
            "50".into(),
            "--election-timeout".into(),
            "500".into(),
        ];
        if let Some(p) = tls {
            for (flag, path) in [
                ("--cert-file", &p.server_cert),
                ("--key-file", &p.server_key),
                ("--trusted-ca-file", &p.ca),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            args.push("--client-cert-auth".into());
        }
        let mut me = Self {
            child: None,
            cmd_args: args,
            ns_name: ns.name().to_owned(),
            log_base: dir.join(format!("etcd-{}", me.name)),
            starts: 0,
            log: PathBuf::new(),
            tls: tls.cloned(),
            client_url,
        };
        me.spawn()?;
        Ok(me)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_name, "etcd"])
            .args(&self.cmd_args);
        // Each start gets its own log; earlier ones are kept.
        self.starts += 1;
        let log = self.log_base.with_extension(format!("{}.log", self.starts));
        self.child = Some(ChildGuard::spawn(cmd, "etcd", Some(&log))?);
        self.log = log;
        Ok(())
    }

    /// Waits until the member answers a health check (bounded).
    pub fn wait_healthy(&self, within: Duration) -> Result<()> {
        let end = Instant::now() + within;
        loop {
            if self.ctl(&["endpoint", "health"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(Error::Timeout(format!(
                    "etcd {} not healthy; log:\n{}",
                    self.client_url,
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `etcdctl` (API v3) against this member from inside its
    /// namespace; stdout on success.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_name, "etcdctl"])
            .arg(format!("--endpoints={}", self.client_url))
            .arg("--command-timeout=3s");
        if let Some(p) = &self.tls {
            cmd.arg(format!("--cacert={}", p.ca.display()))
                .arg(format!("--cert={}", p.client_cert.display()))
                .arg(format!("--key={}", p.client_key.display()));
        }
        let out = cmd
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .map_err(|e| Error::io("run etcdctl", e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::measure(
                "etcdctl",
                format!(
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ),
            ))
        }
    }

    /// `etcdctl put KEY VALUE`.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.ctl(&["put", key, value]).map(|_| ())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.ctl(&["get", "--print-value-only", key])?;
        let v = out.trim_end_matches('\n');
        Ok((!v.is_empty()).then(|| v.to_owned()))
    }

    /// Keys and values under `prefix`.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let out = self.ctl(&["get", "--prefix", prefix])?;
        let lines: Vec<&str> = out.lines().collect();
        Ok(lines
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.to_string())))
            .collect())
    }

    /// Stops the member (SIGTERM, then SIGKILL after 5 s). Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.terminate(Duration::from_secs(5));
        }
    }

    /// Starts a stopped member again with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// The member's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ChildGuard::pid)
    }

    /// The current log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
