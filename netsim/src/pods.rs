//! A cluster's pods: attached through the cluster's [`PodAttach`] (CNI
//! ADD with the node's conflist, or the built-in attach), checked, removed.

use std::path::{Path, PathBuf};

use crate::attach::AttachRequest;
use crate::cluster::{Cluster, POD_BRIDGE, POD_IF, Pod, PodId};
use crate::error::{Error, Result};
use crate::run;
use crate::weftd::WeftdProcess;

impl Cluster {
    /// Node `i`'s weftd file directory (conflist under `net.d/`,
    /// `subnet.env`, host-local leases under `ipam/`).
    pub fn node_files_dir(&self, i: usize) -> PathBuf {
        self.prefix
            .dir()
            .join(format!("{}-cni", self.nodes[i].ns.name()))
    }

    /// Attaches node `i`'s planned pods that are not attached yet.
    pub(crate) fn attach_pods(&mut self, i: usize) -> Result<()> {
        while self.pods[i].len() < self.topo.pods_per_node {
            self.add_pod(i)?;
        }
        Ok(())
    }

    /// Creates one more pod namespace on node `i` and attaches it (CNI ADD
    /// through weft's plugins, or the built-in attach); returns its id.
    pub fn add_pod(&mut self, i: usize) -> Result<PodId> {
        let j = self.pods[i].len();
        let node = &self.nodes[i];
        let ns = run::create_netns(&self.ns_name(&format!("n{}p{}", node.plan.number, j + 1)))?;
        let host_veth = format!("veth{}", j + 1);
        let files_dir = self.node_files_dir(i);
        let ip = node
            .plan
            .pod_ips
            .get(j)
            .copied()
            .unwrap_or_else(|| node.plan.pod_cidr.host(j as u32 + 2));
        let req = AttachRequest {
            node: &node.ns,
            pod: &ns,
            container_id: format!("{}-{}", self.prefix.as_str(), ns.name()),
            ifname: POD_IF,
            host_veth,
            pod_cidr: node.plan.pod_cidr,
            gateway: node.plan.gateway,
            ip,
            bridge: POD_BRIDGE,
            mtu: self.node_modes[i].map_or(self.topo.underlay_mtu, |m| {
                m.pod_mtu(self.topo.underlay_mtu)
            }),
            files_dir: &files_dir,
        };
        let att = self.attach.attach(&req)?;
        let container_id = req.container_id.clone();
        self.pods[i].push(Pod {
            ns,
            ip: att.ip,
            id: (i, j),
            host_veth: att.host_veth,
            container_id,
        });
        Ok((i, j))
    }

    fn pod_request<'a>(&'a self, pod: &'a Pod, files_dir: &'a Path) -> AttachRequest<'a> {
        let node = &self.nodes[pod.id.0];
        AttachRequest {
            node: &node.ns,
            pod: &pod.ns,
            container_id: pod.container_id.clone(),
            ifname: POD_IF,
            host_veth: pod.host_veth.clone(),
            pod_cidr: node.plan.pod_cidr,
            gateway: node.plan.gateway,
            ip: pod.ip,
            bridge: POD_BRIDGE,
            mtu: 0,
            files_dir,
        }
    }

    /// Runs the attach's CHECK for pod `id`.
    pub fn check_pod(&self, id: PodId) -> Result<()> {
        let pod = self.pod(id.0, id.1);
        let dir = self.node_files_dir(id.0);
        self.attach.check(&self.pod_request(pod, &dir))
    }

    /// Detaches (CNI DEL) and deletes the last pod of node `i`.
    pub fn remove_last_pod(&mut self, i: usize) -> Result<()> {
        let Some(pod) = self.pods[i].pop() else {
            return Ok(());
        };
        let dir = self.node_files_dir(i);
        self.attach.detach(&self.pod_request(&pod, &dir))
    }

    /// Waits (bounded) for node `i`'s weftd to write its conflist.
    pub(crate) fn wait_conflist(&self, i: usize) -> Result<()> {
        let path = self.node_files_dir(i).join(crate::cni::CONFLIST);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !path.exists() {
            if std::time::Instant::now() > deadline {
                let log = self.weftds[i]
                    .as_ref()
                    .map(WeftdProcess::log_tail)
                    .unwrap_or_default();
                return Err(Error::Weftd {
                    node: self.nodes[i].ns.name().to_owned(),
                    msg: format!("no conflist at {} after 10 s; log:\n{log}", path.display()),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}
