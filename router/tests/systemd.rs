//! weftd under systemd: the notify protocol against a `NOTIFY_SOCKET` the
//! test owns (READY=1 only once routes and the conflist are there,
//! WATCHDOG=1 at half `WATCHDOG_USEC`, STOPPING=1 on SIGTERM), and
//! `systemd-analyze verify` of the shipped unit.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::node_rig::NodeRig;
use netsim::WeftMode;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/weftd.service");

/// Receives datagrams until one contains `what` (bounded); returns every
/// message seen.
fn recv_until(sock: &UnixDatagram, what: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(what);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {what:?} within {within:?}; got {seen:?}");
}

#[test]
fn notify_ready_watchdog_stopping() {
    if !netsim::netns::privileged_or_skip(
        "notify_ready_watchdog_stopping",
        &["ip", "ethtool", "sysctl"],
    ) {
        return;
    }
    let Some(mut rig) = NodeRig::new("notify_ready_watchdog_stopping", 2, false) else {
        return;
    };
    let path = rig.cluster.run_dir().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let cfg = rig.config(0, WeftMode::Vxlan, "", "");
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ];
    rig.start_weftd(0, &cfg, &env);
    let seen = recv_until(&sock, "READY=1", Duration::from_secs(15));
    // READY came after the routes and the conflist.
    let routes = rig
        .cluster
        .node(0)
        .ns()
        .ip(&["route", "show", "10.244.2.0/24"])
        .unwrap();
    assert!(!routes.stdout.is_empty());
    assert!(rig.conflist_path(0).exists());
    assert!(
        seen.last().unwrap().contains("STATUS=routes programmed"),
        "{seen:?}"
    );
    // Watchdog every 200 ms: at least three in a second.
    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
        pings += 1;
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    // SIGTERM: STOPPING=1 before the exit.
    let pid = rig.weftd_pid(0).unwrap();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));
    assert!(rig.stop_weftd(0).success(), "{}", rig.log(0));
}

#[test]
fn unit_file_verifies() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ExecStart=/usr/bin/weftd --config /etc/weft/weftd.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let tool = Path::new("/usr/bin/systemd-analyze");
    if !tool.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but systemd-analyze is missing"
        );
        eprintln!("skipping the verify part: systemd-analyze not installed");
        return;
    }
    // The unit as installed, pointing at the built weftd (verify checks
    // that the executables exist).
    let dir = std::env::temp_dir().join(format!("weft-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("weftd.service");
    std::fs::write(&copy, unit.replace("/usr/bin/weftd", common::weftd_bin())).unwrap();
    let out = Command::new(tool)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
