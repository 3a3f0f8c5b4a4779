//! The `bridge` plugin.

pub mod config;
pub mod plan;
