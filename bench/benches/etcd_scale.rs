//! Routes from etcd leases against routes from BGP, same set, same run:
//! a generator writes N flannel leases into etcd (1000 /24s, then 10 000
//! /26s in a wider network) and BIRD 2, as route reflector, originates the
//! same N prefixes. One weftd (host-gw) leases its own subnet and routes
//! every lease; another learns the prefixes from the reflector. Measured
//! from each weftd's start: time until all N are kernel routes, and its
//! peak RSS (VmHWM). The two run one after the other (2 shared cores).
//! Root only; not run in CI. Needs the release weftd
//! (`cargo build --release -p weft-router --bins`); `ETCD_SCALE_N`
//! (comma-separated) overrides the sizes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions, Txn, TxnOp};
mod route_scale;

use netsim::bgp::Bird;
use netsim::etcd::Etcd;
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use netsim::process::ChildGuard;
use netsim::weftd::default_weftd_path;
use route_scale::{fib_prefixes, link, peak_rss_mib, triestat};

const ASN: u32 = 64512;
const HUB_E: &str = "10.97.0.1";
const W_E: &str = "10.97.0.2";
const HUB_B: &str = "10.96.0.1";
const W_B: &str = "10.96.0.2";
const TIMEOUT: Duration = Duration::from_secs(120);

/// One size of the comparison.
struct Size {
    n: u32,
    network: &'static str,
    len: u8,
}

impl Size {
    /// 1000 /24s in a /14; more as /26s in a /12 (flannel's SubnetLen 26).
    fn for_count(n: u32) -> Self {
        if n <= 1000 {
            Self {
                n,
                network: "10.64.0.0/14",
                len: 24,
            }
        } else {
            Self {
                n,
                network: "10.64.0.0/12",
                len: 26,
            }
        }
    }
}

/// The i-th leased subnet (skipping the network's first, as flannel does).
fn subnet(s: &Size, i: u32) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(10, 64, 0, 0));
    Ipv4Addr::from(base + (i + 1) * (1 << (32 - s.len)))
}

/// The i-th node's underlay address (distinct next hops, as in a cluster).
fn node_ip(net: u8, i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, net, 1 + (i / 250) as u8, 2 + (i % 250) as u8)
}

fn write_leases(etcd_url: &str, s: &Size) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Client::connect([etcd_url], None).await.unwrap();
        c.delete(
            "/coreos.com/network/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
        c.put(
            "/coreos.com/network/config",
            format!(
                r#"{{"Network":"{}","SubnetLen":{},"Backend":{{"Type":"host-gw"}}}}"#,
                s.network, s.len
            ),
            None,
        )
        .await
        .unwrap();
        let lease = c.lease_grant(3600, None).await.unwrap().id();
        let ops: Vec<TxnOp> = (0..s.n)
            .map(|i| {
                TxnOp::put(
                    format!("/coreos.com/network/subnets/{}-{}", subnet(s, i), s.len),
                    format!(
                        r#"{{"PublicIP":"{}","BackendType":"host-gw"}}"#,
                        node_ip(97, i)
                    ),
                    Some(PutOptions::new().with_lease(lease)),
                )
            })
            .collect();
        for chunk in ops.chunks(100) {
            c.txn(Txn::new().and_then(chunk.to_vec())).await.unwrap();
        }
    });
}

fn bird_conf(s: &Size) -> String {
    let mut c =
        format!("router id {HUB_B};\nprotocol device {{ }}\nprotocol static st {{\n  ipv4;\n");
    for i in 0..s.n {
        c += &format!(
            "  route {}/{} via {};\n",
            subnet(s, i),
            s.len,
            node_ip(96, i)
        );
    }
    c += &format!(
        "}}\nprotocol bgp w {{ local {HUB_B} as {ASN}; neighbor {W_B} as {ASN}; rr client; direct; \
         ipv4 {{ import none; export all; }}; }}\n"
    );
    c
}

