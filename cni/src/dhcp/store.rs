//! Lease records on disk, one JSON file per client id in the daemon's state
//! directory, written whole (temporary file + rename) after every ACK, so a
//! restarted daemon resumes every lease where the last one left it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lease::{ClientOptions, Lease};

/// Where records live unless `-statedir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/cni/dhcp-leases";

/// Everything needed to keep one lease going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The pod's namespace path.
    pub netns: String,
    /// The interface inside it.
    pub ifname: String,
    /// What the client sends.
    pub client: ClientOptions,
    /// The current lease.
    pub lease: Lease,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

fn file_name(client_id: &str) -> String {
    // FNV-1a 64: client ids can be longer than a file name may be.
    let h = client_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}.json")
}

impl RecordStore {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, client_id: &str) -> PathBuf {
        self.dir.join(file_name(client_id))
    }

    /// Writes `rec` atomically.
    pub fn save(&self, rec: &Record) -> std::io::Result<()> {
        let path = self.path(&rec.client.client_id);
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &path)
    }

    /// Removes the record of `client_id` (absent is fine).
    pub fn remove(&self, client_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(client_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable record; unreadable files are returned by path so the
    /// caller can report them.
    pub fn load(&self) -> (Vec<Record>, Vec<PathBuf>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return (ok, bad);
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            {
                Some(r)
                    if p.file_name()
                        .is_some_and(|n| *n == *file_name(&r.client.client_id)) =>
                {
                    ok.push(r);
                }
                _ => bad.push(p),
            }
        }
        (ok, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::wire::{Message, MessageType, OP_REPLY, opt};

    fn record(id: &str) -> Record {
        let mut ack = Message::request(1, [2, 0, 0, 0, 0, 1]);
        ack.op = OP_REPLY;
        ack.yiaddr = "10.0.0.9".parse().unwrap();
        ack.set_option(opt::MESSAGE_TYPE, vec![MessageType::Ack as u8]);
        ack.set_option(opt::SUBNET_MASK, vec![255, 255, 255, 0]);
        ack.set_option(opt::LEASE_TIME, 600u32.to_be_bytes().to_vec());
        ack.set_option(opt::SERVER_ID, vec![10, 0, 0, 1]);
        Record {
            netns: "/run/netns/p".into(),
            ifname: "eth0".into(),
            client: ClientOptions {
                client_id: id.into(),
                mac: [2, 0, 0, 0, 0, 1],
                provide: vec![],
                request: vec![1, 3],
            },
            lease: Lease::from_ack(&ack, 5).unwrap(),
        }
    }

    #[test]
    fn save_load_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let s = RecordStore::open(&tmp.path().join("d")).unwrap();
        s.save(&record("a/n/eth0")).unwrap();
        s.save(&record(&"b".repeat(254))).unwrap();
        std::fs::write(tmp.path().join("d/junk.json"), "{").unwrap();
        let (ok, bad) = s.load();
        assert_eq!(ok.len(), 2);
        assert_eq!(bad.len(), 1);
        assert!(ok.contains(&record("a/n/eth0")));
        s.remove("a/n/eth0").unwrap();
        s.remove("a/n/eth0").unwrap();
        assert_eq!(s.load().0.len(), 1);
    }
}
