//! The operator interface over a unix socket: weftd serves it
//! ([`server`]), the `weft` CLI talks to it ([`client`], [`render`]).
//! Answers come from the tasks that own the state ([`status`]); `weft
//! reload` goes to the daemon's reload channel ([`crate::reload`]).
//!
//! ```text
//!  weft CLI ── {"command":"status"}\n ──► server ─► StatusSource::gather ─┬─► driver (RouterQuery ─► RouterSnapshot)
//!          ◄── {"ok":true,"result":..}\n ─┘                              ├─► BGP speaker (peers)
//!                                                                        ├─► node service (CNI files, watch)
//!                                                                        └─► Prometheus registry (tunnel counters)
//!  weft reload ─► server ─► ReloadRequest ─► daemon's reload hook ─► Ok(summary) / Err(problems)
//! ```

pub mod client;
pub mod render;
pub mod schema;
pub mod server;
pub mod status;
