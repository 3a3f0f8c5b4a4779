//! Pod masquerade (`ip_masq`): traffic from this node's pod ranges to
//! anywhere outside the cluster ranges leaves with the node's address;
//! pod-to-pod traffic (destination in a cluster range) never does.
//!
//! weftd owns one nftables table, `inet weft`, written over netlink with
//! weft-cni's encoder (no `nft`/`iptables` process):
//!
//! ```text
//! table inet weft {                 # userdata: "weft masquerade v1 <hash>"
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     meta mark & 0x4000 != 0 accept                  # kube-proxy masquerades these
//!     ip  saddr <pod_cidr>    ip  daddr <cluster_cidr>    accept
//!     ip  saddr <pod_cidr>    ip  daddr != 224.0.0.0/4    masquerade
//!     ip6 saddr <pod_cidr_v6> ip6 daddr <cluster_cidr_v6> accept
//!     ip6 saddr <pod_cidr_v6> ip6 daddr != ff00::/8       masquerade
//!   }
//! }
//! ```
//!
//! The plan is pure ([`install_ops`], [`remove_ops`]); [`MasqTable`] is the
//! netlink edge. Installing replaces the whole table in one transaction
//! (add, delete, create: never a moment without rules, never a leftover);
//! [`MasqTable::repair`] reinstalls it when it is missing or its chain was
//! changed, and [`MasqKeeper`] calls it whenever nftables changes (a
//! netfilter multicast subscription) and on a timer as a backstop.

use std::time::Duration;

use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket};
use tracing::{info, warn};
use weft_cni::nft::expr::{self, CmpOp, Expr, MetaKey, REG32_00};
use weft_cni::nft::{Family, Hook, NfSocket, NftError, Op, Table, Verdict, owner_id};

use crate::cidr::Cidr;
use crate::config::Config;

/// The table's name (family `inet`).
pub const TABLE: &str = "weft";
/// The base chain's name.
pub const CHAIN: &str = "postrouting";
/// kube-proxy's masquerade mark bit (`--masquerade-bit 14`).
pub const KUBE_PROXY_MARK: u32 = 0x4000;
/// How often the table is checked even without nftables events.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);
/// `NFNLGRP_NFTABLES`: nftables change notifications.
const NFNLGRP_NFTABLES: u32 = 7;

/// The table.
pub fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// What to masquerade: (pod range, cluster range) per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqPlan {
    /// Pod range and cluster range pairs.
    pub ranges: Vec<(Cidr, Cidr)>,
}

impl MasqPlan {
    /// The plan of a config, `None` when `ip_masq` is off.
    pub fn from_config(cfg: &Config) -> Option<Self> {
        if !cfg.ip_masq {
            return None;
        }
        let mut ranges = vec![(cfg.pod_cidr, cfg.cluster_cidr)];
        if let (Some(p), Some(c)) = (cfg.pod_cidr_v6, cfg.cluster_cidr_v6) {
            ranges.push((p, c));
        }
        Some(Self { ranges })
    }

    /// The table's userdata: names the plan, so a table holding another
    /// plan (an older config) is replaced.
    pub fn marker(&self) -> Vec<u8> {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(p, c)| format!("{p} {c}"))
            .collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        format!("weft masquerade v1 {}", owner_id(&refs)).into_bytes()
    }

    /// The rules of the chain, in order.
    pub fn rules(&self) -> Vec<Vec<Expr>> {
        let mark = KUBE_PROXY_MARK.to_ne_bytes().to_vec();
        let mut out = vec![vec![
            Expr::Meta {
                key: MetaKey::Mark,
                dreg: REG32_00,
            },
            Expr::Bitwise {
                sreg: REG32_00,
                dreg: REG32_00,
                mask: mark,
                xor: vec![0; 4],
            },
            Expr::Cmp {
                sreg: REG32_00,
                op: CmpOp::Neq,
                data: vec![0; 4],
            },
            Expr::Verdict(Verdict::Accept),
        ]];
        for (pod, cluster) in &self.ranges {
            let v6 = !pod.is_ipv4();
            let mut from_pods = expr::match_nfproto(v6);
            from_pods.extend(expr::match_prefix(
                pod.addr(),
                pod.prefix_len(),
                false,
                false,
            ));
            let mut to_pods = from_pods.clone();
            to_pods.extend(expr::match_prefix(
                cluster.addr(),
                cluster.prefix_len(),
                true,
                false,
            ));
            to_pods.push(Expr::Verdict(Verdict::Accept));
            let (mcast, len) = if v6 {
                (
                    std::net::Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0).into(),
                    8,
                )
            } else {
                (std::net::Ipv4Addr::new(224, 0, 0, 0).into(), 4)
            };
            let mut out_of_cluster = from_pods;
            out_of_cluster.extend(expr::match_prefix(mcast, len, true, true));
            out_of_cluster.push(Expr::Masquerade);
            out.push(to_pods);
            out.push(out_of_cluster);
        }
        out
    }
}

