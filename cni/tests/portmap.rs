//! Black-box tests of the `portmap` plugin chained after `bridge`: host ports
//! reachable from another "node", from the host itself (host IP and
//! 127.0.0.1) and from the pod itself (hairpin); UDP conntrack flush; options
//! accepted by the kernel; DEL without mappings cleans everything.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use std::process::Command;

use bridge_common::{
    HOST_OUT4, Lab, OUTSIDE4, chain, netns_path, result_ip, spawn_in, tcp_probe, tcp_server,
};
use common::{Attachment, inject};
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "nft", "conntrack"];

fn udp_conntrack(lab: &Lab, port: u16) -> usize {
    let o = lab
        .host
        .command("conntrack")
        .args(["-L", "-p", "udp", "--orig-port-dst", &port.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dport={port}")))
        .count()
}

#[test]
fn hostport_from_outside_host_localhost_and_hairpin() {
    if !privileged_or_skip("hostport_from_outside_host_localhost_and_hairpin", TOOLS) {
        return;
    }
    let lab = Lab::new("cn");
    let out = lab.outside();
    let rt = common::ours().in_netns(&lab.host_name());
    let list = chain(
        "1.0.0",
        "pnet",
        "cnp0",
        &lab.data_dir(),
        "10.61.0.0/24",
        "fd61::/64",
        json!({}),
    );
    let p1 = lab.pod(1);
    let mappings = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8081, "containerPort": 81, "protocol": "tcp", "hostIP": HOST_OUT4},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
    ]);
    let att = Attachment::new("pm1", "eth0")
        .with_netns(Some(&netns_path(&p1)))
        .with_cap("portMappings", mappings);
    let plugins = list["plugins"].as_array().unwrap().clone();

    // bridge first; a UDP flow to the host port before portmap runs leaves a
    // conntrack entry that would bypass the DNAT
    let r_br = rt
        .exec(
            "ADD",
            Some(&att),
            &inject(&plugins[0], Some(&list), None, &att),
        )
        .expect_ok("bridge ADD");
    let sent = spawn_in(out.name(), || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"x", format!("{HOST_OUT4}:5353")).unwrap();
    });
    sent.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(udp_conntrack(&lab, 5353) >= 1, "no stale entry to flush");
    let r = rt
        .exec(
            "ADD",
            Some(&att),
            &inject(&plugins[1], Some(&list), Some(&r_br), &att),
        )
        .expect_ok("portmap ADD");
    assert_eq!(r, r_br, "portmap passes the previous result through");
    assert_eq!(
        udp_conntrack(&lab, 5353),
        0,
        "stale UDP conntrack entry not flushed"
    );
    let ip1 = result_ip(&r, false);
    let gw = "10.61.0.1";

    let srv80 = tcp_server(p1.name(), "[::]:80", 5);
    let srv81 = tcp_server(p1.name(), "0.0.0.0:81", 1);
    // another node
    let seen = tcp_probe(out.name(), &format!("{HOST_OUT4}:8080")).unwrap();
    assert!(seen.contains(OUTSIDE4), "from outside, pod saw {seen}");
    let seen = tcp_probe(out.name(), "[fd77::1]:8080").unwrap();
    assert!(seen.contains("fd77::2"), "from outside v6, pod saw {seen}");
    // the host itself: host IP and 127.0.0.1 (route_localnet + masquerade)
    let host = lab.host_name();
    let seen = tcp_probe(&host, &format!("{HOST_OUT4}:8080")).unwrap();
    assert!(seen.contains(HOST_OUT4), "from host IP, pod saw {seen}");
    let seen = tcp_probe(&host, "127.0.0.1:8080").unwrap();
    assert!(
        seen.contains(gw),
        "from 127.0.0.1, pod saw {seen} (want masquerade to {gw})"
    );
    // hairpin: the pod to its own host port
    let seen = tcp_probe(p1.name(), &format!("{HOST_OUT4}:8080")).unwrap();
    assert!(seen.contains(gw), "hairpin: pod saw {seen}");
    // a hostIP-bound mapping
    let seen = tcp_probe(out.name(), &format!("{HOST_OUT4}:8081")).unwrap();
    assert!(seen.contains(OUTSIDE4), "hostIP mapping: pod saw {seen}");
    assert_eq!(srv80.join().unwrap().len(), 5);
    assert_eq!(srv81.join().unwrap().len(), 1);
    assert!(!ip1.is_empty());

    // conditions: a second pod whose host port excludes the outside node
    let p2 = lab.pod(2);
    let att2 = Attachment::new("pm2", "eth0").with_netns(Some(&netns_path(&p2)));
    let r2 = rt
        .exec(
            "ADD",
            Some(&att2),
            &inject(&plugins[0], Some(&list), None, &att2),
        )
        .expect_ok("bridge ADD 2");
    let mut pm2 = inject(&plugins[1], Some(&list), Some(&r2), &att2);
    pm2["conditionsV4"] = json!(["!", "-s", format!("{OUTSIDE4}/32")]);
    pm2["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8090, "containerPort": 90, "protocol": "tcp"}]});
    rt.exec("ADD", Some(&att2), &pm2)
        .expect_ok("portmap ADD with conditions");
    let srv90 = tcp_server(p2.name(), "0.0.0.0:90", 1);
    assert!(
        tcp_probe(out.name(), &format!("{HOST_OUT4}:8090")).is_err(),
        "condition did not exclude the outside node"
    );
    let seen = tcp_probe(&host, &format!("{HOST_OUT4}:8090")).unwrap();
    assert!(
        seen.contains(HOST_OUT4),
        "host via conditions: pod saw {seen}"
    );
    srv90.join().unwrap();
    rt.exec("DEL", Some(&att2), &pm2).expect_ok("portmap DEL 2");
    rt.exec(
        "DEL",
        Some(&att2),
        &inject(&plugins[0], Some(&list), Some(&r2), &att2),
    )
    .expect_ok("bridge DEL 2");

    // route_localnet is on for the bridge: the guard must stop a pod from
    // reaching the host's loopback services through its gateway
    let lo_srv = tcp_server(&host, "0.0.0.0:9999", 1);
    for args in [
        &["rule", "add", "pref", "100", "lookup", "local"][..],
        &["rule", "del", "pref", "0"],
        &[
            "rule",
            "add",
            "pref",
            "10",
            "to",
            "127.0.0.5",
            "lookup",
            "100",
        ],
        &["route", "add", "127.0.0.5/32", "via", gw, "table", "100"],
    ] {
        p1.ip(args).unwrap();
    }
    // (the pod must accept replies from 127/8 too: an attacker's pod would)
    p1.run(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.conf.all.route_localnet=1",
            "net.ipv4.conf.eth0.route_localnet=1",
        ],
    )
    .unwrap();
    assert!(
        tcp_probe(p1.name(), "127.0.0.5:9999").is_err(),
        "pod reached the host's 127/8 through the gateway"
    );
    // control: without the guard the same probe gets through
    assert!(
        lab.sh("nft flush chain inet weft-cni guard; echo done")
            .contains("done")
    );
    let seen = tcp_probe(p1.name(), "127.0.0.5:9999");
    assert!(seen.is_ok(), "control probe failed: {seen:?}");
    lo_srv.join().unwrap();

    // a UDP flow through the mapping: its conntrack entry goes with the DEL
    spawn_in(out.name(), || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"y", format!("{HOST_OUT4}:5353")).unwrap();
    })
    .join()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(udp_conntrack(&lab, 5353) >= 1, "no UDP flow to flush");

    // DEL without mappings and without prevResult still removes everything
    let bare = Attachment::new("pm1", "eth0").with_netns(Some(&netns_path(&p1)));
    rt.del_list(&list, &bare, None).unwrap();
    assert_eq!(
        udp_conntrack(&lab, 5353),
        0,
        "UDP conntrack entry not flushed on DEL"
    );
    rt.del_list(&list, &bare, None).unwrap();
    let nft = lab.nft();
    assert!(
        !nft.contains("cn-p-") && !nft.contains("cn-q-") && !nft.contains("goto"),
        "rules left:\n{nft}"
    );
    assert!(lab.leases("pnet").is_empty());
    assert!(
        tcp_probe(out.name(), &format!("{HOST_OUT4}:8080")).is_err(),
        "host port still open"
    );
}

