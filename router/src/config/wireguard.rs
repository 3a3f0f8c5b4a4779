//! Validation of the wireguard keys: `dataplane.wireguard_*` and the
//! `wireguard_public_key` / `wireguard_endpoint` of static routes.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Config, ConfigError};
use crate::mode::Mode;
use crate::wg_key::PublicKey;

/// Every problem with the wireguard settings, with field paths.
pub(super) fn validate(cfg: &Config) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut err = |path: String, msg: String| errs.push(ConfigError { path, msg });
    let dp = &cfg.dataplane;
    let wg = dp.mode == Mode::Wireguard;
    if wg {
        if dp.wireguard_port == 0 {
            err("dataplane.wireguard_port".into(), "must not be 0".into());
        }
        if dp.wireguard_keepalive_s == Some(0) {
            err(
                "dataplane.wireguard_keepalive_s".into(),
                "must be 1..=65535 seconds (leave it out for no keepalive)".into(),
            );
        }
        if dp.wireguard_private_key_file.as_os_str().is_empty() {
            err(
                "dataplane.wireguard_private_key_file".into(),
                "must not be empty".into(),
            );
        }
    }
    // A node (via) has one key; one key may serve several vias.
    let mut key_of: HashMap<IpAddr, (usize, PublicKey)> = HashMap::new();
    for (i, r) in cfg.static_routes.iter().enumerate() {
        let p = |f: &str| format!("static_routes[{i}].{f}");
        if !wg {
            if r.wireguard_public_key.is_some() {
                err(
                    p("wireguard_public_key"),
                    "only with dataplane.mode = \"wireguard\"".into(),
                );
            }
            if r.wireguard_endpoint.is_some() {
                err(
                    p("wireguard_endpoint"),
                    "only with dataplane.mode = \"wireguard\"".into(),
                );
            }
            continue;
        }
        if let Some(e) = r.wireguard_endpoint
            && (!e.is_ipv4() || e.port() == 0 || e.ip().is_unspecified())
        {
            err(
                p("wireguard_endpoint"),
                format!("{e} is not an IPv4 address:port"),
            );
        }
        let Some(text) = &r.wireguard_public_key else {
            continue;
        };
        let key = match PublicKey::parse(text) {
            Ok(k) => k,
            Err(e) => {
                err(p("wireguard_public_key"), format!("{e}"));
                continue;
            }
        };
        match key_of.get(&r.via) {
            Some((j, k)) if !k.ct_eq(&key) => err(
                p("wireguard_public_key"),
                format!(
                    "differs from static_routes[{j}].wireguard_public_key for the same via {}",
                    r.via
                ),
            ),
            Some(_) => {}
            None => {
                key_of.insert(r.via, (i, key));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::mode::Mode;

    const KEY_A: &str = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
    const KEY_B: &str = "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";

    fn doc(dataplane: &str, routes: &str) -> String {
        format!(
            "node_name = \"n1\"\nunderlay_ip = \"172.31.0.1\"\npod_cidr = \"10.244.1.0/24\"\n\
             cluster_cidr = \"10.244.0.0/16\"\n[dataplane]\n{dataplane}\n{routes}"
        )
    }

    fn route(cidr: &str, via: &str, extra: &str) -> String {
        format!("[[static_routes]]\npod_cidr = \"{cidr}\"\nvia = \"{via}\"\n{extra}\n")
    }

    #[test]
    fn issue_example_parses_with_defaults() {
        let r = route(
            "10.244.2.0/24",
            "172.31.0.2",
            &format!("wireguard_public_key = \"{KEY_A}\""),
        );
        let c = Config::parse(&doc("mode = \"wireguard\"", &r)).unwrap();
        assert_eq!(c.dataplane.mode, Mode::Wireguard);
        assert_eq!(c.dataplane.wireguard_port, 51820);
        assert_eq!(
            c.dataplane.wireguard_private_key_file,
            std::path::PathBuf::from("/etc/weft/wg.key")
        );
        assert_eq!(c.dataplane.wireguard_keepalive_s, None);
        assert_eq!(c.dataplane.tun_name, "weft0");
        assert_eq!(Mode::Wireguard.overhead(), 80);
        assert_eq!(c.static_routes[0].wireguard_endpoint, None);
    }

    #[test]
    fn bad_keys_and_endpoints_are_named() {
        let routes = [
            route(
                "10.244.2.0/24",
                "172.31.0.2",
                "wireguard_public_key = \"short\"",
            ),
            route(
                "10.244.3.0/24",
                "172.31.0.3",
                "wireguard_endpoint = \"[fd00::3]:51820\"",
            ),
            route(
                "10.244.4.0/24",
                "172.31.0.4",
                &format!("wireguard_public_key = \"{KEY_A}\""),
            ),
            route(
                "10.244.5.0/24",
                "172.31.0.4",
                &format!("wireguard_public_key = \"{KEY_B}\""),
            ),
        ]
        .concat();
        let e = Config::parse(&doc(
            "mode = \"wireguard\"\nwireguard_port = 0\nwireguard_keepalive_s = 0",
            &routes,
        ))
        .unwrap_err();
        for path in [
            "dataplane.wireguard_port",
            "dataplane.wireguard_keepalive_s",
            "static_routes[0].wireguard_public_key",
            "static_routes[1].wireguard_endpoint",
            "static_routes[3].wireguard_public_key",
        ] {
            assert!(e.mentions(path), "{path}: {e}");
        }
        assert!(!e.mentions("static_routes[2].wireguard_public_key"), "{e}");
    }

    #[test]
    fn one_key_may_serve_several_ranges_and_vias() {
        let k = format!("wireguard_public_key = \"{KEY_A}\"");
        let routes = [
            route("10.244.2.0/24", "172.31.0.2", &k),
            route("10.244.3.0/24", "172.31.0.2", &k),
            route("10.244.4.0/24", "172.31.0.5", &k),
        ]
        .concat();
        assert!(Config::parse(&doc("mode = \"wireguard\"", &routes)).is_ok());
    }

    #[test]
    fn keys_outside_wireguard_mode_are_refused() {
        let r = route(
            "10.244.2.0/24",
            "172.31.0.2",
            &format!("wireguard_public_key = \"{KEY_A}\""),
        );
        let e = Config::parse(&doc("mode = \"vxlan\"", &r)).unwrap_err();
        assert!(e.mentions("static_routes[0].wireguard_public_key"), "{e}");
    }
}
