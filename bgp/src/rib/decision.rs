//! The BGP decision process (RFC 4271 §9.1.2.2, RFC 4456 §9) over the
//! candidate paths of one prefix, and the ECMP set of the winner.

use std::cmp::Ordering;

use super::Path;
use crate::wire::Origin;

/// LOCAL_PREF assumed when a path has none (and for eBGP paths).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

fn local_pref(p: &Path) -> u32 {
    if p.ebgp {
        DEFAULT_LOCAL_PREF
    } else {
        p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }
}

fn origin_rank(p: &Path) -> u8 {
    match p.attrs.origin {
        Some(Origin::Igp) => 0,
        Some(Origin::Egp) => 1,
        Some(Origin::Incomplete) | None => 2,
    }
}

fn as_path_len(p: &Path) -> usize {
    p.attrs
        .as_path
        .as_ref()
        .map_or(0, crate::wire::AsPath::length)
}

fn neighbor_as(p: &Path) -> Option<u32> {
    p.attrs
        .as_path
        .as_ref()
        .and_then(crate::wire::AsPath::first_as)
}

/// Steps that decide multipath equality: LOCAL_PREF, AS_PATH length,
/// ORIGIN, MED (same neighbour AS only), eBGP over iBGP.
/// `Less` means `a` is better.
pub fn compare_multipath(a: &Path, b: &Path) -> Ordering {
    local_pref(b)
        .cmp(&local_pref(a))
        .then_with(|| as_path_len(a).cmp(&as_path_len(b)))
        .then_with(|| origin_rank(a).cmp(&origin_rank(b)))
        .then_with(|| {
            if neighbor_as(a) == neighbor_as(b) {
                a.attrs.med.unwrap_or(0).cmp(&b.attrs.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| b.ebgp.cmp(&a.ebgp))
}

/// The full order: multipath steps, then lowest router id (ORIGINATOR_ID
/// for reflected paths), shortest CLUSTER_LIST, lowest peer address.
pub fn compare(a: &Path, b: &Path) -> Ordering {
    compare_multipath(a, b)
        .then_with(|| {
            let id = |p: &Path| p.attrs.originator_id.unwrap_or(p.peer_router_id);
            id(a).cmp(&id(b))
        })
        .then_with(|| a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()))
        .then_with(|| a.peer_addr.cmp(&b.peer_addr))
}

/// The index of the best path, and the indices of the paths that tie
/// with it on the multipath steps (the best included, best first, the
/// others in decision order), `max_paths` of them at most (at least one).
pub fn select(paths: &[Path], max_paths: usize) -> Option<(usize, Vec<usize>)> {
    let best = (0..paths.len()).min_by(|i, j| compare(&paths[*i], &paths[*j]))?;
    let mut ties: Vec<usize> = (0..paths.len())
        .filter(|i| *i != best && compare_multipath(&paths[*i], &paths[best]) == Ordering::Equal)
        .collect();
    ties.sort_by(|i, j| compare(&paths[*i], &paths[*j]));
    ties.truncate(max_paths.saturating_sub(1));
    let mut multi = Vec::with_capacity(ties.len() + 1);
    multi.push(best);
    multi.extend(ties);
    Some((best, multi))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::rib::{PeerKey, Route};
    use crate::wire::{AsPath, PathAttrs, Segment, SegmentKind};

    fn path(peer: u8, f: impl FnOnce(&mut PathAttrs, &mut Route)) -> Path {
        let mut attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath(vec![Segment {
                kind: SegmentKind::Sequence,
                asns: vec![65001],
            }])),
            ..PathAttrs::default()
        };
        let mut r = Route {
            peer: PeerKey(u32::from(peer)),
            attrs: PathAttrs::default(),
            next_hop: IpAddr::V4(Ipv4Addr::new(192, 0, 2, peer)),
            ebgp: false,
            peer_router_id: Ipv4Addr::new(10, 0, 0, peer),
            stale: false,
            peer_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, peer)),
        };
        f(&mut attrs, &mut r);
        r.attrs = attrs;
        Path::new(Arc::new(r))
    }

    fn seq(asns: &[u32]) -> Option<AsPath> {
        Some(AsPath(vec![Segment {
            kind: SegmentKind::Sequence,
            asns: asns.to_vec(),
        }]))
    }

    /// (description, candidates, expected best index, expected ECMP set)
    #[test]
    fn decision_table() {
        let cases: Vec<(&str, Vec<Path>, usize, Vec<usize>)> = vec![
            (
                "higher LOCAL_PREF wins",
                vec![
                    path(1, |a, _| a.local_pref = Some(100)),
                    path(2, |a, _| a.local_pref = Some(200)),
                ],
                1,
                vec![1],
            ),
            (
                "missing LOCAL_PREF counts as 100",
                vec![path(1, |a, _| a.local_pref = Some(99)), path(2, |_, _| {})],
                1,
                vec![1],
            ),
            (
                "eBGP LOCAL_PREF is ignored",
                vec![
                    path(1, |a, p| {
                        a.local_pref = Some(500);
                        p.ebgp = true;
                    }),
                    path(2, |a, _| a.local_pref = Some(150)),
                ],
                1,
                vec![1],
            ),
            (
                "shorter AS_PATH wins",
                vec![
                    path(1, |a, _| a.as_path = seq(&[65001, 65002])),
                    path(2, |_, _| {}),
                ],
                1,
                vec![1],
            ),
            (
                "an AS_SET counts as one",
                vec![
                    path(1, |a, _| {
                        a.as_path = Some(AsPath(vec![Segment {
                            kind: SegmentKind::Set,
                            asns: vec![1, 2, 3, 4],
                        }]));
                    }),
                    path(2, |a, _| a.as_path = seq(&[7, 8])),
                ],
                0,
                vec![0],
            ),
            (
                "lower ORIGIN wins",
                vec![
                    path(1, |a, _| a.origin = Some(Origin::Incomplete)),
                    path(2, |a, _| a.origin = Some(Origin::Egp)),
                ],
                1,
                vec![1],
            ),
            (
                "lower MED wins from the same neighbour AS",
                vec![
                    path(1, |a, _| a.med = Some(20)),
                    path(2, |a, _| a.med = Some(10)),
                ],
                1,
                vec![1],
            ),
            (
                "MED is not compared across neighbour ASes",
                vec![
                    path(1, |a, _| {
                        a.med = Some(20);
                        a.as_path = seq(&[65009]);
                    }),
                    path(2, |a, _| a.med = Some(10)),
                ],
                0,
                vec![0, 1],
            ),
            (
                "eBGP over iBGP",
                vec![path(1, |_, _| {}), path(2, |_, p| p.ebgp = true)],
                1,
                vec![1],
            ),
            (
                "lowest router id breaks ties; both are ECMP",
                vec![path(3, |_, _| {}), path(2, |_, _| {}), path(4, |_, _| {})],
                1,
                vec![1, 0, 2],
            ),
            (
                "ties come in decision order",
                vec![path(4, |_, _| {}), path(2, |_, _| {}), path(3, |_, _| {})],
                1,
                vec![1, 2, 0],
            ),
            (
                "ORIGINATOR_ID stands in for the router id",
                vec![
                    path(1, |a, _| a.originator_id = Some(Ipv4Addr::new(10, 9, 9, 9))),
                    path(2, |_, _| {}),
                ],
                1,
                vec![1, 0],
            ),
            (
                "shorter CLUSTER_LIST next",
                vec![
                    path(1, |a, _| {
                        a.originator_id = Some(Ipv4Addr::new(10, 0, 0, 7));
                        a.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)];
                    }),
                    path(2, |a, _| {
                        a.originator_id = Some(Ipv4Addr::new(10, 0, 0, 7));
                        a.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1)];
                    }),
                ],
                1,
                vec![1, 0],
            ),
            (
                "lowest peer address last",
                vec![
                    path(1, |_, p| {
                        p.peer_router_id = Ipv4Addr::new(10, 0, 0, 5);
                        p.peer_addr = "192.0.2.9".parse().unwrap();
                    }),
                    path(2, |_, p| {
                        p.peer_router_id = Ipv4Addr::new(10, 0, 0, 5);
                        p.peer_addr = "192.0.2.3".parse().unwrap();
                    }),
                ],
                1,
                vec![1, 0],
            ),
        ];
        for (what, paths, best, multi) in cases {
            assert_eq!(select(&paths, 16), Some((best, multi)), "{what}");
        }
        assert_eq!(select(&[], 16), None);
    }

    #[test]
    fn max_paths_keeps_the_best_of_the_ties() {
        let paths: Vec<Path> = (1..=20).rev().map(|i| path(i, |_, _| {})).collect();
        // Path i sits at index 20 - i; router ids 10.0.0.1..20 decide.
        let (best, multi) = select(&paths, 16).unwrap();
        assert_eq!(best, 19);
        assert_eq!(multi, (4..20).rev().collect::<Vec<_>>());
        assert_eq!(select(&paths, 1), Some((19, vec![19])));
        assert_eq!(select(&paths, 0), Some((19, vec![19])));
    }
}
