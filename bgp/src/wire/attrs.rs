//! UPDATE decoding (RFC 4271 §4.3) with the revised error handling of
//! RFC 7606: each malformed attribute gets its RFC verdict (treat-as-withdraw,
//! attribute discard, or a session reset with the right NOTIFICATION).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::decode::Reader;
use super::{
    AsPath, DecodeError, Family, MpNextHop, MpReach, MpUnreach, Origin, PathAttrs, RawAttr,
    Segment, SegmentKind, SessionCaps, Update, Verdict,
};
use crate::prefix::Prefix;

/// Attribute flag bits.
pub(super) const OPTIONAL: u8 = 0x80;
pub(super) const TRANSITIVE: u8 = 0x40;
pub(super) const PARTIAL: u8 = 0x20;
pub(super) const EXTENDED: u8 = 0x10;

/// Attribute type codes.
pub(super) mod code {
    pub(crate) const ORIGIN: u8 = 1;
    pub(crate) const AS_PATH: u8 = 2;
    pub(crate) const NEXT_HOP: u8 = 3;
    pub(crate) const MED: u8 = 4;
    pub(crate) const LOCAL_PREF: u8 = 5;
    pub(crate) const ATOMIC_AGGREGATE: u8 = 6;
    pub(crate) const AGGREGATOR: u8 = 7;
    pub(crate) const COMMUNITIES: u8 = 8;
    pub(crate) const ORIGINATOR_ID: u8 = 9;
    pub(crate) const CLUSTER_LIST: u8 = 10;
    pub(crate) const MP_REACH: u8 = 14;
    pub(crate) const MP_UNREACH: u8 = 15;
    pub(crate) const AS4_PATH: u8 = 17;
    pub(crate) const AS4_AGGREGATOR: u8 = 18;
    pub(crate) const LARGE_COMMUNITY: u8 = 32;
}

/// Parses a run of NLRI prefixes of one family. Any length beyond the
/// address width or a truncated prefix is an error.
pub(super) fn decode_prefixes(buf: &[u8], family: Family) -> Result<Vec<Prefix>, DecodeError> {
    let max = match family {
        Family::Ipv4Unicast => 32,
        Family::Ipv6Unicast => 128,
    };
    let mut r = Reader::new(buf);
    let mut out = Vec::with_capacity(buf.len() / 4);
    while let Some(len) = r.u8() {
        if len > max {
            return Err(DecodeError::InvalidNetwork);
        }
        let bytes = r
            .take(usize::from(len).div_ceil(8))
            .ok_or(DecodeError::InvalidNetwork)?;
        let addr = match family {
            Family::Ipv4Unicast => {
                let mut a = [0u8; 4];
                a[..bytes.len()].copy_from_slice(bytes);
                IpAddr::V4(Ipv4Addr::from(a))
            }
            Family::Ipv6Unicast => {
                let mut a = [0u8; 16];
                a[..bytes.len()].copy_from_slice(bytes);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        };
        out.push(Prefix::new(addr, len).ok_or(DecodeError::InvalidNetwork)?);
    }
    Ok(out)
}

/// Decodes an AS_PATH or AS4_PATH value; `None` when malformed (RFC 7606
/// §7.2: a segment of length 0, an unknown type or an overrun).
fn decode_as_path(buf: &[u8], four: bool) -> Option<AsPath> {
    let mut r = Reader::new(buf);
    let mut segs = Vec::new();
    while !r.is_empty() {
        let kind = match r.u8()? {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return None,
        };
        let n = r.u8()?;
        if n == 0 {
            return None;
        }
        let mut asns = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            asns.push(if four { r.u32()? } else { u32::from(r.u16()?) });
        }
        segs.push(Segment { kind, asns });
    }
    Some(AsPath(segs))
}

