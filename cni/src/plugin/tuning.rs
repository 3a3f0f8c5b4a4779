//! `tuning`: a meta plugin, chained after an interface plugin, that sets
//! sysctls of the pod's network namespace and properties of the pod's
//! interface (`mac`, `mtu`, `promisc`, `allmulti`, `txQLen`), and passes
//! `prevResult` through (with the interface's new MAC when `mac` is set).
//!
//! ADD saves the original values first in `<dataDir>/<containerID>_<ifname>.json`
//! (the reference's file and format, plus the original sysctl values) and
//! undoes everything it changed when a later step fails. DEL restores the
//! saved values and removes the file; it succeeds when there is nothing to
//! restore (no file, namespace or interface gone). CHECK compares every
//! configured value with the kernel's. GC (1.1.0) removes the files of the
//! network's attachments that are no longer valid (each file records its
//! network, container and interface).
//!
//! Deliberate differences from the reference 1.1.1: invalid config is code 7,
//! bad `CNI_ARGS` code 4, undecodable config 6 (reference: 999); DEL also restores the
//! original sysctl values; a repeated ADD keeps the first saved values instead
//! of overwriting them with the tuned ones; CHECK resolves `IFNAME` in sysctl
//! keys as ADD does and compares values with whitespace normalised.

pub mod config;

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::CniError;
use crate::link::{self, Link, LinkTuning, SyncNetlink};
use crate::ns::{self, NetNs};
use crate::skel::{Invocation, Plugin};
use crate::spec::CniResult;
use config::{Owner, Saved, TuningConf, saved_file};

/// The reference's sysctl allowlist: when present, every sysctl key must
/// match one of its lines (see [`config::check_allowlist`]).
pub const ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";

/// The tuning plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning;

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string(), "")
}

/// The sysctl allowlist in force: `WEFT_CNI_TUNING_ALLOWLIST` if set (for
/// tests), else the reference's path.
fn allowlist_path() -> std::path::PathBuf {
    std::env::var_os("WEFT_CNI_TUNING_ALLOWLIST").map_or_else(|| ALLOWLIST.into(), Into::into)
}

fn load(inv: &Invocation) -> Result<TuningConf, CniError> {
    TuningConf::load(&inv.stdin, &inv.args_raw)
}

/// Refuses sysctl keys the allowlist (if there is one) does not allow.
fn check_allowed(conf: &TuningConf) -> Result<(), CniError> {
    if conf.sysctl.is_empty() {
        return Ok(());
    }
    let path = allowlist_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => config::check_allowlist(conf.sysctl.iter().map(|(k, _)| k.as_str()), &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(format!("reading {}", path.display()), e)),
    }
}

/// Moves this (single-threaded) process into the pod's namespace: all of
/// tuning's work happens there.
fn enter_netns(inv: &Invocation) -> Result<(), CniError> {
    let path = inv
        .netns
        .as_deref()
        .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing", ""))?;
    NetNs::open(path)
        .and_then(|n| n.enter())
        .map_err(|e| internal(format!("failed to enter netns {path:?}: {e}")))
}

/// Writes sysctls (in the calling thread's namespace); returns the
/// original values of those written. On a failure, puts back what it wrote.
fn write_sysctls(wanted: &[(String, String)]) -> Result<BTreeMap<String, String>, CniError> {
    let mut old = BTreeMap::new();
    for (k, v) in wanted {
        let r = ns::read_sysctl(k).and_then(|prev| {
            ns::write_sysctl(k, v)?;
            Ok(prev)
        });
        match r {
            Ok(prev) => {
                old.insert(k.clone(), prev);
            }
            Err(e) => {
                restore_sysctls(&old);
                return Err(CniError::io(format!("failed to set sysctl {k}"), e));
            }
        }
    }
    Ok(old)
}

/// Puts sysctl values back (best effort: a key that vanished, e.g. with its
/// interface, is skipped). Runs in the calling thread's namespace.
fn restore_sysctls(old: &BTreeMap<String, String>) -> Vec<String> {
    let mut errs = Vec::new();
    for (k, v) in old {
        if let Err(e) = ns::write_sysctl(k, v) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errs.push(format!("sysctl {k}: {e}"));
            }
        }
    }
    errs
}

