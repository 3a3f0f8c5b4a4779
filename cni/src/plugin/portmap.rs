//! The `portmap` plugin.

pub mod config;
pub mod plan;
