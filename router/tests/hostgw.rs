//! host-gw mode: pod traffic over plain kernel routes, restart and
//! reconcile behaviour, and config errors that install nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::tcp_transfer;
use common::{Cluster, Opts, own_routes, pod_ip, underlay};

const TOOLS: &[&str] = &["ip", "ping", "sysctl", "kill"];

#[test]
fn hostgw_two_nodes_ping_transfer_and_restart() {
    if !netsim::netns::privileged_or_skip("hostgw_two_nodes_ping_transfer_and_restart", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rth", 2, Opts::default());
    c.start_all("host-gw", "");
    let routes = own_routes(&c.node(1).ns);
    assert!(
        routes.contains("10.244.2.0/24 via 172.31.0.2 dev eth0"),
        "{routes}"
    );
    c.assert_ping_matrix();
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 4 << 20);

    // SIGTERM removes every route weftd installed.
    c.stop_weftd(1);
    assert_eq!(own_routes(&c.node(1).ns), "", "routes left after SIGTERM");
    assert!(!c.ping(1, &pod_ip(2)), "traffic still routed without weftd");

    // Stale routes of weftd's protocol are reconciled at start; routes of
    // other protocols are left alone.
    let ns = &c.node(1).ns;
    ns.ip(&[
        "route",
        "add",
        "10.244.99.0/24",
        "via",
        "172.31.0.2",
        "proto",
        "87",
    ])
    .unwrap();
    ns.ip(&[
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        "172.31.0.9",
        "proto",
        "87",
    ])
    .unwrap();
    ns.ip(&[
        "route",
        "add",
        "10.244.98.0/24",
        "via",
        "172.31.0.2",
        "proto",
        "static",
    ])
    .unwrap();
    ns.ip(&[
        "route",
        "add",
        "10.244.97.0/24",
        "via",
        "172.31.0.2",
        "proto",
        "bird",
    ])
    .unwrap();
    let cfg = c.config(1, "host-gw", "");
    c.start_weftd(1, &cfg);
    // start_weftd returns once 10.244.2.0/24 exists; wait for the rest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = own_routes(&c.node(1).ns);
        if !r.contains("10.244.99.0/24") && r.contains("10.244.2.0/24 via 172.31.0.2 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stale routes not reconciled: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = own_routes(&c.node(1).ns);
    assert_eq!(
        r.lines().count(),
        1,
        "exactly one weftd route expected: {r}"
    );
    let all = String::from_utf8(c.node(1).ns.ip(&["route", "show"]).unwrap().stdout).unwrap();
    assert!(
        all.contains("10.244.98.0/24 via 172.31.0.2 dev eth0 proto static"),
        "{all}"
    );
    assert!(
        all.contains("10.244.97.0/24 via 172.31.0.2 dev eth0 proto bird"),
        "{all}"
    );
    c.assert_ping_matrix();

    // Someone deletes weftd's route: it comes back (kernel watch).
    c.node(1)
        .ns
        .ip(&["route", "del", "10.244.2.0/24", "proto", "87"])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !own_routes(&c.node(1).ns).contains("10.244.2.0/24") {
        assert!(
            std::time::Instant::now() < deadline,
            "deleted route not restored"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    c.stop_weftd(1);
    c.stop_weftd(2);
    assert_eq!(own_routes(&c.node(1).ns), "");
    assert_eq!(own_routes(&c.node(2).ns), "");
    let all = String::from_utf8(c.node(1).ns.ip(&["route", "show"]).unwrap().stdout).unwrap();
    assert!(
        all.contains("10.244.98.0/24") && all.contains("10.244.97.0/24"),
        "{all}"
    );
}

#[test]
fn hostgw_three_nodes_ping_matrix_and_transfer() {
    if !netsim::netns::privileged_or_skip("hostgw_three_nodes_ping_matrix_and_transfer", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rth", 3, Opts::default());
    c.start_all("host-gw", "");
    c.assert_ping_matrix();
    tcp_transfer(&c.node(3).pod, &c.node(1).pod, &pod_ip(1), 2 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(3).pod, &pod_ip(3), 2 << 20);

    // Thousands of static routes: weftd starts (the whole table is one
    // batch on the route feed) and installs every one.
    c.stop_weftd(3);
    let mut cfg = c.config(3, "host-gw", "");
    const EXTRA: u32 = 5000;
    for i in 0..EXTRA {
        cfg += &format!(
            "\n[[static_routes]]\npod_cidr = \"10.244.{}.{}/30\"\nvia = \"{}\"\n",
            128 + i / 64,
            (i % 64) * 4,
            underlay(1)
        );
    }
    c.start_weftd(3, &cfg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = own_routes(&c.node(3).ns).lines().count();
        if n == EXTRA as usize + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of {} routes installed",
            EXTRA + 2
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    c.assert_ping_matrix();
}

#[test]
fn bad_configs_fail_naming_the_field_and_install_nothing() {
    if !netsim::netns::privileged_or_skip(
        "bad_configs_fail_naming_the_field_and_install_nothing",
        TOOLS,
    ) {
        return;
    }
    let c = Cluster::new("rth", 2, Opts::default());
    let good = c.config(1, "host-gw", "");
    let cases: Vec<(String, &str)> = vec![
        (good.replace("172.31.0.1", "172.31.7.1"), "underlay_ip"),
        (
            good.replace("mode = \"host-gw\"", "mode = \"host-gw\"\nturbo = true"),
            "turbo",
        ),
        (good.replace("10.244.1.0/24", "10.99.1.0/24"), "pod_cidr"),
        (
            good.replace("10.244.2.0/24", "10.244.1.128/25"),
            "static_routes[0].pod_cidr",
        ),
        (good.replace("node_name", "node_nam"), "node_nam"),
        (
            c.config(1, "vxlan", "tun_name = \"eth0\""),
            "dataplane.tun_name",
        ),
    ];
    for (cfg, field) in cases {
        let mut w = c.spawn_weftd(1, &cfg);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let st = loop {
            if let Some(st) = w.try_wait() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "weftd kept running with a bad config ({field})"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(!st.success(), "bad config accepted ({field})");
        let log = w.log_text();
        assert!(log.contains(field), "error does not name {field}: {log}");
        assert_eq!(
            own_routes(&c.node(1).ns),
            "",
            "routes installed despite bad config ({field})"
        );
        let links = String::from_utf8(c.node(1).ns.ip(&["-o", "link"]).unwrap().stdout).unwrap();
        assert!(
            !links.contains("weft0"),
            "TUN created despite bad config: {links}"
        );
    }
}
