use super::*;
use std::collections::HashMap;

struct Echo;
impl Plugin for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        inv.check_args(&["IP"])?;
        Ok(CniResult {
            ips: vec![spec::IpConfig {
                address: "10.0.0.2/24"
                    .parse()
                    .map_err(|_| CniError::internal("x", ""))?,
                gateway: None,
                interface: None,
            }],
            ..CniResult::default()
        })
    }
    fn del(&self, _inv: &Invocation) -> Result<(), CniError> {
        Ok(())
    }
    fn check(&self, _inv: &Invocation) -> Result<(), CniError> {
        Err(CniError::internal("checked", ""))
    }
}

fn go(vars: &[(&str, &str)], stdin: &str) -> (Outcome, Value) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env = move |k: &str| map.get(k).cloned();
    let out = dispatch(&Echo, &env, &mut stdin.as_bytes());
    let v = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

const FULL: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/var/run/netns/x"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin"),
];

fn with(over: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = FULL
        .iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    v.extend(over.iter().copied().filter(|(_, val)| !val.is_empty()));
    v
}

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"echo"}"#;

#[test]
fn add_prints_result_in_config_version() {
    let (out, v) = go(FULL, CONF);
    assert_eq!(out.exit_code, 0);
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["ips"][0]["address"], "10.0.0.2/24");
    let (_, v) = go(FULL, r#"{"cniVersion":"0.3.1","name":"n"}"#);
    assert_eq!(v["ips"][0]["version"], "4");
}

#[test]
fn env_errors() {
    let (out, v) = go(&with(&[("CNI_PATH", "")]), CONF);
    assert_eq!(out.exit_code, 1);
    assert_eq!(v["code"], 4);
    assert_eq!(v["msg"], "required env variables [CNI_PATH] missing");
    let (_, v) = go(&with(&[("CNI_NETNS", ""), ("CNI_IFNAME", "")]), CONF);
    assert_eq!(
        v["msg"],
        "required env variables [CNI_NETNS,CNI_IFNAME] missing"
    );
    let (_, v) = go(&with(&[("CNI_CONTAINERID", "c$1")]), CONF);
    assert_eq!(
        (v["code"].as_u64(), v["details"].as_str()),
        (Some(4), Some("c$1"))
    );
    let (_, v) = go(&with(&[("CNI_IFNAME", "0123456789abcdef")]), CONF);
    assert_eq!(v["msg"], "interface name is too long");
    let (_, v) = go(&with(&[("CNI_IFNAME", "a b")]), CONF);
    assert_eq!(v["code"], 4);
    let (_, v) = go(&with(&[("CNI_COMMAND", "FOO")]), CONF);
    assert_eq!(v["msg"], "unknown CNI_COMMAND: FOO");
    let (_, v) = go(&with(&[("CNI_ARGS", "IP=1.2.3.4;X=1")]), CONF);
    assert_eq!(v["code"], 4);
    let (out, _) = go(
        &with(&[("CNI_ARGS", "IP=1.2.3.4;X=1;IgnoreUnknown=1")]),
        CONF,
    );
    assert_eq!(out.exit_code, 0);
    let (_, v) = go(&with(&[("CNI_ARGS", "IP")]), CONF);
    assert_eq!(v["msg"], "ARGS: invalid pair \"IP\"");
}

#[test]
fn del_needs_no_netns() {
    let (out, _) = go(&with(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "")]), CONF);
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.is_empty());
}

#[test]
fn config_errors() {
    let (_, v) = go(FULL, r#"{"cniVersion":"1.0.0","name":"n""#);
    assert_eq!(v["code"], 6);
    let (_, v) = go(FULL, r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(
        (v["code"].as_u64(), v["msg"].as_str()),
        (Some(7), Some("missing network name"))
    );
    let (_, v) = go(FULL, r#"{"cniVersion":"1.0.0","name":"-x"}"#);
    assert_eq!(v["code"], 7);
    let (_, v) = go(FULL, r#"{"cniVersion":"9.9.9","name":"n"}"#);
    assert_eq!(
        (v["code"].as_u64(), v["cniVersion"].as_str()),
        (Some(1), Some("9.9.9"))
    );
    let (_, v) = go(
        &with(&[("CNI_COMMAND", "CHECK")]),
        r#"{"cniVersion":"0.3.1","name":"n"}"#,
    );
    assert_eq!(v["msg"], "config version does not allow CHECK");
    let (_, v) = go(&with(&[("CNI_COMMAND", "GC")]), CONF);
    assert_eq!(v["code"], 1);
    let (out, v) = go(&with(&[("CNI_COMMAND", "CHECK")]), CONF);
    assert_eq!((out.exit_code, v["code"].as_u64()), (1, Some(999)));
}

#[test]
fn version_and_about() {
    let (out, v) = go(&[("CNI_COMMAND", "VERSION")], "garbage");
    assert_eq!(out.exit_code, 0);
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
    let (out, _) = go(&[], "");
    assert_eq!(out.exit_code, 0);
    assert!(out.stderr.contains("CNI protocol versions supported"));
}

#[test]
fn status_and_gc_need_no_container() {
    let conf = r#"{"cniVersion":"1.1.0","name":"n"}"#;
    let (out, _) = go(&[("CNI_COMMAND", "STATUS")], conf);
    assert_eq!(out.exit_code, 0);
    let (out, _) = go(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")], conf);
    assert_eq!(out.exit_code, 0);
}

mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::plugin::host_local::HostLocal;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever the environment and stdin, dispatch answers with a
        /// result or an error JSON carrying a code, never a panic.
        #[test]
        fn dispatch_never_panics(
            cmd in prop::sample::select(vec!["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "", "BOGUS"]),
            cid in "[a-z0-9$/ .-]{0,12}",
            ifname in "[a-z0-9:/ .]{0,18}",
            args in "[A-Za-z0-9=;,.:]{0,30}",
            version in prop::sample::select(vec!["", "0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "2.0.0", "x"]),
            body in prop::option::of("[\\[\\]{}0-9a-z\",:./]{0,60}"),
            garbage in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let stdin = match &body {
                Some(b) => format!(
                    r#"{{"cniVersion":"{version}","name":"n","ipam":{{"dataDir":{:?},"subnet":"10.0.0.0/24","x":{b}}}}}"#,
                    dir.path()
                )
                .into_bytes(),
                None => garbage,
            };
            let vars = [
                ("CNI_COMMAND", cmd.to_owned()),
                ("CNI_CONTAINERID", cid),
                ("CNI_NETNS", "/x".to_owned()),
                ("CNI_IFNAME", ifname),
                ("CNI_ARGS", args),
                ("CNI_PATH", "/x".to_owned()),
            ];
            let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
            let out = dispatch(&HostLocal, &env, &mut stdin.as_slice());
            if out.exit_code != 0 {
                let v: Value = serde_json::from_str(&out.stdout).unwrap();
                prop_assert!(v["code"].as_u64().is_some(), "{}", out.stdout);
                prop_assert!(v["msg"].as_str().is_some());
            } else if !out.stdout.is_empty() {
                let _: Value = serde_json::from_str(&out.stdout).unwrap();
            }
        }
    }
}
