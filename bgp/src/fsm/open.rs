//! OPEN handling (RFC 4271 §4.2, §6.2, §8.2.2): the OPEN we send, the
//! checks on the peer's, and what the two agree on.

use super::*;

impl Session {
    pub(super) fn our_open(&mut self) -> Open {
        let mut caps = vec![Capability::FourOctetAs(self.cfg.local_asn)];
        for f in &self.cfg.families {
            caps.push(Capability::Multiprotocol {
                afi: f.afi(),
                safi: f.safi(),
            });
        }
        caps.push(Capability::RouteRefresh);
        if self.cfg.extended_next_hop {
            caps.push(Capability::ExtendedNextHop(vec![(1, 1, 2)]));
        }
        if let Some(gr) = self.cfg.graceful_restart {
            let restarting = gr.restarting && self.first_session;
            caps.push(Capability::GracefulRestart(GracefulRestart {
                restarting,
                notification: false,
                restart_time: gr.restart_time.min(4095),
                families: self.cfg.families.iter().map(|f| (*f, restarting)).collect(),
            }));
        }
        Open {
            asn: self.cfg.local_asn,
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            caps,
        }
    }

    pub(super) fn open_received(
        &mut self,
        now: Instant,
        i: usize,
        open: Open,
        out: &mut Vec<Output>,
    ) {
        // Event 19 BGPOpen in OpenSent.
        let conn = self.conns[i].id;
        let reject = if open.asn != self.cfg.peer_asn {
            Some(Notification {
                code: 2,
                subcode: 2,
                data: Vec::new(),
            })
        } else if open.hold_time == 1 || open.hold_time == 2 {
            Some(Notification::new(2, 6))
        } else if open.router_id == self.cfg.router_id && open.asn == self.cfg.local_asn {
            Some(Notification::new(2, 3))
        } else {
            None
        };
        if let Some(n) = reject {
            out.push(Output::Send {
                conn,
                msg: Message::Notification(n.clone()),
            });
            self.drop_conn(now, conn, DownReason::LocalNotification(n), out);
            return;
        }
        // Collision detection (RFC 4271 §6.8) against the other connection.
        if let Some(j) = (0..self.conns.len()).find(|j| *j != i) {
            let other = self.conns[j].clone();
            let peer_restarting_gr = other.state == State::Established
                && self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.peer_gr.is_some());
            if peer_restarting_gr {
                // RFC 4724 §4.2: a new OPEN from a GR peer ends the old session.
                debug!("graceful restart: new connection replaces the established one");
                self.drop_conn(now, other.id, DownReason::ConnectionLost, out);
                return self.open_received(now, self.find(conn).unwrap_or(0), open, out);
            }
            let other_knows_peer = other.state >= State::OpenConfirm;
            if other.state == State::Established || other_knows_peer {
                let keep_new = if other.state == State::Established {
                    false
                } else {
                    // Keep the connection initiated by the higher BGP identifier.
                    let local_higher = u32::from(self.cfg.router_id) > u32::from(open.router_id);
                    self.conns[i].outgoing == local_higher
                };
                let victim = if keep_new { other.id } else { conn };
                let n = Notification::new(6, 7);
                out.push(Output::Send {
                    conn: victim,
                    msg: Message::Notification(n),
                });
                info!("connection collision: closing one with Cease/7");
                out.push(Output::Close { conn: victim });
                self.conns.retain(|c| c.id != victim);
                if !keep_new {
                    return;
                }
            }
        }
        let Some(i) = self.find(conn) else {
            return;
        };
        let hold = self.cfg.hold_time.min(open.hold_time);
        let c = &mut self.conns[i];
        c.hold_time = hold;
        c.peer_open = Some(open);
        c.state = State::OpenConfirm;
        out.push(Output::Send {
            conn,
            msg: Message::Keepalive,
        });
        self.restart_hold(now, i);
        self.arm_keepalive(now, i);
    }

    pub(super) fn negotiate(&self, i: usize) -> Option<Negotiated> {
        let c = &self.conns[i];
        let open = c.peer_open.as_ref()?;
        let theirs = open.families();
        let families = self
            .cfg
            .families
            .iter()
            .filter(|f| theirs.contains(f))
            .copied()
            .collect();
        Some(Negotiated {
            hold_time: c.hold_time,
            caps: SessionCaps {
                four_octet_as: open.four_octet_as(),
            },
            families,
            peer_asn: open.asn,
            peer_id: open.router_id,
            ibgp: open.asn == self.cfg.local_asn,
            extended_next_hop: self.cfg.extended_next_hop && open.extended_next_hop_v4(),
            peer_gr: open
                .graceful_restart()
                .cloned()
                .filter(|g| g.restart_time > 0),
            route_refresh: open.route_refresh(),
        })
    }
}