/// The current values of what `t` changes.
fn snapshot(l: &Link, t: &LinkTuning) -> Saved {
    Saved {
        mac: if t.mac.is_some() {
            link::format_mac(&l.mac)
        } else {
            String::new()
        },
        promisc: t.promisc.map(|_| l.promisc),
        mtu: if t.mtu.is_some() { l.mtu } else { 0 },
        allmulti: t.allmulti.map(|_| l.allmulti),
        txqlen: t.txqlen.map(|_| l.txqlen),
        sysctl: BTreeMap::new(),
        owner: None,
    }
}

fn write_saved(file: &Path, saved: &Saved) -> Result<(), CniError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CniError::io(format!("failed to create {}", dir.display()), e))?;
    }
    let data = serde_json::to_vec_pretty(saved).map_err(|e| internal(e.to_string()))?;
    let tmp = file.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| CniError::io(format!("failed to save {}", file.display()), e))
}

fn read_saved(file: &Path) -> Result<Option<Saved>, CniError> {
    match std::fs::read(file) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).unwrap_or_default())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(
            format!("failed to read {}", file.display()),
            e,
        )),
    }
}

fn remove(file: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CniError::io(
            format!("failed to remove {}", file.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// The link part of ADD: save, then change in one request.
fn tune(
    nl: &mut SyncNetlink,
    inv: &Invocation,
    conf: &TuningConf,
    file: &Path,
    sysctl_old: &BTreeMap<String, String>,
) -> Result<(), CniError> {
    let l = nl
        .link_by_name(&inv.ifname)
        .map_err(internal)?
        .ok_or_else(|| internal(format!("failed to get {:?}: link not found", inv.ifname)))?;
    let mut saved = match read_saved(file)? {
        // A repeated ADD keeps the values saved first.
        Some(s) => s,
        None => snapshot(&l, &conf.link),
    };
    for (k, v) in sysctl_old {
        saved.sysctl.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !saved.is_empty() {
        saved.owner.get_or_insert_with(|| Owner {
            network: inv.net.name.clone(),
            container_id: inv.container_id.clone(),
            ifname: inv.ifname.clone(),
        });
        write_saved(file, &saved)?;
    }
    if conf.changes_link() {
        if let Err(e) = nl.tune_link(l.index, &conf.link) {
            // The kernel may have applied part of the request.
            let _ = nl.tune_link(l.index, &snapshot(&l, &conf.link).restore());
            return Err(internal(format!("failed to tune {}: {e}", inv.ifname)));
        }
    }
    Ok(())
}

impl Plugin for Tuning {
    fn name(&self) -> &'static str {
        "tuning"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = load(inv)?;
        check_allowed(&conf)?;
        let mut prev = inv
            .net
            .prev()?
            .ok_or_else(|| CniError::config("Required prevResult missing", ""))?;
        let sysctls = conf.sysctl_paths(&inv.ifname)?;
        enter_netns(inv)?;
        let file = saved_file(&conf.data_dir, &inv.container_id, &inv.ifname);
        let had_file = file.exists();
        let old = write_sysctls(&sysctls)?;
        let r = SyncNetlink::open()
            .map_err(internal)
            .and_then(|mut nl| tune(&mut nl, inv, &conf, &file, &old));
        if let Err(e) = r {
            restore_sysctls(&old);
            if !had_file {
                let _ = remove(&file);
            }
            return Err(e);
        }
        if let Some(mac) = conf.link.mac {
            for i in prev.interfaces.iter_mut().filter(|i| i.name == inv.ifname) {
                i.mac = link::format_mac(&mac);
            }
        }
        Ok(prev)
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = load(inv)?;
        let file = saved_file(&conf.data_dir, &inv.container_id, &inv.ifname);
        let Some(saved) = read_saved(&file)? else {
            return Ok(());
        };
        match inv.netns.as_deref().filter(|p| !p.as_os_str().is_empty()) {
            None => return remove(&file),
            Some(p) => match NetNs::open(p) {
                Ok(n) => n.enter().map_err(internal)?,
                Err(e) if e.is_missing() => return remove(&file),
                Err(e) => return Err(internal(e)),
            },
        }
        let mut nl = SyncNetlink::open().map_err(internal)?;
        let mut errs = Vec::new();
        if let Some(l) = nl.link_by_name(&inv.ifname).map_err(internal)? {
            let t = saved.restore();
            if t != LinkTuning::default() {
                if let Err(e) = nl.tune_link(l.index, &t) {
                    errs.push(format!("link {}: {e}", inv.ifname));
                }
            }
        }
        errs.extend(restore_sysctls(&saved.sysctl));
        if !errs.is_empty() {
            // As the reference: DEL does not fail the teardown; the file
            // stays for a later DEL to retry.
            eprintln!("tuning: failed to restore {}", errs.join("; "));
            return Ok(());
        }
        remove(&file)
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = load(inv)?;
        if inv.net.prev()?.is_none() {
            return Err(CniError::config("Required prevResult missing", ""));
        }
        let sysctls = conf.sysctl_paths(&inv.ifname)?;
        enter_netns(inv)?;
        let values = sysctls.into_iter().map(|(k, want)| {
            let have = ns::read_sysctl(&k);
            (k, want, have)
        });
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        for (k, want, have) in values {
            let have = have.map_err(|e| CniError::io(format!("failed to read sysctl {k}"), e))?;
            if norm(&have) != norm(&want) {
                return Err(internal(format!(
                    "Error: Tuning configured value of /proc/sys/{k} is {want}, current value is {have}"
                )));
            }
        }
        let l = SyncNetlink::open()
            .and_then(|mut nl| nl.link_by_name(&inv.ifname))
            .map_err(internal)?;
        let l = l.ok_or_else(|| internal(format!("Cannot find container link {}", inv.ifname)))?;
        let t = &conf.link;
        let mismatch = |what: &str, want: String, have: String| {
            Err(internal(format!(
                "Error: Tuning configured {what} of {} is {want}, current value is {have}",
                inv.ifname
            )))
        };
        if let Some(m) = t.mac {
            if l.mac != m {
                return mismatch("Ethernet", link::format_mac(&m), link::format_mac(&l.mac));
            }
        }
        // As the reference: promisc off in the config means it must be off.
        let want_promisc = t.promisc.unwrap_or(false);
        if l.promisc != want_promisc {
            return mismatch("promisc", want_promisc.to_string(), l.promisc.to_string());
        }
        if let Some(m) = t.mtu {
            if l.mtu != m {
                return mismatch("MTU", m.to_string(), l.mtu.to_string());
            }
        }
        if let Some(a) = t.allmulti {
            if l.allmulti != a {
                return mismatch("all-multicast mode", a.to_string(), l.allmulti.to_string());
            }
        }
        if let Some(q) = t.txqlen {
            if l.txqlen != q {
                return mismatch("tx queue len", q.to_string(), l.txqlen.to_string());
            }
        }
        Ok(())
    }

    /// GC (1.1.0): removes the saved-values files of this network's
    /// attachments that are not in `cni.dev/valid-attachments` (their
    /// interfaces are gone with their pods: nothing is restored). Files of
    /// other networks, the reference's (no owner) and unreadable ones stay.
    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = load(inv)?;
        let valid = crate::spec::valid_attachments(&inv.stdin)?;
        let entries = match std::fs::read_dir(&conf.data_dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let dir = conf.data_dir.display();
                return Err(CniError::io(format!("failed to read {dir}"), e));
            }
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Ok(Some(Saved { owner: Some(o), .. })) = read_saved(&path) else {
                continue;
            };
            let kept = valid
                .iter()
                .any(|(c, i)| *c == o.container_id && *i == o.ifname);
            if o.network == inv.net.name && !kept {
                remove(&path)?;
            }
        }
        Ok(())
    }
}
