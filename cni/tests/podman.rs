//! weft's CNI plugins under a real runtime: Debian's podman 4.3 with its
//! CNI backend, runc and the cgroupfs manager, on a conflist whose plugin
//! directory holds weft's binaries alone (and then the reference plugins,
//! for the wall-time comparison). Container A serves HTTP from a
//! busybox-static root filesystem, container B fetches it by A's pod
//! address, the host reaches A through `-p` host ports on 127.0.0.1 and on
//! its own uplink address (also from an outside namespace), and
//! `podman rm -f` leaves no veth, lease file, nftables element or process.
//! podman runs inside a namespace the test creates (see `podman_rig`).
//!
//! A conflist is a function of the network; testing another chain is one
//! `#[test]` calling [`under_podman`] with it.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;
mod podman_rig;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bridge_common::{HOST_OUT4, spawn_in};
use common::{REFERENCE_DIR, ours_dir, reference_available};
use netsim::netns::privileged_or_skip;
use podman_rig::{Net, PAGE, Podman, busybox_is_static, wait_until};
use serde_json::{Value, json};

/// Tools the scenario needs on the host.
const TOOLS: &[&str] = &[
    "podman", "runc", "conmon", "busybox", "nsenter", "ip", "nft",
];
/// weft's nftables table (inet and bridge family).
const WEFT_TABLE: &str = "weft-cni";
/// Host ports: bound to 127.0.0.1, to every address, to the uplink address.
const HP_LOCAL: u16 = 18080;
const HP_ANY: u16 = 18081;
const HP_UPLINK: u16 = 18082;

/// One chain at a time: the wall times are compared, and the machine is small.
static SERIAL: Mutex<()> = Mutex::new(());

