//! weft's BGP speaker: a validating wire codec, a pure RFC 4271 session
//! state machine, the RIB and its decision process, and a tokio driver.
//!
//! ```text
//! wire (bytes <-> Message) -> fsm (Session) -> rib (Adj-RIB-In, Loc-RIB) -> RouteEvent
//!        driver (tokio: sockets, timers, MD5) -> speaker (public handle)
//! ```
//! Everything but `driver` and `speaker` is pure: time is a parameter.
//!
//! Use: build a [`SpeakerConfig`], call [`Speaker::spawn`], announce the pod
//! CIDR with [`SpeakerHandle::announce`], and apply the batches of
//! [`RouteEvent`] that arrive on the receiver.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bfd;
pub mod config;
mod driver;
pub mod error;
pub mod fsm;
pub mod policy;
pub mod prefix;
pub mod rib;
pub mod speaker;
pub mod wire;

pub use config::{BfdTimersConfig, BgpConfig, PeerConfig, SpeakerConfig};
pub use error::Error;
pub use prefix::Prefix;
pub use rib::RouteEvent;
pub use speaker::{Direction, NotificationCount, PeerKind, PeerStatus, Speaker, SpeakerHandle};
