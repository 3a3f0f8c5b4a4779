use super::*;
use std::net::Ipv4Addr;

use crate::vtep::derived_mac;

const GOOD: &str = r#"
node_name     = "node-1"
underlay_ip   = "172.31.0.1"
pod_cidr      = "10.244.1.0/24"
cluster_cidr  = "10.244.0.0/16"

[dataplane]
mode = "vxlan"

[[static_routes]]
pod_cidr = "10.244.2.0/24"
via      = "172.31.0.2"

[[static_routes]]
pod_cidr = "10.244.3.0/24"
via      = "172.31.0.3"
vtep_mac = "aa:bb:cc:dd:ee:01"
"#;

#[test]
fn issue_example_parses_with_defaults() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.dataplane.mode, Mode::Vxlan);
    assert_eq!(c.dataplane.tun_name, "weft0");
    assert_eq!(c.dataplane.vxlan_vni, 1);
    assert_eq!(c.dataplane.vxlan_port, 8472);
    assert_eq!(c.dataplane.udp_port, 8285);
    assert_eq!(c.dataplane.mtu, None);
    assert!(!c.dataplane.direct_routing);
    // Two queues per CPU, at most 8; one on a single CPU.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let want = if cpus == 1 { 1 } else { (2 * cpus).min(8) };
    assert_eq!(c.dataplane.queues as usize, want);
    assert_eq!(c.vtep_mac(), MacAddr([0x02, 0x57, 172, 31, 0, 1]));
    assert_eq!(c.static_routes.len(), 2);
    assert_eq!(
        c.static_routes[1].vtep_mac,
        Some(MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 1]))
    );
}

#[test]
fn unknown_key_is_named() {
    let text = GOOD.replace("mode = \"vxlan\"", "mode = \"vxlan\"\nbogus_key = 1");
    let e = Config::parse(&text).unwrap_err();
    assert!(e.to_string().contains("bogus_key"), "{e}");
    let text = GOOD.replace(
        "via      = \"172.31.0.2\"",
        "via = \"172.31.0.2\"\nnexthop = 1",
    );
    let e = Config::parse(&text).unwrap_err();
    assert!(e.to_string().contains("nexthop"), "{e}");
}

#[test]
fn syntax_and_type_errors_fail() {
    assert!(Config::parse("node_name = ").is_err());
    let e = Config::parse(&GOOD.replace("\"vxlan\"", "\"gre\"")).unwrap_err();
    assert!(e.to_string().contains("gre"), "{e}");
    let e = Config::parse(&GOOD.replace("10.244.2.0/24", "10.244.2.0/33")).unwrap_err();
    assert!(e.to_string().contains("10.244.2.0/33"), "{e}");
    let e = Config::parse(&GOOD.replace("aa:bb:cc:dd:ee:01", "aa:bb")).unwrap_err();
    assert!(e.to_string().contains("MAC"), "{e}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
node_name = ""
underlay_ip = "172.31.0.1"
pod_cidr = "10.99.1.0/24"
cluster_cidr = "10.244.0.0/16"
[dataplane]
mode = "udp"
tun_name = "this-name-is-way-too-long"
vxlan_vni = 20000000
mtu = 100
[[static_routes]]
pod_cidr = "10.244.2.0/24"
via = "172.31.0.1"
[[static_routes]]
pod_cidr = "10.244.2.128/25"
via = "172.31.0.3"
[[static_routes]]
pod_cidr = "10.99.1.0/25"
via = "172.31.0.4"
"#;
    let e = Config::parse(text).unwrap_err();
    for path in [
        "node_name",
        "pod_cidr",
        "dataplane.tun_name",
        "dataplane.vxlan_vni",
        "dataplane.mtu",
        "static_routes[0].via",
        "static_routes[1].pod_cidr",
        "static_routes[2].pod_cidr",
    ] {
        assert!(e.mentions(path), "missing {path} in {e}");
    }
    assert!(!e.mentions("static_routes[0].pod_cidr"), "{e}");
}

#[test]
fn host_bits_and_family_checks() {
    let text = GOOD.replace("10.244.1.0/24", "10.244.1.5/24");
    assert!(Config::parse(&text).unwrap_err().mentions("pod_cidr"));
    let text = GOOD.replace("\"172.31.0.2\"", "\"fd00::2\"");
    assert!(
        Config::parse(&text)
            .unwrap_err()
            .mentions("static_routes[0].via")
    );
    let text = GOOD.replace("172.31.0.1", "fd00::1");
    assert!(Config::parse(&text).unwrap_err().mentions("underlay_ip"));
}

#[test]
fn dual_stack_ranges() {
    let text = GOOD.replace(
        "cluster_cidr  = \"10.244.0.0/16\"",
        "cluster_cidr  = \"10.244.0.0/16\"\npod_cidr_v6 = \"fd10:244:1::/64\"\ncluster_cidr_v6 = \"fd10:244::/32\"",
    ) + "\n[[static_routes]]\npod_cidr = \"fd10:244:2::/64\"\nvia = \"172.31.0.2\"\n";
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.own_pod_cidrs().len(), 2);
    let bad = text.replace("fd10:244:2::/64", "fd10:245:2::/64");
    assert!(
        Config::parse(&bad)
            .unwrap_err()
            .mentions("static_routes[2].pod_cidr")
    );
    let hostgw = text.replace("\"vxlan\"", "\"host-gw\"");
    assert!(
        Config::parse(&hostgw)
            .unwrap_err()
            .mentions("static_routes[2].via")
    );
}

