//! etcd-backed leases for the root tests: a cluster whose switch
//! namespace runs etcd with flannel's network config, weftd configs that
//! lease from it, and waits on leases and on the routes they produce.

use std::time::{Duration, Instant};

use netsim::etcd::Etcd;

use super::{Cluster, Opts, own_routes, underlay};

/// flannel's etcd prefix.
pub const PREFIX: &str = "/coreos.com/network";
/// Where etcd listens (on the switch bridge).
pub const ETCD_IP: &str = "172.31.0.254";

/// A cluster whose switch namespace also runs etcd with `network` as
/// flannel's network config.
pub fn cluster_with_etcd(tag: &str, nodes: u8, network: &str) -> (Cluster, Etcd) {
    let c = Cluster::new(tag, nodes, Opts::default());
    c.sw.ip(&["addr", "add", &format!("{ETCD_IP}/24"), "dev", "br0"])
        .unwrap();
    let etcd = Etcd::single(&c.sw, ETCD_IP, &c.dir).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    etcd.put(&format!("{PREFIX}/config"), network).unwrap();
    (c, etcd)
}

/// weftd's config for node `n`: no pod_cidr, no cluster_cidr, no mode;
/// etcd at `endpoints`; the CNI files in the test's directory.
pub fn config_with(c: &Cluster, n: u8, endpoints: &str) -> String {
    let files = c.dir.join(format!("n{n}-cni"));
    format!(
        "node_name = \"node-{n}\"\nunderlay_ip = \"{}\"\nip_masq = false\n\n[subnet]\netcd_endpoints = [{endpoints}]\n\n[cni]\nconf_dir = {:?}\nsubnet_env = {:?}\n",
        underlay(n),
        files.join("net.d").display().to_string(),
        files.join("subnet.env").display().to_string()
    )
}

/// [`config_with`] the single etcd.
pub fn leased_config(c: &Cluster, n: u8) -> String {
    config_with(c, n, &format!("\"http://{ETCD_IP}:2379\""))
}

/// The subnet key (e.g. `10.244.7.0-24`) and value of node `n`'s lease.
pub fn lease_of(etcd: &Etcd, n: u8) -> Option<(String, String)> {
    let needle = format!("\"PublicIP\":\"{}\"", underlay(n));
    etcd.get_prefix(&format!("{PREFIX}/subnets/"))
        .unwrap()
        .into_iter()
        .find(|(_, v)| v.contains(&needle))
        .map(|(k, v)| (k.rsplit('/').next().unwrap().to_owned(), v))
}

/// Waits (20 s at most) for node `n`'s lease.
pub fn wait_lease(etcd: &Etcd, n: u8, c: &Cluster) -> (String, String) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = lease_of(etcd, n) {
            return l;
        }
        assert!(
            Instant::now() < end,
            "node {n} leased nothing; logs:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `10.244.7.0-24` -> `10.244.7`.
pub fn base(key: &str) -> String {
    key.trim_end_matches(".0-24").to_owned()
}

/// Waits until node `n`'s weftd routes (`present`) or no longer routes
/// each of `cidrs`.
pub fn wait_routes(c: &Cluster, n: u8, cidrs: &[String], present: bool, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let routes = own_routes(&c.node(n).ns);
        if cidrs.iter().all(|r| routes.contains(r.as_str()) == present) {
            return;
        }
        assert!(
            Instant::now() < end,
            "node {n}: expected {cidrs:?} present={present} within {within:?}; routes:\n{routes}\nlogs:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Moves node `n`'s pod into the leased subnet `b.0/24`.
pub fn readdress(c: &Cluster, n: u8, b: &str) {
    let (node, pod) = (&c.node(n).ns, &c.node(n).pod);
    node.ip(&["addr", "flush", "dev", "pod0"]).unwrap();
    node.ip(&["addr", "add", &format!("{b}.1/24"), "dev", "pod0"])
        .unwrap();
    pod.ip(&["addr", "flush", "dev", "eth0"]).unwrap();
    pod.ip(&["addr", "add", &format!("{b}.2/24"), "dev", "eth0"])
        .unwrap();
    pod.ip(&["route", "add", "default", "via", &format!("{b}.1")])
        .unwrap();
}

/// Asserts pod `from` reaches `ip`.
pub fn assert_ping(c: &Cluster, from: u8, ip: &str) {
    assert!(
        c.ping(from, ip),
        "pod {from} cannot ping {ip}; logs:\n{}",
        c.logs()
    );
}

/// Asserts node `n`'s weftd still runs.
pub fn running(c: &mut Cluster, n: u8) {
    let w = c.nodes[usize::from(n - 1)].weftd.as_mut().unwrap();
    assert!(
        w.try_wait().is_none(),
        "weftd {n} exited; log:\n{}",
        w.log_text()
    );
}
