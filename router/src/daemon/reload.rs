//! The driver's side of a config reload: load and check the file, apply
//! the plan (`crate::reload::plan`) to the BGP speaker and the router
//! core, answer with what was applied.

use tracing::{info, warn};

use super::Driver;
use crate::core::Event;
use crate::reload::{ReloadResult, ReloadSummary};

impl Driver<'_> {
    /// Reads the config file again and applies what changed live (see
    /// [`crate::reload`]); a file that fails validation changes nothing.
    pub(super) async fn reload(&mut self) -> ReloadResult {
        let Some((load, bgp)) = &self.reloader else {
            return Err(vec!["reload is not available".to_owned()]);
        };
        let (loaded, bgp) = (load(), bgp.clone());
        let new = match loaded {
            Ok(c) => c,
            Err(errs) => {
                for e in &errs.0 {
                    warn!(path = %e.path, error = %e.msg, "config reload rejected");
                }
                warn!(
                    errors = errs.0.len(),
                    "config reload rejected, running config kept"
                );
                return Err(errs.0.iter().map(ToString::to_string).collect());
            }
        };
        let plan = crate::reload::plan(&self.running, &new);
        let mut summary = ReloadSummary {
            static_routes: plan.statics,
            restart_needed: plan.restart_needed.clone(),
            ..ReloadSummary::default()
        };
        for field in &plan.restart_needed {
            warn!(%field, "config reload: changed, needs a restart (not applied)");
        }
        if let Some(bgp) = &bgp {
            let removed = plan
                .peers_removed
                .iter()
                .copied()
                .chain(plan.peers_changed.iter().map(|p| p.address));
            for addr in removed {
                if let Err(e) = bgp.remove_peer(addr).await {
                    summary
                        .errors
                        .push(format!("removing BGP peer {addr}: {e}"));
                }
            }
            for p in plan.peers_added.iter().chain(&plan.peers_changed) {
                if let Err(e) = bgp.add_peer(p.clone()).await {
                    summary
                        .errors
                        .push(format!("adding BGP peer {}: {e}", p.address));
                }
            }
            summary.peers_added = plan.peers_added.iter().map(|p| p.address).collect();
            summary.peers_removed.clone_from(&plan.peers_removed);
            summary.peers_changed = plan.peers_changed.iter().map(|p| p.address).collect();
            if let (Some(r), Some(n)) = (&mut self.running.bgp, &new.bgp) {
                r.peers.clone_from(&n.peers);
            }
        }
        if let Some(routes) = plan.static_routes {
            self.handle(Event::StaticRoutes(routes)).await;
        }
        self.running.static_routes = new.static_routes;
        for e in &summary.errors {
            warn!(error = %e, "config reload");
        }
        info!(
            static_added = summary.static_routes.added,
            static_removed = summary.static_routes.removed,
            static_changed = summary.static_routes.changed,
            peers_added = summary.peers_added.len(),
            peers_removed = summary.peers_removed.len(),
            peers_changed = summary.peers_changed.len(),
            restart_needed = summary.restart_needed.len(),
            errors = summary.errors.len(),
            "config reloaded"
        );
        Ok(summary)
    }
}
