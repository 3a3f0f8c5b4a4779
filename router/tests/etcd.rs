//! Pod CIDR leases from a real etcd (Debian's etcd-server, started in the
//! switch namespace), flannel's schema: weftd leases its subnet, routes
//! every other lease (its own nodes' and a flannel-style kernel vxlan
//! node's), follows additions and deletions, ignores malformed entries,
//! keeps its subnet across a restart and its routes while etcd is away.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::etcd::{
    ETCD_IP, PREFIX, assert_ping, base, cluster_with_etcd, config_with, lease_of, leased_config,
    readdress, running, wait_lease, wait_routes,
};
use common::{Cluster, KernelVtep, Opts, own_routes, underlay};
use netsim::etcd::{Etcd, Member};
use netsim::pki::Pki;
use netsim::weftd::http_get;

const TOOLS: &[&str] = &[
    "ip", "ping", "kill", "etcd", "etcdctl", "bridge", "openssl", "curl",
];
#[test]
fn vxlan_leases_routes_and_failures() {
    if !netsim::netns::privileged_or_skip("vxlan_leases_routes_and_failures", TOOLS) {
        return;
    }
    let (mut c, mut etcd) = cluster_with_etcd(
        "rte",
        3,
        r#"{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}"#,
    );
    let subnets = format!("{PREFIX}/subnets/");
    // Nodes 1 and 2 held these subnets before (leases with their
    // PublicIP): weftd takes them over. Node 3 is a flannel-style kernel
    // vxlan node whose VTEP MAC is not weft's derivation.
    for n in [1u8, 2] {
        etcd.put(
            &format!("{subnets}10.244.{n}.0-24"),
            &format!(
                r#"{{"PublicIP":"{}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"aa:00:00:00:00:0{n}"}}}}"#,
                underlay(n)
            ),
        )
        .unwrap();
    }
    etcd.put(
        &format!("{subnets}10.244.3.0-24"),
        r#"{"PublicIP":"172.31.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"66:aa:bb:00:00:03"},"BackendV6Data":null}"#,
    )
    .unwrap();
    let vtep = KernelVtep {
        name: "flannel.1".into(),
        vni: 1,
        port: 8472,
        mac: "66:aa:bb:00:00:03".into(),
    };
    c.kernel_vtep(
        3,
        &vtep,
        &[
            (1, "02:57:ac:1f:00:01".into()),
            (2, "02:57:ac:1f:00:02".into()),
        ],
    );
    for n in [1u8, 2] {
        let w = c.spawn_weftd(n, &leased_config(&c, n));
        c.nodes[usize::from(n - 1)].weftd = Some(w);
    }
    let all = |skip: u8| -> Vec<String> {
        (1..=3u8)
            .filter(|&m| m != skip)
            .map(|m| format!("10.244.{m}.0/24"))
            .collect()
    };
    wait_routes(&c, 1, &all(1), true, Duration::from_secs(20));
    wait_routes(&c, 2, &all(2), true, Duration::from_secs(20));
    // Taken over: same subnets, weft's attributes, bound to an etcd lease.
    for n in [1u8, 2] {
        let (key, value) = lease_of(&etcd, n).unwrap();
        assert_eq!(key, format!("10.244.{n}.0-24"));
        assert_eq!(
            value,
            format!(
                r#"{{"PublicIP":"{}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:57:ac:1f:00:0{n}"}}}}"#,
                underlay(n)
            )
        );
        let json = etcd
            .ctl(&["get", "-w", "json", &format!("{subnets}{key}")])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["kvs"][0]["lease"].as_i64().unwrap_or(0) != 0, "{json}");
    }
    for (a, b) in [(1u8, 2u8), (2, 1), (1, 3), (3, 1), (2, 3)] {
        assert_ping(&c, a, &format!("10.244.{b}.2"));
    }

    // A lease added, then deleted, by anyone: routed and withdrawn.
    let extra = |b: &str, ip: &str| {
        format!(
            r#"{{"PublicIP":"{ip}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:{b}"}}}}"#
        )
    };
    etcd.put(
        &format!("{subnets}10.244.77.0-24"),
        &extra("77", "172.31.0.77"),
    )
    .unwrap();
    let r77 = vec!["10.244.77.0/24".to_owned()];
    wait_routes(&c, 1, &r77, true, Duration::from_secs(5));
    etcd.ctl(&["del", &format!("{subnets}10.244.77.0-24")])
        .unwrap();
    wait_routes(&c, 1, &r77, false, Duration::from_secs(5));

    // Malformed entries are ignored; weftd keeps running and routing.
    etcd.put(&format!("{subnets}10.244.78.0-24"), "not json")
        .unwrap();
    etcd.put(
        &format!("{subnets}not-a-subnet"),
        &extra("79", "172.31.0.79"),
    )
    .unwrap();
    etcd.put(
        &format!("{subnets}10.9.0.0-24"),
        &extra("80", "172.31.0.80"),
    )
    .unwrap();
    etcd.put(
        &format!("{subnets}10.244.81.0-24"),
        &extra("81", "172.31.0.81"),
    )
    .unwrap();
    wait_routes(
        &c,
        1,
        &["10.244.81.0/24".to_owned()],
        true,
        Duration::from_secs(5),
    );
    let routes = own_routes(&c.node(1).ns);
    assert!(
        !routes.contains("10.244.78.0") && !routes.contains("10.9.0.0"),
        "{routes}"
    );
    running(&mut c, 1);
    running(&mut c, 2);
    assert_ping(&c, 1, "10.244.2.2");

    // Its own lease deleted: weftd creates it again for the same subnet.
    etcd.ctl(&["del", &format!("{subnets}10.244.2.0-24")])
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while lease_of(&etcd, 2).is_none() {
        assert!(
            Instant::now() < end,
            "node 2 did not re-create its lease; logs:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lease_of(&etcd, 2).unwrap().0, "10.244.2.0-24");
    wait_routes(&c, 1, &all(1), true, Duration::from_secs(5));

    // etcd away: every route stays and traffic flows; back: a lease
    // written since is routed.
    etcd.stop();
    std::thread::sleep(Duration::from_secs(2));
    wait_routes(&c, 1, &all(1), true, Duration::from_secs(1));
    assert_ping(&c, 1, "10.244.3.2");
    etcd.restart().unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    etcd.put(
        &format!("{subnets}10.244.88.0-24"),
        &extra("88", "172.31.0.88"),
    )
    .unwrap();
    wait_routes(
        &c,
        1,
        &["10.244.88.0/24".to_owned()],
        true,
        Duration::from_secs(20),
    );
    running(&mut c, 1);

    // SIGTERM leaves the lease; a restart gets the same subnet back.
    c.stop_weftd(1);
    assert_eq!(lease_of(&etcd, 1).unwrap().0, "10.244.1.0-24");
    let w = c.spawn_weftd(1, &leased_config(&c, 1));
    c.nodes[0].weftd = Some(w);
    wait_routes(&c, 1, &all(1), true, Duration::from_secs(20));
    assert_eq!(lease_of(&etcd, 1).unwrap().0, "10.244.1.0-24");
    assert_ping(&c, 1, "10.244.3.2");

    // Its lease gone while it was stopped (expired): the subnet in
    // subnet.env is asked for first, so it comes back, not a random one.
    c.stop_weftd(1);
    etcd.ctl(&["del", &format!("{subnets}10.244.1.0-24")])
        .unwrap();
    assert_eq!(lease_of(&etcd, 1), None);
    let w = c.spawn_weftd(1, &leased_config(&c, 1));
    c.nodes[0].weftd = Some(w);
    assert_eq!(wait_lease(&etcd, 1, &c).0, "10.244.1.0-24");
    etcd.stop();
}

/// Three fresh nodes in `mode`: distinct leases inside SubnetMin/Max,
/// every pod reaches every other, and the node files follow the lease.
fn fresh_leases(test: &str, tag: &str, mode: &str) {
    if !netsim::netns::privileged_or_skip(test, TOOLS) {
        return;
    }
    let (mut c, mut etcd) = cluster_with_etcd(
        tag,
        3,
        &format!(
            r#"{{"Network":"10.50.0.0/16","SubnetMin":"10.50.10.0","SubnetMax":"10.50.20.0","Backend":{{"Type":"{mode}"}}}}"#
        ),
    );
    for n in 1..=3u8 {
        let mut cfg = leased_config(&c, n);
        if mode == "wireguard" {
            let key = c.dir.join(format!("n{n}-wg/wg.key"));
            cfg += &format!(
                "\n[dataplane]\nwireguard_private_key_file = {:?}\n",
                key.display().to_string()
            );
        }
        let w = c.spawn_weftd(n, &cfg);
        c.nodes[usize::from(n - 1)].weftd = Some(w);
    }
    let leases: Vec<(String, String)> = (1..=3u8).map(|n| wait_lease(&etcd, n, &c)).collect();
    let keys: std::collections::BTreeSet<&String> = leases.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 3, "subnets not distinct: {leases:?}");
    for (k, v) in &leases {
        let third: u8 = k.split('.').nth(2).unwrap().parse().unwrap();
        assert!(k.starts_with("10.50.") && (10..=20).contains(&third), "{k}");
        assert!(v.contains(&format!("\"BackendType\":\"{mode}\"")), "{v}");
    }
    if mode == "host-gw" {
        assert_eq!(
            leases[0].1,
            r#"{"PublicIP":"172.31.0.1","BackendType":"host-gw"}"#
        );
    } else if mode == "wireguard" {
        // flannel's wireguard BackendData: the key `wg pubkey` derives.
        let key = std::fs::read_to_string(c.dir.join("n1-wg/wg.key")).unwrap();
        let public = common::wireguard::sh("wg pubkey", &key);
        assert!(
            leases[0].1.contains(&format!(
                r#""BackendData":{{"Port":51820,"PublicKey":"{public}"}}"#
            )),
            "{}",
            leases[0].1
        );
    } else {
        assert!(
            leases[0].1.contains(r#""VtepMAC":"02:57:ac:1f:00:01""#),
            "{}",
            leases[0].1
        );
    }
    let bases: Vec<String> = leases.iter().map(|(k, _)| base(k)).collect();
    for n in 1..=3u8 {
        readdress(&c, n, &bases[usize::from(n - 1)]);
    }
    for n in 1..=3u8 {
        let others: Vec<String> = (1..=3u8)
            .filter(|&m| m != n)
            .map(|m| format!("{}.0/24", bases[usize::from(m - 1)]))
            .collect();
        wait_routes(&c, n, &others, true, Duration::from_secs(10));
    }
    for a in 1..=3u8 {
        for b in (1..=3u8).filter(|&b| b != a) {
            assert_ping(&c, a, &format!("{}.2", bases[usize::from(b - 1)]));
        }
    }
    // The node files follow the lease: flannel's subnet.env and the
    // conflist's host-local range.
    let b1 = &bases[0];
    let env = std::fs::read_to_string(c.dir.join("n1-cni/subnet.env")).unwrap();
    assert!(env.contains("FLANNEL_NETWORK=10.50.0.0/16"), "{env}");
    assert!(env.contains(&format!("FLANNEL_SUBNET={b1}.1/24")), "{env}");
    let conf = std::fs::read_to_string(c.dir.join("n1-cni/net.d/10-weft.conflist")).unwrap();
    assert!(conf.contains(&format!("{b1}.0/24")), "{conf}");
    for n in 1..=3u8 {
        running(&mut c, n);
    }
    etcd.stop();
}

#[test]
fn wireguard_three_fresh_leases_learn_each_others_keys() {
    fresh_leases(
        "wireguard_three_fresh_leases_learn_each_others_keys",
        "hwe",
        "wireguard",
    );
}

#[test]
fn host_gw_three_fresh_leases_are_distinct_and_routed() {
    fresh_leases(
        "host_gw_three_fresh_leases_are_distinct_and_routed",
        "rtg",
        "host-gw",
    );
}

#[test]
fn vxlan_three_fresh_leases_are_distinct_and_routed() {
    fresh_leases(
        "vxlan_three_fresh_leases_are_distinct_and_routed",
        "rtx",
        "vxlan",
    );
}

#[test]
fn one_of_three_etcd_members_killed_changes_nothing() {
    if !netsim::netns::privileged_or_skip("one_of_three_etcd_members_killed_changes_nothing", TOOLS)
    {
        return;
    }
    let mut c = Cluster::new("rt3", 2, Opts::default());
    let members: Vec<Member> = (1..=3)
        .map(|i| Member {
            name: format!("e{i}"),
            ip: format!("172.31.0.25{i}"),
        })
        .collect();
    for m in &members {
        c.sw.ip(&["addr", "add", &format!("{}/24", m.ip), "dev", "br0"])
            .unwrap();
    }
    let mut etcd: Vec<Etcd> = members
        .iter()
        .map(|m| Etcd::member(&c.sw, m, &members, &c.dir).unwrap())
        .collect();
    for e in &etcd {
        e.wait_healthy(Duration::from_secs(30)).unwrap();
    }
    let subnets = format!("{PREFIX}/subnets/");
    etcd[0]
        .put(
            &format!("{PREFIX}/config"),
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
        )
        .unwrap();
    for n in [1u8, 2] {
        etcd[0]
            .put(
                &format!("{subnets}10.244.{n}.0-24"),
                &format!(
                    r#"{{"PublicIP":"{}","BackendType":"host-gw"}}"#,
                    underlay(n)
                ),
            )
            .unwrap();
    }
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| format!("\"http://{}:2379\"", m.ip))
        .collect();
    for n in [1u8, 2] {
        let cfg = config_with(&c, n, &endpoints.join(", "));
        let w = c.spawn_weftd(n, &cfg);
        c.nodes[usize::from(n - 1)].weftd = Some(w);
    }
    wait_routes(
        &c,
        1,
        &["10.244.2.0/24".to_owned()],
        true,
        Duration::from_secs(20),
    );
    wait_routes(
        &c,
        2,
        &["10.244.1.0/24".to_owned()],
        true,
        Duration::from_secs(20),
    );
    assert_ping(&c, 1, "10.244.2.2");
    // Kill each member in turn (one down at a time): leases written
    // through the others are routed, deletions withdrawn.
    for (i, k) in [0usize, 1, 2].into_iter().enumerate() {
        etcd[k].stop();
        let other = &etcd[(k + 1) % 3];
        let key = format!("{subnets}10.244.{}.0-24", 60 + i);
        other
            .put(
                &key,
                r#"{"PublicIP":"172.31.0.60","BackendType":"host-gw"}"#,
            )
            .unwrap();
        let r = vec![format!("10.244.{}.0/24", 60 + i)];
        wait_routes(&c, 1, &r, true, Duration::from_secs(10));
        wait_routes(&c, 2, &r, true, Duration::from_secs(10));
        other.ctl(&["del", &key]).unwrap();
        wait_routes(&c, 1, &r, false, Duration::from_secs(10));
        wait_routes(
            &c,
            1,
            &["10.244.2.0/24".to_owned()],
            true,
            Duration::from_secs(1),
        );
        assert_ping(&c, 1, "10.244.2.2");
        running(&mut c, 1);
        running(&mut c, 2);
        etcd[k].restart().unwrap();
        etcd[k].wait_healthy(Duration::from_secs(30)).unwrap();
    }
    for e in &mut etcd {
        e.stop();
    }
}

