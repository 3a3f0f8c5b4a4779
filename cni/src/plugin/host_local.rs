//! `host-local`: allocates addresses from the configured range sets and
//! records them in the reference plugin's on-disk format.
//!
//! ADD takes one address per range set (a requested one if it falls in the
//! set), returns them with the configured routes and DNS; on any failure it
//! releases what it took. DEL releases every lease of (container id,
//! ifname). CHECK verifies one exists. GC (1.1) releases every lease whose
//! owner is not in `cni.dev/valid-attachments`. STATUS (1.1) fails with code
//! 50 when a range set has no free address left.
//!
//! Interchangeable with the reference plugin on a live node (same lease
//! files, same `last_reserved_ip.N` round robin, same `flock` on `lock`);
//! our owner index lives outside the lease directory
//! (`<dataDir>/.weft/<network>/`, see [`crate::ipam::index`]) and is
//! rebuilt whenever the reference (or anyone) changed the leases.
//!
//! Deliberate differences from the reference 1.1.1 (all in error reporting
//! or in corners the reference gets wrong):
//! - a full pool on ADD is code 50 (reference: 999); invalid config is 7
//!   (999); bad `CNI_ARGS` is 4 (999); a lock held longer than
//!   `WEFT_CNI_LOCK_TIMEOUT_MS` (default 30 s) is 11 (the reference waits
//!   forever); error JSON carries `cniVersion` as spec 1.0 asks;
//! - network and IPv4 broadcast addresses are never handed out, even when
//!   an explicit `rangeStart`/`rangeEnd` includes them;
//! - when several requested IPs fall in one range set, the first in order
//!   wins (the reference picks by Go map order); `CNI_ARGS IP=` may list
//!   several addresses separated by commas;
//! - a lease file is created complete (hard link of a staged copy), so a
//!   process killed mid-ADD never leaves an empty lease file behind.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::CniError;
use crate::ipam::allocator::allocate;
use crate::ipam::config::{IpamConfig, parse_resolv_conf};
use crate::ipam::disk::DiskStore;
use crate::ipam::index::lease_names;
use crate::ipam::store::{LeaseStore, Owner};
use crate::skel::{Invocation, Plugin};
use crate::spec::CniResult;

/// Lock wait limit unless `WEFT_CNI_LOCK_TIMEOUT_MS` says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The host-local IPAM plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLocal;

fn lock_timeout() -> Duration {
    std::env::var("WEFT_CNI_LOCK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_LOCK_TIMEOUT, Duration::from_millis)
}

fn open(conf: &IpamConfig) -> Result<DiskStore, CniError> {
    DiskStore::open(&conf.data_dir, &conf.name, lock_timeout())
}

#[derive(Debug, Deserialize)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    #[serde(default)]
    ifname: String,
}

#[derive(Debug, Deserialize)]
struct GcConf {
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid: Option<Vec<Attachment>>,
}

impl Plugin for HostLocal {
    fn name(&self) -> &'static str {
        "host-local"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = IpamConfig::load(&inv.stdin, &inv.args_raw)?;
        let mut result = CniResult::default();
        if let Some(path) = &conf.resolv_conf {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CniError::io(format!("reading {}", path.display()), e))?;
            result.dns = parse_resolv_conf(&text);
        }
        let mut store = open(&conf)?;
        let owner = Owner::new(&inv.container_id, &inv.ifname);
        let mut requested: Vec<IpAddr> = conf.requested.clone();
        for (idx, set) in conf.ranges.iter().enumerate() {
            let want = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            match allocate(set, idx, &mut store, &owner, want) {
                Ok(ip) => result.ips.push(ip),
                Err(e) => {
                    if !result.ips.is_empty() {
                        let _ = store.release(&owner);
                    }
                    store.commit()?;
                    return Err(e.into_cni(idx));
                }
            }
        }
        if !requested.is_empty() {
            let _ = store.release(&owner);
            store.commit()?;
            let list: Vec<String> = requested.iter().map(ToString::to_string).collect();
            return Err(CniError::internal(
                format!("failed to allocate all requested IPs: {}", list.join(" ")),
                "",
            ));
        }
        store.commit()?;
        result.routes = conf.routes;
        Ok(result)
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = IpamConfig::load(&inv.stdin, &inv.args_raw)?;
        let mut store = open(&conf)?;
        store.release(&Owner::new(&inv.container_id, &inv.ifname))?;
        store.commit()
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = IpamConfig::load(&inv.stdin, &inv.args_raw)?;
        let mut store = open(&conf)?;
        if store
            .owned(&Owner::new(&inv.container_id, &inv.ifname))?
            .is_empty()
        {
            return Err(CniError::internal(
                format!(
                    "host-local: Failed to find address added by container {}",
                    inv.container_id
                ),
                "",
            ));
        }
        Ok(())
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = IpamConfig::load(&inv.stdin, &inv.args_raw)?;
        let gc: GcConf = serde_json::from_slice(&inv.stdin)
            .map_err(|e| CniError::config(format!("cni.dev/valid-attachments: {e}"), ""))?;
        let valid: Vec<Owner> = gc
            .valid
            .unwrap_or_default()
            .iter()
            .map(|a| Owner::new(&a.container_id, &a.ifname))
            .collect();
        let keep = |o: &Owner| {
            valid.iter().any(|v| {
                v.container_id == o.container_id && (o.ifname.is_empty() || v.ifname == o.ifname)
            })
        };
        let mut store = open(&conf)?;
        for (ip, owner) in store.all()? {
            if !keep(&owner) {
                store.remove(ip)?;
            }
        }
        store.commit()
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = IpamConfig::load(&inv.stdin, &inv.args_raw)?;
        let dir = conf.data_dir.join(&conf.name);
        let leases: Vec<IpAddr> = if dir.is_dir() {
            lease_names(&dir)?.into_iter().map(|(ip, _)| ip).collect()
        } else {
            Vec::new()
        };
        for (idx, set) in conf.ranges.iter().enumerate() {
            let used = leases
                .iter()
                .filter(|ip| set.range_for(**ip).is_some_and(|r| r.assignable(**ip)))
                .count() as u128;
            if used >= set.capacity() {
                return Err(CniError::not_available(
                    format!(
                        "range set {idx} is exhausted: no IP addresses available in range set: {set}"
                    ),
                    format!("{used} of {} addresses in use", set.capacity()),
                ));
            }
        }
        Ok(())
    }
}
