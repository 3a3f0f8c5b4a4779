//! The DHCP reply decoder on arbitrary datagrams, and what the client does
//! with an accepted one: a parsed message re-encodes to one that parses
//! identically, and turning it into a lease and a CNI result never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::dhcp::lease::{ClientOptions, Lease, classless_routes, static_routes};
use weft_cni::dhcp::wire::{Message, MessageType};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    assert_eq!(Message::parse(&m.emit()).as_ref(), Ok(&m));
    let opts = ClientOptions::default();
    let _ = opts.answers(&m, m.xid, &[MessageType::Ack, MessageType::Offer]);
    let _ = opts.select(1, &m);
    if let Ok(l) = Lease::from_ack(&m, 1) {
        let _ = l.result().to_json("1.0.0");
        let _ = l.phase(u64::MAX);
    }
    for (_, v) in &m.options {
        let _ = classless_routes(v);
        let _ = static_routes(v);
    }
});
