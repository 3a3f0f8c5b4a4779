//! An owner index for the lease directory so ADD, DEL and CHECK do not read
//! every lease file (the reference scans them all on each call).
//!
//! Layout: `<dataDir>/.weft/<network>/` (outside the reference's lease
//! directory, and `.weft` can never be a network name) holds `owners`, an
//! on-disk hash table owner -> addresses ([`super::owner_table`]), and a
//! `state` file.
//!
//! The lease directory stays the single source of truth. The index is
//! trusted only when `state` proves nobody else touched the lease
//! directory since we last did:
//! - `valid=1` (we write `valid=0` before our first change and `1` when we
//!   are done, so a process killed mid-change forces a rebuild);
//! - the lease directory's (dev, inode, ctime) equal what we recorded right
//!   after our own last change (any create/unlink by the reference plugin,
//!   or by hand, moves ctime);
//! - if our change and our record fell within one coarse timestamp tick
//!   (`racy`), a later foreign change could carry the same ctime, so we
//!   also compare the number of lease names and an XOR of their hashes
//!   from one `readdir` (names only, no file reads). On kernels with
//!   multigrain timestamps (6.13+) ctime alone already distinguishes them.
//!
//! Otherwise the index is rebuilt from the lease files (one full scan, after
//! which calls are cheap again). Entries are double-checked against the lease
//! file content before anything is released, so a stale entry can never
//! free someone else's address.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::owner_table::{OwnerTable, owner_hash};
use super::store::Owner;
use crate::error::CniError;

/// A change and its record closer than this may share a ctime tick.
const RACY: Duration = Duration::from_millis(25);

/// FNV-1a, 64 bit.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What `state` records about the lease directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirStamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// ctime seconds.
    pub ctime: i64,
    /// ctime nanoseconds.
    pub ctime_ns: i64,
}

impl DirStamp {
    /// Stamps the directory at `path`.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let m = fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        })
    }

    fn as_time(&self) -> SystemTime {
        let secs = u64::try_from(self.ctime).unwrap_or(0);
        let ns = u32::try_from(self.ctime_ns).unwrap_or(0);
        UNIX_EPOCH + Duration::new(secs, ns)
    }
}

/// The parsed `state` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The index matches the lease directory as of `stamp`.
    pub valid: bool,
    /// Lease directory stamp after our last change.
    pub stamp: DirStamp,
    /// Number of lease files.
    pub count: u64,
    /// XOR of `fnv64(name)` over lease file names.
    pub xor: u64,
    /// `stamp` was recorded within one timestamp tick of the change.
    pub racy: bool,
    /// The filesystem gives a change after a `stat` a strictly newer ctime
    /// (multigrain timestamps, probed once): `racy` never applies.
    pub fine_ctime: bool,
}

impl State {
    /// The `state` file text (with checksum).
    pub fn encode(&self) -> String {
        let body = format!(
            "weft-ipam-index 1 valid={} dev={} ino={} ctime={}.{} count={} xor={:016x} racy={} fine={}",
            u8::from(self.valid),
            self.stamp.dev,
            self.stamp.ino,
            self.stamp.ctime,
            self.stamp.ctime_ns,
            self.count,
            self.xor,
            u8::from(self.racy),
            u8::from(self.fine_ctime)
        );
        format!("{body} sum={:016x}\n", fnv64(body.as_bytes()))
    }

    /// Parses `state` text; None when torn, tampered or unknown.
    pub fn decode(s: &str) -> Option<Self> {
        let s = s.trim_end_matches(['\n', '\0']);
        let (body, sum) = s.rsplit_once(" sum=")?;
        if u64::from_str_radix(sum, 16).ok()? != fnv64(body.as_bytes()) {
            return None;
        }
        let mut f = body.split(' ');
        if f.next()? != "weft-ipam-index" || f.next()? != "1" {
            return None;
        }
        let mut st = Self::default();
        for kv in f {
            let (k, v) = kv.split_once('=')?;
            match k {
                "valid" => st.valid = v == "1",
                "dev" => st.stamp.dev = v.parse().ok()?,
                "ino" => st.stamp.ino = v.parse().ok()?,
                "ctime" => {
                    let (a, b) = v.split_once('.')?;
                    st.stamp.ctime = a.parse().ok()?;
                    st.stamp.ctime_ns = b.parse().ok()?;
                }
                "count" => st.count = v.parse().ok()?,
                "xor" => st.xor = u64::from_str_radix(v, 16).ok()?,
                "racy" => st.racy = v == "1",
                "fine" => st.fine_ctime = v == "1",
                _ => return None,
            }
        }
        Some(st)
    }
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CniError {
    let msg = format!("{what} {}", path.display());
    move |e| CniError::io(msg, e)
}

/// Replaces a small file's content without truncating it to zero first:
/// write at offset 0, then cut to length. (ext4's `auto_da_alloc` starts a
/// synchronous-ish writeback when a file with data is truncated to zero and
/// rewritten, which made each call cost milliseconds.)
pub fn overwrite(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)
}