/// RFC 6793 §4.2.3: rebuild the 4-octet path from AS_PATH and AS4_PATH.
fn merge_as4(as_path: &AsPath, as4: &AsPath) -> AsPath {
    let (l2, l4) = (count_asns(as_path), count_asns(as4));
    if l4 > l2 {
        return as_path.clone();
    }
    // Keep the leading (l2 - l4) ASNs of AS_PATH, then append AS4_PATH.
    let mut keep = l2 - l4;
    let mut segs = Vec::new();
    for s in &as_path.0 {
        if keep == 0 {
            break;
        }
        let take = s.asns.len().min(keep);
        segs.push(Segment {
            kind: s.kind,
            asns: s.asns[..take].to_vec(),
        });
        keep -= take;
    }
    segs.extend(as4.0.iter().cloned());
    AsPath(segs)
}

fn count_asns(p: &AsPath) -> usize {
    p.0.iter()
        .filter(|s| matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set))
        .map(|s| s.asns.len())
        .sum()
}

/// Expected flags (optional, transitive) of the attributes we know.
fn expected_flags(code: u8) -> Option<u8> {
    Some(match code {
        code::ORIGIN
        | code::AS_PATH
        | code::NEXT_HOP
        | code::LOCAL_PREF
        | code::ATOMIC_AGGREGATE => TRANSITIVE,
        code::MED
        | code::ORIGINATOR_ID
        | code::CLUSTER_LIST
        | code::MP_REACH
        | code::MP_UNREACH => OPTIONAL,
        code::AGGREGATOR
        | code::COMMUNITIES
        | code::AS4_PATH
        | code::AS4_AGGREGATOR
        | code::LARGE_COMMUNITY => OPTIONAL | TRANSITIVE,
        _ => return None,
    })
}

/// What happened to one attribute.
enum Outcome {
    Ok,
    Discard,
    Withdraw,
}

fn decode_mp_next_hop(nh: &[u8], family: Family) -> Option<MpNextHop> {
    let v6 = |b: &[u8]| <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from);
    match (nh.len(), family) {
        (4, Family::Ipv4Unicast) => Some(MpNextHop {
            global: IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(nh).ok()?)),
            link_local: None,
        }),
        (16, _) => Some(MpNextHop {
            global: IpAddr::V6(v6(nh)?),
            link_local: None,
        }),
        (32, _) => Some(MpNextHop {
            global: IpAddr::V6(v6(&nh[..16])?),
            link_local: Some(v6(&nh[16..])?),
        }),
        _ => None,
    }
}

struct State {
    attrs: PathAttrs,
    mp_reach: Option<MpReach>,
    mp_unreach: Option<MpUnreach>,
    as4_path: Option<AsPath>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
    seen: [bool; 256],
    withdraw: bool,
    discard: bool,
    mp_nlri_present: bool,
}

