//! weftd's command line (`--check-config` on good and bad files,
//! `--version`) and the `weft` CLI's without a weftd (one error line, exit
//! 1). Runs the built binaries; needs no privileges.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn weftd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weftd"))
        .args(args)
        .output()
        .unwrap()
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weftd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
node_name    = "node-1"
underlay_ip  = "172.31.0.1"
pod_cidr     = "10.244.1.0/24"
cluster_cidr = "10.244.0.0/16"

[cni]
conf_dir = "/tmp/weft-cni-example"

[dataplane]
mode = "vxlan"

[[static_routes]]
pod_cidr = "10.244.2.0/24"
via      = "172.31.0.2"
"#;

#[test]
fn check_config_accepts_a_valid_file() {
    let p = write("good.toml", GOOD);
    let out = weftd(&["--check-config", p.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("ok"), "{stdout}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn check_config_lists_every_problem_with_its_path() {
    let bad = GOOD
        .replace("10.244.1.0/24", "10.99.1.0/24")
        .replace("\"172.31.0.2\"", "\"172.31.0.1\"")
        .replace(
            "conf_dir = \"/tmp/weft-cni-example\"",
            "conf_dir = \"relative/dir\"",
        );
    let p = write("bad.toml", &bad);
    let out = weftd(&["--check-config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for path in ["pod_cidr:", "static_routes[0].via:", "cni.conf_dir:"] {
        assert!(err.contains(path), "{path} missing in:\n{err}");
    }
    // One line per problem, each naming the file.
    assert!(err.lines().count() >= 3, "{err}");
    assert!(
        err.lines().all(|l| l.starts_with(p.to_str().unwrap())),
        "{err}"
    );
}

#[test]
fn check_config_names_unknown_keys_and_missing_files() {
    let p = write("unknown.toml", &GOOD.replace("[cni]", "[cni]\nconfdir = 1"));
    let out = weftd(&["--check-config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("confdir"));
    let out = weftd(&["--check-config", "/nonexistent/weftd.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn version_and_usage() {
    let out = weftd(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("weftd {}", env!("CARGO_PKG_VERSION"))
    );
    // No mode at all, or both: a usage error (exit 2), nothing started.
    assert_eq!(weftd(&[]).status.code(), Some(2));
    assert_eq!(
        weftd(&["--config", "a", "--check-config", "b"])
            .status
            .code(),
        Some(2)
    );
}

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn weft_without_weftd_says_so_in_one_line() {
    let dir = std::env::temp_dir().join(format!("weft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // No socket at all, and a socket file nobody listens on.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for (socket, why) in [
        (dir.join("none.sock"), "No such file or directory"),
        (stale, "Connection refused"),
    ] {
        for cmd in ["status", "peers", "routes", "reload"] {
            for json in [false, true] {
                let mut args = vec!["--socket", socket.to_str().unwrap(), cmd];
                if json {
                    args.insert(0, "--json");
                }
                let out = weft(&args);
                assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
                assert!(out.stdout.is_empty(), "{out:?}");
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(
                    err.starts_with(&format!(
                        "weft: cannot reach weftd at {}: ",
                        socket.display()
                    )) && err.contains(why),
                    "{err}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn weft_help_and_usage() {
    let out = weft(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["status", "peers", "routes", "reload", "--json", "--socket"] {
        assert!(help.contains(word), "{word} missing:\n{help}");
    }
    assert!(help.contains("/run/weft/weftd.sock"), "{help}");
    assert_eq!(weft(&[]).status.code(), Some(2));
    assert_eq!(weft(&["explode"]).status.code(), Some(2));
}

#[test]
fn json_log_is_one_object_per_line_up_to_a_failed_start() {
    // `[log] format = "json"` and a config that fails validation: weftd
    // exits 1 and even the failure is a JSON object naming the field.
    let text = GOOD.replace("10.244.2.0/24", "10.99.2.0/24")
        + "\n[log]\nformat = \"json\"\nlevel = \"debug\"\n";
    let p = write("json-log.toml", &text);
    let out = weftd(&["--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("static_routes[0].pod_cidr"), "{stderr}");
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
