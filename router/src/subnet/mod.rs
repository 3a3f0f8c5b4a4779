//! flannel-compatible subnet leases: the network config, lease keys and
//! values, the choice of this node's subnet and the routes to the others'.
//! `alloc`, `lease` and `network` are pure; `store` (the etcd client),
//! `start` (leasing before routing), `tls` (the certificates for `https`
//! members) and `keeper` (renewal, watch and
//! route feed) are the edge.

pub mod alloc;
pub mod keeper;
pub mod lease;
pub mod network;
pub mod start;
pub mod store;
pub mod tls;

pub use alloc::{Choice, Ignored, LEASE_TTL, RENEW_MARGIN, choose, renew_after, route_for};
pub use lease::{
    BadLease, Lease, LeaseAttrs, parse_lease, parse_subnet_key, previous_subnet, subnet_key,
};
pub use network::{Backend, Network};

/// Why no subnet could be leased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// The network config in the store is unusable.
    #[error("network config: {0}")]
    NetworkConfig(String),
    /// Every subnet of the pool is leased.
    #[error("subnet pool {pool} is exhausted: all {count} subnets are leased")]
    PoolExhausted {
        /// The pool, as `Network (/len subnets min to max)`.
        pool: String,
        /// How many subnets it holds.
        count: u32,
    },
}
