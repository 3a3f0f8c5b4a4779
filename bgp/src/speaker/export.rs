//! The export side of the speaker: UPDATEs for each peer, built from our
//! own prefixes (with this node as next hop) and, as a route reflector,
//! from reflected routes, then packed into messages of at most 4096 bytes.

use super::*;

/// UPDATEs for one peer, grouped by attributes and next hop.
#[derive(Default)]
pub(super) struct Outbox {
    groups: HashMap<(PathAttrs, MpNextHop), Vec<Prefix>>,
    withdraw: Vec<Prefix>,
}

impl SpeakerTask {
    /// The next hop for our own prefixes of `family` toward peer `p`.
    pub(super) fn next_hop(&self, p: &PeerSlot, family: Family) -> Option<MpNextHop> {
        let b = &self.cfg.bgp;
        let local = p.local?;
        let n = p.negotiated.as_ref()?;
        let global = match family {
            Family::Ipv4Unicast => b.next_hop_v4.map(IpAddr::V4).or(match local {
                IpAddr::V4(_) => Some(local),
                IpAddr::V6(_) if n.extended_next_hop => Some(local),
                IpAddr::V6(_) => None,
            }),
            Family::Ipv6Unicast => b
                .next_hop_v6
                .map(IpAddr::V6)
                .or(local.is_ipv6().then_some(local)),
        }?;
        Some(MpNextHop {
            global,
            link_local: None,
        })
    }

    /// Adds our own prefixes in `prefixes` to `out` for peer `i`.
    pub(super) fn originate_into(&self, i: usize, prefixes: &[Prefix], out: &mut Outbox) {
        let p = &self.peers[i];
        let (Some(info), Some(n)) = (&p.info, &p.negotiated) else {
            return;
        };
        let attrs = policy::originate(&self.export, self.cfg.bgp.asn, info);
        for prefix in prefixes {
            let family = Family::of(prefix);
            if !n.families.contains(&family) {
                continue;
            }
            match self.next_hop(p, family) {
                Some(nh) => out
                    .groups
                    .entry((attrs.clone(), nh))
                    .or_default()
                    .push(*prefix),
                None => {
                    warn!(%prefix, peer = %p.cfg.address, "no next hop of this family for the peer");
                }
            }
        }
    }

    /// Adds the reflection of `prefix`'s best path for peer `i` to `out`
    /// (or its withdrawal when it was advertised and no longer is).
    pub(super) fn reflect_into(&self, i: usize, prefix: Prefix, out: &mut Outbox) {
        let p = &self.peers[i];
        let (Some(to), Some(n)) = (&p.info, &p.negotiated) else {
            return;
        };
        if self.local.contains(&prefix) || !n.families.contains(&Family::of(&prefix)) {
            return;
        }
        let r = self.rib.loc().get(&prefix).and_then(|sel| {
            let from = self
                .peers
                .get(usize::try_from(sel.best.peer.0).ok()?)?
                .last_info
                .as_ref()?;
            policy::reflect(
                Source {
                    from,
                    path: &sel.best,
                },
                to,
                self.cluster_id,
            )
        });
        match r {
            Some((attrs, nh)) => out
                .groups
                .entry((
                    attrs,
                    MpNextHop {
                        global: nh,
                        link_local: None,
                    },
                ))
                .or_default()
                .push(prefix),
            None if p.adj_out.contains(&prefix) => out.withdraw.push(prefix),
            None => {}
        }
    }

    pub(super) async fn send(&mut self, i: usize, out: Outbox) {
        let Some(caps) = self.peers[i].negotiated.as_ref().map(|n| n.caps) else {
            return;
        };
        let mut msgs = wire::pack_withdraws(&out.withdraw, &caps);
        for ((attrs, nh), prefixes) in out.groups {
            msgs.extend(wire::pack_updates(&attrs, nh, &prefixes, &caps));
            self.peers[i].adj_out.extend(prefixes);
        }
        for w in &out.withdraw {
            self.peers[i].adj_out.remove(w);
        }
        if !msgs.is_empty() {
            let _ = self.peers[i].cmd.send(PeerCmd::Send(msgs)).await;
        }
    }

    /// Sends the whole table (or one family of it, for a ROUTE-REFRESH) to
    /// a peer; the whole table ends with End-of-RIB markers.
    pub(super) async fn export_table(&mut self, key: PeerKey, only: Option<Family>) {
        let Some(i) = self.peers.iter().position(|p| p.key == key) else {
            return;
        };
        let mut out = Outbox::default();
        let wanted = |p: &Prefix| only.is_none_or(|f| Family::of(p) == f);
        let local: Vec<Prefix> = self.local.iter().copied().filter(wanted).collect();
        self.originate_into(i, &local, &mut out);
        if self.rr {
            let learned: Vec<Prefix> = self
                .rib
                .loc()
                .iter()
                .map(|(p, _)| p)
                .filter(wanted)
                .collect();
            for prefix in learned {
                self.reflect_into(i, prefix, &mut out);
            }
        }
        self.send(i, out).await;
        if only.is_some() {
            return;
        }
        // End-of-RIB for every negotiated family, always: a restarting peer
        // waits for it, and it never hurts (RFC 4724 §2).
        let Some(n) = self.peers[i].negotiated.clone() else {
            return;
        };
        let mut eor = Vec::new();
        for f in &n.families {
            wire::encode(&wire::Message::Update(Update::eor(*f)), &n.caps, &mut eor);
        }
        let _ = self.peers[i].cmd.send(PeerCmd::Send(vec![eor])).await;
    }

    pub(super) async fn announce(&mut self, prefixes: Vec<Prefix>) {
        let new: Vec<Prefix> = prefixes
            .into_iter()
            .filter(|p| self.local.insert(*p))
            .collect();
        for i in 0..self.peers.len() {
            let mut out = Outbox::default();
            self.originate_into(i, &new, &mut out);
            self.send(i, out).await;
        }
    }

    pub(super) async fn withdraw(&mut self, prefixes: Vec<Prefix>) {
        let gone: Vec<Prefix> = prefixes
            .into_iter()
            .filter(|p| self.local.remove(p))
            .collect();
        for i in 0..self.peers.len() {
            let mut out = Outbox::default();
            for p in &gone {
                if self.rr {
                    // A learned route for the same prefix may take over.
                    self.reflect_into(i, *p, &mut out);
                }
                if self.peers[i].adj_out.contains(p) && !out.groups.values().any(|v| v.contains(p))
                {
                    out.withdraw.push(*p);
                }
            }
            self.send(i, out).await;
        }
    }

    pub(super) async fn reflect_changes(&mut self, changes: &[Change]) {
        for i in 0..self.peers.len() {
            let mut out = Outbox::default();
            for c in changes {
                self.reflect_into(i, c.prefix, &mut out);
            }
            self.send(i, out).await;
        }
    }
}
