//! mode = "wireguard" against wireguard-go: a weftd node and a node running
//! Debian's wireguard-go (configured with `wg`, in the foreground under
//! this test's pid, with a private /run through its own mount namespace).
//! Handshake, pings and 20 MB hash-checked TCP both ways, only WireGuard
//! UDP on the underlay, replayed datagrams dropped, spoofed inner sources
//! dropped, cookie replies to a handshake flood while the peer keeps
//! working, persistent keepalives while idle; a wrong public key carries
//! nothing; a readable key file is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use common::traffic::tcp_transfer;
use common::wireguard::{genkey, sh, start_weftd, start_wggo, weftd_config};
use common::{Cluster, Opts, pod_ip};
use netsim::netns::Netns;

const TOOLS: &[&str] = &[
    "ip",
    "ping",
    "sysctl",
    "kill",
    "wireguard-go",
    "wg",
    "nsenter",
    "unshare",
    "nft",
];
const PORT: u16 = 51820;

fn nft(ns: &Netns, script: &str) {
    let out = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn();
    let mut child = out.unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft: {script}");
}

/// Packet counts of the counters in `chain`, in rule order.
fn counters(ns: &Netns, family_table_chain: &str) -> Vec<u64> {
    let args: Vec<&str> = ["list", "chain"]
        .into_iter()
        .chain(family_table_chain.split(' '))
        .collect();
    let out = ns.run("nft", &args).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split("counter packets ")
        .skip(1)
        .map(|s| s.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

fn ping_output(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = ns.command("ping").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn weftd_interoperates_with_wireguard_go() {
    if !netsim::netns::privileged_or_skip("weftd_interoperates_with_wireguard_go", TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let mut c = Cluster::new("hw", 3, Opts::default());
    let (go_key, go_pub) = genkey(&c.dir, "wggo.key");
    // weftd generates its key: 0600 in a 0700 directory.
    let key_file = c.dir.join("n1-wg/wg.key");
    // Persistent keepalive every second (checked at the end).
    let cfg = weftd_config(&c, 1, &key_file, 2, &go_pub).replace(
        "wireguard_private_key_file",
        "wireguard_keepalive_s = 1\nwireguard_private_key_file",
    );
    start_weftd(&mut c, 1, &cfg, 2, None);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(key_file.parent().unwrap()), 0o700);
    let weft_pub = sh("wg pubkey", &fs::read_to_string(&key_file).unwrap());
    // TUN MTU: underlay 1500 - 80.
    let link = c.node(1).ns.ip(&["-o", "link", "show", "weft0"]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    assert!(link.contains("mtu 1420"), "{link}");
    let log = c.node(1).weftd.as_ref().unwrap().log_text();
    assert!(log.contains(&format!("public_key={weft_pub}")), "{log}");
    // `weft status` shows the same key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--socket")
        .arg(c.dir.join("n1.sock"))
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["wireguard_public_key"],
        weft_pub.as_str(),
        "{status}"
    );
    assert_eq!(status["mode"], "wireguard", "{status}");

    // Count every IP packet between the nodes' underlay addresses; only
    // WireGuard UDP (port to port) may cross.
    nft(
        &c.node(1).ns,
        "table inet hwu {\n chain co { type filter hook output priority 0;\n\
         ip daddr 172.31.0.2 udp sport 51820 udp dport 51820 counter accept\n ip daddr 172.31.0.2 counter\n }\n\
         chain ci { type filter hook input priority 0;\n\
         ip saddr 172.31.0.2 udp sport 51820 udp dport 51820 counter accept\n ip saddr 172.31.0.2 counter\n }\n}\n",
    );
    let wg = start_wggo(&c, 2, &go_key, 1, &weft_pub);

    assert!(
        c.ping(1, &pod_ip(2)),
        "pod 1 -> pod 2: {}\n{}",
        c.logs(),
        wg.log_text()
    );
    assert!(c.ping(2, &pod_ip(1)), "pod 2 -> pod 1: {}", c.logs());
    let hs = wg.wg(&["show", "wg0", "latest-handshakes"]).unwrap();
    let at: u64 = hs.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(at > 0, "no handshake: {hs}");
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 20 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 20 << 20);
    let out = counters(&c.node(1).ns, "inet hwu co");
    let inn = counters(&c.node(1).ns, "inet hwu ci");
    assert!(
        out[0] > 1000 && inn[0] > 1000,
        "WireGuard packets: {out:?} {inn:?}"
    );
    assert_eq!(
        (out[1], inn[1]),
        (0, 0),
        "non-WireGuard packets on the underlay"
    );
    eprintln!("interop: {:?}", t0.elapsed());

    // Spoofed inner sources from the peer: another node's range and an
    // address of no node; a source in node 2's range passes.
    let n2 = &c.node(2).ns;
    n2.ip(&["addr", "add", "10.244.3.9/32", "dev", "lo"])
        .unwrap();
    n2.ip(&["addr", "add", "10.99.0.9/32", "dev", "lo"])
        .unwrap();
    nft(
        &c.node(1).pod,
        "table inet hws {\n chain ci { type filter hook input priority 0;\n\
         ip saddr 10.244.3.9 counter\n ip saddr 10.99.0.9 counter\n ip saddr 10.244.2.1 counter\n }\n}\n",
    );
    for src in ["10.244.3.9", "10.99.0.9", "10.244.2.1"] {
        let _ = ping_output(
            n2,
            &["-c", "2", "-i", "0.2", "-W", "1", "-I", src, &pod_ip(1)],
        );
    }
    let got = counters(&c.node(1).pod, "inet hws ci");
    assert_eq!(&got[..2], &[0, 0], "spoofed packets reached the pod");
    assert!(got[2] >= 2, "the valid source did not arrive: {got:?}");

    // Replay: node 2 sends every WireGuard datagram twice; the copies are
    // dropped (no duplicate replies) and traffic goes on.
    nft(
        n2,
        "table ip hwd {\n chain co { type filter hook output priority 0;\n\
         ip daddr 172.31.0.1 udp dport 51820 dup to 172.31.0.1\n }\n}\n",
    );
    let before = counters(&c.node(1).ns, "inet hwu ci")[0];
    let (ok, text) = ping_output(
        &c.node(2).pod,
        &["-c", "5", "-i", "0.2", "-W", "2", &pod_ip(1)],
    );
    assert!(ok, "ping with replays: {text}");
    let arrived = counters(&c.node(1).ns, "inet hwu ci")[0] - before;
    assert!(arrived >= 10, "{arrived} datagrams for 5 pings sent twice");
    assert!(
        !text.contains("DUP!"),
        "a replayed datagram was delivered: {text}"
    );
    nft(n2, "delete table ip hwd\n");

    // A handshake flood from node 3: valid mac1 (the attacker knows our
    // public key), fresh keys; weftd answers with cookie replies under
    // load and the real peer keeps working.
    let weft_key: [u8; 32] = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&weft_pub)
            .unwrap()
            .try_into()
            .unwrap()
    };
    let cookies = c.node(3).ns.run_in(move || flood(weft_key, 400)).unwrap();
    assert!(cookies >= 100, "{cookies} cookie replies to 400 handshakes");
    assert!(c.ping(2, &pod_ip(1)), "peer after the flood: {}", c.logs());
    assert!(c.ping(1, &pod_ip(2)), "peer after the flood: {}", c.logs());
    assert!(c.nodes[0].weftd.as_mut().unwrap().try_wait().is_none());

    // Idle: weftd's persistent keepalives (32-byte data messages) still
    // reach wireguard-go.
    let rx = || -> u64 {
        let t = wg.wg(&["show", "wg0", "transfer"]).unwrap();
        t.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = rx();
    std::thread::sleep(Duration::from_millis(2500));
    let grew = rx() - before;
    assert!(grew >= 64, "{grew} bytes of keepalives in 2.5 s idle");
    drop(wg);
    c.stop_weftd(1);
    eprintln!("total: {:?}", t0.elapsed());
}

/// Sends `n` handshake initiations to weftd from fresh keys; returns how
/// many cookie replies came back within a second of the last.
fn flood(responder: [u8; 32], n: u32) -> usize {
    let s = UdpSocket::bind("172.31.0.3:0").unwrap();
    let to: SocketAddr = format!("172.31.0.1:{PORT}").parse().unwrap();
    let mut buf = vec![0u8; 256];
    for i in 0..n {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[31] = 0x55;
        let mut t = Tunn::new(
            StaticSecret::from(k),
            PublicKey::from(responder),
            None,
            None,
            i,
            None,
        );
        if let TunnResult::WriteToNetwork(m) = t.encapsulate(&[0u8; 20], &mut buf) {
            let _ = s.send_to(m, to);
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut cookies = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(len) = s.recv(&mut buf) {
        if len == 64 && buf[0] == 3 {
            cookies += 1;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    cookies
}

#[test]
fn wrong_key_carries_nothing_and_readable_key_is_refused() {
    if !netsim::netns::privileged_or_skip(
        "wrong_key_carries_nothing_and_readable_key_is_refused",
        TOOLS,
    ) {
        return;
    }
    let mut c = Cluster::new("hw", 2, Opts::default());
    let (go_key, _go_pub) = genkey(&c.dir, "wggo.key");
    let (_, stranger) = genkey(&c.dir, "other.key");
    let key_file = c.dir.join("n1-wg/wg.key");
    let cfg = weftd_config(&c, 1, &key_file, 2, &stranger);
    start_weftd(&mut c, 1, &cfg, 2, None);
    let weft_pub = sh("wg pubkey", &fs::read_to_string(&key_file).unwrap());
    let wg = start_wggo(&c, 2, &go_key, 1, &weft_pub);
    let (ok, _) = ping_output(&c.node(1).pod, &["-c", "2", "-W", "2", &pod_ip(2)]);
    assert!(!ok, "traffic crossed with a wrong public key");
    let (ok, _) = ping_output(&c.node(2).pod, &["-c", "2", "-W", "2", &pod_ip(1)]);
    assert!(!ok, "traffic crossed with a wrong public key");
    let hs = wg.wg(&["show", "wg0", "latest-handshakes"]).unwrap();
    assert!(
        hs.trim().ends_with("\t0"),
        "handshake with a wrong key: {hs}"
    );
    assert!(
        c.nodes[0].weftd.as_mut().unwrap().try_wait().is_none(),
        "weftd died"
    );
    drop(wg);
    c.stop_weftd(1);

    // A key file group or others may read: refused, naming the file.
    let (bad, _) = genkey(&c.dir, "readable.key");
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o644)).unwrap();
    let mut w = c.spawn_weftd(1, &weftd_config(&c, 1, &bad, 2, &stranger));
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = w.try_wait() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "weftd ran with a 0644 key:\n{}",
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!st.success());
    let log = w.log_text();
    assert!(
        log.contains(&bad.display().to_string()) && log.contains("0644"),
        "{log}"
    );
}