fn decode_attr(
    st: &mut State,
    flags: u8,
    code: u8,
    val: &[u8],
    raw: &[u8],
    caps: &SessionCaps,
) -> Result<Outcome, DecodeError> {
    use Outcome::{Discard, Ok as Good, Withdraw};
    if let Some(exp) = expected_flags(code) {
        if flags & (OPTIONAL | TRANSITIVE) != exp {
            // RFC 7606 §3(c): conflicting flags make the attribute malformed;
            // the MP attributes locate NLRI, so they still reset.
            return match code {
                code::MP_REACH | code::MP_UNREACH => Err(DecodeError::MalformedAttributeList),
                code::ATOMIC_AGGREGATE
                | code::AGGREGATOR
                | code::AS4_PATH
                | code::AS4_AGGREGATOR => Ok(Discard),
                _ => Ok(Withdraw),
            };
        }
    }
    let mut r = Reader::new(val);
    let n = val.len();
    let a = &mut st.attrs;
    Ok(match code {
        code::ORIGIN => match (n, val.first()) {
            (1, Some(0)) => {
                a.origin = Some(Origin::Igp);
                Good
            }
            (1, Some(1)) => {
                a.origin = Some(Origin::Egp);
                Good
            }
            (1, Some(2)) => {
                a.origin = Some(Origin::Incomplete);
                Good
            }
            _ => Withdraw,
        },
        code::AS_PATH => match decode_as_path(val, caps.four_octet_as) {
            Some(p) => {
                a.as_path = Some(p);
                Good
            }
            None => Withdraw,
        },
        code::NEXT_HOP => match (n, r.ipv4()) {
            (4, Some(nh)) if !nh.is_unspecified() && !nh.is_broadcast() && !nh.is_multicast() => {
                a.next_hop = Some(nh);
                Good
            }
            _ => Withdraw,
        },
        code::MED => match (n, r.u32()) {
            (4, Some(v)) => {
                a.med = Some(v);
                Good
            }
            _ => Withdraw,
        },
        code::LOCAL_PREF => match (n, r.u32()) {
            (4, Some(v)) => {
                a.local_pref = Some(v);
                Good
            }
            _ => Withdraw,
        },
        code::ATOMIC_AGGREGATE => {
            if n == 0 {
                a.atomic_aggregate = true;
                Good
            } else {
                Discard
            }
        }
        code::AGGREGATOR => {
            let v = if caps.four_octet_as && n == 8 {
                r.u32().zip(r.ipv4())
            } else if !caps.four_octet_as && n == 6 {
                r.u16().map(u32::from).zip(r.ipv4())
            } else {
                None
            };
            match v {
                Some(v) => {
                    a.aggregator = Some(v);
                    Good
                }
                None => Discard,
            }
        }
        code::COMMUNITIES => {
            if n == 0 || n % 4 != 0 {
                Withdraw
            } else {
                while let Some(c) = r.u32() {
                    a.communities.push(c);
                }
                Good
            }
        }
        code::ORIGINATOR_ID => match (n, r.ipv4()) {
            (4, Some(id)) => {
                a.originator_id = Some(id);
                Good
            }
            _ => Withdraw,
        },
        code::CLUSTER_LIST => {
            if n == 0 || n % 4 != 0 {
                Withdraw
            } else {
                while let Some(c) = r.ipv4() {
                    a.cluster_list.push(c);
                }
                Good
            }
        }
        code::LARGE_COMMUNITY => {
            if n == 0 || n % 12 != 0 {
                Withdraw
            } else {
                while let (Some(x), Some(y), Some(z)) = (r.u32(), r.u32(), r.u32()) {
                    a.large_communities.push([x, y, z]);
                }
                Good
            }
        }
        code::AS4_PATH => {
            if caps.four_octet_as {
                // RFC 6793 §6: ignored on a 4-octet session.
                Discard
            } else {
                match decode_as_path(val, true) {
                    Some(p)
                        if p.0.iter().all(|s| {
                            matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set)
                        }) =>
                    {
                        st.as4_path = Some(p);
                        Good
                    }
                    _ => Discard,
                }
            }
        }
        code::AS4_AGGREGATOR => match (caps.four_octet_as, n, r.u32().zip(r.ipv4())) {
            (false, 8, Some(v)) => {
                st.as4_aggregator = Some(v);
                Good
            }
            _ => Discard,
        },
        code::MP_REACH => {
            let (Some(afi), Some(safi), Some(nhl)) = (r.u16(), r.u8(), r.u8()) else {
                return Err(DecodeError::MalformedAttributeList);
            };
            let nh = r
                .take(usize::from(nhl))
                .ok_or(DecodeError::MalformedAttributeList)?;
            r.u8().ok_or(DecodeError::MalformedAttributeList)?; // reserved
            let Some(family) = Family::from_afi_safi(afi, safi) else {
                // A family we never negotiated: ignore the attribute.
                return Ok(Discard);
            };
            let nlri = decode_prefixes(r.rest(), family)?;
            st.mp_nlri_present |= !nlri.is_empty();
            match decode_mp_next_hop(nh, family) {
                Some(next_hop) => {
                    st.mp_reach = Some(MpReach {
                        family,
                        next_hop,
                        nlri,
                    });
                    Good
                }
                None => {
                    // RFC 7606 §7.11: bad next hop length: treat-as-withdraw.
                    let unspecified = MpNextHop {
                        global: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        link_local: None,
                    };
                    st.mp_reach = Some(MpReach {
                        family,
                        next_hop: unspecified,
                        nlri,
                    });
                    Withdraw
                }
            }
        }
        code::MP_UNREACH => {
            let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
                return Err(DecodeError::MalformedAttributeList);
            };
            let Some(family) = Family::from_afi_safi(afi, safi) else {
                return Ok(Discard);
            };
            let withdrawn = decode_prefixes(r.rest(), family)?;
            st.mp_unreach = Some(MpUnreach { family, withdrawn });
            Good
        }
        _ => {
            if flags & OPTIONAL == 0 {
                return Err(DecodeError::UnrecognizedWellKnown {
                    code,
                    attr: raw.to_vec(),
                });
            }
            if flags & TRANSITIVE != 0 {
                a.other.push(RawAttr {
                    flags: flags & !EXTENDED,
                    code,
                    data: val.to_vec(),
                });
            }
            Good
        }
    })
}

