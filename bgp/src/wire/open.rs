//! OPEN and its capabilities (RFC 4271 §4.2, RFC 5492, RFC 9072).

use std::net::Ipv4Addr;

use super::decode::Reader;
use super::{Capability, DecodeError, Family, GracefulRestart, Open};

pub(super) fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let mut r = Reader::new(body);
    let (Some(version), Some(my_as), Some(hold_time), Some(router_id), Some(opt_len)) =
        (r.u8(), r.u16(), r.u16(), r.ipv4(), r.u8())
    else {
        return Err(DecodeError::MalformedOpen);
    };
    if version != 4 {
        return Err(DecodeError::BadVersion(version));
    }
    if router_id == Ipv4Addr::UNSPECIFIED {
        return Err(DecodeError::BadIdentifier);
    }
    // RFC 9072 extended optional parameters: 255, then type 255, then a
    // 2-byte length, and 2-byte parameter lengths.
    let extended = opt_len == 255 && r.rest_peek_first() == Some(255);
    let params = if extended {
        r.u8();
        let l = r.u16().ok_or(DecodeError::MalformedOpen)?;
        r.take(usize::from(l)).ok_or(DecodeError::MalformedOpen)?
    } else {
        r.take(usize::from(opt_len))
            .ok_or(DecodeError::MalformedOpen)?
    };
    if !r.is_empty() {
        return Err(DecodeError::MalformedOpen);
    }
    let mut caps = Vec::new();
    let mut p = Reader::new(params);
    while !p.is_empty() {
        let ty = p.u8().ok_or(DecodeError::MalformedOpen)?;
        let len = if extended {
            p.u16()
        } else {
            p.u8().map(u16::from)
        }
        .ok_or(DecodeError::MalformedOpen)?;
        let val = p.take(usize::from(len)).ok_or(DecodeError::MalformedOpen)?;
        if ty != 2 {
            return Err(DecodeError::UnsupportedParam(ty));
        }
        let mut c = Reader::new(val);
        while !c.is_empty() {
            let code = c.u8().ok_or(DecodeError::MalformedOpen)?;
            let clen = c.u8().ok_or(DecodeError::MalformedOpen)?;
            let data = c
                .take(usize::from(clen))
                .ok_or(DecodeError::MalformedOpen)?;
            caps.push(decode_capability(code, data)?);
        }
    }
    let asn = caps
        .iter()
        .find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
        .unwrap_or(u32::from(my_as));
    Ok(Open {
        asn,
        hold_time,
        router_id,
        caps,
    })
}

impl Reader<'_> {
    fn rest_peek_first(&self) -> Option<u8> {
        let mut c = *self;
        c.u8()
    }
}

fn decode_capability(code: u8, data: &[u8]) -> Result<Capability, DecodeError> {
    let mut r = Reader::new(data);
    let unknown = || Capability::Unknown {
        code,
        data: data.to_vec(),
    };
    Ok(match code {
        1 => {
            let (Some(afi), Some(_), Some(safi), true) = (r.u16(), r.u8(), r.u8(), data.len() == 4)
            else {
                return Err(DecodeError::MalformedOpen);
            };
            Capability::Multiprotocol { afi, safi }
        }
        2 => Capability::RouteRefresh,
        5 => {
            if data.len() % 6 != 0 {
                return Err(DecodeError::MalformedOpen);
            }
            let mut v = Vec::new();
            while let (Some(a), Some(s), Some(n)) = (r.u16(), r.u16(), r.u16()) {
                v.push((a, s, n));
            }
            Capability::ExtendedNextHop(v)
        }
        64 => {
            let Some(head) = r.u16() else {
                return Err(DecodeError::MalformedOpen);
            };
            if r.remaining() % 4 != 0 {
                return Err(DecodeError::MalformedOpen);
            }
            let mut families = Vec::new();
            while let (Some(afi), Some(safi), Some(flags)) = (r.u16(), r.u8(), r.u8()) {
                if let Some(f) = Family::from_afi_safi(afi, safi) {
                    families.push((f, flags & 0x80 != 0));
                }
            }
            Capability::GracefulRestart(GracefulRestart {
                restarting: head & 0x8000 != 0,
                notification: head & 0x4000 != 0,
                restart_time: head & 0x0fff,
                families,
            })
        }
        65 => match (r.u32(), data.len()) {
            (Some(a), 4) => Capability::FourOctetAs(a),
            _ => return Err(DecodeError::MalformedOpen),
        },
        70 => Capability::EnhancedRouteRefresh,
        // FQDN is informational: anything unparsable is kept raw, never fatal.
        73 => {
            let host = r.u8().and_then(|l| r.take(usize::from(l)));
            let domain = r.u8().and_then(|l| r.take(usize::from(l)));
            match (host, domain) {
                (Some(h), d) => Capability::Fqdn {
                    hostname: String::from_utf8_lossy(h).into_owned(),
                    domain: d
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .unwrap_or_default(),
                },
                _ => unknown(),
            }
        }
        _ => unknown(),
    })
}

pub(super) fn encode_capability(c: &Capability, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let code = match c {
        Capability::Multiprotocol { afi, safi } => {
            out.extend_from_slice(&afi.to_be_bytes());
            out.extend_from_slice(&[0, *safi]);
            1
        }
        Capability::RouteRefresh => 2,
        Capability::ExtendedNextHop(v) => {
            for (a, s, n) in v {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&s.to_be_bytes());
                out.extend_from_slice(&n.to_be_bytes());
            }
            5
        }
        Capability::GracefulRestart(g) => {
            let mut head = g.restart_time & 0x0fff;
            if g.restarting {
                head |= 0x8000;
            }
            if g.notification {
                head |= 0x4000;
            }
            out.extend_from_slice(&head.to_be_bytes());
            for (f, fwd) in &g.families {
                out.extend_from_slice(&f.afi().to_be_bytes());
                out.extend_from_slice(&[f.safi(), if *fwd { 0x80 } else { 0 }]);
            }
            64
        }
        Capability::FourOctetAs(a) => {
            out.extend_from_slice(&a.to_be_bytes());
            65
        }
        Capability::EnhancedRouteRefresh => 70,
        Capability::Fqdn { hostname, domain } => {
            for s in [hostname, domain] {
                let b = &s.as_bytes()[..s.len().min(255)];
                out.push(b.len() as u8);
                out.extend_from_slice(b);
            }
            73
        }
        Capability::Unknown { code, data } => {
            out.extend_from_slice(&data[..data.len().min(255)]);
            *code
        }
    };
    let len = out.len() - start - 2;
    out[start] = code;
    // Values are bounded above to fit one byte (at most 255 bytes each).
    out[start + 1] = u8::try_from(len).unwrap_or(u8::MAX);
}
