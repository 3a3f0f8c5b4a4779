//! Encoding, and packing many prefixes into UPDATEs of at most 4096 bytes.

use std::net::IpAddr;

use super::attrs::{EXTENDED, OPTIONAL, PARTIAL, TRANSITIVE, code};
use super::open::encode_capability;
use super::{
    AS_TRANS, AsPath, Family, HEADER_LEN, MAX_MESSAGE_LEN, Message, MpNextHop, MpReach, MpUnreach,
    Origin, PathAttrs, SegmentKind, SessionCaps, Update,
};
use crate::prefix::Prefix;

fn header(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, kind]);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// Appends one encoded message to `out`. UPDATEs are written as given; use
/// [`pack_updates`] to respect the 4096-byte limit for large prefix sets.
pub fn encode(msg: &Message, caps: &SessionCaps, out: &mut Vec<u8>) {
    match msg {
        Message::Open(o) => {
            let start = header(out, 1);
            out.push(4);
            let my_as = u16::try_from(o.asn).unwrap_or(AS_TRANS);
            out.extend_from_slice(&my_as.to_be_bytes());
            out.extend_from_slice(&o.hold_time.to_be_bytes());
            out.extend_from_slice(&o.router_id.octets());
            let mut caps_buf = Vec::new();
            for c in &o.caps {
                encode_capability(c, &mut caps_buf);
            }
            if caps_buf.is_empty() {
                out.push(0);
            } else if caps_buf.len() + 2 <= 255 {
                out.push((caps_buf.len() + 2) as u8);
                out.extend_from_slice(&[2, caps_buf.len() as u8]);
                out.extend_from_slice(&caps_buf);
            } else {
                // RFC 9072 extended optional parameters.
                out.extend_from_slice(&[255, 255]);
                let l = u16::try_from(caps_buf.len() + 3).unwrap_or(u16::MAX);
                out.extend_from_slice(&l.to_be_bytes());
                out.push(2);
                let cl = u16::try_from(caps_buf.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&cl.to_be_bytes());
                out.extend_from_slice(&caps_buf);
            }
            finish(out, start);
        }
        Message::Update(u) => encode_update(u, caps, out),
        Message::Notification(n) => {
            let start = header(out, 3);
            out.extend_from_slice(&[n.code, n.subcode]);
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
            out.extend_from_slice(&n.data[..n.data.len().min(room)]);
            finish(out, start);
        }
        Message::Keepalive => {
            let start = header(out, 4);
            finish(out, start);
        }
        Message::RouteRefresh(r) => {
            let start = header(out, 5);
            out.extend_from_slice(&r.afi.to_be_bytes());
            out.extend_from_slice(&[r.subtype, r.safi]);
            finish(out, start);
        }
    }
}

fn prefixes(ps: &[Prefix], out: &mut Vec<u8>) {
    for p in ps {
        out.push(p.len());
        let n = p.wire_bytes();
        match p.addr() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
}

fn attr(out: &mut Vec<u8>, flags: u8, code: u8, val: &[u8]) {
    if val.len() > 255 {
        out.extend_from_slice(&[flags | EXTENDED, code]);
        out.extend_from_slice(&u16::try_from(val.len()).unwrap_or(u16::MAX).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags & !EXTENDED, code, val.len() as u8]);
    }
    out.extend_from_slice(val);
}

fn as_path_value(p: &AsPath, four: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for s in &p.0 {
        let kind = match s.kind {
            SegmentKind::Set => 1,
            SegmentKind::Sequence => 2,
            SegmentKind::ConfedSequence => 3,
            SegmentKind::ConfedSet => 4,
        };
        for chunk in s.asns.chunks(255) {
            v.push(kind);
            v.push(chunk.len() as u8);
            for a in chunk {
                if four {
                    v.extend_from_slice(&a.to_be_bytes());
                } else {
                    v.extend_from_slice(&u16::try_from(*a).unwrap_or(AS_TRANS).to_be_bytes());
                }
            }
        }
    }
    v
}

fn mp_next_hop(nh: &MpNextHop, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(0);
    match nh.global {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            out.extend_from_slice(&a.octets());
            if let Some(ll) = nh.link_local {
                out.extend_from_slice(&ll.octets());
            }
        }
    }
    out[start] = (out.len() - start - 1) as u8;
}

