//! The dataplane's I/O: the TUN device, the TX TAP, the underlay UDP and
//! raw sockets, batched sends and the TUN write of coalesced frames. The
//! only `unsafe` of the router (ioctls, `recvmmsg`/`sendmmsg`, cmsgs), and
//! no byte decisions: every header is built by `weft_encap`.

pub(crate) mod send;
#[allow(unsafe_code)]
pub mod socket;
#[allow(unsafe_code)]
pub mod tap;
#[allow(unsafe_code)]
pub mod tun;
pub(crate) mod tun_writer;
