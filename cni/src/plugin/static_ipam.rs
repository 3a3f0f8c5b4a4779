//! `static`: an IPAM plugin that hands out the addresses, routes and DNS
//! written in its config (or passed by the runtime, see [`config`]). It
//! allocates nothing, so DEL, GC and STATUS have nothing to do.
//!
//! CHECK compares the configured addresses with `prevResult`: each must be
//! there, with the configured gateway when one is configured.
//!
//! Deliberate differences from the reference 1.1.1: invalid config is code 7
//! and bad `CNI_ARGS` code 4 (reference: 999); CHECK also fails when a
//! configured address is missing from `prevResult` (the reference only
//! compares gateways of addresses it finds); spec 1.1.0 is accepted.

pub mod config;

use crate::error::CniError;
use crate::skel::{Invocation, Plugin};
use crate::spec::{CniResult, IpConfig};
use config::StaticConf;

/// The static IPAM plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Static;

impl Plugin for Static {
    fn name(&self) -> &'static str {
        "static"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = StaticConf::load(&inv.stdin, &inv.args_raw)?;
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: conf
                .addresses
                .iter()
                .map(|a| IpConfig {
                    address: a.address,
                    gateway: a.gateway,
                    interface: None,
                })
                .collect(),
            routes: conf.routes,
            dns: conf.dns,
        })
    }

    fn del(&self, _inv: &Invocation) -> Result<(), CniError> {
        // Nothing was allocated; a config that no longer parses must not
        // block the teardown either.
        Ok(())
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = StaticConf::load(&inv.stdin, &inv.args_raw)?;
        let prev = inv
            .net
            .prev()?
            .ok_or_else(|| CniError::config("Required prevResult missing", ""))?;
        for want in &conf.addresses {
            let Some(have) = prev
                .ips
                .iter()
                .find(|ip| ip.address.addr() == want.address.addr())
            else {
                return Err(CniError::internal(
                    format!(
                        "static: address {} not found in prevResult for interface {}",
                        want.address, inv.ifname
                    ),
                    "",
                ));
            };
            if want.gateway.is_some() && want.gateway != have.gateway {
                return Err(CniError::internal(
                    format!(
                        "static: Failed to match addr {} on interface {}",
                        want.address.addr(),
                        inv.ifname
                    ),
                    format!(
                        "gateway {:?} configured, {:?} in prevResult",
                        want.gateway, have.gateway
                    ),
                ));
            }
        }
        Ok(())
    }
}