fn portmap_conf(extra: Value, mappings: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "onet", "type": "portmap",
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "vethx"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.62.0.5/24", "gateway": "10.62.0.1", "interface": 2},
                    {"address": "fd62::5/64", "gateway": "fd62::1", "interface": 2}]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn options_are_accepted_by_the_kernel_and_conflicts_fail_cleanly() {
    if !privileged_or_skip(
        "options_are_accepted_by_the_kernel_and_conflicts_fail_cleanly",
        TOOLS,
    ) {
        return;
    }
    let lab = Lab::new("cn");
    let rt = common::ours().in_netns(&lab.host_name());
    let m = json!([{"hostPort": 9000, "containerPort": 90, "protocol": "sctp"},
                   {"hostPort": 9001, "containerPort": 91, "protocol": "tcp", "hostIP": "fd62::1"}]);
    let cases = [
        (json!({"markMasqBit": 4}), "0x00000010"),
        (json!({"masqAll": true}), "meta mark set"),
        (json!({"snat": false}), "dnat ip to 10.62.0.5:90"),
        (
            json!({"conditionsV4": ["!", "-s", "10.0.0.0/8", "-i", "eth1"], "conditionsV6": ["-d", "fd62::/64"]}),
            "iifname",
        ),
    ];
    for (i, (extra, expect)) in cases.iter().enumerate() {
        let att = Attachment::new(&format!("opt{i}"), "eth0");
        let c = portmap_conf(extra.clone(), m.clone());
        rt.exec("ADD", Some(&att), &c)
            .expect_ok(&format!("ADD {extra}"));
        let nft = lab.nft();
        assert!(nft.contains(expect), "{extra}: want {expect:?} in\n{nft}");
        if extra.get("snat") == Some(&json!(false)) {
            assert!(!nft.contains("cn-q-"), "snat=false must not masquerade");
        }
        rt.exec("DEL", Some(&att), &c).expect_ok("DEL");
        assert!(!lab.nft().contains("cn-p-"), "{extra}: left over");
    }
    // externalSetMarkChain names a chain in our table
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.host_name(),
            "nft",
            "add chain inet weft-cni ext-mark",
        ])
        .status()
        .unwrap();
    let att = Attachment::new("ext", "eth0");
    let c = portmap_conf(json!({"externalSetMarkChain": "ext-mark"}), m.clone());
    rt.exec("ADD", Some(&att), &c).expect_ok("ADD ext");
    let nft = lab.nft();
    assert!(
        nft.contains("jump ext-mark") && !nft.contains("cn-q-"),
        "{nft}"
    );
    rt.exec("DEL", Some(&att), &c).expect_ok("DEL ext");

    // a host port already mapped to another container fails without leftovers
    let a = Attachment::new("own", "eth0");
    let b = Attachment::new("thief", "eth0");
    let c = portmap_conf(json!({}), m.clone());
    rt.exec("ADD", Some(&a), &c).expect_ok("ADD owner");
    let r = rt.exec("ADD", Some(&b), &c);
    assert!(!r.ok() && r.msg().contains("already mapped"), "{r:?}");
    let count = |s: &str| s.matches("chain cn-p-").count();
    assert_eq!(count(&lab.nft()), 1);
    rt.exec("DEL", Some(&b), &c).expect_ok("DEL thief");
    assert_eq!(
        count(&lab.nft()),
        1,
        "DEL of the loser removed the owner's rules"
    );
    rt.exec("DEL", Some(&a), &portmap_conf(json!({}), json!([])))
        .expect_ok("DEL owner");
    assert_eq!(count(&lab.nft()), 0);

    // bad configs are code 7 with every problem listed
    let r = rt.exec(
        "ADD",
        Some(&a),
        &portmap_conf(
            json!({"markMasqBit": 99}),
            json!([{"hostPort": 0, "containerPort": 1}]),
        ),
    );
    assert_eq!(r.code(), Some(7), "{r:?}");
    assert!(
        r.msg().contains("MasqMarkBit") && r.msg().contains("host port"),
        "{r:?}"
    );
    // the martian guard for route_localnet is in place
    assert!(lab.nft().contains("ip daddr 127.0.0.0/8 drop"));
}
