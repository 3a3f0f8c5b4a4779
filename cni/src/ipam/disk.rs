//! The on-disk lease store, in the reference plugin's format so either
//! implementation can take over a live node:
//! `<dataDir>/<network>/<ip>` holding `<cid>\r\n<ifname>`,
//! `last_reserved_ip.<set>` holding the last address handed out in that
//! range set, and a `lock` file taken with `flock(LOCK_EX)` for the whole
//! call (the kernel drops it if the process dies). The owner index lives
//! beside it ([`super::index`]).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::index::{OwnerIndex, lease_names, overwrite};
use super::owner_table::owner_hash;
use super::store::{LeaseStore, Owner};
use crate::error::CniError;

/// Prefix of the per-range-set round-robin files.
pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";

/// Takes `flock(LOCK_EX)` on `path`, waiting at most `timeout`; a timeout is
/// "try again later" (code 11).
pub fn lock_file(path: &Path, timeout: Duration) -> Result<Flock<File>, CniError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o750)
        .open(path)
        .map_err(|e| CniError::io(format!("opening lock {}", path.display()), e))?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => return Ok(l),
        Err((f, Errno::EWOULDBLOCK)) => f,
        Err((_, e)) => {
            return Err(CniError::io(
                format!("locking {}", path.display()),
                std::io::Error::from(e),
            ));
        }
    };
    // Contended: block in the kernel's queue on a helper thread so the wait
    // is fair and bounded. If we give up, the helper unlocks as soon as it
    // gets the lock (its send fails).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let res = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e);
        let _ = tx.send(res);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(e)) => Err(CniError::io(
            format!("locking {}", path.display()),
            std::io::Error::from(e),
        )),
        Err(_) => Err(CniError::try_later(
            format!(
                "timed out after {} ms waiting for lock {}",
                timeout.as_millis(),
                path.display()
            ),
            "another plugin instance holds the lease store lock",
        )),
    }
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CniError {
    let msg = format!("{what} {}", path.display());
    move |e| CniError::io(msg, e)
}

/// The lease store of one network, locked for as long as it lives.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    index: OwnerIndex,
    /// Index and leases share a filesystem: lease files are hard-linked
    /// into place from a staged copy.
    can_link: bool,
    staged: Option<(Owner, PathBuf)>,
    _lock: Flock<File>,
}

impl DiskStore {
    /// Opens `<data_dir>/<network>`, takes its lock (waiting at most
    /// `timeout`) and loads the owner index.
    pub fn open(data_dir: &Path, network: &str, timeout: Duration) -> Result<Self, CniError> {
        let dir = data_dir.join(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(io("creating", &dir))?;
        let lock = lock_file(&dir.join("lock"), timeout)?;
        let index = OwnerIndex::open(&data_dir.join(".weft").join(network), &dir)?;
        let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        let can_link = dev(index.root()).is_some() && dev(index.root()) == dev(&dir);
        Ok(Self {
            dir,
            index,
            can_link,
            staged: None,
            _lock: lock,
        })
    }

    /// The lease directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index (to see how it was validated).
    pub fn index(&self) -> &OwnerIndex {
        &self.index
    }

    /// Records the index state; call before dropping (errors surface here).
    pub fn commit(&mut self) -> Result<(), CniError> {
        self.unstage();
        self.index.commit(&self.dir)
    }

    fn read_owner(&self, ip: IpAddr) -> Option<Owner> {
        fs::read_to_string(self.dir.join(ip.to_string()))
            .ok()
            .map(|t| Owner::from_file_content(&t))
    }

    /// Releases the leases the index lists for exactly `o` whose files still
    /// name `o`; returns them. Entries whose file is gone are dropped.
    fn release_exact(&mut self, o: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let listed = self.index.get(o)?;
        let mut gone = Vec::new();
        for ip in listed {
            self.index.begin()?;
            match self.read_owner(ip) {
                Some(holder) if holder == *o => {
                    let p = self.dir.join(ip.to_string());
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(CniError::io(format!("removing {}", p.display()), e));
                        }
                    }
                    self.index.removed(o, ip)?;
                    gone.push(ip);
                }
                // Another owner whose hash collides with ours: not our entry.
                Some(holder)
                    if owner_hash(&holder.container_id, &holder.ifname)
                        == owner_hash(&o.container_id, &o.ifname) => {}
                _ => self.index.unlist(o, ip)?,
            }
        }
        Ok(gone)
    }

    /// A temporary file beside the index holding `owner`'s lease content,
    /// hard-linked into place by [`LeaseStore::reserve`] so a lease file
    /// is never seen (or left by a killed process) half-written.
    fn staged(&mut self, owner: &Owner) -> Result<PathBuf, CniError> {
        if let Some((o, p)) = &self.staged
            && o == owner
        {
            return Ok(p.clone());
        }
        self.unstage();
        let p = self
            .index
            .root()
            .join(format!("lease.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&p);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&p)
            .map_err(io("creating", &p))?;
        f.write_all(owner.file_content().as_bytes())
            .map_err(io("writing", &p))?;
        self.staged = Some((owner.clone(), p.clone()));
        Ok(p)
    }

    fn unstage(&mut self) {
        if let Some((_, p)) = self.staged.take() {
            let _ = fs::remove_file(p);
        }
    }

    /// Creates lease file `p` for `owner` if it does not exist.
    fn create_lease(&mut self, p: &Path, owner: &Owner) -> Result<bool, CniError> {
        if self.can_link {
            let staged = self.staged(owner)?;
            return match fs::hard_link(&staged, p) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(CniError::io(format!("creating {}", p.display()), e)),
            };
        }
        let mut f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(CniError::io(format!("creating {}", p.display()), e)),
        };
        if let Err(e) = f.write_all(owner.file_content().as_bytes()) {
            drop(f);
            let _ = fs::remove_file(p);
            return Err(CniError::io(format!("writing {}", p.display()), e));
        }
        Ok(true)
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        self.unstage();
        let _ = self.index.commit(&self.dir);
    }
}