/// etcd over TLS with client certificates (`--client-cert-auth`): nodes
/// given the CA, a certificate and a key lease and route each other; a
/// node without a client certificate is refused by etcd, leases nothing
/// and keeps retrying.
#[test]
fn tls_etcd_with_client_certificates() {
    if !netsim::netns::privileged_or_skip("tls_etcd_with_client_certificates", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rts", 3, Opts::default());
    c.sw.ip(&["addr", "add", &format!("{ETCD_IP}/24"), "dev", "br0"])
        .unwrap();
    let pki = Pki::generate(&c.dir, &[ETCD_IP]).unwrap();
    let mut etcd = Etcd::single_tls(&c.sw, ETCD_IP, &c.dir, &pki).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    etcd.put(
        &format!("{PREFIX}/config"),
        r#"{"Network":"10.60.0.0/16","Backend":{"Type":"host-gw"}}"#,
    )
    .unwrap();
    let endpoints = format!("\"https://{ETCD_IP}:2379\"");
    let ca = format!("etcd_ca_file = {:?}\n", pki.ca.display().to_string());
    let identity = format!(
        "etcd_cert_file = {:?}\netcd_key_file = {:?}\n",
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string()
    );
    for n in 1..=3u8 {
        let tls = if n == 3 {
            ca.clone()
        } else {
            format!("{ca}{identity}")
        };
        // The TLS keys go into the [subnet] table, right after the endpoints.
        let config =
            config_with(&c, n, &endpoints).replacen("]\n\n[cni]", &format!("]\n{tls}\n[cni]"), 1);
        assert!(config.contains("etcd_ca_file"), "{config}");
        let w = c.spawn_weftd(n, &config);
        c.nodes[usize::from(n - 1)].weftd = Some(w);
    }
    let bases: Vec<String> = (1..=2u8)
        .map(|n| base(&wait_lease(&etcd, n, &c).0))
        .collect();
    for n in 1..=2u8 {
        readdress(&c, n, &bases[usize::from(n - 1)]);
    }
    wait_routes(
        &c,
        1,
        &[format!("{}.0/24", bases[1])],
        true,
        Duration::from_secs(10),
    );
    wait_routes(
        &c,
        2,
        &[format!("{}.0/24", bases[0])],
        true,
        Duration::from_secs(10),
    );
    assert_ping(&c, 1, &format!("{}.2", bases[1]));
    assert_ping(&c, 2, &format!("{}.2", bases[0]));
    // Node 3 has no client certificate: etcd refuses it. It keeps
    // retrying, and its /readyz says so meanwhile; node 1's is ready.
    assert_eq!(lease_of(&etcd, 3), None);
    running(&mut c, 3);
    let log3 = c.nodes[2].weftd.as_ref().unwrap().log_text();
    assert!(log3.contains("etcd not ready"), "node 3 log:\n{log3}");
    let (code, body) = http_get(&c.node(3).ns, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("etcd not ready"), "{body}");
    assert_eq!(http_get(&c.node(3).ns, "/healthz").0, 200);
    let end = Instant::now() + Duration::from_secs(10);
    while http_get(&c.node(1).ns, "/readyz").0 != 200 {
        assert!(
            Instant::now() < end,
            "node 1 not ready: {:?}",
            http_get(&c.node(1).ns, "/readyz")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    etcd.stop();
}
