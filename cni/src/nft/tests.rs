use super::*;

#[test]
fn owner_records_round_trip() {
    let t = Table::new(Family::Inet, "weft-cni");
    let e = Owned::Elem {
        table: t.clone(),
        set: "masq4".into(),
        key: vec![10, 0, 0, 5],
    };
    let c = Owned::Chain {
        table: Table::new(Family::Bridge, "weft-cni"),
        chain: "cn-s-1".into(),
    };
    assert_eq!(Owned::decode(&e.encode()), Some(e.clone()));
    assert_eq!(Owned::decode(&c.encode()), Some(c.clone()));
    let a = Owned::Attachment {
        network: "net".into(),
        container_id: "c1".into(),
        ifname: "eth0".into(),
    };
    assert_eq!(Owned::decode(&a.encode()), Some(a.clone()));
    assert!(release_ops(&t, "cn-m-1", std::slice::from_ref(&a)).len() == 2);
    assert_eq!(Owned::decode(b"garbage"), None);
    for cut in 0..e.encode().len() {
        let _ = Owned::decode(&e.encode()[..cut]);
    }
}

#[test]
fn release_deletes_elements_before_chains() {
    let t = Table::new(Family::Inet, "weft-cni");
    let owned = vec![
        Owned::Elem {
            table: t.clone(),
            set: "m".into(),
            key: vec![1],
        },
        Owned::Chain {
            table: t.clone(),
            chain: "x".into(),
        },
        Owned::Elem {
            table: t.clone(),
            set: "m".into(),
            key: vec![2],
        },
    ];
    let ops = release_ops(&t, "own", &owned);
    assert_eq!(
        ops[0],
        Op::DelElems {
            table: t.clone(),
            set: "m".into(),
            keys: vec![vec![1], vec![2]]
        }
    );
    assert_eq!(
        ops[1],
        Op::FlushChain {
            table: t.clone(),
            chain: "x".into()
        }
    );
    assert_eq!(
        ops[3],
        Op::FlushChain {
            table: t.clone(),
            chain: "own".into()
        }
    );
    assert_eq!(
        ops[4],
        Op::DelChain {
            table: t,
            chain: "own".into()
        }
    );
}

#[test]
fn batch_is_framed_by_begin_and_end() {
    let t = Table::new(Family::Inet, "weft-cni");
    let (bytes, seqs) = encode_batch(&[Op::AddTable(t)], 100);
    let msgs = nla::messages(&bytes);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].ty, NFNL_MSG_BATCH_BEGIN);
    assert_eq!(msgs[1].ty, SUBSYS_NFTABLES << 8);
    assert_eq!(msgs[2].ty, NFNL_MSG_BATCH_END);
    assert_eq!(seqs, vec![101]);
}

#[test]
fn owner_id_is_stable_and_separates_parts() {
    assert_eq!(owner_id(&["net", "cid"]), owner_id(&["net", "cid"]));
    assert_ne!(owner_id(&["ne", "tcid"]), owner_id(&["net", "cid"]));
    assert_eq!(owner_id(&["a"]).len(), 16);
}
