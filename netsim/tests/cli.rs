//! Root tests of the `netsim` binary: exit codes, Ctrl-C cleanup, `clean`.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netsim::netns::{Netns, privileged_or_skip};
use netsim::run::{STATE_DIR, list_netns};

const BIN: &str = env!("CARGO_BIN_EXE_netsim");
const TOOLS: &[&str] = &["ip", "bridge", "ethtool", "ping", "sysctl"];

/// Sends SIGINT to `child` and waits (at most `secs`) for it to exit.
fn interrupt(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "netsim up ignored SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn owned(prefix: &str) -> Vec<String> {
    list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

#[test]
fn ping_matrix_exit_codes() {
    if !privileged_or_skip("ping_matrix_exit_codes", TOOLS) {
        return;
    }
    let ok = Command::new(BIN)
        .args([
            "ping-matrix",
            "--nodes",
            "2",
            "--pods",
            "2",
            "--modes",
            "kernel-vxlan",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("12/12 pairs ok"), "{out}");
    // "none": cross-node pairs fail, so the exit status is non-zero.
    let bad = Command::new(BIN)
        .args([
            "ping-matrix",
            "--nodes",
            "2",
            "--pods",
            "1",
            "--modes",
            "kernel-hostgw,none",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(
        out.contains("kernel-hostgw: ping matrix: 2/2") && out.contains("none: ping matrix: 0/2"),
        "{out}"
    );
}

#[test]
fn ctrl_c_tears_everything_down() {
    if !privileged_or_skip("ctrl_c_tears_everything_down", TOOLS) {
        return;
    }
    let log = std::env::temp_dir().join(format!("netsim-ctrlc-test-{}.log", std::process::id()));
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--nodes",
            "2",
            "--pods",
            "1",
            "--mode",
            "kernel-vxlan",
            "--hold",
            "60",
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Find the run by the pid in its state file, and wait until it is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let prefix = loop {
        assert!(Instant::now() < deadline, "netsim up never came up");
        let found = std::fs::read_dir(STATE_DIR).ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let s = std::fs::read_to_string(e.path()).unwrap_or_default();
                (s.split_whitespace().next() == Some(&pid.to_string()))
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        let ready = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Ctrl-C tears it down");
        if let Some(p) = found.filter(|_| ready) {
            // 2 nodes + 2 pods + fabric, and the vxlan device of node 2 exists.
            if owned(&p).len() == 5
                && Command::new("ip")
                    .args(["-n", &format!("{p}-n2"), "link", "show", "flannel.1"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            {
                break p;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = interrupt(&mut child, 20);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(status.code(), Some(130), "{status:?}: {stderr}");
    assert!(owned(&prefix).is_empty(), "{:?}", owned(&prefix));
    assert!(!std::path::Path::new(STATE_DIR).join(&prefix).exists());
}

#[test]
fn ctrl_c_in_the_middle_of_building() {
    if !privileged_or_skip("ctrl_c_in_the_middle_of_building", TOOLS) {
        return;
    }
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--nodes",
            "4",
            "--pods",
            "3",
            "--mode",
            "kernel-vxlan",
            "--hold",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Interrupt as soon as a few namespaces exist (the build is still going).
    let prefix = loop {
        assert!(Instant::now() < deadline, "netsim up never started");
        let found = std::fs::read_dir(STATE_DIR).ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let s = std::fs::read_to_string(e.path()).unwrap_or_default();
                (s.split_whitespace().next() == Some(&pid.to_string()))
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        if let Some(p) = found.filter(|p| owned(p).len() >= 2) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = interrupt(&mut child, 40);
    assert_eq!(status.code(), Some(130));
    assert!(owned(&prefix).is_empty(), "{:?}", owned(&prefix));
}

#[test]
fn clean_removes_only_dead_runs() {
    if !privileged_or_skip("clean_removes_only_dead_runs", TOOLS) {
        return;
    }
    // A live cluster of this process must survive `netsim clean`.
    let live = netsim::Topology::builder()
        .nodes(1)
        .pods_per_node(1)
        .build()
        .unwrap();
    // A "dead" run: a claimed prefix whose state file names an exited process.
    let dead = netsim::run::RunPrefix::claim("ns").unwrap();
    let mut exited = Command::new("true").spawn().unwrap();
    let dead_pid = exited.id();
    exited.wait().unwrap();
    std::fs::write(
        std::path::Path::new(STATE_DIR).join(dead.as_str()),
        format!("{dead_pid} 1\n"),
    )
    .unwrap();
    let leftover = Netns::create(&format!("{}-n1", dead.as_str())).unwrap();
    // Someone else's namespace that merely looks similar is never touched.
    let lookalike = Netns::create(&format!("{}x-n1", dead.as_str())).unwrap();

    let out = Command::new(BIN).arg("clean").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(dead.as_str()), "{text}");
    assert!(owned(dead.as_str()).is_empty(), "leftover not removed");
    assert!(list_netns().contains(&lookalike.name().to_owned()));
    assert_eq!(owned(live.prefix()).len(), 3, "live run was touched");
    assert!(std::path::Path::new(STATE_DIR).join(live.prefix()).exists());
    drop(leftover);
    drop(lookalike);
}
