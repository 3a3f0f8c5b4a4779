//! Differential test against netgauze-bgp-pkt.

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::*;

fn theirs(b: &[u8]) -> Option<BgpMessage> {
    let mut ctx = BgpParsingContext::asn2_default();
    ctx.set_asn4(true);
    let mut cur = SliceReader::new(b);
    BgpMessage::parse(&mut cur, &mut ctx).ok()
}

/// Restricts a generated message to what netgauze models (it rejects
/// confederation segments and unregistered codes, which we accept).
fn normalize(mut m: Message) -> Message {
    match &mut m {
        Message::Update(u) => {
            for p in [&mut u.attrs.as_path].into_iter().flatten() {
                for s in &mut p.0 {
                    if matches!(s.kind, SegmentKind::ConfedSet | SegmentKind::ConfedSequence) {
                        s.kind = SegmentKind::Sequence;
                    }
                }
            }
        }
        Message::Notification(n) => n.code = 1 + n.code % 6,
        Message::RouteRefresh(r) => {
            r.afi = 1 + r.afi % 2;
            r.safi = 1;
            r.subtype %= 3;
        }
        Message::Open(o) => {
            for c in &mut o.caps {
                if let Capability::Multiprotocol { afi, safi } = c {
                    *afi = 1 + *afi % 2;
                    *safi = 1;
                }
            }
        }
        Message::Keepalive => {}
    }
    m
}

fn compare(m: &Message, b: &[u8]) -> Result<(), TestCaseError> {
    let Some(t) = theirs(b) else {
        // netgauze rejects some valid inputs (e.g. capabilities it does
        // not model strictly); only what both accept is compared.
        return Ok(());
    };
    match (m, &t) {
        (Message::Open(o), BgpMessage::Open(to)) => {
            prop_assert_eq!(o.asn, to.my_asn4());
            prop_assert_eq!(o.hold_time, to.hold_time());
            prop_assert_eq!(o.router_id, to.bgp_id());
        }
        (Message::Update(u), BgpMessage::Update(tu)) => {
            let ours: Vec<String> = u.nlri.iter().map(ToString::to_string).collect();
            let their: Vec<String> = tu
                .nlri()
                .iter()
                .map(|n| n.network().address().to_string())
                .collect();
            prop_assert_eq!(ours, their);
            let ours: Vec<String> = u.withdrawn.iter().map(ToString::to_string).collect();
            let their: Vec<String> = tu
                .withdraw_routes()
                .iter()
                .map(|n| n.network().address().to_string())
                .collect();
            prop_assert_eq!(ours, their);
        }
        (Message::Notification(_), BgpMessage::Notification(_))
        | (Message::Keepalive, BgpMessage::KeepAlive)
        | (Message::RouteRefresh(_), BgpMessage::RouteRefresh(_)) => {}
        (a, b) => prop_assert!(false, "kind mismatch: ours {a:?} theirs {b:?}"),
    }
    // What netgauze understood, written back, must mean the same to us.
    let mut again = Vec::new();
    if t.write(&mut again).is_ok() {
        let back = decode(&again, &FOUR);
        if let (Message::Update(u), Ok(Message::Update(v))) = (m, &back) {
            prop_assert_eq!(&u.nlri, &v.nlri);
            prop_assert_eq!(&u.withdrawn, &v.withdrawn);
            prop_assert_eq!(&u.attrs.as_path, &v.attrs.as_path);
            prop_assert_eq!(&u.attrs.communities, &v.attrs.communities);
            prop_assert_eq!(&u.attrs.large_communities, &v.attrs.large_communities);
            prop_assert_eq!(u.attrs.next_hop, v.attrs.next_hop);
            prop_assert_eq!(u.attrs.med, v.attrs.med);
            prop_assert_eq!(u.attrs.local_pref, v.attrs.local_pref);
            prop_assert_eq!(&u.mp_reach, &v.mp_reach);
            prop_assert_eq!(&u.mp_unreach, &v.mp_unreach);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn agrees_with_netgauze_on_generated_messages(m in message().prop_map(normalize)) {
        let mut b = Vec::new();
        encode(&m, &FOUR, &mut b);
        compare(&m, &b)?;
    }

    #[test]
    fn never_accepts_what_netgauze_finds_unframeable(m in message(), cut in any::<prop::sample::Index>()) {
        // Truncate inside the body while keeping the length field honest:
        // where we still decode an UPDATE cleanly, netgauze must agree on NLRI.
        let mut b = Vec::new();
        encode(&m, &FOUR, &mut b);
        let n = 19 + cut.index(b.len() - 18);
        let mut t = b[..n.min(b.len())].to_vec();
        let l = t.len() as u16;
        t[16..18].copy_from_slice(&l.to_be_bytes());
        if let (Ok(Message::Update(u)), Some(BgpMessage::Update(tu))) = (decode(&t, &FOUR), theirs(&t)) {
            if u.verdict == Verdict::Clean {
                prop_assert_eq!(u.nlri.len(), tu.nlri().len());
            }
        }
    }
}

#[test]
fn counts_how_many_generated_messages_netgauze_accepts() {
    // Guard against a differential test that silently compares nothing.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut both, mut total) = (0, 0);
    for _ in 0..300 {
        let m = normalize(message().new_tree(&mut runner).unwrap().current());
        let mut b = Vec::new();
        encode(&m, &FOUR, &mut b);
        total += 1;
        if theirs(&b).is_some() {
            both += 1;
        } else if std::env::var("DIFF_DEBUG").is_ok() {
            let mut ctx = BgpParsingContext::asn2_default();
            ctx.set_asn4(true);
            let e = BgpMessage::parse(&mut SliceReader::new(&b), &mut ctx).err();
            eprintln!("rejected {:?}: {e:?}", std::mem::discriminant(&m));
        }
    }
    assert!(both * 2 > total, "netgauze accepted only {both} of {total}");
}
