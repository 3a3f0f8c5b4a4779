use super::*;

const BASE: &str = r#"
node_name = "n1"
underlay_ip = "172.31.0.1"
pod_cidr = "10.244.1.0/24"
cluster_cidr = "10.244.0.0/16"
[dataplane]
mode = "vxlan"
"#;

fn cfg(text: &str) -> Config {
    Config::parse(text).unwrap()
}

#[test]
fn pod_mtu_follows_mode_and_override() {
    let c = cfg(BASE);
    assert_eq!(pod_mtu(&c.dataplane, 1500), 1450);
    let c = cfg(&BASE.replace("vxlan", "host-gw"));
    assert_eq!(pod_mtu(&c.dataplane, 1500), 1500);
    let c = cfg(&BASE.replace("\"vxlan\"", "\"udp\"\nmtu = 1400"));
    assert_eq!(pod_mtu(&c.dataplane, 9000), 1400);
}

#[test]
fn bridge_conflist_has_the_three_plugins() {
    let v: Value = serde_json::from_str(&render_conflist(&cfg(BASE), 1450)).unwrap();
    assert_eq!(
        v,
        json!({
            "cniVersion": "1.0.0",
            "name": "weft",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "hairpinMode": true,
                    "ipMasq": false,
                    "mtu": 1450,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.244.1.0/24"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
    );
}

#[test]
fn dual_stack_ptp_conflist_and_names() {
    let text = BASE.replace(
        "cluster_cidr = \"10.244.0.0/16\"",
        "cluster_cidr = \"10.244.0.0/16\"\npod_cidr_v6 = \"fd10:244:1::/64\"\n\
         cluster_cidr_v6 = \"fd10:244::/32\"\n\
         [cni]\nattach = \"ptp\"\nnetwork_name = \"pods\"",
    );
    let v: Value = serde_json::from_str(&render_conflist(&cfg(&text), 1400)).unwrap();
    assert_eq!(v["name"], "pods");
    let main = &v["plugins"][0];
    assert_eq!(main["type"], "ptp");
    assert_eq!(main["mtu"], 1400);
    assert!(main.get("bridge").is_none());
    assert_eq!(
        main["ipam"]["ranges"],
        json!([[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd10:244:1::/64"}]])
    );
    assert_eq!(
        main["ipam"]["routes"],
        json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
    );
    assert_eq!(v["plugins"][1]["type"], "portmap");
}

#[test]
fn subnet_env_matches_flannel() {
    assert_eq!(
        render_subnet_env(&cfg(BASE), 1450),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
         FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    );
    let text = BASE.replace(
        "cluster_cidr = \"10.244.0.0/16\"",
        "cluster_cidr = \"10.244.0.0/16\"\nip_masq = false\n\
         pod_cidr_v6 = \"fd10:244:1::/64\"\ncluster_cidr_v6 = \"fd10:244::/32\"",
    );
    assert_eq!(
        render_subnet_env(&cfg(&text), 1500),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
         FLANNEL_IPV6_NETWORK=fd10:244::/32\nFLANNEL_IPV6_SUBNET=fd10:244:1::1/64\n\
         FLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"
    );
}

#[test]
fn ipv6_only_cluster_writes_the_ipv6_pair() {
    let text = r#"
node_name = "n1"
underlay_ip = "fd00::1"
pod_cidr = "fd10:244:1::/64"
cluster_cidr = "fd10:244::/32"
[dataplane]
mode = "host-gw"
"#;
    assert_eq!(
        render_subnet_env(&cfg(text), 1500),
        "FLANNEL_IPV6_NETWORK=fd10:244::/32\nFLANNEL_IPV6_SUBNET=fd10:244:1::1/64\n\
         FLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n"
    );
}

#[test]
fn cni_keys_are_validated_with_paths() {
    let text = BASE.replace(
        "[dataplane]",
        "[cni]\nconf_dir = \"net.d\"\nconf_file = \"weft.conf\"\nnetwork_name = \"-x\"\n\
         bridge = \"a very long bridge name\"\nsubnet_env = \"subnet.env\"\n[dataplane]",
    );
    let e = Config::parse(&text).unwrap_err();
    for p in [
        "cni.conf_dir",
        "cni.conf_file",
        "cni.network_name",
        "cni.bridge",
        "cni.subnet_env",
    ] {
        assert!(e.mentions(p), "{p}: {e}");
    }
    let e = Config::parse(&BASE.replace("[dataplane]", "[cni]\nattach = \"macvlan\"\n[dataplane]"))
        .unwrap_err();
    assert!(e.to_string().contains("macvlan"), "{e}");
    // An empty subnet_env turns the file off and is valid.
    let c = cfg(&BASE.replace(
        "[dataplane]",
        "[cni]\nsubnet_env = \"\"\nwrite_conflist = false\n[dataplane]",
    ));
    assert!(!c.cni.write_conflist);
}

#[test]
fn defaults() {
    let c = cfg(BASE);
    assert!(c.ip_masq);
    assert_eq!(c.cni.conf_dir, PathBuf::from("/etc/cni/net.d"));
    assert_eq!(c.cni.conf_file, "10-weft.conflist");
    assert_eq!(c.cni.subnet_env, PathBuf::from("/run/weft/subnet.env"));
    assert_eq!(c.cni.attach, Attach::Bridge);
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cniconf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn atomic_write_only_when_changed() {
    use std::os::unix::fs::MetadataExt;
    let d = temp_dir("w");
    let p = d.join("sub/10-weft.conflist");
    assert!(write_if_changed(&p, "a\n", 0o644).unwrap());
    let ino = std::fs::metadata(&p).unwrap().ino();
    assert!(!write_if_changed(&p, "a\n", 0o644).unwrap());
    assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino, "rewritten");
    assert!(write_if_changed(&p, "b\n", 0o644).unwrap());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
    assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unwritable_dir_is_reported_not_fatal() {
    let d = temp_dir("ro");
    std::fs::create_dir_all(&d).unwrap();
    // A regular file where the directory should be: fails even as root.
    let blocker = d.join("net.d");
    std::fs::write(&blocker, "").unwrap();
    let text = BASE.replace(
        "[dataplane]",
        &format!(
            "[cni]\nconf_dir = \"{}\"\nsubnet_env = \"{}\"\n[dataplane]",
            blocker.display(),
            d.join("run/subnet.env").display()
        ),
    );
    let files = NodeFiles::write(&cfg(&text), 1450);
    assert_eq!(files.conflist, None);
    assert_eq!(files.errors.len(), 1, "{:?}", files.errors);
    assert!(files.errors[0].contains("net.d"), "{:?}", files.errors);
    // The other file is still written.
    assert_eq!(files.subnet_env, Some(d.join("run/subnet.env")));
    assert!(
        std::fs::read_to_string(d.join("run/subnet.env"))
            .unwrap()
            .contains("FLANNEL_MTU=1450")
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn configs_sorting_before_ours_are_found() {
    let names = [
        "05-cilium.conflist",
        "10-weft.conflist",
        "87-podman.conflist",
        ".10-weft.conflist.9.tmp",
        "00-notes.txt",
        "01-old.conf",
        "02-x.json",
    ];
    assert_eq!(
        shadowing(names, "10-weft.conflist"),
        vec!["01-old.conf", "02-x.json", "05-cilium.conflist"]
    );
    assert!(shadowing(["87-podman.conflist"], "10-weft.conflist").is_empty());
}

#[test]
fn a_config_before_ours_is_reported() {
    let d = temp_dir("sh");
    let net = d.join("net.d");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(net.join("05-other.conflist"), "{}").unwrap();
    let text = BASE.replace(
        "[dataplane]",
        &format!(
            "[cni]\nconf_dir = \"{}\"\nsubnet_env = \"\"\n[dataplane]",
            net.display()
        ),
    );
    let files = NodeFiles::write(&cfg(&text), 1450);
    assert_eq!(files.conflist, Some(net.join("10-weft.conflist")));
    assert_eq!(files.shadowed_by, vec!["05-other.conflist"]);
    assert!(files.errors.is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}
