//! The plugins.

pub mod bridge;
pub mod portmap;
