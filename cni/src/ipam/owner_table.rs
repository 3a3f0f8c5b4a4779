//! `owners`: an on-disk open-addressing hash table from an owner hash
//! (FNV-1a of `<cid>\n<ifname>`) to the addresses it holds. Lookups and
//! updates read and write a few 32-byte slots with `pread`/`pwrite`, so their
//! cost does not depend on the number of leases; the table doubles (one
//! rewrite) when it is half full. Collisions are harmless: every entry is
//! checked against the lease file before it is used.
//!
//! Layout: a 64-byte header (`WEFTOWN1`, slot count, live, dead) then slots
//! of `hash u64 | family u8 | 7 pad | address [u8; 16]`; hash 0 = empty,
//! 1 = deleted.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"WEFTOWN1";
const HEADER: u64 = 64;
const SLOT: u64 = 32;
const EMPTY: u64 = 0;
const DEAD: u64 = 1;
const MIN_SLOTS: u64 = 256;
/// Slots read per `pread` while probing.
const CHUNK: u64 = 64;

/// The table key of an owner (never 0 or 1).
pub fn owner_hash(container_id: &str, ifname: &str) -> u64 {
    let key = format!("{container_id}\n{ifname}");
    let h = super::index::fnv64(key.as_bytes());
    if h < 2 { h + 2 } else { h }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hash: u64,
    ip: Option<IpAddr>,
}

impl Slot {
    fn decode(b: &[u8]) -> Self {
        let mut h = [0u8; 8];
        h.copy_from_slice(&b[0..8]);
        let hash = u64::from_le_bytes(h);
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[16..32]);
        let ip = match b[8] {
            4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        };
        Self { hash, ip }
    }

    fn encode(&self) -> [u8; SLOT as usize] {
        let mut b = [0u8; SLOT as usize];
        b[0..8].copy_from_slice(&self.hash.to_le_bytes());
        match self.ip {
            Some(IpAddr::V4(a)) => {
                b[8] = 4;
                b[16..20].copy_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                b[8] = 6;
                b[16..32].copy_from_slice(&a.octets());
            }
            None => {}
        }
        b
    }
}

/// The open table file.
#[derive(Debug)]
pub struct OwnerTable {
    path: PathBuf,
    file: File,
    slots: u64,
    live: u64,
    dead: u64,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl OwnerTable {
    /// Opens an existing table; an error if it is missing or malformed
    /// (the caller then rebuilds).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut h = [0u8; HEADER as usize];
        file.read_exact_at(&mut h, 0)?;
        if &h[0..8] != MAGIC {
            return Err(invalid("bad owner table magic"));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let (slots, live, dead) = (word(8), word(16), word(24));
        let len = file.metadata()?.len();
        if slots < MIN_SLOTS || !slots.is_power_of_two() || len != HEADER + slots * SLOT {
            return Err(invalid("bad owner table size"));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            slots,
            live,
            dead,
        })
    }

    /// Writes a fresh table holding `entries` (atomically: temp + rename).
    pub fn create(path: &Path, entries: &[(u64, IpAddr)]) -> io::Result<Self> {
        let want = (entries.len() as u64 * 4)
            .max(MIN_SLOTS)
            .next_power_of_two();
        let mut slots = vec![
            Slot {
                hash: EMPTY,
                ip: None
            };
            usize::try_from(want).map_err(|_| invalid("too big"))?
        ];
        for &(hash, ip) in entries {
            let mut i = hash % want;
            while slots[i as usize].hash != EMPTY {
                i = (i + 1) % want;
            }
            slots[i as usize] = Slot { hash, ip: Some(ip) };
        }
        let mut buf = Vec::with_capacity((HEADER + want * SLOT) as usize);
        buf.extend_from_slice(MAGIC);
        for w in [want, entries.len() as u64, 0u64] {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        buf.resize(HEADER as usize, 0);
        for s in &slots {
            buf.extend_from_slice(&s.encode());
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &buf)?;
        fs::rename(&tmp, path)?;
        Self::open(path)
    }

    fn write_header(&self) -> io::Result<()> {
        let mut h = [0u8; 24];
        h[0..8].copy_from_slice(&self.slots.to_le_bytes());
        h[8..16].copy_from_slice(&self.live.to_le_bytes());
        h[16..24].copy_from_slice(&self.dead.to_le_bytes());
        self.file.write_all_at(&h, 8)
    }

    /// Visits slots from `hash`'s home up to and including the first empty
    /// one; `f` gets (index, slot) and returns true to stop early.
    fn probe(&self, hash: u64, mut f: impl FnMut(u64, Slot) -> bool) -> io::Result<()> {
        let mut i = hash % self.slots;
        let mut seen = 0;
        let mut buf = vec![0u8; (CHUNK * SLOT) as usize];
        while seen < self.slots {
            let n = CHUNK.min(self.slots - i);
            let bytes = &mut buf[..(n * SLOT) as usize];
            self.file.read_exact_at(bytes, HEADER + i * SLOT)?;
            for k in 0..n {
                let s = Slot::decode(&bytes[(k * SLOT) as usize..((k + 1) * SLOT) as usize]);
                if f(i + k, s) || s.hash == EMPTY {
                    return Ok(());
                }
                seen += 1;
                if seen >= self.slots {
                    return Ok(());
                }
            }
            i = (i + n) % self.slots;
        }
        Ok(())
    }

    fn write_slot(&self, i: u64, s: Slot) -> io::Result<()> {
        self.file.write_all_at(&s.encode(), HEADER + i * SLOT)
    }

    /// Addresses stored under `hash`.
    pub fn get(&self, hash: u64) -> io::Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        self.probe(hash, |_, s| {
            if s.hash == hash
                && let Some(ip) = s.ip
            {
                out.push(ip);
            }
            false
        })?;
        Ok(out)
    }

