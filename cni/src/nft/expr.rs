//! nf_tables rule expressions: the small subset weft's rule sets use, as data,
//! and their netlink encoding.

use super::nla::MsgBuf;

/// The verdict register.
pub const REG_VERDICT: u32 = 0;
/// First 32-bit data register (`NFT_REG32_00`); concatenations use the
/// following ones, one per 4 bytes.
pub const REG32_00: u32 = 8;

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `jump <chain>`.
    Jump(String),
    /// `goto <chain>`.
    Goto(String),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Self::Drop => 0,
            Self::Accept => 1,
            Self::Jump(_) => -3,
            Self::Goto(_) => -4,
            Self::Return => -5,
        }
    }

    /// Encodes as `NFTA_DATA_VERDICT` inside the currently open data nest.
    pub(crate) fn encode(&self, m: &mut MsgBuf) {
        m.nest(2); // NFTA_DATA_VERDICT
        m.put(1, &self.code().to_be_bytes()); // NFTA_VERDICT_CODE
        if let Self::Jump(c) | Self::Goto(c) = self {
            m.put_str(2, c); // NFTA_VERDICT_CHAIN
        }
        m.nest_end();
    }
}

/// `meta` keys used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Packet mark.
    Mark = 3,
    /// Input interface index.
    Iif = 4,
    /// Input interface name (16 bytes, NUL padded).
    IifName = 6,
    /// Netfilter protocol family (inet tables).
    NfProto = 15,
    /// Layer 4 protocol number.
    L4Proto = 16,
}

/// Payload bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Link layer header.
    Link = 0,
    /// Network header.
    Network = 1,
    /// Transport header.
    Transport = 2,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq = 0,
    /// `!=`.
    Neq = 1,
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load a meta key into a register.
    Meta {
        /// The key.
        key: MetaKey,
        /// Destination register.
        dreg: u32,
    },
    /// Store a register into the packet mark.
    SetMark {
        /// Source register.
        sreg: u32,
    },
    /// Load packet bytes into a register.
    Payload {
        /// Header base.
        base: Base,
        /// Offset in the header.
        offset: u32,
        /// Length in bytes.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// Compare a register with constant data; a mismatch ends the rule.
    Cmp {
        /// Source register.
        sreg: u32,
        /// Operator.
        op: CmpOp,
        /// Constant.
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// Mask (length is the operand length).
        mask: Vec<u8>,
        /// Xor value (same length as mask).
        xor: Vec<u8>,
    },
    /// Set or map lookup; with `dreg` the mapped data is loaded (a verdict for
    /// vmaps when `dreg` is the verdict register).
    Lookup {
        /// Set name.
        set: String,
        /// Source register holding the key.
        sreg: u32,
        /// Destination register for maps.
        dreg: Option<u32>,
        /// Match when the key is absent.
        invert: bool,
    },
    /// Immediate verdict.
    Verdict(Verdict),
    /// Load constant data into a register.
    Imm {
        /// Destination register.
        dreg: u32,
        /// Data.
        data: Vec<u8>,
    },
    /// Destination NAT to the address (and port) held in registers.
    Dnat {
        /// `NFPROTO_IPV4` or `NFPROTO_IPV6`.
        family: u8,
        /// Register with the address.
        addr_reg: u32,
        /// Register with the port (first two bytes).
        port_reg: Option<u32>,
    },
    /// Masquerade.
    Masquerade,
    /// `fib daddr type` into a register.
    FibDaddrType {
        /// Destination register.
        dreg: u32,
    },
    /// `ct status` into a register.
    CtStatus {
        /// Destination register.
        dreg: u32,
    },
}