fn mp_reach_head(r: &MpReach, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.family.afi().to_be_bytes());
    out.push(r.family.safi());
    mp_next_hop(&r.next_hop, out);
    out.push(0);
}

/// Encodes path attributes in type-code order, MP attributes included.
fn encode_attrs(
    a: &PathAttrs,
    mp_reach: Option<&MpReach>,
    mp_unreach: Option<&MpUnreach>,
    caps: &SessionCaps,
    out: &mut Vec<u8>,
) {
    if let Some(o) = a.origin {
        let v = match o {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        };
        attr(out, TRANSITIVE, code::ORIGIN, &[v]);
    }
    let mut as4 = None;
    if let Some(p) = &a.as_path {
        attr(
            out,
            TRANSITIVE,
            code::AS_PATH,
            &as_path_value(p, caps.four_octet_as),
        );
        if !caps.four_octet_as && p.0.iter().any(|s| s.asns.iter().any(|x| *x > 0xffff)) {
            as4 = Some(as_path_value(p, true));
        }
    }
    if let Some(nh) = a.next_hop {
        attr(out, TRANSITIVE, code::NEXT_HOP, &nh.octets());
    }
    if let Some(m) = a.med {
        attr(out, OPTIONAL, code::MED, &m.to_be_bytes());
    }
    if let Some(l) = a.local_pref {
        attr(out, TRANSITIVE, code::LOCAL_PREF, &l.to_be_bytes());
    }
    if a.atomic_aggregate {
        attr(out, TRANSITIVE, code::ATOMIC_AGGREGATE, &[]);
    }
    let mut as4_agg = None;
    if let Some((asn, addr)) = a.aggregator {
        let mut v = Vec::with_capacity(8);
        if caps.four_octet_as {
            v.extend_from_slice(&asn.to_be_bytes());
        } else {
            v.extend_from_slice(&u16::try_from(asn).unwrap_or(AS_TRANS).to_be_bytes());
            if asn > 0xffff {
                let mut w = asn.to_be_bytes().to_vec();
                w.extend_from_slice(&addr.octets());
                as4_agg = Some(w);
            }
        }
        v.extend_from_slice(&addr.octets());
        attr(out, OPTIONAL | TRANSITIVE, code::AGGREGATOR, &v);
    }
    if !a.communities.is_empty() {
        let v: Vec<u8> = a.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
        attr(out, OPTIONAL | TRANSITIVE, code::COMMUNITIES, &v);
    }
    if let Some(id) = a.originator_id {
        attr(out, OPTIONAL, code::ORIGINATOR_ID, &id.octets());
    }
    if !a.cluster_list.is_empty() {
        let v: Vec<u8> = a
            .cluster_list
            .iter()
            .flat_map(std::net::Ipv4Addr::octets)
            .collect();
        attr(out, OPTIONAL, code::CLUSTER_LIST, &v);
    }
    if let Some(r) = mp_reach {
        let mut v = Vec::new();
        mp_reach_head(r, &mut v);
        prefixes(&r.nlri, &mut v);
        attr(out, OPTIONAL, code::MP_REACH, &v);
    }
    if let Some(u) = mp_unreach {
        let mut v = Vec::new();
        v.extend_from_slice(&u.family.afi().to_be_bytes());
        v.push(u.family.safi());
        prefixes(&u.withdrawn, &mut v);
        attr(out, OPTIONAL, code::MP_UNREACH, &v);
    }
    if let Some(v) = as4 {
        attr(out, OPTIONAL | TRANSITIVE, code::AS4_PATH, &v);
    }
    if let Some(v) = as4_agg {
        attr(out, OPTIONAL | TRANSITIVE, code::AS4_AGGREGATOR, &v);
    }
    if !a.large_communities.is_empty() {
        let v: Vec<u8> = a
            .large_communities
            .iter()
            .flatten()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        attr(out, OPTIONAL | TRANSITIVE, code::LARGE_COMMUNITY, &v);
    }
    for o in &a.other {
        // Passing on an optional transitive attribute we do not know sets
        // its Partial bit (RFC 4271 §5).
        attr(out, o.flags | PARTIAL, o.code, &o.data);
    }
}

