//! netsim: builds weft clusters on one machine from network namespaces,
//! veth pairs and bridges, runs the real binaries in them and measures.
//!
//! It links no weft crate: it runs the built binaries as a user would.
//!
//! ```no_run
//! use netsim::{Mode, Topology};
//! let mut cluster = Topology::builder().nodes(3).pods_per_node(2).build()?;
//! cluster.apply_mode(Mode::KernelVxlan)?;
//! assert!(cluster.ping_matrix()?.all_ok());
//! cluster.tcp_transfer_check((0, 0), (2, 1), 10_000_000)?;
//! # Ok::<(), netsim::Error>(())
//! ```

pub mod attach;
pub mod bench;
pub mod bgp;
pub mod cluster;
pub mod cni;
pub mod cni_runtime;
pub mod error;
pub mod etcd;
pub mod frr;
pub mod gobgp;
pub mod health;
pub mod measure;
pub mod mode;
pub mod netns;
pub mod pki;
pub mod pods;
pub mod process;
pub mod report;
pub mod routing;
pub mod run;
pub mod topology;
pub mod traffic;
pub mod weftd;

pub use attach::{AttachRequest, Attached, BridgeAttach, PodAttach};
pub use bench::{BenchConfig, BenchReport, BenchResult, run_bench};
pub use cluster::{Cluster, Node, Pod, PodId};
pub use cni::CniAttach;
pub use error::{Error, Result};
pub use measure::{IperfOptions, IperfResult, Latency};
pub use mode::{Mode, WeftMode};
pub use routing::Routing;
pub use topology::{Ipv4Cidr, Topology, TopologyBuilder};
pub use traffic::{PingReport, TransferCheck};
