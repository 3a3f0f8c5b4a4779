//! netsim: builds weft clusters on one machine from network namespaces,
//! veth pairs and bridges, runs the real binaries in them and measures.
//!
//! It links no weft crate: it runs the built binaries as a user would.

pub mod netns;
