//! Shared by the route scale benches (bgp_scale, etcd_scale): veth links
//! between namespaces, the kernel FIB's prefix count read from
//! `fib_triestat`, and a process's peak RSS.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use netsim::netns::Netns;

/// A veth pair `a_if`–`b_if` between `a` and `b`, addressed `a_ip/len`
/// and `b_ip/len`, both up (and both loopbacks).
pub fn link(a: &Netns, a_if: &str, a_ip: &str, b: &Netns, b_if: &str, b_ip: &str, len: u8) {
    a.veth_to(a_if, b, b_if, None).unwrap();
    for (ns, dev, ip) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
        ns.ip(&["addr", "add", &format!("{ip}/{len}"), "dev", dev])
            .unwrap();
        ns.ip(&["link", "set", dev, "up"]).unwrap();
        ns.ip(&["link", "set", "lo", "up"]).unwrap();
    }
}

/// The kernel's FIB trie statistics of namespace `ns`, opened from a
/// thread inside it: the open file keeps reading that namespace's table.
pub fn triestat(ns: &Netns) -> File {
    ns.run_in(|| File::open("/proc/thread-self/net/fib_triestat"))
        .unwrap()
        .unwrap()
}

/// IPv4 main-table prefixes from a [`triestat`] file: a few milliseconds
/// at 100k routes and no process to start, so the polls below resolve
/// the install and withdraw times finely without stealing CPU from the
/// daemons (a dump takes ~0.2 s and would blur them by ~0.4 s).
pub fn fib_prefixes(f: &mut File) -> usize {
    let mut out = String::new();
    if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_string(&mut out).is_err() {
        return 0;
    }
    out.split("\nMain:")
        .nth(1)
        .and_then(|main| {
            main.lines()
                .take_while(|l| l.is_empty() || l.starts_with(char::is_whitespace))
                .find_map(|l| l.trim().strip_prefix("Prefixes:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident set size of `pid` in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