/// The ops replacing the table by the plan's, as one transaction.
pub fn install_ops(plan: &MasqPlan) -> Vec<Op> {
    let t = table();
    let mut ops = remove_ops();
    ops.push(Op::CreateTable {
        table: t.clone(),
        userdata: plan.marker(),
    });
    ops.push(Op::AddChain {
        table: t.clone(),
        name: CHAIN.into(),
        hook: Some(Hook {
            num: 4, // NF_INET_POST_ROUTING
            priority: 100,
            kind: "nat",
        }),
    });
    for exprs in plan.rules() {
        ops.push(Op::AddRule {
            table: t.clone(),
            chain: CHAIN.into(),
            exprs,
            userdata: None,
        });
    }
    ops
}

/// The ops deleting the table whether or not it exists.
pub fn remove_ops() -> Vec<Op> {
    vec![Op::AddTable(table()), Op::DelTable(table())]
}

/// The kernel side of the masquerade table.
#[derive(Debug)]
pub struct MasqTable {
    sock: NfSocket,
    plan: Option<MasqPlan>,
}

impl MasqTable {
    /// Opens a netfilter socket in the current network namespace.
    pub fn open(plan: Option<MasqPlan>) -> Result<Self, NftError> {
        Ok(Self {
            sock: NfSocket::open()?,
            plan,
        })
    }

    /// Installs the plan (or, without one, removes a table left by an
    /// earlier run).
    pub fn install(&mut self) -> Result<(), NftError> {
        match &self.plan {
            Some(p) => self.sock.apply(&install_ops(p)),
            None => self.sock.apply(&remove_ops()),
        }
    }

    /// Whether the kernel holds exactly what the plan installs (table with
    /// its marker, chain with every rule); always true without a plan.
    pub fn intact(&mut self) -> Result<bool, NftError> {
        let Some(plan) = &self.plan else {
            return Ok(true);
        };
        let marker = plan.marker();
        let want = plan.rules().len();
        if self.sock.table_userdata(&table())?.as_deref() != Some(marker.as_slice()) {
            return Ok(false);
        }
        Ok(self.sock.plain_rules(&table(), CHAIN)? == want)
    }

    /// Reinstalls the table when it is not intact; returns whether it did.
    pub fn repair(&mut self) -> Result<bool, NftError> {
        if self.intact()? {
            return Ok(false);
        }
        self.install()?;
        Ok(true)
    }

    /// Deletes the table (no error when it is already gone).
    pub fn remove(&mut self) -> Result<(), NftError> {
        self.sock.apply(&remove_ops())
    }
}

/// A socket that receives a message whenever any nftables object changes.
fn nft_events() -> std::io::Result<TokioSocket> {
    let mut s = TokioSocket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
    s.socket_mut().bind_auto()?;
    s.socket_mut().add_membership(NFNLGRP_NFTABLES)?;
    Ok(s)
}

/// Waits for the next batch of nftables events (never, without a socket).
async fn next_events(events: Option<&mut TokioSocket>, buf: &mut Vec<u8>) {
    let Some(sock) = events else {
        return std::future::pending().await;
    };
    buf.clear();
    // An error (e.g. ENOBUFS after an overrun) also means "check".
    let _ = sock.recv(buf).await;
    // Take everything else already queued: one check per burst.
    loop {
        buf.clear();
        if sock.socket_ref().recv(buf, libc::MSG_DONTWAIT).is_err() {
            break;
        }
    }
}

/// Opens the netfilter socket and installs the plan (without a plan:
/// removes a table an earlier run left). Failures are logged and leave
/// `None`: masquerade never stops routing.
pub fn install(plan: Option<MasqPlan>) -> Option<MasqTable> {
    let enabled = plan.is_some();
    let mut table = MasqTable::open(plan)
        .inspect_err(|e| warn!(error = %e, "masquerade: nfnetlink unavailable"))
        .ok()?;
    match table.install() {
        Ok(()) if enabled => info!(table = TABLE, "masquerade installed"),
        Ok(()) => {}
        Err(e) => warn!(error = %e, "masquerade not installed"),
    }
    Some(table)
}

