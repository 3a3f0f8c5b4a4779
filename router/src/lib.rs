//! weftd: config, route table, dataplane (host-gw and TUN overlay),
//! control socket and metrics.
