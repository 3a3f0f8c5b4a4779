//! `dhcp`: an IPAM plugin that gets the pod's address from a DHCP server
//! through the `dhcp daemon` (see [`crate::dhcp`]). ADD, DEL and CHECK are
//! forwarded to the daemon on `ipam.daemonSocketPath` (default
//! `/run/cni/dhcp.sock`); the result comes back in the 1.1.0 shape and is
//! printed in the config's version. STATUS (1.1) reports whether the daemon
//! answers; GC (1.1) has the daemon release the network's leases whose
//! attachment is not in `cni.dev/valid-attachments`.

use std::path::Path;
use std::time::Duration;

use crate::dhcp::config::DhcpIpam;
use crate::dhcp::daemon::call;
use crate::dhcp::protocol::Request;
use crate::error::CniError;
use crate::skel::{Invocation, Plugin};
use crate::spec::CniResult;

/// How long the plugin waits for the daemon's reply.
pub const REPLY_LIMIT: Duration = Duration::from_secs(120);

/// The dhcp IPAM plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dhcp;

fn request(inv: &Invocation, command: &str) -> Result<(DhcpIpam, Request), CniError> {
    let ipam = DhcpIpam::parse(&inv.stdin)?;
    let netns = match &inv.netns {
        Some(p) => std::path::absolute(p)
            .map_err(|e| CniError::env(format!("failed to make {p:?} an absolute path: {e}"), ""))?
            .display()
            .to_string(),
        None => String::new(),
    };
    let config = String::from_utf8(inv.stdin.clone())
        .map_err(|e| CniError::decode(format!("config is not UTF-8: {e}"), ""))?;
    Ok((
        ipam,
        Request {
            command: command.to_owned(),
            container_id: inv.container_id.clone(),
            netns,
            ifname: inv.ifname.clone(),
            args: inv.args_raw.clone(),
            config,
        },
    ))
}

fn forward(inv: &Invocation, command: &str) -> Result<Option<CniResult>, CniError> {
    let (ipam, req) = request(inv, command)?;
    call(&ipam.socket(), &req, REPLY_LIMIT)?.into_result()
}

impl Plugin for Dhcp {
    fn name(&self) -> &'static str {
        "dhcp"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        forward(inv, "ADD")?.ok_or_else(|| CniError::internal("DHCP daemon returned no result", ""))
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        forward(inv, "DEL").map(drop)
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        forward(inv, "CHECK").map(drop)
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        forward(inv, "GC").map(drop)
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        let ipam = DhcpIpam::parse(&inv.stdin)?;
        let sock: &Path = &ipam.socket();
        std::os::unix::net::UnixStream::connect(sock)
            .map(drop)
            .map_err(|e| {
                CniError::not_available(
                    format!("DHCP daemon not reachable: {e}"),
                    sock.display().to_string(),
                )
            })
    }
}