/// bridge (gateway, ipMasq) with host-local, then portmap.
fn bridge_chain(net: &Net) -> Value {
    json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [
        {"type": "bridge", "bridge": format!("{}br", net.prefix), "isGateway": true,
         "ipMasq": true, "hairpinMode": true,
         "ipam": {"type": "host-local", "dataDir": net.lease_dir,
                  "ranges": [[{"subnet": "10.89.40.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]})
}

/// ptp (ipMasq) with host-local, then portmap: calico's attachment style.
fn ptp_chain(net: &Net) -> Value {
    json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [
        {"type": "ptp", "ipMasq": true,
         "ipam": {"type": "host-local", "dataDir": net.lease_dir,
                  "ranges": [[{"subnet": "10.89.41.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]})
}

#[test]
fn bridge_portmap_chain_under_podman() {
    under_podman("bridge", &bridge_chain);
}

#[test]
fn ptp_portmap_chain_under_podman() {
    under_podman("ptp", &ptp_chain);
}

/// Runs the scenario on `conflist` with weft's plugins, then with the
/// reference plugins when installed, and prints both wall times.
fn under_podman(chain: &str, conflist: &dyn Fn(&Net) -> Value) {
    let test = format!("{chain} chain under podman");
    // Serial from the probes on: the busybox probe writes an executable and
    // runs it, and a fork by a parallel test in between would hold the file
    // open for writing (exec fails with ETXTBSY).
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !privileged_or_skip(&test, TOOLS) || !podman_and_busybox_or_skip(&test) {
        return;
    }
    let types = plugin_types(conflist);
    let ours = scenario(&ours_dir(), conflist);
    eprintln!("podman {chain} chain, weft plugins: {ours}");
    let reference = types.iter().all(|t| reference_available(t))
        && privileged_or_skip(&format!("{test} (reference)"), &["iptables"]);
    if reference {
        let theirs = scenario(Path::new(REFERENCE_DIR), conflist);
        eprintln!("podman {chain} chain, reference plugins: {theirs}");
        let (ours, theirs) = (ours.scenario(), theirs.scenario());
        eprintln!(
            "podman {chain} chain wall time: weft {:.2} s, reference {:.2} s, weft/reference {:.2}",
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
}

/// The plugin types a conflist names (ipam included).
fn plugin_types(conflist: &dyn Fn(&Net) -> Value) -> Vec<String> {
    let probe = Net {
        name: "probe".into(),
        lease_dir: "/nonexistent".into(),
        prefix: "p".into(),
    };
    let list = conflist(&probe);
    let mut types = Vec::new();
    for p in list["plugins"].as_array().into_iter().flatten() {
        for t in [&p["type"], &p["ipam"]["type"]] {
            if let Some(t) = t.as_str() {
                types.push(t.to_owned());
            }
        }
    }
    types
}

/// True when the installed podman has a CNI backend and busybox is static;
/// otherwise prints why and skips (panics under CI=true).
fn podman_and_busybox_or_skip(test: &str) -> bool {
    let why = match (podman_major(), busybox_is_static()) {
        (Some(4), true) => return true,
        (_, false) => "busybox is not static (install busybox-static)".to_owned(),
        (major, true) => format!(
            "podman major version {major:?}: only podman 4 has both the CNI backend and network_backend"
        ),
    };
    let why = format!("{test}: {why}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {why}"
    );
    eprintln!("SKIPPED {why}");
    false
}

/// The major version `podman --version` reports.
fn podman_major() -> Option<u32> {
    let out = std::process::Command::new("podman")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .last()?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The whole scenario with the plugins in `plugin_dir`; returns its wall
/// time per step.
fn scenario(plugin_dir: &Path, conflist: &dyn Fn(&Net) -> Value) -> Steps {
    let weft = plugin_dir == ours_dir();
    let setup = Instant::now();
    let pm = Podman::new("wpm", plugin_dir, conflist);
    let mut t = Steps::new("setup", setup);
    let rootfs = pm.rootfs.to_string_lossy().into_owned();
    let net = pm.net.name.clone();

    // A: httpd behind three host ports.
    let publish = [
        format!("127.0.0.1:{HP_LOCAL}:80"),
        format!("{HP_ANY}:80"),
        format!("{HOST_OUT4}:{HP_UPLINK}:80"),
    ];
    let mut args = vec!["run", "-d", "--name", "a", "--network", &net];
    for p in &publish {
        args.extend(["-p", p]);
    }
    args.extend([
        "--rootfs",
        &rootfs,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    args.extend(["-h", "/www"]);
    let id = pm.podman_ok(&args).trim().to_owned();
    t.mark("run -d A");
    let a = pm.inspect("a");
    let a_ip = a["NetworkSettings"]["Networks"][&net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let sandbox = a["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let pids = [&a["State"]["Pid"], &a["State"]["ConmonPid"]]
        .map(|p| u32::try_from(p.as_u64().unwrap()).unwrap());
    let host = pm.lab.host.name().to_owned();
    let to_a: SocketAddr = format!("{a_ip}:80").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || http_get(&host, to_a).is_ok()),
        "A's httpd at {to_a} not reachable from the host: {:?}",
        http_get(&host, to_a)
    );
    t.mark("A serving");

    // What podman and the plugins made while A runs.
    assert!(!container_cgroups(&id).is_empty(), "A's cgroups (cgroupfs)");
    assert!(
        pids.iter().all(|p| podman_rig::running(*p)),
        "A's pids {pids:?}"
    );
    assert!(
        pm.processes().contains(&pids[1]),
        "conmon {} names the podman dir",
        pids[1]
    );
    let leases = pm.leases();
    assert!(
        leases
            .iter()
            .any(|(ip, c)| ip.to_string() == a_ip && c.starts_with(&id)),
        "lease of {a_ip} for {id}: {leases:?}"
    );
    assert!(!pm.veths().is_empty(), "A's host-side veth");
    let cached = pm.cached_results();
    assert!(
        cached.iter().any(|n| n.contains(&id)),
        "libcni's cached result for {id}: {cached:?}"
    );
    let up = pm.ruleset();
    assert!(up.mentions(&a_ip), "rules for {a_ip}: {:?}", up.chains());
    assert_eq!(
        up.tables().iter().any(|(_, t)| t == WEFT_TABLE),
        weft,
        "weft's table exists iff podman ran weft's plugins: {:?}",
        up.tables()
    );

    // B fetches A by its pod address and says which address it had, and
    // that podman brought its loopback up (no loopback plugin in the dir).
    let fetch = format!(
        "timeout 10 wget -q -O - http://{a_ip}/ && ip -o -4 addr show dev eth0 && ip -o link show dev lo"
    );
    let b = [
        "run",
        "--rm",
        "--name",
        "b",
        "--network",
        &net,
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        &fetch,
    ];
    let out = pm.podman_ok(&b);
    t.mark("run --rm B");
    assert!(out.starts_with(PAGE), "B got {out:?}");
    assert!(out.contains("<LOOPBACK,UP"), "B's lo is up: {out:?}");
    let b_ip = out[PAGE.len()..]
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        b_ip.parse::<std::net::Ipv4Addr>().is_ok() && b_ip != a_ip,
        "B's address {b_ip:?} (A {a_ip}): {out:?}"
    );

    // The host reaches A through its host ports; the outside namespace too.
    let outside = pm.outside.name().to_owned();
    for (ns, target) in [
        (&host, format!("127.0.0.1:{HP_LOCAL}")),
        (&host, format!("127.0.0.1:{HP_ANY}")),
        (&host, format!("{HOST_OUT4}:{HP_ANY}")),
        (&host, format!("{HOST_OUT4}:{HP_UPLINK}")),
        (&outside, format!("{HOST_OUT4}:{HP_ANY}")),
        (&outside, format!("{HOST_OUT4}:{HP_UPLINK}")),
    ] {
        let body = http_get(ns, target.parse().unwrap());
        assert_eq!(body.as_deref(), Ok(PAGE), "{ns} -> {target}");
    }
    // A port published on 127.0.0.1 only is not reachable on the uplink.
    assert!(http_get(&outside, format!("{HOST_OUT4}:{HP_LOCAL}").parse().unwrap()).is_err());

    t.mark("host ports");
    pm.podman_ok(&["rm", "--force", "--time", "0", "a"]);
    t.mark("rm -f A");

    // Nothing of A or B is left.
    assert!(
        wait_until(Duration::from_secs(10), || pm.processes().is_empty()),
        "processes still naming the podman dir: {:?}",
        pm.processes()
    );
    // conmon exits as a zombie reparented to init; exited is what counts.
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(10), || !podman_rig::running(pid)),
            "A's process {pid} still runs: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }
    assert!(!Path::new(&sandbox).exists(), "A's netns {sandbox} left");
    let cgroups = container_cgroups(&id);
    assert!(cgroups.is_empty(), "A's cgroups left: {cgroups:?}");
    assert_eq!(pm.veths(), Vec::<String>::new(), "veths left");
    assert_eq!(pm.leases(), Vec::new(), "lease files left");
    assert_eq!(
        pm.cached_results(),
        Vec::<String>::new(),
        "cached results left"
    );
    let down = pm.ruleset();
    for ip in [&a_ip, &b_ip] {
        assert!(!down.mentions(ip), "rules still name {ip}: {:?}", down.0);
    }
    assert_eq!(down.elements(WEFT_TABLE), 0, "weft set elements left");
    let gone: Vec<String> = up
        .chains()
        .into_iter()
        .filter(|c| !down.chains().contains(c))
        .collect();
    assert!(
        !gone.is_empty(),
        "A's own chains removed: {:?}",
        down.chains()
    );
    let ps = pm.podman_ok(&["ps", "--all", "--quiet"]);
    assert_eq!(ps.trim(), "", "containers left");
    t.mark("checks");
    t
}

/// Wall time per step of a scenario.
#[derive(Debug)]
struct Steps {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn new(first: &'static str, since: Instant) -> Self {
        let mut s = Self {
            last: since,
            steps: Vec::new(),
        };
        s.mark(first);
        s
    }

    /// Ends `step` now.
    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }

    /// From A's start to `podman rm -f` returning.
    fn scenario(&self) -> Duration {
        self.steps
            .iter()
            .filter(|(s, _)| !matches!(*s, "setup" | "checks"))
            .map(|(_, d)| *d)
            .sum()
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} s (", self.scenario().as_secs_f64())?;
        for (n, (step, d)) in self.steps.iter().enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            write!(f, "{sep}{step} {:.2}", d.as_secs_f64())?;
        }
        write!(f, ")")
    }
}

/// The cgroupfs manager's per-container cgroups
/// (`<hierarchy>/libpod_parent/libpod-<id>`) that exist.
fn container_cgroups(id: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    rd.flatten()
        .map(|h| h.path().join("libpod_parent").join(format!("libpod-{id}")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

/// `GET /` from inside namespace `ns`; the body, or why not.
fn http_get(ns: &str, target: SocketAddr) -> Result<String, String> {
    spawn_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
        match reply.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                Ok(body.to_owned())
            }
            _ => Err(format!("bad reply: {reply:?}")),
        }
    })
    .join()
    .unwrap()
}
