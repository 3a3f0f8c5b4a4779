//! `delegate`: the main-plugin side of IPAM delegation, exec'ing our
//! host-local and the reference one from CNI_PATH, and in-process; errors
//! come back with the delegated plugin's code. No root needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ours_dir, reference_available};
use serde_json::json;
use weft_cni::delegate::{self, Mode};
use weft_cni::skel::{Command, Invocation};

fn inv(dir: &Path, cid: &str) -> Invocation {
    let mut i = Invocation::new(Command::Add, br#"{"name":"x"}"#.to_vec()).unwrap();
    i.container_id = cid.to_owned();
    i.ifname = "eth0".to_owned();
    i.netns = Some(PathBuf::from("/var/run/netns/none"));
    i.path = vec![dir.to_owned()];
    i
}

fn netconf(data: &Path, version: &str) -> Vec<u8> {
    json!({"cniVersion": version, "name": "dlg", "type": "bridge",
           "ipam": {"type": "host-local", "dataDir": data, "subnet": "10.124.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}})
    .to_string()
    .into_bytes()
}

#[test]
fn exec_and_in_process_agree_and_share_the_store() {
    let data = tempfile::tempdir().unwrap();
    let mut dirs = vec![ours_dir()];
    if reference_available("host-local") {
        dirs.push(PathBuf::from(common::REFERENCE_DIR));
    }
    let mut n = 2;
    for dir in &dirs {
        for version in ["0.4.0", "1.0.0"] {
            let conf = netconf(data.path(), version);
            for mode in [Mode::Exec, Mode::Auto] {
                let cid = format!("c{n}");
                let i = inv(dir, &cid);
                let r = delegate::add_with(mode, "host-local", &conf, &i).unwrap();
                assert_eq!(
                    r.ips[0].address.to_string(),
                    format!("10.124.0.{n}/24"),
                    "{dir:?} {mode:?}"
                );
                assert_eq!(r.routes.len(), 1);
                delegate::run_with(mode, Command::Check, "host-local", &conf, &i).unwrap();
                n += 1;
            }
        }
    }
    // Everything allocated above is released through either path.
    for k in 2..n {
        let i = inv(&dirs[0], &format!("c{k}"));
        let mode = if k % 2 == 0 { Mode::Exec } else { Mode::Auto };
        delegate::run_with(
            mode,
            Command::Del,
            "host-local",
            &netconf(data.path(), "1.0.0"),
            &i,
        )
        .unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(data.path().join("dlg"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .parse::<std::net::IpAddr>()
                .ok()
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn delegated_errors_keep_their_code() {
    let data = tempfile::tempdir().unwrap();
    let bad = json!({"cniVersion": "1.0.0", "name": "dlg", "type": "bridge",
                     "ipam": {"type": "host-local", "dataDir": data.path(), "subnet": "10.124.0.0/32"}})
    .to_string()
    .into_bytes();
    for mode in [Mode::Exec, Mode::Auto] {
        let e = delegate::add_with(mode, "host-local", &bad, &inv(&ours_dir(), "c1")).unwrap_err();
        assert_eq!(e.code(), 7, "{mode:?}: {e}");
        assert!(e.to_string().contains("too small to allocate from"));
    }
    let e =
        delegate::add_with(Mode::Exec, "no-such-ipam", &bad, &inv(&ours_dir(), "c1")).unwrap_err();
    assert!(
        e.to_string()
            .contains("failed to find plugin \"no-such-ipam\""),
        "{e}"
    );
    let e =
        delegate::add_with(Mode::Exec, "../host-local", &bad, &inv(&ours_dir(), "c1")).unwrap_err();
    assert_eq!(e.code(), 7);
    // CHECK of something never added fails with the plugin's message.
    let conf = netconf(data.path(), "1.0.0");
    let e = delegate::run_with(
        Mode::Exec,
        Command::Check,
        "host-local",
        &conf,
        &inv(&ours_dir(), "nope"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("Failed to find address"), "{e}");
}