fn encode_update(u: &Update, caps: &SessionCaps, out: &mut Vec<u8>) {
    let start = header(out, 2);
    let mut w = Vec::new();
    prefixes(&u.withdrawn, &mut w);
    out.extend_from_slice(&u16::try_from(w.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&w);
    let mut a = Vec::new();
    encode_attrs(
        &u.attrs,
        u.mp_reach.as_ref(),
        u.mp_unreach.as_ref(),
        caps,
        &mut a,
    );
    out.extend_from_slice(&u16::try_from(a.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&a);
    prefixes(&u.nlri, out);
    finish(out, start);
}

/// Takes as many prefixes from the front of `ps` as fit in `room` bytes.
fn split_fit(ps: &[Prefix], room: usize) -> usize {
    let mut used = 0;
    for (i, p) in ps.iter().enumerate() {
        used += 1 + p.wire_bytes();
        if used > room {
            return i;
        }
    }
    ps.len()
}

/// Encodes UPDATEs announcing `prefixes` (one family) with `attrs` and
/// `next_hop`, each message at most 4096 bytes. IPv4 prefixes with an IPv4
/// next hop go in the NLRI field; everything else in MP_REACH_NLRI.
pub fn pack_updates(
    attrs: &PathAttrs,
    next_hop: MpNextHop,
    prefixes_in: &[Prefix],
    caps: &SessionCaps,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(first) = prefixes_in.first() else {
        return out;
    };
    let family = Family::of(first);
    let legacy = family == Family::Ipv4Unicast && next_hop.global.is_ipv4();
    let mut attrs = attrs.clone();
    if legacy {
        if let IpAddr::V4(a) = next_hop.global {
            attrs.next_hop = Some(a);
        }
    } else {
        attrs.next_hop = None;
    }
    let template = MpReach {
        family,
        next_hop,
        nlri: Vec::new(),
    };
    let mut fixed = Vec::new();
    encode_attrs(
        &attrs,
        (!legacy).then_some(&template),
        None,
        caps,
        &mut fixed,
    );
    // Header + withdrawn length + attribute length, plus the MP_REACH
    // attribute header growing to its 2-byte extended length form.
    let overhead = HEADER_LEN + 4 + fixed.len() + usize::from(!legacy);
    let room = MAX_MESSAGE_LEN.saturating_sub(overhead).max(32);
    let mut rest = prefixes_in;
    while !rest.is_empty() {
        let n = split_fit(rest, room).max(1);
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        let mut u = Update {
            attrs: attrs.clone(),
            ..Update::default()
        };
        if legacy {
            u.nlri = chunk.to_vec();
        } else {
            u.mp_reach = Some(MpReach {
                nlri: chunk.to_vec(),
                ..template.clone()
            });
        }
        let mut buf = Vec::with_capacity(MAX_MESSAGE_LEN);
        encode_update(&u, caps, &mut buf);
        out.push(buf);
    }
    out
}

/// Encodes UPDATEs withdrawing `prefixes` (IPv4 in the withdrawn field, IPv6
/// in MP_UNREACH_NLRI), each at most 4096 bytes.
pub fn pack_withdraws(prefixes_in: &[Prefix], caps: &SessionCaps) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (v4, v6): (Vec<Prefix>, Vec<Prefix>) = prefixes_in.iter().partition(|p| p.is_ipv4());
    let room4 = MAX_MESSAGE_LEN - HEADER_LEN - 4;
    for chunk in chunks_fit(&v4, room4) {
        let u = Update {
            withdrawn: chunk.to_vec(),
            ..Update::default()
        };
        let mut buf = Vec::new();
        encode_update(&u, caps, &mut buf);
        out.push(buf);
    }
    let room6 = MAX_MESSAGE_LEN - HEADER_LEN - 4 - 4 - 3;
    for chunk in chunks_fit(&v6, room6) {
        let u = Update {
            mp_unreach: Some(MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn: chunk.to_vec(),
            }),
            ..Update::default()
        };
        let mut buf = Vec::new();
        encode_update(&u, caps, &mut buf);
        out.push(buf);
    }
    out
}

fn chunks_fit(ps: &[Prefix], room: usize) -> Vec<&[Prefix]> {
    let mut v = Vec::new();
    let mut rest = ps;
    while !rest.is_empty() {
        let n = split_fit(rest, room).max(1);
        let (c, t) = rest.split_at(n);
        v.push(c);
        rest = t;
    }
    v
}
