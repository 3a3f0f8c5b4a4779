//! host-local IPAM: config and validation ([`config`]), the pure allocator
//! ([`allocator`]) over the [`store::LeaseStore`] trait, and the on-disk
//! store in the reference plugin's format ([`disk`], [`index`]).

pub mod allocator;
pub mod config;
pub mod disk;
pub mod index;
pub mod ipmath;
pub mod owner_table;
pub mod store;
