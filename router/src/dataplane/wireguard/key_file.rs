//! This node's WireGuard private key on disk: base64 as `wg genkey`
//! writes it, generated (file 0600 in a 0700 directory) when absent,
//! refused when the group or others may read it. The secret never reaches
//! a log line or `Debug` output.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use boringtun::x25519::{PublicKey as DalekPublic, StaticSecret};

use crate::wg_key::{self, PublicKey};

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading, creating or writing it failed.
    #[error("dataplane.wireguard_private_key_file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others may read it.
    #[error(
        "dataplane.wireguard_private_key_file {path}: mode {mode:04o} lets group or others read the private key (chmod 600)"
    )]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It holds no base64 key.
    #[error("dataplane.wireguard_private_key_file {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: wg_key::KeyTextError,
    },
}

/// A private key and its public key.
pub struct PrivateKey {
    secret: StaticSecret,
    /// The public key, as `wg pubkey` derives it.
    pub public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// The key of these 32 bytes (clamped by X25519 when used).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey(DalekPublic::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The secret, for the noise protocol.
    pub(crate) fn secret(&self) -> StaticSecret {
        self.secret.clone()
    }
}

/// 32 random bytes clamped as `wg genkey` does.
fn generate() -> std::io::Result<[u8; 32]> {
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    Ok(k)
}

/// Reads the key at `path`, generating it first when the file does not
/// exist.
pub fn load_or_create(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o044 != 0 {
                return Err(KeyFileError::Readable {
                    path: path.to_owned(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            let bytes = wg_key::decode(&text).map_err(|reason| KeyFileError::Malformed {
                path: path.to_owned(),
                reason,
            })?;
            Ok(PrivateKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = generate().map_err(io)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            let mut text = wg_key::encode(&bytes);
            text.push('\n');
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "generated a WireGuard private key");
            Ok(PrivateKey::from_bytes(bytes))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-wgkey-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn absent_key_is_generated_private_and_stable() {
        let dir = tmp("gen");
        let path = dir.join("sub/wg.key");
        let k1 = load_or_create(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 45, "44 base64 characters and a newline");
        let bytes = wg_key::decode(&text).unwrap();
        assert_eq!(bytes[0] & 7, 0, "clamped");
        assert_eq!(bytes[31] & 0xc0, 0x40, "clamped");
        let k2 = load_or_create(&path).unwrap();
        assert_eq!(k1.public, k2.public);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readable_key_is_refused_naming_the_file() {
        let dir = tmp("ro");
        let path = dir.join("wg.key");
        load_or_create(&path).unwrap();
        for bad in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let e = load_or_create(&path).unwrap_err();
            assert!(matches!(e, KeyFileError::Readable { .. }), "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_or_create(&path).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_key_is_refused_without_echoing_it() {
        let dir = tmp("bad");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wg.key");
        std::fs::write(&path, "c2VjcmV0LXNlY3JldA==\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("wg.key") && !e.contains("c2Vj"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_key_matches_rfc7748_and_debug_hides_the_secret() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let hex = |s: &str| -> [u8; 32] {
            let v: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let k = PrivateKey::from_bytes(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            k.public.0,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&k.public.to_string()), "{dbg}");
        assert!(!dbg.contains("dwdt"), "{dbg}"); // base64 of the secret's start
    }
}