#[test]
fn mac_roundtrip_and_derivation() {
    let m: MacAddr = "02:57:ac:1f:00:02".parse().unwrap();
    assert_eq!(m, derived_mac(Ipv4Addr::new(172, 31, 0, 2)));
    assert_eq!(m.to_string(), "02:57:ac:1f:00:02");
    assert!("02:57:ac:1f:00".parse::<MacAddr>().is_err());
    assert!("02:57:ac:1f:00:02:03".parse::<MacAddr>().is_err());
    assert!("zz:57:ac:1f:00:02".parse::<MacAddr>().is_err());
}

#[test]
fn overlapping_static_routes_are_each_named() {
    let route =
        |c: &str, via: &str| format!("\n[[static_routes]]\npod_cidr = \"{c}\"\nvia = \"{via}\"\n");
    let mut text = GOOD.to_owned();
    text += &route("10.244.2.0/24", "172.31.0.9"); // [2]: same as [0]
    text += &route("10.244.128.0/17", "172.31.0.4"); // [3]
    text += &route("10.244.200.0/24", "172.31.0.5"); // [4]: inside [3]
    text += &route("10.244.200.64/26", "172.31.0.6"); // [5]: inside [4]
    text += &route("10.244.4.0/24", "172.31.0.7"); // [6]: disjoint
    let errs = Config::parse(&text).unwrap_err().0;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "static_routes[2].pod_cidr",
            "static_routes[4].pod_cidr",
            "static_routes[5].pod_cidr"
        ],
        "{errs:?}"
    );
    assert!(
        errs[0]
            .msg
            .contains("static_routes[0].pod_cidr 10.244.2.0/24")
    );
    assert!(
        errs[1]
            .msg
            .contains("static_routes[3].pod_cidr 10.244.128.0/17")
    );
    assert!(
        errs[2]
            .msg
            .contains("static_routes[4].pod_cidr 10.244.200.0/24")
    );
}

#[test]
fn ten_thousand_static_routes_validate() {
    let mut text = GOOD
        .replace("10.244.0.0/16", "10.0.0.0/8")
        .replace("10.244.1.0/24", "10.1.0.0/24");
    for i in 0..10_000u32 {
        text += &format!(
            "\n[[static_routes]]\npod_cidr = \"10.{}.{}.0/24\"\nvia = \"172.31.{}.{}\"\n",
            100 + i / 256,
            i % 256,
            1 + i / 250,
            1 + i % 250
        );
    }
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.static_routes.len(), 10_002);
}

#[test]
fn graceful_restart_and_log_keys_are_checked_with_their_paths() {
    let c = Config::parse(GOOD).unwrap();
    assert!(!c.graceful_restart(), "no [bgp]: off by default");
    let on = GOOD.replace("[dataplane]", "graceful_restart = true\n[dataplane]");
    assert!(Config::parse(&on).unwrap().graceful_restart());
    let bgp = format!("{GOOD}\n[bgp]\nasn = 64512\n");
    assert!(
        Config::parse(&bgp).unwrap().graceful_restart(),
        "bgp default"
    );
    let clash = bgp.replace("[dataplane]", "graceful_restart = false\n[dataplane]");
    assert!(
        Config::parse(&clash)
            .unwrap_err()
            .mentions("graceful_restart")
    );
    let log = format!("{GOOD}\n[log]\nformat = \"json\"\nlevel = \"weft=loud\"\n");
    assert!(Config::parse(&log).unwrap_err().mentions("log.level"));
    let json = format!("{GOOD}\n[log]\nformat = \"json\"\n");
    assert_eq!(Config::parse(&json).unwrap().log.format, LogFormat::Json);
    assert!(Config::parse(&format!("{GOOD}\n[log]\nformat = \"xml\"\n")).is_err());
}
