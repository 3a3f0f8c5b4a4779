//! GTSM (RFC 5082, `ttl_security = true`): two BIRD peers, one on our link
//! (`ttl security on`, TTL 255 both ways) and one behind a forwarding
//! namespace sending with TTL 255 (`multihop 255`), so its segments reach
//! us with TTL 254. The direct session comes up; the far one never does,
//! whoever connects, and its route never arrives.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use weft_bgp::fsm::State;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, RouteEvent, Speaker, SpeakerConfig};

const OUR_ASN: u32 = 64512;
const NEAR_ASN: u32 = 65010;
const FAR_ASN: u32 = 65020;
const FAR4: &str = "10.98.0.2";
const FAR_GW: &str = "10.98.0.1";
const NEAR_ROUTE: &str = "10.244.9.0/24";
const FAR_ROUTE: &str = "10.244.8.0/24";

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn bird_conf(id: &str, asn: u32, route: &str, session: &str) -> String {
    format!(
        r#"
router id {id};
protocol device {{ }}
protocol static s4 {{ ipv4; route {route} blackhole; }}
protocol bgp weft {{
  local {id} as {asn};
  neighbor {US4} as {OUR_ASN};
  {session}
  hold time 9;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 {{ import all; export all; next hop self; }};
}}
"#
    )
}

#[test]
fn gtsm_refuses_a_peer_two_hops_away() {
    if !privileged_or_skip("gtsm_refuses_a_peer_two_hops_away", &["bird", "birdc"]) {
        return;
    }
    // us --- near (forwards) --- far
    let topo = Topo::with_tag("wbg");
    let far = Netns::create(&format!("{}-f", unique_prefix("wbg"))).unwrap();
    netsim::netns::run_checked(Command::new("ip").args([
        "link",
        "add",
        "wbgn0",
        "netns",
        topo.peer.name(),
        "type",
        "veth",
        "peer",
        "name",
        "wbgf0",
        "netns",
        far.name(),
    ]))
    .unwrap();
    topo.peer
        .ip(&["addr", "add", &format!("{FAR_GW}/24"), "dev", "wbgn0"])
        .unwrap();
    topo.peer.ip(&["link", "set", "wbgn0", "up"]).unwrap();
    topo.peer
        .run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    far.ip(&["addr", "add", &format!("{FAR4}/24"), "dev", "wbgf0"])
        .unwrap();
    far.ip(&["link", "set", "wbgf0", "up"]).unwrap();
    far.ip(&["route", "add", "default", "via", FAR_GW]).unwrap();
    topo.us
        .ip(&["route", "add", "10.98.0.0/24", "via", PEER4])
        .unwrap();

    let near = Bird::with_config(
        &topo.peer,
        "wbgnear",
        &bird_conf(PEER4, NEAR_ASN, NEAR_ROUTE, "direct; ttl security on;"),
    );
    let far_bird = Bird::with_config(
        &far,
        "wbgfar",
        &bird_conf(FAR4, FAR_ASN, FAR_ROUTE, "multihop 255;"),
    );

    let seen = topo
        .us
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Control: without GTSM towards it, the far peer does come up
            // (the path works; TTL 254 is the only difference).
            let (seen, far_up) = rt.block_on(scenario(false));
            assert!(far_up && seen.contains(&p(FAR_ROUTE)), "control: {seen:?}");
            rt.block_on(scenario(true))
        })
        .unwrap();
    let (seen, far_up) = seen;
    assert!(seen.contains(&p(NEAR_ROUTE)), "{seen:?}");
    assert!(!far_up && !seen.contains(&p(FAR_ROUTE)), "{seen:?}");
    let far_state = far_bird.birdc(&["show", "protocols", "weft"]);
    assert!(!far_state.contains("Established"), "{far_state}");
    drop((near, far_bird, far));
}

/// Runs the speaker, the direct peer under GTSM and the far one with
/// `far_gtsm`; returns every prefix seen and whether the far peer came up.
async fn scenario(far_gtsm: bool) -> (HashSet<Prefix>, bool) {
    let peer = |addr: &str, asn, ttl_security| PeerConfig {
        ttl_security,
        local_address: Some(ip(US4)),
        ..PeerConfig::new(ip(addr), asn)
    };
    let bgp = BgpConfig {
        hold_time: 9,
        graceful_restart: false,
        restart_time: 30,
        connect_retry: 1,
        ..BgpConfig::new(
            OUR_ASN,
            vec![peer(PEER4, NEAR_ASN, true), peer(FAR4, FAR_ASN, far_gtsm)],
        )
    };
    let mut cfg = SpeakerConfig::new(
        bgp,
        US4.parse::<Ipv4Addr>().unwrap(),
        vec![p("10.244.0.0/16")],
    );
    cfg.max_backoff = Duration::from_secs(1);
    let (h, mut rx) = Speaker::spawn(cfg).unwrap();
    let mut seen = HashSet::new();
    // Both sides keep trying for 12 s (connect retry 1 s each way).
    let end = Instant::now() + Duration::from_secs(12);
    let (mut near_up, mut far_up) = (false, false);
    while Instant::now() < end && !(far_up && seen.contains(&p(FAR_ROUTE))) {
        if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            for e in batch {
                if let RouteEvent::Reachable { prefix, .. } = e {
                    seen.insert(prefix);
                }
            }
        }
        let st = h.peers().await.unwrap();
        near_up |= st[0].state == State::Established;
        far_up |= st[1].state == State::Established;
    }
    assert!(
        near_up,
        "the direct peer never came up: {:?}",
        h.peers().await
    );
    h.shutdown(false).await.unwrap();
    (seen, far_up)
}