    /// Adds (`hash`, `ip`) unless present.
    pub fn insert(&mut self, hash: u64, ip: IpAddr) -> io::Result<()> {
        if (self.live + self.dead + 1) * 2 > self.slots {
            self.grow()?;
        }
        let (mut free, mut present) = (None, false);
        self.probe(hash, |i, s| {
            if s.hash == DEAD && free.is_none() {
                free = Some((i, true));
            }
            if s.hash == EMPTY && free.is_none() {
                free = Some((i, false));
            }
            if s.hash == hash && s.ip == Some(ip) {
                present = true;
                return true;
            }
            false
        })?;
        if present {
            return Ok(());
        }
        let Some((at, reused)) = free else {
            return Err(invalid("owner table full"));
        };
        self.write_slot(at, Slot { hash, ip: Some(ip) })?;
        self.live += 1;
        if reused {
            self.dead -= 1;
        }
        self.write_header()
    }

    /// Removes (`hash`, `ip`) if present.
    pub fn remove(&mut self, hash: u64, ip: IpAddr) -> io::Result<()> {
        let mut at = None;
        self.probe(hash, |i, s| {
            if s.hash == hash && s.ip == Some(ip) {
                at = Some(i);
                return true;
            }
            false
        })?;
        if let Some(i) = at {
            self.write_slot(
                i,
                Slot {
                    hash: DEAD,
                    ip: None,
                },
            )?;
            self.live = self.live.saturating_sub(1);
            self.dead += 1;
            self.write_header()?;
        }
        Ok(())
    }

    /// Every live entry.
    pub fn entries(&self) -> io::Result<Vec<(u64, IpAddr)>> {
        let mut buf = vec![0u8; (self.slots * SLOT) as usize];
        self.file.read_exact_at(&mut buf, HEADER)?;
        Ok(buf
            .chunks_exact(SLOT as usize)
            .map(Slot::decode)
            .filter(|s| s.hash > DEAD)
            .filter_map(|s| s.ip.map(|ip| (s.hash, ip)))
            .collect())
    }

    fn grow(&mut self) -> io::Result<()> {
        let entries = self.entries()?;
        *self = Self::create(&self.path.clone(), &entries)?;
        Ok(())
    }

    /// Slot count (tests).
    pub fn slots(&self) -> u64 {
        self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn insert_get_remove_grow() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("owners");
        let mut t = OwnerTable::create(&p, &[]).unwrap();
        let a = owner_hash("c1", "eth0");
        t.insert(a, ip("10.0.0.2")).unwrap();
        t.insert(a, ip("fd00::2")).unwrap();
        t.insert(a, ip("fd00::2")).unwrap();
        assert_eq!(t.get(a).unwrap(), vec![ip("10.0.0.2"), ip("fd00::2")]);
        assert!(t.get(owner_hash("c2", "eth0")).unwrap().is_empty());
        t.remove(a, ip("10.0.0.2")).unwrap();
        assert_eq!(t.get(a).unwrap(), vec![ip("fd00::2")]);
        // Many owners: the table grows and keeps everything.
        for i in 0..1000u32 {
            let h = owner_hash(&format!("x{i}"), "eth0");
            t.insert(h, IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i)))
                .unwrap();
        }
        assert!(t.slots() >= 2048);
        let t = OwnerTable::open(&p).unwrap();
        for i in (0..1000u32).step_by(97) {
            let h = owner_hash(&format!("x{i}"), "eth0");
            assert_eq!(
                t.get(h).unwrap(),
                vec![IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i))]
            );
        }
        assert_eq!(t.get(a).unwrap(), vec![ip("fd00::2")]);
        assert_eq!(t.entries().unwrap().len(), 1001);
    }

    #[test]
    fn tombstones_are_reused_and_probing_continues_past_them() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("owners");
        let mut t = OwnerTable::create(&p, &[]).unwrap();
        // Same home slot for all: force a probe chain.
        let h = |k: u64| 2 + k * MIN_SLOTS;
        for k in 0..5 {
            t.insert(h(k), ip(&format!("10.0.0.{k}"))).unwrap();
        }
        t.remove(h(1), ip("10.0.0.1")).unwrap();
        assert_eq!(t.get(h(4)).unwrap(), vec![ip("10.0.0.4")]);
        t.insert(h(7), ip("10.0.0.7")).unwrap();
        assert_eq!(t.get(h(7)).unwrap(), vec![ip("10.0.0.7")]);
        assert_eq!(t.entries().unwrap().len(), 5);
    }

    #[test]
    fn malformed_tables_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("owners");
        std::fs::write(&p, b"nope").unwrap();
        assert!(OwnerTable::open(&p).is_err());
        OwnerTable::create(&p, &[(5, ip("10.0.0.1"))]).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(100).unwrap();
        assert!(OwnerTable::open(&p).is_err());
    }
}
