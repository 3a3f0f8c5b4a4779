//! What goes into the router core (`Event`), what comes out (`Action`),
//! and its setup (`CoreConfig`). Every type derives serde: the golden
//! tests replay recorded events as JSON lines and compare the actions.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::mode::Mode;
use crate::reconcile::{KernelEvent, KernelRoute, RouteOp};
use crate::route_table::{NextHop, PeerRoute, RouteUpdate};

/// How often the routes are re-checked against the kernel even without
/// kernel events, by default.
pub const RESYNC_EVERY_MS: u64 = 30_000;

/// The core's fixed setup, known before the first event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// The dataplane mode.
    pub mode: Mode,
    /// With direct routing: peers on this underlay subnet get host-gw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_subnet: Option<Cidr>,
    /// The overlay TUN (overlay modes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun: Option<TunLink>,
    /// The underlay MTU at start.
    pub underlay_mtu: u32,
    /// After a graceful restart: keep the routes found in the kernel until
    /// BGP has relearned the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_hold: Option<StaleHold>,
    /// On a graceful stop, leave the routes installed (host-gw with BGP
    /// graceful restart: forwarding goes on while weftd restarts).
    #[serde(default)]
    pub keep_routes_on_graceful_stop: bool,
    /// Period of the full resync in milliseconds.
    #[serde(default = "default_resync")]
    pub resync_every_ms: u64,
}

fn default_resync() -> u64 {
    RESYNC_EVERY_MS
}

impl CoreConfig {
    /// A setup for `mode` with defaults: no TUN, no stale hold, routes
    /// removed on stop, the default resync period.
    pub fn new(mode: Mode, underlay_mtu: u32) -> Self {
        Self {
            mode,
            direct_subnet: None,
            tun: None,
            underlay_mtu,
            stale_hold: None,
            keep_routes_on_graceful_stop: false,
            resync_every_ms: RESYNC_EVERY_MS,
        }
    }
}

/// The overlay TUN device as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunLink {
    /// Its interface index (overlay routes are `dev <ifindex>`).
    pub ifindex: u32,
    /// True when `dataplane.mtu` is set: the TUN MTU does not follow the
    /// underlay then.
    #[serde(default)]
    pub fixed_mtu: bool,
}

/// The stale-route hold of a graceful restart (RFC 4724 receiving side,
/// applied to our own kernel routes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaleHold {
    /// Peers whose End-of-RIB is awaited.
    pub peers: BTreeSet<IpAddr>,
    /// The restart time in milliseconds: the hold ends then at the latest.
    pub restart_time_ms: u64,
}

/// An input to [`super::RouterCore::handle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Begin: routes fed before it are in the table; the first full sync
    /// starts now.
    Start,
    /// A batch of route changes from one source (static config, BGP).
    Routes(Vec<RouteUpdate>),
    /// The config was reloaded: these are the static routes now. Those
    /// gone are withdrawn, new or changed ones upserted; the others are
    /// not touched.
    StaticRoutes(Vec<PeerRoute>),
    /// A BGP peer sent End-of-RIB for every family of its session.
    EndOfRib {
        /// The peer's address.
        peer: IpAddr,
    },
    /// The kernel changed (from the netlink watcher).
    Kernel(KernelEvent),
    /// The underlay link's MTU (answer to [`Action::ReadUnderlay`], or
    /// unsolicited); `None` when the underlay address is gone.
    UnderlayMtu {
        /// The MTU.
        mtu: Option<u32>,
    },
    /// The deadline from `poll_timeout` passed.
    Timeout,
    /// Stop. `graceful`: a requested stop (SIGTERM), which may keep the
    /// routes (see [`CoreConfig::keep_routes_on_graceful_stop`]).
    Stop {
        /// A requested stop rather than an abort.
        graceful: bool,
    },
    /// Answer to [`Action::DumpRoutes`]: weftd's routes in the kernel.
    Dumped {
        /// The routes of weftd's protocol in the main table.
        routes: Vec<KernelRoute>,
    },
    /// Answer to [`Action::DumpRoutes`]: the dump failed.
    DumpFailed {
        /// Why.
        error: String,
    },
    /// Answer to [`Action::ApplyRoutes`]: every operation succeeded.
    Applied,
    /// Answer to [`Action::ApplyRoutes`]: an operation failed; the kernel
    /// state is unknown.
    ApplyFailed {
        /// Why.
        error: String,
    },
    /// Answer to [`Action::SetTunMtu`] when it failed.
    TunMtuFailed {
        /// Why.
        error: String,
    },
}

