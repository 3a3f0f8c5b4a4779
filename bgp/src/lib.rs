//! weft's BGP speaker: a validating wire codec, a pure RFC 4271 session
//! state machine, the RIB and its decision process, and a tokio driver.
#![forbid(unsafe_code)]
