//! BFD (RFC 5880, single hop RFC 5881): the control packet codec and a
//! pure session state machine, built like the BGP FSM (inputs and the time
//! in, outputs out), and the tokio [`driver`] that sends and receives on
//! UDP 3784 with TTL 255.

pub mod driver;
pub mod packet;
pub mod session;

pub use packet::{BfdState, CONTROL_LEN, ControlPacket, Diag, PacketError};
pub use session::{BfdConfig, BfdSession, Input, Output, SLOW_TX};

#[cfg(test)]
mod tests;
