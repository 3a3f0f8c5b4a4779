//! Root tests of the `netsim` binary: exit codes, Ctrl-C cleanup, `clean`.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netsim::netns::{Netns, privileged_or_skip};
use netsim::run::{STATE_DIR, list_netns};

const BIN: &str = env!("CARGO_BIN_EXE_netsim");
const TOOLS: &[&str] = &["ip", "bridge", "ethtool", "ping", "sysctl"];

/// `netsim clean` removes every dead run, the kept demo cluster included:
/// the tests that run it take turns.
static CLEAN: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _turn = CLEAN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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

/// Runs one printed instruction (`sh -c`, `input` on stdin) with a
/// deadline; (success, stdout + stderr).
fn run_line(cmd: &str, input: &str) -> (bool, String) {
    let mut child = Command::new("timeout")
        .args(["20", "sh", "-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `netsim demo --keep` on 2 nodes with a pod each (vxlan, CNI pods, BIRD):
/// it exits 0, the cluster stays up and every printed instruction works as
/// printed (a shell in a pod, a ping across nodes, `weft status` over the
/// node's control socket, birdc); then `netsim clean` removes all the run
/// made: its namespaces, its daemons (by pid), the run directory and the
/// state file.
#[test]
fn demo_keep_then_clean() {
    let tools = [TOOLS, &["bird", "birdc", "iperf3", "sockperf", "nft"]].concat();
    if !privileged_or_skip("demo_keep_then_clean", &tools) {
        return;
    }
    let _turn = CLEAN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = std::env::temp_dir().join(format!("netsim-keep-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Tag `sc`: the run's names cannot collide with another test's.
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, "prefix_tag = \"sc\"\nnodes = 2\npods_per_node = 1\n").unwrap();
    let log = dir.join("demo.log");
    let mut child = Command::new(BIN)
        .args(["demo", "--topology"])
        .arg(&topo)
        .args([
            "--modes",
            "vxlan",
            "--keep",
            "--duration",
            "1",
            "--repeat",
            "1",
        ])
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("demo.err")).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    // Includes waiting for other benchmarks' lock on a shared machine.
    let deadline = t + Duration::from_secs(300);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netsim demo --keep did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let err = std::fs::read_to_string(dir.join("demo.err")).unwrap_or_default();
    eprintln!("demo --keep exited {status} after {:?}", t.elapsed());
    let prefix = out
        .lines()
        .find_map(|l| l.strip_prefix("The cluster "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned);
    // Whatever happens below, nothing of this run stays behind.
    struct Cleanup(Option<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                netsim::run::remove_run(p);
            }
        }
    }
    let _cleanup = Cleanup(prefix.clone());
    assert!(status.success(), "{out}\n{err}");
    let prefix = prefix.unwrap_or_else(|| panic!("no kept cluster in:\n{out}"));
    assert!(prefix.starts_with("sc"), "{prefix}");

    // Fabric, ToR, 2 nodes, 2 pods; the daemons in them run.
    let names = owned(&prefix);
    assert_eq!(names.len(), 6, "{names:?}");
    let mut pids = Vec::new();
    for n in &names {
        let o = Command::new("ip")
            .args(["netns", "pids", n])
            .output()
            .unwrap();
        pids.extend(
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    // weftd on both nodes and BIRD on the ToR.
    assert!(pids.len() >= 3, "{pids:?}");

    let line = |label: &str| -> String {
        out.lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| panic!("no {label:?} instruction in:\n{out}"))
    };
    let enter = line("enter a pod:");
    let (shell, addr) = enter.split_once("   (address ").unwrap();
    let addr = addr.trim_end_matches(')');
    let (ok, text) = run_line(shell, "ip -4 -o addr show eth0\n");
    assert!(
        ok && text.contains(&format!("inet {addr}/")),
        "{shell}: {text}"
    );
    let (ok, text) = run_line(&line("ping across nodes:"), "");
    assert!(ok && text.contains("3 received"), "{text}");
    let (ok, text) = run_line(&line("weft status:"), "");
    assert!(ok && text.contains("vxlan"), "weft status: {text}");
    let (ok, text) = run_line(&line("route reflector:"), "");
    assert!(ok && text.matches("Established").count() == 2, "{text}");
    let run_dir = netsim::run::run_dir(&prefix);
    assert_eq!(line("configs and logs:"), run_dir.display().to_string());
    assert!(run_dir.is_dir());

    let clean = Command::new(BIN).arg("clean").output().unwrap();
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{text}");
    assert!(
        text.contains(&format!("removed run {prefix}: 6 namespaces")),
        "{text}"
    );
    assert!(owned(&prefix).is_empty(), "{:?}", owned(&prefix));
    let end = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        // Gone, or a zombie of its (dead) parent about to be reaped.
        let state = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
                .flatten()
        };
        while state().is_some_and(|s| s != 'Z') {
            assert!(Instant::now() < end, "pid {pid} still runs after clean");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(!run_dir.exists(), "{}", run_dir.display());
    assert!(!std::path::Path::new(STATE_DIR).join(&prefix).exists());
    let _ = std::fs::remove_dir_all(&dir);
}
