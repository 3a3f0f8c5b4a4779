//! TLS to etcd: the CA bundle that signs the members' certificates and,
//! when the members require client certificates (`--client-cert-auth`),
//! this node's certificate and key, read from the files `[subnet]` names
//! (`etcd_ca_file`, `etcd_cert_file`, `etcd_key_file`, as flannel's
//! `-etcd-cafile`, `-etcd-certfile`, `-etcd-keyfile`).

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::config::SubnetConfig;

/// A TLS file that could not be read, named by its config field.
#[derive(Debug, thiserror::Error)]
#[error("subnet.{field}: cannot read {}: {source}", path.display())]
pub struct TlsFileError {
    /// The `[subnet]` key that names the file.
    pub field: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    #[source]
    pub source: std::io::Error,
}

/// The PEM material for `https` endpoints.
#[derive(Clone)]
pub struct EtcdTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_bytes", &self.ca.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let err = |source| TlsFileError {
        field,
        path: path.to_owned(),
        source,
    };
    let pem = std::fs::read(path).map_err(err)?;
    // tonic parses the PEM only when it connects; a file that is not PEM
    // at all is a config error, not a reason to retry the connection.
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a PEM file (no -----BEGIN line)",
        )));
    }
    Ok(pem)
}

impl EtcdTls {
    /// Reads the files `sc` names; `None` when it names none (plain
    /// `http` endpoints; the config check refuses other mixes).
    pub fn load(sc: &SubnetConfig) -> Result<Option<Self>, TlsFileError> {
        let Some(ca_file) = &sc.etcd_ca_file else {
            return Ok(None);
        };
        let ca = read("etcd_ca_file", ca_file)?;
        let identity = match (&sc.etcd_cert_file, &sc.etcd_key_file) {
            (Some(cert), Some(key)) => {
                Some((read("etcd_cert_file", cert)?, read("etcd_key_file", key)?))
            }
            _ => None,
        };
        Ok(Some(Self { ca, identity }))
    }

    /// The client options: the members' certificates are checked against
    /// the CA and the endpoint's host (name or IP address).
    pub fn options(&self) -> TlsOptions {
        let opts = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => opts.identity(Identity::from_pem(cert, key)),
            None => opts,
        }
    }
}