/// Lists lease file names (those that parse as an address) in `dir`.
pub fn lease_names(dir: &Path) -> Result<Vec<(IpAddr, String)>, CniError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).map_err(io("reading", dir))? {
        let ent = ent.map_err(io("reading", dir))?;
        if let Some(name) = ent.file_name().to_str()
            && let Ok(ip) = name.parse::<IpAddr>()
        {
            out.push((ip, name.to_owned()));
        }
    }
    Ok(out)
}

/// Does a directory change made right after a `stat` of the directory get
/// a strictly newer ctime (Linux multigrain timestamps)? Probed with three
/// create-after-stat pairs in a scratch directory beside the index, on the
/// lease directory's filesystem; any equal pair means coarse timestamps.
pub fn probe_fine_ctime(root: &Path, lease_dir: &Path) -> bool {
    let scratch = root.join("probe");
    let run = || -> std::io::Result<bool> {
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir(&scratch)?;
        if DirStamp::of(&scratch)?.dev != DirStamp::of(lease_dir)?.dev {
            return Ok(false);
        }
        for i in 0..3 {
            File::create(scratch.join(format!("a{i}")))?;
            let before = DirStamp::of(&scratch)?;
            File::create(scratch.join(format!("b{i}")))?;
            let after = DirStamp::of(&scratch)?;
            if (after.ctime, after.ctime_ns) <= (before.ctime, before.ctime_ns) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let fine = run().unwrap_or(false);
    let _ = fs::remove_dir_all(&scratch);
    fine
}

/// The owner index of one network.
#[derive(Debug)]
pub struct OwnerIndex {
    root: PathBuf,
    table: Option<OwnerTable>,
    state_file: File,
    state: State,
    /// True once we changed the lease directory in this session.
    touched: bool,
    /// How the index was validated on open (for tests and benchmarks).
    pub opened_by: OpenedBy,
}

/// How [`OwnerIndex::open`] established the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedBy {
    /// ctime matched and the record was not racy.
    Stamp,
    /// ctime matched and the racy check by `readdir` passed.
    Readdir,
    /// Rebuilt from the lease files.
    Rebuild,
}

impl OwnerIndex {
    /// Opens (validating or rebuilding) the index for lease directory
    /// `lease_dir`, stored under `root`. Call with the store lock held.
    pub fn open(root: &Path, lease_dir: &Path) -> Result<Self, CniError> {
        fs::create_dir_all(root).map_err(io("creating", root))?;
        let sp = root.join("state");
        let mut state_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&sp)
            .map_err(io("opening", &sp))?;
        let mut text = String::new();
        let state = match state_file.read_to_string(&mut text) {
            Ok(_) => State::decode(&text),
            Err(_) => None,
        };
        let mut idx = Self {
            root: root.to_owned(),
            table: OwnerTable::open(&root.join("owners")).ok(),
            state_file,
            state: state.clone().unwrap_or_default(),
            touched: false,
            opened_by: OpenedBy::Stamp,
        };
        let now = DirStamp::of(lease_dir).map_err(io("stat", lease_dir))?;
        let trusted = match &state {
            Some(st) if st.valid && st.stamp == now => {
                if st.racy {
                    idx.opened_by = OpenedBy::Readdir;
                    let names = lease_names(lease_dir)?;
                    let xor = names.iter().fold(0, |x, (_, n)| x ^ fnv64(n.as_bytes()));
                    names.len() as u64 == st.count && xor == st.xor
                } else {
                    true
                }
            }
            _ => false,
        };
        if !trusted || idx.table.is_none() {
            idx.rebuild(lease_dir)?;
        }
        Ok(idx)
    }

    /// The index directory (same filesystem as the leases, usually).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn table(&mut self) -> Result<&mut OwnerTable, CniError> {
        self.table
            .as_mut()
            .ok_or_else(|| CniError::internal("owner index not loaded", ""))
    }

    /// Addresses the index lists for `o` (or for an owner whose hash
    /// collides: callers check the lease file).
    pub fn get(&mut self, o: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let h = owner_hash(&o.container_id, &o.ifname);
        self.table()?
            .get(h)
            .map_err(|e| CniError::io("reading owner index", e))
    }

    fn write_state(&mut self) -> Result<(), CniError> {
        let text = self.state.encode();
        let f = &mut self.state_file;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(text.as_bytes()))
            .and_then(|()| f.set_len(text.len() as u64))
            .map_err(|e| CniError::io("writing index state", e))
    }

    /// Marks the index as being changed (before the first lease change).
    pub fn begin(&mut self) -> Result<(), CniError> {
        if !self.touched {
            self.touched = true;
            self.state.valid = false;
            self.write_state()?;
        }
        Ok(())
    }

    /// Records that `o` now also holds `ip` (its lease file exists).
    pub fn added(&mut self, o: &Owner, ip: IpAddr) -> Result<(), CniError> {
        let h = owner_hash(&o.container_id, &o.ifname);
        self.table()?
            .insert(h, ip)
            .map_err(|e| CniError::io("writing owner index", e))?;
        self.state.count += 1;
        self.state.xor ^= fnv64(ip.to_string().as_bytes());
        Ok(())
    }

    /// Records that `ip`'s lease file (held by `o`) was removed.
    pub fn removed(&mut self, o: &Owner, ip: IpAddr) -> Result<(), CniError> {
        self.unlist(o, ip)?;
        self.state.count = self.state.count.saturating_sub(1);
        self.state.xor ^= fnv64(ip.to_string().as_bytes());
        Ok(())
    }

    /// Drops the entry (`o`, `ip`) without touching counters (stale entry).
    pub fn unlist(&mut self, o: &Owner, ip: IpAddr) -> Result<(), CniError> {
        let h = owner_hash(&o.container_id, &o.ifname);
        self.table()?
            .remove(h, ip)
            .map_err(|e| CniError::io("writing owner index", e))
    }

    /// Records the lease directory's stamp after our changes and marks the
    /// index valid. Call before releasing the lock.
    pub fn commit(&mut self, lease_dir: &Path) -> Result<(), CniError> {
        if !self.touched {
            return Ok(());
        }
        let stamp = DirStamp::of(lease_dir).map_err(io("stat", lease_dir))?;
        let age = SystemTime::now()
            .duration_since(stamp.as_time())
            .unwrap_or(Duration::ZERO);
        self.state.racy = !self.state.fine_ctime && age < RACY;
        self.state.stamp = stamp;
        self.state.valid = true;
        self.write_state()?;
        self.touched = false;
        Ok(())
    }

    /// Rebuilds every owner entry from the lease files.
    pub fn rebuild(&mut self, lease_dir: &Path) -> Result<(), CniError> {
        self.opened_by = OpenedBy::Rebuild;
        self.state.valid = false;
        self.write_state()?;
        let names = lease_names(lease_dir)?;
        let mut entries = Vec::with_capacity(names.len());
        let mut xor = 0;
        for (ip, name) in &names {
            xor ^= fnv64(name.as_bytes());
            if let Ok(text) = fs::read_to_string(lease_dir.join(name)) {
                let o = Owner::from_file_content(&text);
                entries.push((owner_hash(&o.container_id, &o.ifname), *ip));
            }
        }
        // Leftovers: old tables, temp lease files of killed processes.
        for ent in fs::read_dir(&self.root).map_err(io("reading", &self.root))? {
            let ent = ent.map_err(io("reading", &self.root))?;
            let p = ent.path();
            if ent.file_name() == "state" {
                continue;
            }
            if p.is_dir() {
                fs::remove_dir_all(&p).map_err(io("removing", &p))?;
            } else {
                fs::remove_file(&p).map_err(io("removing", &p))?;
            }
        }
        let tp = self.root.join("owners");
        self.table = Some(OwnerTable::create(&tp, &entries).map_err(io("writing", &tp))?);
        self.state.count = names.len() as u64;
        self.state.xor = xor;
        self.state.fine_ctime = probe_fine_ctime(&self.root, lease_dir);
        self.touched = true;
        self.commit(lease_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_torn() {
        let st = State {
            valid: true,
            stamp: DirStamp {
                dev: 1,
                ino: 2,
                ctime: 3,
                ctime_ns: 4,
            },
            count: 5,
            xor: 0xdead,
            racy: true,
            fine_ctime: false,
        };
        let text = st.encode();
        assert_eq!(State::decode(&text), Some(st));
        assert_eq!(State::decode(&text[..text.len() - 5]), None);
        assert_eq!(State::decode(&text.replace("count=5", "count=6")), None);
        assert_eq!(State::decode(""), None);
    }
}
