//! Kernel tests of the nftables layer: the skeleton applies, per-pod owner
//! chains record what they own, release removes exactly that.
#![allow(clippy::unwrap_used)]

use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use weft_cni::nft::skeleton::{self, MASQ4};
use weft_cni::nft::{Expr, NfSocket, Op, Owned, Verdict, owner_records, release_ops};

#[test]
fn skeleton_and_owner_chain_round_trip() {
    if !privileged_or_skip("skeleton_and_owner_chain_round_trip", &["ip", "nft"]) {
        return;
    }
    let ns = Netns::create(&format!("{}-h", unique_prefix("cn"))).unwrap();
    let listing = ns
        .run_in(|| {
            let mut s = NfSocket::open().unwrap();
            let t = skeleton::inet_table();
            skeleton::ensure(&mut s, skeleton::Skeleton::Inet).unwrap();
            skeleton::ensure(&mut s, skeleton::Skeleton::Bridge).unwrap();
            let mut ops = Vec::new();
            ops.push(Op::AddChain {
                table: t.clone(),
                name: "cn-m-1".into(),
                hook: None,
            });
            ops.push(Op::AddRule {
                table: t.clone(),
                chain: "cn-m-1".into(),
                exprs: vec![Expr::Masquerade],
                userdata: None,
            });
            let owned = vec![Owned::Elem {
                table: t.clone(),
                set: MASQ4.into(),
                key: vec![10, 9, 0, 2],
            }];
            ops.extend(owner_records(&t, "cn-m-1", &owned));
            ops.push(Op::AddElems {
                table: t.clone(),
                set: MASQ4.into(),
                elems: vec![(vec![10, 9, 0, 2], Some(Verdict::Jump("cn-m-1".into())))],
            });
            s.apply(&ops).unwrap();
            // ensuring again is a no-op; refilling keeps one copy of each rule
            skeleton::ensure(&mut s, skeleton::Skeleton::Inet).unwrap();
            s.apply(&skeleton::refill(skeleton::inet_ops())).unwrap();
            assert_eq!(s.owned(&t, "cn-m-1").unwrap(), owned);
            assert!(s.owned(&t, "cn-m-nope").unwrap().is_empty());
            std::process::Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .unwrap()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout).to_string();
    eprintln!("{text}{}", String::from_utf8_lossy(&listing.stderr));
    assert!(text.contains("10.9.0.2 : jump cn-m-1"), "{text}");
    assert!(text.contains("masquerade"), "{text}");
    let after = ns
        .run_in(|| {
            let mut s = NfSocket::open().unwrap();
            let t = skeleton::inet_table();
            let owned = s.owned(&t, "cn-m-1").unwrap();
            s.apply(&release_ops(&t, "cn-m-1", &owned)).unwrap();
            assert!(s.owned(&t, "cn-m-1").unwrap().is_empty());
            std::process::Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .unwrap()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&after.stdout).to_string();
    assert!(!text.contains("cn-m-1"), "{text}");
}
