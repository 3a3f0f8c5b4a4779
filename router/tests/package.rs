//! The Debian package: `scripts/package` builds it with cargo-deb from
//! the binaries `cargo test --workspace` already built (no release
//! rebuild), then dpkg installs it into a private root (`dpkg --root`: the
//! host's /usr/bin and /opt/cni/bin stay untouched), the installed weftd
//! checks the installed example config, the installed `weft --help` runs,
//! `/opt/cni/bin/weft` is the CNI meta-plugin, `dpkg -r` leaves only the conffile,
//! and `dpkg -P` removes that too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every path under `root` outside dpkg's own database.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("var/lib/dpkg") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn cargo_deb_available() -> bool {
    let ok = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but cargo-deb is missing (scripts/deps installs it)"
        );
        eprintln!("skipping: cargo-deb not installed (scripts/package --tool)");
    }
    ok
}

#[test]
fn deb_installs_checks_config_and_removes_cleanly() {
    if !netsim::netns::privileged_or_skip("deb_installs_checks_config", &["dpkg", "dpkg-deb"])
        || !cargo_deb_available()
        || common::cni_exec::plugin_dir().is_none()
    {
        return;
    }
    let weftd = Path::new(common::weftd_bin());
    // target/<profile>/weftd: only the dev profile's binaries are reused.
    let profile_dir = weftd.parent().unwrap();
    if profile_dir.file_name().unwrap() != "debug" {
        eprintln!("skipping: weftd is not a dev-profile build ({weftd:?})");
        return;
    }
    let target = profile_dir.parent().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let t0 = std::time::Instant::now();
    run(Command::new(repo.join("scripts/package"))
        .args(["--profile", "dev", "--no-build", "--", "--fast", "--quiet"])
        .env("CARGO_TARGET_DIR", target));
    eprintln!("scripts/package (no build, --fast): {:?}", t0.elapsed());
    let deb: PathBuf = target.join(format!(
        "debian/weft_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(deb.is_file(), "{deb:?}");

    // The package's control data and files.
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: weft"), "{info}");
    let pkg = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package"));
    assert_eq!(String::from_utf8_lossy(&pkg.stdout).trim(), "weft");

    let root = std::env::temp_dir().join(format!("weft-dpkg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    let dpkg = || {
        let mut c = Command::new("dpkg");
        // The private root has no libc6 package recorded.
        c.arg(format!("--root={}", root.display()))
            .arg("--force-depends");
        c
    };
    run(dpkg().arg("-i").arg(&deb));
    let installed = files(&root);
    for want in [
        "usr/bin/weftd",
        "usr/bin/weft",
        "usr/lib/systemd/system/weftd.service",
        "etc/weft/weftd.toml",
        "opt/cni/bin/bridge",
        "opt/cni/bin/ptp",
        "opt/cni/bin/host-local",
        "opt/cni/bin/portmap",
        "opt/cni/bin/host-device",
        "opt/cni/bin/dhcp",
        "opt/cni/bin/weft",
    ] {
        assert!(
            installed.iter().any(|f| f == want),
            "{want} not in {installed:?}"
        );
    }
    let conf = root.join("var/lib/dpkg/info/weft.conffiles");
    assert_eq!(
        std::fs::read_to_string(conf).unwrap().trim(),
        "/etc/weft/weftd.toml"
    );

    // The installed weftd accepts the installed example config.
    let out = run(Command::new(root.join("usr/bin/weftd"))
        .arg("--check-config")
        .arg(root.join("etc/weft/weftd.toml")));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let out = run(Command::new(root.join("usr/bin/weftd")).arg("--version"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("weftd "));
    // The CLI, and the meta-plugin installed as CNI type `weft` (answers
    // VERSION like a plugin, not like the CLI).
    let out = run(Command::new(root.join("usr/bin/weft")).arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("status") && help.contains("--socket"),
        "{help}"
    );
    let out = run(Command::new(root.join("opt/cni/bin/weft"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.contains("supportedVersions"), "{version}");

    // Remove: only the conffile stays; purge: nothing.
    run(dpkg().args(["-r", "weft"]));
    assert_eq!(files(&root), vec!["etc/weft/weftd.toml".to_owned()]);
    run(dpkg().args(["-P", "weft"]));
    assert_eq!(files(&root), Vec::<String>::new());
    std::fs::remove_dir_all(&root).unwrap();
}