impl LeaseStore for DiskStore {
    fn last_reserved(&mut self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("{LAST_IP_PREFIX}{set}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn reserve(&mut self, ip: IpAddr, owner: &Owner, set: usize) -> Result<bool, CniError> {
        let p = self.dir.join(ip.to_string());
        self.index.begin()?;
        if !self.create_lease(&p, owner)? {
            return Ok(false);
        }
        // Fault injection for the crash tests: die like a SIGKILL right after
        // the lease file exists and before the index knows about it.
        if std::env::var_os("WEFT_CNI_TEST_FAULT").is_some_and(|v| v == "abort-after-reserve") {
            std::process::abort();
        }
        self.index.added(owner, ip)?;
        let lp = self.dir.join(format!("{LAST_IP_PREFIX}{set}"));
        overwrite(&lp, ip.to_string().as_bytes()).map_err(io("writing", &lp))?;
        Ok(true)
    }

    fn owned(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let mut out = Vec::new();
        let legacy = owner.legacy();
        for o in [owner, &legacy] {
            for ip in self.index.get(o)? {
                if self.read_owner(ip).as_ref() == Some(o) {
                    out.push(ip);
                }
            }
        }
        Ok(out)
    }

    fn release(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let gone = self.release_exact(owner)?;
        if !gone.is_empty() || owner.ifname.is_empty() {
            return Ok(gone);
        }
        self.release_exact(&owner.legacy())
    }

    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>, CniError> {
        Ok(lease_names(&self.dir)?
            .into_iter()
            .filter_map(|(ip, _)| self.read_owner(ip).map(|o| (ip, o)))
            .collect())
    }

    fn remove(&mut self, ip: IpAddr) -> Result<(), CniError> {
        let Some(o) = self.read_owner(ip) else {
            return Ok(());
        };
        self.index.begin()?;
        let p = self.dir.join(ip.to_string());
        fs::remove_file(&p).map_err(io("removing", &p))?;
        self.index.removed(&o, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::index::OpenedBy;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn reference_format_and_index_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let o = Owner::new("c1", "eth0");
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        {
            let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
            assert!(s.reserve(ip, &o, 0).unwrap());
            assert!(!s.reserve(ip, &Owner::new("c2", "eth0"), 0).unwrap());
            s.commit().unwrap();
        }
        let dir = tmp.path().join("net");
        assert_eq!(fs::read(dir.join("10.0.0.2")).unwrap(), b"c1\r\neth0");
        assert_eq!(
            fs::read(dir.join("last_reserved_ip.0")).unwrap(),
            b"10.0.0.2"
        );
        assert!(dir.join("lock").exists());
        let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
        assert_ne!(s.index().opened_by, OpenedBy::Rebuild);
        assert_eq!(s.owned(&o).unwrap(), vec![ip]);
        assert_eq!(s.last_reserved(0), Some(ip));
        drop(s);
        // A foreign writer (the reference plugin) adds a lease: detected, index rebuilt.
        fs::write(dir.join("10.0.0.3"), "c3\r\neth0").unwrap();
        let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
        assert_eq!(s.owned(&Owner::new("c3", "eth0")).unwrap().len(), 1);
        assert_eq!(s.release(&Owner::new("c3", "eth0")).unwrap().len(), 1);
        assert_eq!(s.release(&o).unwrap(), vec![ip]);
        assert!(s.release(&o).unwrap().is_empty());
        s.commit().unwrap();
        assert_eq!(lease_names(&dir).unwrap().len(), 0);
    }

    #[test]
    fn legacy_leases_are_released_by_container_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("10.0.0.9"), "old\n").unwrap();
        let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
        assert_eq!(s.owned(&Owner::new("old", "eth0")).unwrap().len(), 1);
        assert_eq!(s.release(&Owner::new("old", "eth0")).unwrap().len(), 1);
    }

