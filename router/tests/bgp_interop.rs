//! weftd (host-gw) in iBGP with BIRD 2, FRR bgpd and GoBGP, each in its own
//! namespace pair: our pod CIDR reaches the peer with our underlay IP as
//! next hop; the peer's route lands in our kernel (proto 87), goes away
//! when the peer withdraws it and when the frozen (SIGSTOP) peer's hold
//! timer expires, and comes back when the peer resumes or is killed and
//! started again.
#![allow(clippy::unwrap_used)]

// The daemon harness of the bgp crate's interop tests (BIRD/FRR/GoBGP in a
// namespace with private sockets), shared rather than copied.
#[path = "../../bgp/tests/common/mod.rs"]
mod peers;

use std::time::Duration;

use netsim::netns::{Netns, privileged_or_skip};
use netsim::weftd::{DataplaneConfig, WeftdConfig, WeftdProcess};
use peers::{Daemon, PEER_ROUTE4, PEER4, PeerOpts, TempDir, US4, eventually, signal};

const TOOLS: &[&str] = &["ip", "bird", "birdc", "vtysh", "gobgpd", "gobgp", "kill"];
const ASN: u32 = 64512;
const OUR_POD_CIDR: &str = "10.244.1.0/24";

fn weftd_config() -> WeftdConfig {
    let bgp: toml::Table = toml::from_str(&format!(
        "asn = {ASN}\nhold_time = 3\nconnect_retry = 1\nrestart_time = 30\n\
         [[peers]]\naddress = \"{PEER4}\"\nasn = {ASN}\n"
    ))
    .unwrap();
    WeftdConfig {
        node_name: "wb-node".into(),
        ip_masq: None,
        underlay_ip: US4.into(),
        pod_cidr: OUR_POD_CIDR.into(),
        cluster_cidr: "10.244.0.0/16".into(),
        dataplane: DataplaneConfig {
            mode: "host-gw".into(),
            extra: toml::Table::new(),
        },
        static_routes: vec![],
        bgp: Some(bgp),
        fake_routes: 0,
        cni_attach: None,
    }
}

fn kernel_route(ns: &Netns, prefix: &str) -> String {
    let out = ns
        .ip(&["-4", "route", "show", prefix, "proto", "87"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn run_against(name: &str, peer_gr: bool, start: impl Fn(&Netns, &PeerOpts) -> Box<dyn Daemon>) {
    let peers::Topo { us, peer: peer_ns } = peers::Topo::with_tag("wb");
    let dir = TempDir::new("wbd");
    let opts = PeerOpts {
        asn: ASN,
        our_asn: ASN,
        password: None,
        hold: 3,
        ipv6: false,
        v6_transport: false,
        graceful_restart: peer_gr,
    };
    let mut daemon = start(&peer_ns, &opts);
    let weftd = WeftdProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_weftd")),
        &us,
        &weftd_config(),
        &dir.0,
    )
    .unwrap();
    let logs = || weftd.log_tail();
    let via_peer = format!("via {PEER4} ");

    assert!(
        eventually(Duration::from_secs(20), || daemon
            .has_route(OUR_POD_CIDR, US4)),
        "{name} never got our pod CIDR via {US4}\n{}",
        logs()
    );
    assert!(
        eventually(Duration::from_secs(10), || kernel_route(&us, PEER_ROUTE4)
            .contains(&via_peer)),
        "{name}'s {PEER_ROUTE4} never reached our kernel\n{}",
        logs()
    );

    // Freeze the peer: the hold timer (3 s) expires and its routes go.
    signal(daemon.pid(), "STOP");
    let frozen = eventually(Duration::from_secs(10), || {
        kernel_route(&us, PEER_ROUTE4).is_empty()
    });
    signal(daemon.pid(), "CONT");
    assert!(frozen, "{name}: route stayed after hold expiry\n{}", logs());
    // The peer comes back: session and route return.
    assert!(
        eventually(Duration::from_secs(20), || kernel_route(&us, PEER_ROUTE4)
            .contains(&via_peer)),
        "{name}: route did not return after the peer resumed\n{}",
        logs()
    );

    // A real restart: the peer process dies (SIGKILL, no NOTIFICATION) and a
    // new one starts from its config. A peer that negotiated graceful
    // restart (BIRD and FRR here, with forwarding state) keeps its route
    // (stale) in our kernel meanwhile, and the restarted peer's End-of-RIB
    // confirms it; one that did not (GoBGP) loses it as soon as the TCP
    // session closes.
    drop(daemon);
    if peer_gr {
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            kernel_route(&us, PEER_ROUTE4).contains(&via_peer),
            "{name} negotiated graceful restart but its route went\n{}",
            logs()
        );
    } else {
        assert!(
            eventually(Duration::from_secs(10), || kernel_route(&us, PEER_ROUTE4)
                .is_empty()),
            "{name} died without graceful restart but its route stayed\n{}",
            logs()
        );
    }
    daemon = start(&peer_ns, &opts);
    assert!(
        eventually(Duration::from_secs(20), || daemon
            .has_route(OUR_POD_CIDR, US4)),
        "{name} restarted never got our pod CIDR again\n{}",
        logs()
    );
    assert!(
        eventually(Duration::from_secs(10), || kernel_route(&us, PEER_ROUTE4)
            .contains(&via_peer)),
        "{name}: route missing after the peer restarted\n{}",
        logs()
    );

    // The withdrawal comes from the restarted peer, over the new session.
    daemon.withdraw(PEER_ROUTE4);
    assert!(
        eventually(Duration::from_secs(10), || kernel_route(&us, PEER_ROUTE4)
            .is_empty()),
        "{name}: withdrawn route stayed in our kernel\n{}",
        logs()
    );
    // Our own announcement is still there.
    assert!(daemon.has_route(OUR_POD_CIDR, US4), "{name}");
    weftd.stop().unwrap();
    drop(daemon);
}

#[test]
fn weftd_ibgp_with_bird() {
    if !privileged_or_skip("weftd_ibgp_with_bird", TOOLS) {
        return;
    }
    run_against("BIRD", true, |ns, o| Box::new(peers::Bird::start(ns, o)));
}

#[test]
fn weftd_ibgp_with_frr() {
    if !privileged_or_skip("weftd_ibgp_with_frr", TOOLS) {
        return;
    }
    run_against("FRR", true, |ns, o| Box::new(peers::Frr::start(ns, o)));
}

#[test]
fn weftd_ibgp_with_gobgp() {
    if !privileged_or_skip("weftd_ibgp_with_gobgp", TOOLS) {
        return;
    }
    run_against("GoBGP", false, |ns, o| Box::new(peers::Gobgp::start(ns, o)));
}
