//! A throwaway certificate authority for TLS between a cluster's parts
//! (etcd members and their clients): one CA, a server certificate for
//! given IP addresses and a client certificate, P-256 keys, made by
//! `openssl` in the caller's scratch directory and valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The PEM files of one CA and the two certificates it signed.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate, which clients and servers trust.
    pub ca: PathBuf,
    /// The server certificate (its subjectAltName holds the IPs).
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate (CN `weftd`).
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| Error::io("run openssl", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::measure(
            "openssl",
            format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
        ))
    }
}

/// A new P-256 key in `key` and a signing request for `cn` in `csr`.
fn request(dir: &Path, cn: &str, key: &str, csr: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    )
}

/// Signs `csr` with the CA into `cert`, with the extensions in `ext`.
fn sign(dir: &Path, csr: &str, cert: &str, ext: &str) -> Result<()> {
    let ext_file = format!("{cert}.ext");
    std::fs::write(dir.join(&ext_file), ext).map_err(|e| Error::io("write openssl ext", e))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            cert,
            "-extfile",
            &ext_file,
        ],
    )
}

impl Pki {
    /// Makes the CA and both certificates under `dir/pki`; the server
    /// certificate is valid for each of `server_ips`.
    pub fn generate(dir: &Path, server_ips: &[&str]) -> Result<Self> {
        let d = dir.join("pki");
        std::fs::create_dir_all(&d).map_err(|e| Error::io("create pki dir", e))?;
        openssl(
            &d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=netsim-ca",
            ],
        )?;
        request(&d, "etcd", "server.key", "server.csr")?;
        let sans: Vec<String> = server_ips.iter().map(|ip| format!("IP:{ip}")).collect();
        sign(
            &d,
            "server.csr",
            "server.pem",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                sans.join(",")
            ),
        )?;
        request(&d, "weftd", "client.key", "client.csr")?;
        sign(
            &d,
            "client.csr",
            "client.pem",
            "extendedKeyUsage=clientAuth\n",
        )?;
        Ok(Self {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
        })
    }
}
