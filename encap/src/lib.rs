//! Pure packet codecs for weft's overlays (flannel udp, VXLAN, IP-in-IP)
//! and the packet helpers the router needs. No I/O.
#![forbid(unsafe_code)]