impl Expr {
    /// Encodes one `NFTA_LIST_ELEM` inside an open `NFTA_RULE_EXPRESSIONS`.
    pub(crate) fn encode(&self, m: &mut MsgBuf) {
        m.nest(1); // NFTA_LIST_ELEM
        m.put_str(1, self.name()); // NFTA_EXPR_NAME
        m.nest(2); // NFTA_EXPR_DATA
        match self {
            Self::Meta { key, dreg } => {
                m.put_be32(1, *dreg);
                m.put_be32(2, *key as u32);
            }
            Self::SetMark { sreg } => {
                m.put_be32(2, MetaKey::Mark as u32);
                m.put_be32(3, *sreg);
            }
            Self::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                m.put_be32(1, *dreg);
                m.put_be32(2, *base as u32);
                m.put_be32(3, *offset);
                m.put_be32(4, *len);
            }
            Self::Cmp { sreg, op, data } => {
                m.put_be32(1, *sreg);
                m.put_be32(2, *op as u32);
                m.nest(3);
                m.put(1, data); // NFTA_DATA_VALUE
                m.nest_end();
            }
            Self::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                m.put_be32(1, *sreg);
                m.put_be32(2, *dreg);
                m.put_be32(3, u32::try_from(mask.len()).unwrap_or(0));
                m.nest(4);
                m.put(1, mask);
                m.nest_end();
                m.nest(5);
                m.put(1, xor);
                m.nest_end();
            }
            Self::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                m.put_str(1, set);
                m.put_be32(2, *sreg);
                if let Some(d) = dreg {
                    m.put_be32(3, *d);
                }
                if *invert {
                    m.put_be32(5, 1); // NFT_LOOKUP_F_INV
                }
            }
            Self::Verdict(v) => {
                m.put_be32(1, REG_VERDICT);
                m.nest(2); // NFTA_IMMEDIATE_DATA
                v.encode(m);
                m.nest_end();
            }
            Self::Dnat {
                family,
                addr_reg,
                port_reg,
            } => {
                m.put_be32(1, 1); // NFT_NAT_DNAT
                m.put_be32(2, u32::from(*family));
                m.put_be32(3, *addr_reg);
                if let Some(p) = port_reg {
                    m.put_be32(5, *p);
                }
            }
            Self::Imm { dreg, data } => {
                m.put_be32(1, *dreg);
                m.nest(2);
                m.put(1, data);
                m.nest_end();
            }
            Self::Masquerade => {}
            Self::FibDaddrType { dreg } => {
                m.put_be32(1, *dreg);
                m.put_be32(2, 3); // NFT_FIB_RESULT_ADDRTYPE
                m.put_be32(3, 1 << 1); // NFTA_FIB_F_DADDR
            }
            Self::CtStatus { dreg } => {
                m.put_be32(1, *dreg);
                m.put_be32(2, 2); // NFT_CT_STATUS
            }
        }
        m.nest_end();
        m.nest_end();
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Meta { .. } | Self::SetMark { .. } => "meta",
            Self::Payload { .. } => "payload",
            Self::Cmp { .. } => "cmp",
            Self::Bitwise { .. } => "bitwise",
            Self::Lookup { .. } => "lookup",
            Self::Verdict(_) | Self::Imm { .. } => "immediate",
            Self::Dnat { .. } => "nat",
            Self::Masquerade => "masq",
            Self::FibDaddrType { .. } => "fib",
            Self::CtStatus { .. } => "ct",
        }
    }
}

/// Netfilter protocol family numbers as used by `meta nfproto` and nat.
pub const NFPROTO_IPV4: u8 = 2;
/// See [`NFPROTO_IPV4`].
pub const NFPROTO_IPV6: u8 = 10;

/// Expressions matching the IP family in an inet table.
pub fn match_nfproto(v6: bool) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG32_00,
        },
        Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Eq,
            data: vec![if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }],
        },
    ]
}

/// Offset and length of the source (or destination) address in the IP header.
pub fn addr_field(v6: bool, dst: bool) -> (u32, u32) {
    match (v6, dst) {
        (false, false) => (12, 4),
        (false, true) => (16, 4),
        (true, false) => (8, 16),
        (true, true) => (24, 16),
    }
}

/// Expressions matching `ip[6] saddr|daddr [!=] addr/prefix`.
pub fn match_prefix(addr: std::net::IpAddr, prefix: u8, dst: bool, negate: bool) -> Vec<Expr> {
    let v6 = addr.is_ipv6();
    let (offset, len) = addr_field(v6, dst);
    let bytes = ip_bytes(addr);
    let mask = prefix_mask(len as usize, prefix);
    let net: Vec<u8> = bytes.iter().zip(&mask).map(|(a, m)| a & m).collect();
    let mut out = vec![Expr::Payload {
        base: Base::Network,
        offset,
        len,
        dreg: REG32_00,
    }];
    if usize::from(prefix) < len as usize * 8 {
        out.push(Expr::Bitwise {
            sreg: REG32_00,
            dreg: REG32_00,
            mask,
            xor: vec![0; len as usize],
        });
    }
    out.push(Expr::Cmp {
        sreg: REG32_00,
        op: if negate { CmpOp::Neq } else { CmpOp::Eq },
        data: net,
    });
    out
}

/// The bytes of an IP address.
pub fn ip_bytes(addr: std::net::IpAddr) -> Vec<u8> {
    match addr {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A network mask of `len` bytes with `prefix` leading ones.
pub fn prefix_mask(len: usize, prefix: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut left = usize::from(prefix).min(len * 8);
    for b in &mut out {
        let n = left.min(8);
        *b = if n == 0 { 0 } else { 0xffu8 << (8 - n) };
        left -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(4, 0), vec![0, 0, 0, 0]);
        assert_eq!(prefix_mask(4, 12), vec![255, 240, 0, 0]);
        assert_eq!(prefix_mask(4, 32), vec![255; 4]);
    }

    #[test]
    fn prefix_match_masks_host_bits() {
        let e = match_prefix("10.1.2.3".parse().unwrap(), 16, true, false);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            Expr::Payload {
                base: Base::Network,
                offset: 16,
                len: 4,
                dreg: REG32_00
            }
        );
        assert_eq!(
            e[2],
            Expr::Cmp {
                sreg: REG32_00,
                op: CmpOp::Eq,
                data: vec![10, 1, 0, 0]
            }
        );
        // a full-length prefix needs no bitwise
        assert_eq!(
            match_prefix("fd00::1".parse().unwrap(), 128, false, true).len(),
            2
        );
    }
}