/// Keeps an installed table intact: [`MasqKeeper::changed`] resolves after
/// nftables changes (a netfilter multicast subscription) or every
/// [`CHECK_EVERY`]; [`MasqKeeper::check`] then repairs the table if needed.
pub struct MasqKeeper {
    table: Option<MasqTable>,
    events: Option<TokioSocket>,
    tick: tokio::time::Interval,
    buf: Vec<u8>,
}

impl std::fmt::Debug for MasqKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasqKeeper")
            .field("table", &self.table)
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl MasqKeeper {
    /// Watches `table` (nothing to watch without a plan).
    pub fn new(table: Option<MasqTable>) -> Self {
        let table = table.filter(|t| t.plan.is_some());
        let events = table.as_ref().and_then(|_| {
            nft_events()
                .inspect_err(
                    |e| warn!(error = %e, "masquerade: no nftables events, checking on a timer"),
                )
                .ok()
        });
        Self {
            table,
            events,
            tick: tokio::time::interval(CHECK_EVERY),
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Resolves when the table should be checked (never without a table).
    pub async fn changed(&mut self) {
        if self.table.is_none() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = next_events(self.events.as_mut(), &mut self.buf) => {}
            _ = self.tick.tick() => {}
        }
    }

    /// Reinstalls the table if someone changed it.
    pub fn check(&mut self) {
        let Some(table) = &mut self.table else {
            return;
        };
        match table.repair() {
            Ok(true) => warn!(
                table = TABLE,
                "masquerade table was changed by someone else; reinstalled"
            ),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "masquerade check failed"),
        }
    }

    /// Removes the table, or leaves it when `keep` (a graceful restart
    /// keeps forwarding).
    pub fn finish(self, keep: bool) {
        let Some(mut table) = self.table else {
            return;
        };
        if keep {
            info!(
                table = TABLE,
                "graceful restart: masquerade stays installed"
            );
            return;
        }
        match table.remove() {
            Ok(()) => info!(table = TABLE, "masquerade removed"),
            Err(e) => warn!(error = %e, "removing masquerade failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_cni::nft::expr::Base;

    fn plan(v6: bool) -> MasqPlan {
        let mut ranges = vec![(
            "10.244.1.0/24".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
        )];
        if v6 {
            ranges.push((
                "fd10:244:1::/64".parse().unwrap(),
                "fd10:244::/32".parse().unwrap(),
            ));
        }
        MasqPlan { ranges }
    }

    #[test]
    fn plan_follows_ip_masq() {
        let text = "node_name = \"n\"\nunderlay_ip = \"172.31.0.1\"\n\
                    pod_cidr = \"10.244.1.0/24\"\ncluster_cidr = \"10.244.0.0/16\"\n\
                    [dataplane]\nmode = \"host-gw\"\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(MasqPlan::from_config(&c), Some(plan(false)));
        let c = Config::parse(&format!("ip_masq = false\n{text}")).unwrap();
        assert_eq!(MasqPlan::from_config(&c), None);
    }

    #[test]
    fn rules_accept_pod_to_pod_and_masquerade_the_rest() {
        let rules = plan(true).rules();
        assert_eq!(rules.len(), 5);
        // Each pod-range rule starts by matching the family and pod source.
        let src = |r: &[Expr], v6: bool, net: &[u8]| {
            r[..2] == expr::match_nfproto(v6)[..]
                && r.contains(&Expr::Cmp {
                    sreg: REG32_00,
                    op: CmpOp::Eq,
                    data: net.to_vec(),
                })
        };
        assert!(src(&rules[1], false, &[10, 244, 1, 0]));
        assert_eq!(rules[1].last(), Some(&Expr::Verdict(Verdict::Accept)));
        assert!(rules[1].contains(&Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Eq,
            data: vec![10, 244, 0, 0],
        }));
        assert!(src(&rules[2], false, &[10, 244, 1, 0]));
        assert_eq!(rules[2].last(), Some(&Expr::Masquerade));
        assert!(rules[2].contains(&Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Neq,
            data: vec![224, 0, 0, 0],
        }));
        assert_eq!(rules[4].last(), Some(&Expr::Masquerade));
        assert!(rules[3].contains(&Expr::Payload {
            base: Base::Network,
            offset: 24,
            len: 16,
            dreg: REG32_00,
        }));
    }

    #[test]
    fn install_replaces_the_table_atomically() {
        let ops = install_ops(&plan(false));
        assert_eq!(ops[0], Op::AddTable(table()));
        assert_eq!(ops[1], Op::DelTable(table()));
        assert!(
            matches!(&ops[2], Op::CreateTable { userdata, .. } if *userdata == plan(false).marker())
        );
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::AddRule { .. }))
                .count(),
            3
        );
        assert_ne!(plan(false).marker(), plan(true).marker());
    }
}
