//! The test runtime (tests/common) driving a real conflist in namespaces:
//! the reference bridge + portmap chain, run inside a "host" namespace with
//! `ip netns exec`, once with the reference host-local and once with ours
//! (the reference bridge delegating IPAM to our binary). ADD in order with
//! prevResult, CHECK with the cached result, DEL in reverse, DEL again.
//! Needs root (skips outside CI without it).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Attachment, Runtime, lease_files, ours_dir, reference_available};
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use serde_json::{Value, json};

fn bin_dir(host_local: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for p in ["bridge", "portmap", "loopback"] {
        std::os::unix::fs::symlink(Path::new(common::REFERENCE_DIR).join(p), d.path().join(p))
            .unwrap();
    }
    std::os::unix::fs::symlink(host_local, d.path().join("host-local")).unwrap();
    d
}

fn chain(prefix: &str, data_dir: &Path, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": format!("{prefix}net"),
        "plugins": [
            {"type": "bridge", "bridge": format!("{prefix}br"), "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "dataDir": data_dir,
                      "ranges": [[{"subnet": "10.123.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

fn run_chain(host_local: &Path, tag: &str) {
    let prefix = unique_prefix(tag);
    let host = Netns::create(&format!("{prefix}h")).unwrap();
    let ctr = Netns::create(&format!("{prefix}c")).unwrap();
    let bins = bin_dir(host_local);
    let data = tempfile::tempdir().unwrap();
    let rt = Runtime::new(&[bins.path()]).in_netns(host.name());
    let net = format!("{prefix}net");
    for (n, version) in ["0.3.1", "0.4.0", "1.0.0"].into_iter().enumerate() {
        let list = chain(&prefix, data.path(), version);
        let cid = format!("{prefix}c{n}");
        let att = Attachment::new(&cid, "eth0")
            .with_netns(Some(&format!("/var/run/netns/{}", ctr.name())))
            .with_cap(
                "portMappings",
                json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]),
            );

        let result = rt
            .add_list(&list, &att)
            .map_err(|r| format!("{version}: {} {}", r.stdout, r.stderr))
            .unwrap();
        assert_eq!(result["cniVersion"], version);
        let ip = format!("10.123.0.{}", n + 2);
        let addr = result["ips"][0]["address"].as_str().unwrap();
        assert_eq!(addr, format!("{ip}/24"), "{version}");
        assert_eq!(
            result["ips"][0].get("version").is_some(),
            version != "1.0.0",
            "{version}"
        );
        // portmap passes the bridge's result through: interfaces are all there.
        let ifs: Vec<&str> = result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert!(
            ifs.contains(&"eth0") && ifs.contains(&format!("{prefix}br").as_str()),
            "{ifs:?}"
        );
        let show = ctr.ip(&["-4", "addr", "show", "eth0"]).unwrap();
        assert!(String::from_utf8_lossy(&show.stdout).contains(addr));
        ctr.run("ping", &["-c1", "-W2", "10.123.0.1"]).unwrap();
        // The lease is in the shared on-disk format whichever host-local wrote it.
        let files = lease_files(data.path(), &net);
        assert_eq!(
            files.get(&ip).map(String::as_str),
            Some(format!("{cid}\r\neth0").as_str())
        );

        // CHECK (0.4.0+) runs the bridge only: the reference portmap 1.1.1 fails
        // its own CHECK on a v4-only result ("could not check ipv6 dnat").
        let mut bridge_only = list.clone();
        bridge_only["plugins"].as_array_mut().unwrap().truncate(1);
        if version != "0.3.1" {
            rt.check_list(&bridge_only, &att, &result)
                .map_err(|r| r.stdout)
                .unwrap();
        }
        rt.del_list(&list, &att, Some(&result))
            .map_err(|r| r.stdout)
            .unwrap();
        assert!(ctr.ip(&["link", "show", "eth0"]).is_err(), "eth0 removed");
        assert!(!lease_files(data.path(), &net).contains_key(&ip));
        // DEL again, and DEL without the netns and without a cached result: still fine.
        rt.del_list(&list, &att, Some(&result))
            .map_err(|r| r.stdout)
            .unwrap();
        rt.del_list(&list, &att.clone().with_netns(None), None)
            .map_err(|r| r.stdout)
            .unwrap();
        if version != "0.3.1" {
            assert!(rt.check_list(&bridge_only, &att, &result).is_err());
        }
    }
}

#[test]
fn reference_chain_through_the_test_runtime() {
    if !privileged_or_skip(
        "reference_chain_through_the_test_runtime",
        &["ip", "iptables", "ping"],
    ) || !reference_available("bridge")
    {
        return;
    }
    run_chain(&Path::new(common::REFERENCE_DIR).join("host-local"), "ccr");
}

#[test]
fn reference_bridge_delegates_to_our_host_local() {
    if !privileged_or_skip(
        "reference_bridge_delegates_to_our_host_local",
        &["ip", "iptables", "ping"],
    ) || !reference_available("bridge")
    {
        return;
    }
    run_chain(&ours_dir().join("host-local"), "cco");
}