pub(super) fn decode_update(body: &[u8], caps: &SessionCaps) -> Result<Update, DecodeError> {
    let mut r = Reader::new(body);
    let wlen = r.u16().ok_or(DecodeError::MalformedAttributeList)?;
    let wbuf = r
        .take(usize::from(wlen))
        .ok_or(DecodeError::MalformedAttributeList)?;
    let alen = r.u16().ok_or(DecodeError::MalformedAttributeList)?;
    let abuf = r
        .take(usize::from(alen))
        .ok_or(DecodeError::MalformedAttributeList)?;
    let withdrawn = decode_prefixes(wbuf, Family::Ipv4Unicast)?;
    let nlri = decode_prefixes(r.rest(), Family::Ipv4Unicast)?;

    let mut st = State {
        attrs: PathAttrs::default(),
        mp_reach: None,
        mp_unreach: None,
        as4_path: None,
        as4_aggregator: None,
        seen: [false; 256],
        withdraw: false,
        discard: false,
        mp_nlri_present: false,
    };
    let mut a = Reader::new(abuf);
    while !a.is_empty() {
        let start = abuf.len() - a.remaining();
        let (Some(flags), Some(code)) = (a.u8(), a.u8()) else {
            // RFC 7606 §4: attribute block does not fit: treat-as-withdraw.
            st.withdraw = true;
            break;
        };
        let len = if flags & EXTENDED != 0 {
            a.u16()
        } else {
            a.u8().map(u16::from)
        };
        let Some(val) = len.and_then(|l| a.take(usize::from(l))) else {
            st.withdraw = true;
            break;
        };
        let raw = &abuf[start..abuf.len() - a.remaining()];
        if st.seen[usize::from(code)] {
            // RFC 7606 §3(g): repeated MP attributes reset, others: keep first.
            if code == code::MP_REACH || code == code::MP_UNREACH {
                return Err(DecodeError::MalformedAttributeList);
            }
            st.discard = true;
            continue;
        }
        st.seen[usize::from(code)] = true;
        match decode_attr(&mut st, flags, code, val, raw, caps)? {
            Outcome::Ok => {}
            Outcome::Discard => st.discard = true,
            Outcome::Withdraw => st.withdraw = true,
        }
    }

    if let (Some(p), Some(p4)) = (&st.attrs.as_path, &st.as4_path) {
        st.attrs.as_path = Some(merge_as4(p, p4));
    }
    if let (Some((AS_TRANS_U32, _)), Some(a4)) = (st.attrs.aggregator, st.as4_aggregator) {
        st.attrs.aggregator = Some(a4);
    }
    // RFC 7606 §3(d): a missing well-known mandatory attribute when routes
    // are announced: treat-as-withdraw.
    let announces = !nlri.is_empty() || st.mp_nlri_present;
    if announces
        && (st.attrs.origin.is_none()
            || st.attrs.as_path.is_none()
            || (!nlri.is_empty() && st.attrs.next_hop.is_none()))
    {
        st.withdraw = true;
    }
    let verdict = if st.withdraw {
        Verdict::TreatAsWithdraw
    } else if st.discard {
        Verdict::AttributeDiscard
    } else {
        Verdict::Clean
    };
    Ok(Update {
        withdrawn,
        attrs: st.attrs,
        mp_reach: st.mp_reach,
        mp_unreach: st.mp_unreach,
        nlri,
        verdict,
    })
}

const AS_TRANS_U32: u32 = 23_456;
