//! WireGuard keys as text: the base64 form `wg genkey` / `wg pubkey`
//! write (32 bytes, 44 characters), parsing, printing and a constant-time
//! comparison. Pure; the key file on disk is the dataplane's
//! (`dataplane::wireguard::key_file`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A WireGuard public key (Curve25519 point).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// Why a key text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    /// Not base64.
    #[error("not base64")]
    NotBase64,
    /// Base64, but not 32 bytes.
    #[error("{0} bytes, a WireGuard key has 32")]
    Length(usize),
}

/// Decodes a base64 key (surrounding whitespace ignored).
pub fn decode(text: &str) -> Result<[u8; 32], KeyTextError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyTextError::NotBase64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyTextError::Length(bytes.len()))
}

/// Encodes a key as base64, as `wg` prints it.
pub fn encode(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Compares two keys in time independent of their contents.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from ending the fold early.
    std::hint::black_box(diff) == 0
}

impl PublicKey {
    /// Parses the base64 text `wg pubkey` prints.
    pub fn parse(text: &str) -> Result<Self, KeyTextError> {
        decode(text).map(Self)
    }

    /// Same key, compared in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_like_wg() {
        // `wg pubkey` of the key of all 0x01 bytes is not needed here: any
        // 32 bytes print as 44 characters and parse back.
        let k = PublicKey([7; 32]);
        let text = k.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(PublicKey::parse(&format!(" {text}\n")), Ok(k));
    }

    #[test]
    fn bad_texts_are_refused() {
        assert_eq!(decode("not base64!"), Err(KeyTextError::NotBase64));
        assert_eq!(decode("AAAA"), Err(KeyTextError::Length(3)));
        assert_eq!(decode(""), Err(KeyTextError::Length(0)));
    }

    #[test]
    fn comparison_is_exact() {
        let a = [3u8; 32];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!ct_eq(&a, &b));
    }
}
