//! Handing the workers a changed peer table without copying it.
//!
//! Workers read an immutable `Arc<PeerTable>` and take a newer one once per
//! batch. The control side keeps its own master table and the table it
//! published before the current one, with the changes made since. When no
//! worker reads that older table any more (every worker has moved on to the
//! current one, which takes one batch or one idle wake-up), the changes are
//! applied to it and it is published again: a route change costs the
//! change, twice, whatever the size of the table. Only when a worker still
//! holds it (changes arriving faster than the workers refresh) is the master
//! copied, as a whole new table.

use std::sync::Arc;

use super::peer_table::PeerTable;
use crate::cidr::Cidr;
use crate::route_table::NextHop;

/// One route change: the range and its new hop (`None`: withdrawn).
pub(crate) type Change = (Cidr, Option<NextHop>);

/// How a table was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// The older table was brought up to date in place.
    Reused,
    /// A worker still read the older table: the master was copied.
    Copied,
}

/// The control side's tables.
#[derive(Debug)]
pub(crate) struct TablePublisher {
    master: PeerTable,
    current: Arc<PeerTable>,
    /// The table published before `current`, and the changes made since
    /// it was.
    previous: Option<(Arc<PeerTable>, Vec<Change>)>,
}

impl TablePublisher {
    /// Starts with `table`, published as it is.
    pub(crate) fn new(table: PeerTable) -> Self {
        Self {
            current: Arc::new(table.clone()),
            master: table,
            previous: None,
        }
    }

    /// The table the workers should read now.
    pub(crate) fn current(&self) -> Arc<PeerTable> {
        Arc::clone(&self.current)
    }

    /// Replaces the whole table (a full resync).
    pub(crate) fn replace(&mut self, table: PeerTable) -> Arc<PeerTable> {
        self.current = Arc::new(table.clone());
        self.master = table;
        self.previous = None;
        self.current()
    }

    /// Applies `changes` and returns the table to publish.
    pub(crate) fn update(&mut self, changes: &[Change]) -> (Arc<PeerTable>, Published) {
        for (cidr, hop) in changes {
            self.master.apply(*cidr, hop.as_ref());
        }
        let reused = match self.previous.take() {
            Some((mut older, mut pending)) => match Arc::get_mut(&mut older) {
                Some(t) => {
                    for (cidr, hop) in pending.iter().chain(changes) {
                        t.apply(*cidr, hop.as_ref());
                    }
                    pending.clear();
                    Some((older, pending))
                }
                None => None,
            },
            None => None,
        };
        let (next, how, mut log) = match reused {
            Some((t, log)) => (t, Published::Reused, log),
            None => (Arc::new(self.master.clone()), Published::Copied, Vec::new()),
        };
        log.extend_from_slice(changes);
        let before = std::mem::replace(&mut self.current, next);
        self.previous = Some((before, log));
        (self.current(), how)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};

    use weft_encap::MacAddr;

    use super::*;
    use crate::mode::Mode;
    use crate::route_table::OverlayPeer;

    fn change(i: u32, to: Option<u8>) -> Change {
        let cidr = Cidr::new(IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + (i << 8))), 24).unwrap();
        let hop = to.map(|p| {
            NextHop::Overlay(OverlayPeer {
                underlay: Ipv4Addr::new(172, 31, 0, p),
                vtep_mac: MacAddr([2, 0, 0, 0, 0, p]),
                mode: Mode::Vxlan,
            })
        });
        (cidr, hop)
    }

    fn master_of(p: &TablePublisher) -> PeerTable {
        p.master.clone()
    }

    #[test]
    fn an_unread_older_table_is_brought_up_to_date_in_place() {
        let mut p = TablePublisher::new(PeerTable::default());
        // The first update has no older table yet.
        let (t1, how) = p.update(&[change(1, Some(1))]);
        assert_eq!(how, Published::Copied);
        drop(t1);
        let mut seen = Vec::new();
        for i in 2..50 {
            let (t, how) = p.update(&[change(i, Some(u8::try_from(i % 7).unwrap() + 1))]);
            // No reader kept anything: every later update reuses.
            assert_eq!(how, Published::Reused, "update {i}");
            assert_eq!(*t, master_of(&p), "update {i}");
            seen.push(Arc::as_ptr(&t));
        }
        // Two tables alternate; nothing new is allocated.
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 2);
        // Withdrawals and moves too.
        let (t, how) = p.update(&[change(3, None), change(4, Some(9))]);
        assert_eq!(how, Published::Reused);
        assert_eq!(*t, master_of(&p));
    }

    #[test]
    fn a_reader_holding_the_older_table_gets_a_copy_instead() {
        let mut p = TablePublisher::new(PeerTable::default());
        let (reader, _) = p.update(&[change(1, Some(1))]);
        let (t2, _) = p.update(&[change(2, Some(2))]);
        // `reader` is the older table now: it cannot be changed.
        let (t3, how) = p.update(&[change(3, Some(3))]);
        assert_eq!(how, Published::Copied);
        assert_eq!(*t3, master_of(&p));
        // What the reader holds did not change under it.
        assert!(
            reader
                .lookup(IpAddr::V4(Ipv4Addr::new(10, 244, 2, 1)))
                .is_none()
        );
        drop((reader, t2));
        // Once the readers moved on, updates reuse again, and the pending
        // changes of the copied round are not lost.
        let (t4, how) = p.update(&[change(4, Some(4))]);
        assert_eq!(how, Published::Reused);
        assert_eq!(*t4, master_of(&p));
        let (t5, how) = p.update(&[change(5, Some(5))]);
        assert_eq!(how, Published::Copied, "t3 is still held");
        drop((t3, t4));
        let (t6, how) = p.update(&[change(1, None)]);
        assert_eq!(how, Published::Reused);
        assert_eq!(*t6, master_of(&p));
        drop(t5);
    }

    #[test]
    fn replace_starts_over() {
        let mut p = TablePublisher::new(PeerTable::default());
        let _ = p.update(&[change(1, Some(1))]);
        let t = p.replace(PeerTable::default());
        assert!(t.is_empty());
        let (t, how) = p.update(&[change(2, Some(2))]);
        assert_eq!(how, Published::Copied);
        assert_eq!(t.len(), 1);
    }
}
