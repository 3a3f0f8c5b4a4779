//! 40 chain ADDs (bridge + host-local + portmap) at 8-way parallelism, then
//! their DELs: unique addresses, and nothing left behind (lease file, veth,
//! nftables chain or map element, route).
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bridge_common::{Lab, chain, netns_path, ping, result_ip};
use common::Attachment;
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const PODS: usize = 40;
const WORKERS: usize = 8;

fn parallel(f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= PODS {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}

#[test]
fn forty_parallel_chain_adds_and_dels_leave_nothing_behind() {
    if !privileged_or_skip(
        "forty_parallel_chain_adds_and_dels_leave_nothing_behind",
        &["ip", "nft", "ping"],
    ) {
        return;
    }
    let lab = Lab::new("cn");
    let rt = common::ours().in_netns(&lab.host_name());
    let list = chain(
        "1.0.0",
        "cnet",
        "cnc0",
        &lab.data_dir(),
        "10.71.0.0/24",
        "fd71::/64",
        json!({}),
    );
    let pods: Vec<_> = (0..PODS).map(|i| lab.pod(i)).collect();
    let atts: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let port = 20000 + u16::try_from(i).unwrap();
            Attachment::new(&format!("cc{i}"), "eth0")
                .with_netns(Some(&netns_path(p)))
                .with_cap(
                    "portMappings",
                    json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]),
                )
        })
        .collect();
    let routes_before = lab.sh("ip route; ip -6 route");
    let results: Arc<Mutex<Vec<Option<Value>>>> = Arc::new(Mutex::new(vec![None; PODS]));
    parallel(|i| {
        let r = rt
            .add_list(&list, &atts[i])
            .unwrap_or_else(|e| panic!("ADD {i}: {e:?}"));
        results.lock().unwrap()[i] = Some(r);
    });
    let results: Vec<Value> = results
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.clone().unwrap())
        .collect();
    let v4: BTreeSet<String> = results.iter().map(|r| result_ip(r, false)).collect();
    let v6: BTreeSet<String> = results.iter().map(|r| result_ip(r, true)).collect();
    assert_eq!((v4.len(), v6.len()), (PODS, PODS), "addresses not unique");
    assert_eq!(lab.leases("cnet").len(), 2 * PODS);
    assert_eq!(lab.veths().len(), PODS);
    let nft = lab.nft();
    assert_eq!(nft.matches("chain cn-p-").count(), PODS);
    assert_eq!(nft.matches("chain cn-m-").count(), PODS);
    for i in [0, PODS / 2, PODS - 1] {
        assert!(ping(&pods[i], "10.71.0.1"), "pod {i} -> gateway");
    }
    parallel(|i| {
        rt.del_list(&list, &atts[i], Some(&results[i]))
            .unwrap_or_else(|e| panic!("DEL {i}: {e:?}"));
    });
    assert!(
        lab.leases("cnet").is_empty(),
        "leases left: {:?}",
        lab.leases("cnet")
    );
    assert!(lab.veths().is_empty(), "veths left: {:?}", lab.veths());
    let nft = lab.nft();
    for needle in ["cn-p-", "cn-q-", "cn-m-", "goto", "jump cn-"] {
        assert!(!nft.contains(needle), "{needle} left:\n{nft}");
    }
    // the bridge's own subnet route may now exist (gateway address); no per-pod route
    let routes_after = lab.sh("ip route; ip -6 route");
    for ip in v4.iter().chain(v6.iter()) {
        assert!(
            !routes_after.contains(ip.as_str()),
            "route for {ip} left:\n{routes_after}"
        );
    }
    assert!(
        routes_after.lines().count() <= routes_before.lines().count() + 4,
        "{routes_after}"
    );
}
