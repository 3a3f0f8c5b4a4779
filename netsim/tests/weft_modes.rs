//! Root tests of netsim's weft-mode path (config file, start in the node
//! namespace, readiness, CPU accounting, SIGTERM) against a stand-in
//! `weftd` script; the real weftd end-to-end test belongs to the router.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use netsim::netns::privileged_or_skip;
use netsim::{Mode, Topology, WeftMode};

const TOOLS: &[&str] = &["ip", "bridge", "ethtool", "ping", "sysctl", "awk"];

/// A host-gw "weftd": reads the TOML netsim wrote, installs one route per
/// `[[static_routes]]`, removes them on SIGTERM. `$1 $2` = `--config FILE`.
const HOSTGW_SH: &str = r#"#!/bin/sh
set -e
[ "$1" = "--config" ] || { echo "usage: --config FILE" >&2; exit 2; }
grep -q '^mode = "host-gw"' "$2"
routes=$(awk -F'"' '/^\[\[static_routes\]\]/{s=1} s&&/^pod_cidr/{c=$2} s&&/^via/{print c"|"$2}' "$2")
for r in $routes; do ip route replace "${r%|*}" via "${r#*|}" dev eth0 proto 99; done
trap 'for r in $routes; do ip route del "${r%|*}" proto 99; done; exit 0' TERM
echo "fake weftd up: $routes" >&2
while :; do sleep 0.05; done
"#;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netsim-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn weft_mode_lifecycle_with_a_stand_in_weftd() {
    if !privileged_or_skip("weft_mode_lifecycle_with_a_stand_in_weftd", TOOLS) {
        return;
    }
    let dir = tmpdir("fakeweftd");
    let fake = script(&dir, "weftd", HOSTGW_SH);
    let mut c = Topology::builder()
        .nodes(3)
        .pods_per_node(1)
        .weftd(&fake)
        .build()
        .unwrap();
    c.apply_mode(Mode::Weft(WeftMode::HostGw)).unwrap();
    assert_eq!(c.weftds().count(), 3);
    // The config netsim wrote is in the run directory.
    let cfg = std::fs::read_to_string(c.run_dir().join(format!("{}.toml", c.node(0).ns().name())))
        .unwrap();
    assert!(
        cfg.contains("node_name = \"node-1\"") && cfg.contains("via = \"172.31.0.3\""),
        "{cfg}"
    );
    assert!(c.ping_matrix().unwrap().all_ok());
    assert!(c.router_cpu_seconds().unwrap() >= 0.0);
    let n1 = c.node(0).ns().name().to_owned();
    // SIGTERM: the stand-in removes its routes and exits 0.
    c.apply_mode(Mode::KernelVxlan).unwrap();
    assert_eq!(c.weftds().count(), 0);
    let routes = netsim::netns::run_checked(
        std::process::Command::new("ip").args(["-n", &n1, "route", "show", "proto", "99"]),
    )
    .unwrap();
    assert!(
        routes.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&routes.stdout)
    );
    assert!(c.ping_matrix().unwrap().all_ok());
    // Back to weft, then drop with weftd running: nothing is left.
    c.apply_mode(Mode::Weft(WeftMode::HostGw)).unwrap();
    let prefix = c.prefix().to_owned();
    drop(c);
    assert!(
        netsim::run::list_netns()
            .iter()
            .all(|n| !n.starts_with(&format!("{prefix}-")))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weftd_failures_are_reported() {
    if !privileged_or_skip("weftd_failures_are_reported", TOOLS) {
        return;
    }
    let dir = tmpdir("badweftd");
    let early = script(
        &dir,
        "early",
        "#!/bin/sh\necho 'config: unknown key nodez' >&2\nexit 1\n",
    );
    let mut c = Topology::builder()
        .nodes(2)
        .pods_per_node(0)
        .weftd(&early)
        .build()
        .unwrap();
    let err = c
        .apply_mode(Mode::Weft(WeftMode::Vxlan))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exited early") && err.contains("unknown key nodez"),
        "{err}"
    );

    // Ignores SIGTERM: killed after the grace period, and clear_mode says so.
    let stubborn = script(
        &dir,
        "stubborn",
        "#!/bin/sh\ntrap '' TERM\nip route replace 10.244.2.0/24 via 172.31.0.2 dev eth0\nip route replace 10.244.1.0/24 via 172.31.0.1 dev eth0\nwhile :; do sleep 0.05; done\n",
    );
    c.set_weftd(&stubborn);
    c.apply_mode(Mode::Weft(WeftMode::HostGw)).unwrap();
    let err = c.clear_mode().unwrap_err().to_string();
    assert!(err.contains("ignored SIGTERM"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
