//! Root test: a short bench produces a well-formed JSON report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use netsim::BenchReport;
use netsim::netns::privileged_or_skip;

#[test]
fn one_second_bench_writes_a_well_formed_report() {
    if !privileged_or_skip(
        "one_second_bench_writes_a_well_formed_report",
        &[
            "ip", "bridge", "ethtool", "ping", "sysctl", "iperf3", "ss", "sockperf",
        ],
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netsim-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("r.json"), dir.join("r.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_netsim"))
        .args([
            "bench",
            "--modes",
            "kernel-hostgw,kernel-vxlan",
            "--streams",
            "1,4",
            "--duration",
            "1",
            "--repeat",
            "2",
            "--ping-count",
            "20",
            "--sockperf-secs",
            "1",
            "--underlay-offload",
            "off",
            "--json",
        ])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).unwrap();
    // The raw shape named in the issue.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["host"]["underlay_offload"],
        serde_json::Value::Bool(false)
    );
    assert!(v["host"]["cpus"].as_u64().unwrap() >= 1);
    assert!(!v["host"]["kernel"].as_str().unwrap().is_empty());
    assert!(
        v["results"][0]["health"]["tun_tx_dropped"].is_u64(),
        "{text}"
    );
    let r: BenchReport = serde_json::from_str(&text).unwrap();
    let keys: Vec<_> = r
        .results
        .iter()
        .map(|x| (x.mode.as_str(), x.streams))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("kernel-hostgw", 1),
            ("kernel-hostgw", 4),
            ("kernel-vxlan", 1),
            ("kernel-vxlan", 4)
        ]
    );
    for x in &r.results {
        assert_eq!(x.runs.len(), 2, "{x:?}");
        assert!(x.runs.iter().all(|g| *g > 0.01), "no throughput: {x:?}");
        assert!(
            x.gbps >= x.runs.iter().copied().fold(f64::MAX, f64::min),
            "{x:?}"
        );
        let (p50, p99) = (x.rtt_us_p50.unwrap(), x.rtt_us_p99.unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{x:?}");
        let (s50, s99) = (x.sockperf_us_p50.unwrap(), x.sockperf_us_p99.unwrap());
        assert!(s50 > 0.0 && s50 <= s99, "{x:?}");
        assert!(x.cpu_cores_busy > 0.0, "{x:?}");
        assert!(x.router_core_s_per_gbit.is_none());
        // Kernel modes on software underlay checksums: nothing dropped or
        // corrupted, and the counters are in the JSON.
        assert!(x.health.is_clean(), "{x:?}");
    }
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("| kernel-"))
            .count(),
        4,
        "{stdout}"
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("kernel-vxlan"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_inside_a_flock_wrapper_does_not_deadlock() {
    if !privileged_or_skip(
        "bench_inside_a_flock_wrapper_does_not_deadlock",
        &[
            "ip", "bridge", "ethtool", "ping", "sysctl", "iperf3", "ss", "flock", "timeout",
        ],
    ) {
        return;
    }
    // As COMMON.md tells people to run throughput jobs; the inner lock must
    // see the wrapper's and not wait for it.
    let out = Command::new("flock")
        .args([netsim::measure::BENCH_LOCK, "timeout", "120"])
        .arg(env!("CARGO_BIN_EXE_netsim"))
        .args([
            "bench",
            "--modes",
            "kernel-hostgw",
            "--streams",
            "1",
            "--duration",
            "1",
            "--repeat",
            "1",
            "--ping-count",
            "5",
            "--sockperf-secs",
            "0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| kernel-hostgw | 1 |"), "{stdout}");
    assert!(
        stdout.contains("csum err / udp buf err / tun tx drop"),
        "{stdout}"
    );
}