    #[test]
    fn interrupted_change_forces_rebuild() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
            s.reserve("10.0.0.2".parse().unwrap(), &Owner::new("c1", "eth0"), 0)
                .unwrap();
            // Simulate a crash: no commit (Drop would commit, so forget it).
            std::mem::forget(s);
        }
        // The leaked store still holds its flock (a killed process would
        // not); what matters here is that the index says "changing".
        let st = fs::read_to_string(tmp.path().join(".weft/net/state")).unwrap();
        assert!(st.contains("valid=0"));
    }

    /// Rewrites `state` as if our last commit and a foreign change had
    /// shared one coarse ctime tick on a filesystem without fine ctimes.
    fn pretend_same_tick(data: &Path) {
        use crate::ipam::index::{DirStamp, State};
        let sp = data.join(".weft/net/state");
        let mut st = State::decode(&fs::read_to_string(&sp).unwrap()).unwrap();
        st.stamp = DirStamp::of(&data.join("net")).unwrap();
        st.racy = true;
        st.fine_ctime = false;
        fs::write(&sp, st.encode()).unwrap();
    }

    #[test]
    fn same_tick_foreign_change_is_caught_by_readdir() {
        let tmp = tempfile::tempdir().unwrap();
        let o = Owner::new("c1", "eth0");
        {
            let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
            s.reserve("10.0.0.2".parse().unwrap(), &o, 0).unwrap();
        }
        // No foreign change: the racy record is confirmed by readdir.
        pretend_same_tick(tmp.path());
        let s = DiskStore::open(tmp.path(), "net", T).unwrap();
        assert_eq!(s.index().opened_by, OpenedBy::Readdir);
        drop(s);
        // A foreign lease that did not move ctime: readdir sees it.
        fs::write(tmp.path().join("net/10.0.0.3"), "c3\r\neth0").unwrap();
        pretend_same_tick(tmp.path());
        let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
        assert_eq!(s.index().opened_by, OpenedBy::Rebuild);
        assert_eq!(s.owned(&Owner::new("c3", "eth0")).unwrap().len(), 1);
    }

    #[test]
    fn damaged_index_files_are_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let o = Owner::new("c1", "eth0");
        {
            let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
            s.reserve("10.0.0.2".parse().unwrap(), &o, 0).unwrap();
        }
        for (file, junk) in [
            ("owners", &b"garbage"[..]),
            ("state", &b"weft-ipam-index 1 valid=1"[..]),
        ] {
            fs::write(tmp.path().join(".weft/net").join(file), junk).unwrap();
            let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
            assert_eq!(s.index().opened_by, OpenedBy::Rebuild, "{file}");
            assert_eq!(s.owned(&o).unwrap().len(), 1, "{file}");
        }
        // The whole index directory gone: rebuilt too.
        fs::remove_dir_all(tmp.path().join(".weft")).unwrap();
        let mut s = DiskStore::open(tmp.path(), "net", T).unwrap();
        assert_eq!(s.release(&o).unwrap().len(), 1);
    }

    #[test]
    fn lock_times_out_with_code_11() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = DiskStore::open(tmp.path(), "net", T).unwrap();
        let e = DiskStore::open(tmp.path(), "net", Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.code(), 11);
    }
}
