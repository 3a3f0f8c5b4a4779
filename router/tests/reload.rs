//! Config reload by SIGHUP, against BIRD: node 0's weftd peers with BIRD
//! on the ToR; a reload adds a second BGP peer (BIRD on node 1, announcing
//! node 1's pod range) and a static route, another removes both, and a
//! config that fails validation changes nothing. The ToR session must
//! never reset (its "since" time stays). weftd logs JSON here: every line
//! of its log must be one JSON object.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netsim::bgp::{BgpSetup, Bird, CLUSTER_ASN, bird_reflector_conf, with_bgp};
use netsim::netns::privileged_or_skip;
use netsim::process::ChildGuard;
use netsim::weftd::{WeftdConfig, node_local_files};
use netsim::{Cluster, Topology, WeftMode};

const TOOLS: &[&str] = &["ip", "bird", "birdc", "kill"];
/// A static route the reload adds (inside the cluster range, no node's).
const EXTRA: &str = "10.244.200.0/24";

struct Rig {
    c: Cluster,
    tor: Bird,
    cfg_path: PathBuf,
    log: PathBuf,
    weftd: ChildGuard,
}

/// node 0's config: BGP with the ToR reflector, `extra` appended.
fn config_text(c: &Cluster, peers_extra: &str, statics: &str, node_name: &str) -> String {
    let topo = c.topology().clone();
    let mut cfg = with_bgp(
        WeftdConfig::for_node(&topo, 0, WeftMode::HostGw).unwrap(),
        &topo,
        0,
        BgpSetup::TorReflector,
    )
    .unwrap();
    cfg.node_name = node_name.to_owned();
    // No static routes with BGP: drop the empty inline array, so the
    // `[[static_routes]]` tables appended below are the only ones.
    let toml = cfg.to_toml().unwrap().replace("static_routes = []\n", "");
    let text = node_local_files(&toml, c.run_dir(), c.node(0).ns().name());
    format!("{text}\n{peers_extra}\n{statics}\n[log]\nformat = \"json\"\n")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The ToR's BGP session with node 0: (state, since).
fn tor_session(r: &Rig) -> (String, String) {
    let name = format!("node{}", r.c.node(0).number());
    let out = r.tor.birdc(&["show", "protocols", &name]);
    let line = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_default()
        .to_owned();
    let cols: Vec<&str> = line.split_whitespace().collect();
    // name proto table state since.. info
    let since = cols
        .get(4..cols.len().saturating_sub(1))
        .map(|c| c.join(" "));
    (
        cols.last().copied().unwrap_or_default().to_owned(),
        since.unwrap_or_default(),
    )
}

fn wait(what: &str, r: &Rig, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < end,
            "{what}\n{}",
            std::fs::read_to_string(&r.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn routes(r: &Rig) -> String {
    let out =
        r.c.node(0)
            .ns()
            .ip(&["route", "show", "proto", "87"])
            .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hup(r: &Rig) {
    let pid = r.weftd.pid().unwrap().to_string();
    let st = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(st.success());
}

/// `weft --socket <node 0's socket> args...`.
fn weft(r: &Rig, args: &[&str]) -> std::process::Output {
    let socket = netsim::weftd::control_socket(r.c.run_dir(), r.c.node(0).ns().name());
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--socket")
        .arg(&socket)
        .args(args)
        .output()
        .unwrap()
}

fn log_text(r: &Rig) -> String {
    std::fs::read_to_string(&r.log).unwrap_or_default()
}

#[test]
fn sighup_adds_and_removes_a_peer_and_static_route_and_rejects_a_bad_config() {
    if !privileged_or_skip(
        "sighup_adds_and_removes_a_peer_and_static_route_and_rejects_a_bad_config",
        TOOLS,
    ) {
        return;
    }
    let c = Topology::builder()
        .nodes(2)
        .pods_per_node(1)
        .tor(true)
        .prefix_tag("hl")
        .weftd(env!("CARGO_BIN_EXE_weftd"))
        .build()
        .unwrap();
    let conf = bird_reflector_conf(c.topology()).unwrap();
    let tor = Bird::start(c.tor().unwrap(), &conf, c.run_dir(), "tor").unwrap();
    let (n0, n1) = (c.node(0).underlay_ip(), c.node(1).underlay_ip());
    // BIRD on node 1 (no weftd there): announces node 1's pod range to
    // node 0 once node 0 configures it as a peer.
    let n1_conf = format!(
        "router id {n1};\nprotocol device {{ }}\n\
         protocol static {{ ipv4; route {} blackhole; }}\n\
         protocol bgp weft {{\n  local {n1} as {CLUSTER_ASN};\n  neighbor {n0} as {CLUSTER_ASN};\n  \
         direct;\n  hold time 3;\n  keepalive time 1;\n  connect retry time 1;\n  \
         graceful restart on;\n  ipv4 {{ import all; export all; }};\n}}\n",
        c.node(1).pod_cidr()
    );
    let n1_bird = Bird::start(c.node(1).ns(), &n1_conf, c.run_dir(), "n1").unwrap();

    let cfg_path = c.run_dir().join("hl-node0.toml");
    let log = c.run_dir().join("hl-node0-weftd.log");
    write(&cfg_path, &config_text(&c, "", "", "node-1"));
    let mut cmd = c.node(0).ns().command(env!("CARGO_BIN_EXE_weftd"));
    cmd.arg("--config").arg(&cfg_path);
    let weftd = ChildGuard::spawn(cmd, "weftd", Some(&log)).unwrap();
    let mut r = Rig {
        c,
        tor,
        cfg_path,
        log,
        weftd,
    };
    let secs = Duration::from_secs(20);
    wait("ToR session up", &r, secs, || {
        tor_session(&r).0 == "Established"
    });
    let (_, since) = tor_session(&r);
    let before = routes(&r);

    // Reload 1: a second peer (BIRD on node 1) and a static route.
    let n1_peer = format!("[[bgp.peers]]\naddress = \"{n1}\"\nasn = {CLUSTER_ASN}\n");
    let extra = format!("[[static_routes]]\npod_cidr = \"{EXTRA}\"\nvia = \"{n1}\"\n");
    write(&r.cfg_path, &config_text(&r.c, &n1_peer, &extra, "node-1"));
    hup(&r);
    let n1_cidr = r.c.node(1).pod_cidr().to_string();
    wait(
        "route from the added peer and the static route",
        &r,
        secs,
        || {
            let rt = routes(&r);
            rt.contains(&format!("{n1_cidr} via {n1}")) && rt.contains(&format!("{EXTRA} via {n1}"))
        },
    );
    assert!(
        n1_bird
            .birdc(&["show", "protocols", "weft"])
            .contains("Established")
    );
    assert_eq!(tor_session(&r), ("Established".into(), since.clone()));

    // Reload 2: both gone again; node_name changed (needs a restart).
    write(&r.cfg_path, &config_text(&r.c, "", "", "renamed"));
    hup(&r);
    wait(
        "added peer's route and static route removed",
        &r,
        secs,
        || {
            let rt = routes(&r);
            !rt.contains(&n1_cidr) && !rt.contains(EXTRA)
        },
    );
    wait("node_name named for a restart", &r, secs, || {
        log_text(&r).contains("needs a restart") && log_text(&r).contains("node_name")
    });
    wait("peer session ended", &r, secs, || {
        !n1_bird
            .birdc(&["show", "protocols", "weft"])
            .contains("Established")
    });
    assert_eq!(tor_session(&r), ("Established".into(), since.clone()));
    assert_eq!(routes(&r), before);

    // Reload 3: a config that fails validation changes nothing.
    let bad = config_text(
        &r.c,
        &n1_peer,
        "[[static_routes]]\npod_cidr = \"192.168.7.0/24\"\nvia = \"172.31.0.9\"\n",
        "node-1",
    );
    write(&r.cfg_path, &bad);
    hup(&r);
    wait("rejection logged with the field", &r, secs, || {
        let l = log_text(&r);
        l.contains("config reload rejected") && l.contains("static_routes[0].pod_cidr")
    });
    // `weft reload` goes the same way and says why, exit 1.
    let out = weft(&r, &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reload failed") && err.contains("static_routes[0].pod_cidr"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        r.weftd.try_wait().is_none(),
        "weftd exited\n{}",
        log_text(&r)
    );
    assert_eq!(routes(&r), before);
    assert_eq!(tor_session(&r), ("Established".into(), since.clone()));

    // Reload 4 over the control socket: the static route again.
    write(&r.cfg_path, &config_text(&r.c, "", &extra, "renamed"));
    let out = weft(&r, &["--json", "reload"]);
    assert!(out.status.success(), "{out:?}\n{}", log_text(&r));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["applied"]["static_routes"]["added"], 1, "{v}");
    assert!(
        v["summary"].as_str().unwrap().contains("static routes +1"),
        "{v}"
    );
    wait("static route from weft reload", &r, secs, || {
        routes(&r).contains(&format!("{EXTRA} via {n1}"))
    });
    assert_eq!(tor_session(&r), ("Established".into(), since));
    assert!(
        !n1_bird
            .birdc(&["show", "protocols", "weft"])
            .contains("Established")
    );

    // [log] format = "json": one JSON object per line.
    let text = log_text(&r);
    assert!(text.lines().count() > 5, "{text}");
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object() && v.get("level").is_some(), "{line}");
    }
}