/// Starts weftd with `config` in `ns`; returns the seconds until the FIB
/// holds `want` more prefixes than at start, and its peak RSS then.
fn run_weftd(
    ns: &Netns,
    dir: &std::path::Path,
    tag: &str,
    config: &str,
    want: usize,
) -> (Option<f64>, f64) {
    let cfg = dir.join(format!("{tag}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let mut stats = triestat(ns);
    let base = fib_prefixes(&mut stats);
    let mut cmd = ns.command(&default_weftd_path().to_string_lossy());
    cmd.arg("--config").arg(&cfg);
    let t0 = Instant::now();
    let mut child = ChildGuard::spawn(cmd, "weftd", Some(&dir.join(format!("{tag}.log")))).unwrap();
    let mut took = None;
    while t0.elapsed() < TIMEOUT {
        if fib_prefixes(&mut stats) >= base + want {
            took = Some(t0.elapsed().as_secs_f64());
            break;
        }
        assert!(
            child.try_wait().is_none(),
            "weftd {tag} exited: {}",
            std::fs::read_to_string(dir.join(format!("{tag}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rss = peak_rss_mib(child.pid().unwrap());
    let _ = child.terminate(Duration::from_secs(10));
    (took, rss)
}

fn main() {
    if !privileged_or_skip("etcd_scale", &["ip", "bird", "birdc", "etcd", "etcdctl"]) {
        return;
    }
    assert!(
        default_weftd_path().exists(),
        "{} missing: cargo build --release -p weft-router --bins",
        default_weftd_path().display()
    );
    let sizes: Vec<u32> = std::env::var("ETCD_SCALE_N")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    let pfx = unique_prefix("we");
    let hub = Netns::create(&format!("{pfx}-h")).unwrap();
    let we = Netns::create(&format!("{pfx}-e")).unwrap();
    let wb = Netns::create(&format!("{pfx}-b")).unwrap();
    link(&hub, "weh0", HUB_E, &we, "wee0", W_E, 16);
    link(&hub, "weh1", HUB_B, &wb, "web0", W_B, 16);
    let dir = std::env::temp_dir().join(format!("weft-{pfx}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut etcd = Etcd::single(&hub, HUB_E, &dir).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();
    // The hub's etcd is reached from this process through the hub's
    // namespace: write from a thread inside it.
    println!(
        "etcd_scale: weftd (host-gw) routing N etcd leases vs learning N prefixes from a BIRD 2 route reflector"
    );
    println!(
        "{:>6} {:>5} | {:>10} {:>9} | {:>10} {:>9} | {:>9}",
        "N", "len", "etcd", "RSS", "bgp (rr)", "RSS", "bgp/etcd"
    );
    for n in sizes {
        let s = Size::for_count(n);
        let url = format!("http://{HUB_E}:2379");
        hub.run_in(move || write_leases(&url, &Size::for_count(n)))
            .unwrap();
        // The CNI files stay in the run's directory; no masquerade table.
        let files = |tag: &str| {
            format!(
                "ip_masq = false\n[cni]\nconf_dir = {:?}\nsubnet_env = {:?}\n",
                dir.join(tag).join("net.d").display().to_string(),
                dir.join(tag).join("subnet.env").display().to_string()
            )
        };
        let etcd_cfg = format!(
            "node_name = \"e\"\nunderlay_ip = \"{W_E}\"\n{}[subnet]\netcd_endpoints = [\"http://{HUB_E}:2379\"]\n",
            files("etcd")
        );
        let (te, re) = run_weftd(&we, &dir, &format!("etcd{n}"), &etcd_cfg, n as usize);
        let bird = Bird::start(&hub, &bird_conf(&s), &dir, &format!("rr{n}")).unwrap();
        let bgp_cfg = format!(
            "node_name = \"b\"\nunderlay_ip = \"{W_B}\"\npod_cidr = \"10.127.255.0/24\"\ncluster_cidr = \"10.64.0.0/10\"\n{}\
             [dataplane]\nmode = \"host-gw\"\n[bgp]\nasn = {ASN}\nconnect_retry = 1\n[[bgp.peers]]\naddress = \"{HUB_B}\"\nasn = {ASN}\n",
            files("bgp")
        );
        let (tb, rb) = run_weftd(&wb, &dir, &format!("bgp{n}"), &bgp_cfg, n as usize);
        drop(bird);
        let show = |t: Option<f64>| t.map_or("timeout".to_owned(), |t| format!("{t:.3} s"));
        let ratio = match (te, tb) {
            (Some(e), Some(b)) if e > 0.0 => format!("{:.2}x", b / e),
            _ => "n/a".into(),
        };
        println!(
            "{n:>6} {:>5} | {:>10} {:>5.1} MiB | {:>10} {:>5.1} MiB | {:>9}",
            format!("/{}", s.len),
            show(te),
            re,
            show(tb),
            rb,
            ratio
        );
    }
    etcd.stop();
    drop((hub, we, wb));
    let _ = std::fs::remove_dir_all(&dir);
}
