//! weft's BGP speaker: a validating wire codec, a pure RFC 4271 session
//! state machine, the RIB and its decision process, and a tokio driver.
//!
//! ```text
//! wire (bytes <-> Message) -> fsm (Session) -> rib (Adj-RIB-In, Loc-RIB) -> RouteEvent
//!                                   ^ driver (tokio: sockets, timers) ^ speaker (public handle)
//! ```
//! Everything but `driver` and `speaker` is pure: time is a parameter.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod fsm;
pub mod policy;
pub mod prefix;
pub mod rib;
pub mod wire;

pub use prefix::Prefix;