/// Why a full dump + diff runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncReason {
    /// The first sync.
    Start,
    /// The periodic resync.
    Periodic,
    /// A link changed.
    LinkChanged,
    /// Someone else deleted a route weftd wants (or an unparsable one).
    RouteDeleted,
    /// An incremental update failed.
    ApplyFailed,
    /// The stale-route hold ended: routes not relearned go.
    StaleReleased,
    /// Stopping: every route goes.
    Stop,
}

/// Readiness of the node's routing, for sd_notify and status queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// The first sync has not completed.
    Starting,
    /// The routes known at start are programmed (first full sync done).
    Ready,
    /// Stopping.
    Stopping,
}

/// Why the stale-route hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Released {
    /// Every awaited peer sent End-of-RIB.
    EndOfRib,
    /// The restart time ran out first.
    RestartTimeOver,
}

/// A state change worth a log line (the driver logs it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Note {
    /// The stale-route hold ended.
    StaleReleased {
        /// Why.
        by: Released,
    },
    /// The underlay MTU changed.
    UnderlayMtuChanged {
        /// Before.
        old: u32,
        /// Now.
        new: u32,
    },
    /// The underlay address is gone (the MTU is not followed meanwhile).
    UnderlayGone,
    /// Setting the TUN MTU failed; retried on the next sync.
    TunMtuFailed {
        /// Why.
        error: String,
    },
    /// An incremental update failed; a full resync follows.
    ApplyFailed {
        /// Why.
        error: String,
    },
    /// A full sync failed: weftd stops with this error.
    SyncFailed {
        /// Why.
        error: String,
    },
    /// Removing the routes on stop failed (they stay).
    CleanupFailed {
        /// Why.
        error: String,
    },
    /// Graceful stop with graceful restart: the routes stay installed.
    RoutesKept,
    /// A reload replaced the static routes (counts of pod ranges).
    StaticRoutesReloaded {
        /// Static routes new in the config.
        added: usize,
        /// Static routes gone from the config.
        removed: usize,
        /// Static routes whose gateway or VTEP MAC changed.
        changed: usize,
    },
}

/// An output of [`super::RouterCore::handle`], for the driver to execute
/// in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read the underlay link's MTU; answer with [`Event::UnderlayMtu`].
    ReadUnderlay,
    /// Dump weftd's kernel routes; answer with [`Event::Dumped`] or
    /// [`Event::DumpFailed`].
    DumpRoutes {
        /// Why.
        reason: SyncReason,
    },
    /// Apply these operations in order (replace on add; a delete of a
    /// route already gone succeeds); answer with [`Event::Applied`] or
    /// [`Event::ApplyFailed`].
    ApplyRoutes {
        /// The operations.
        ops: Vec<RouteOp>,
    },
    /// Hand the dataplane changed peers (`None`: withdrawn), i.e.
    /// `Dataplane::update_routes`.
    UpdatePeers {
        /// Pod range and its new next hop.
        changes: Vec<(Cidr, Option<NextHop>)>,
    },
    /// Tell the dataplane the underlay MTU changed (too-big replies).
    SetUnderlayMtu {
        /// The new underlay MTU.
        mtu: u32,
    },
    /// Set the TUN's MTU; answer only a failure ([`Event::TunMtuFailed`]).
    SetTunMtu {
        /// The TUN's interface index.
        ifindex: u32,
        /// Its new MTU.
        mtu: u32,
    },
    /// Readiness changed.
    Readiness(Readiness),
    /// Routes were applied: counts for the log and the route gauge.
    Summary {
        /// Routes added or replaced.
        installed: usize,
        /// Routes deleted.
        removed: usize,
        /// Pod ranges routed now (0 once the stop removed them).
        routes: usize,
    },
    /// Something worth logging.
    Log(Note),
    /// Done: stop the dataplane and exit (with an error, if any).
    Exit {
        /// Why weftd fails, if it does.
        error: Option<String>,
    },
}
