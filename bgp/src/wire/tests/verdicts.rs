//! RFC 4271 / RFC 7606 verdicts: which errors reset the session, which
//! treat the UPDATE as a withdraw, which attributes are dropped.

use super::*;

#[test]
fn header_errors_map_to_code_1() {
    let mut b = frame(4, &[]);
    b[3] = 0;
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (1, 1));
    assert_eq!(code_of(&decode(&frame(9, &[]), &FOUR).unwrap_err()), (1, 3));
    assert_eq!(
        code_of(&decode(&frame(4, &[0]), &FOUR).unwrap_err()),
        (1, 2)
    );
    assert_eq!(
        code_of(&decode(&frame(3, &[1]), &FOUR).unwrap_err()),
        (1, 2)
    );
    assert_eq!(
        code_of(&decode(&frame(2, &[0, 0]), &FOUR).unwrap_err()),
        (1, 2)
    );
    assert_eq!(
        code_of(&decode(&frame(5, &[0, 1, 0, 1, 0]), &FOUR).unwrap_err()),
        (7, 1)
    );
    let mut big = vec![0xff; 16];
    big.extend_from_slice(&[0x10, 0x01, 2]);
    assert_eq!(frame_len(&big), Err(DecodeError::BadLength(4097)));
    assert_eq!(
        decode(&frame(4, &[])[..18], &FOUR),
        Err(DecodeError::Incomplete)
    );
    assert_eq!(frame_len(&frame(4, &[])[..18]), Ok(None));
}

#[test]
fn open_errors_map_to_code_2() {
    let body = [3, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 0];
    let e = decode(&frame(1, &body), &FOUR).unwrap_err();
    assert_eq!(
        e.notification().unwrap(),
        Notification {
            code: 2,
            subcode: 1,
            data: vec![0, 4]
        }
    );
    let body = [4, 0xfd, 0xe9, 0, 90, 0, 0, 0, 0, 0];
    assert_eq!(
        code_of(&decode(&frame(1, &body), &FOUR).unwrap_err()),
        (2, 3)
    );
    let body = [4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 3, 1, 1, 0];
    assert_eq!(
        code_of(&decode(&frame(1, &body), &FOUR).unwrap_err()),
        (2, 4)
    );
    let body = [4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 4, 2, 2, 65, 4];
    assert_eq!(
        code_of(&decode(&frame(1, &body), &FOUR).unwrap_err()),
        (2, 0)
    );
}

#[test]
fn update_length_errors_reset() {
    // Withdrawn length beyond the message: 3/1.
    let b = frame(2, &[0, 9, 24, 10, 0, 1, 0, 0]);
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (3, 1));
    // Truncated NLRI: 3/10.
    let b = update(&[], BASE_ATTRS, &[24, 10, 0]);
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (3, 10));
    // Prefix length 33: 3/10.
    let b = update(&[], BASE_ATTRS, &[33, 10, 0, 0, 0, 0]);
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (3, 10));
}

#[test]
fn attribute_length_overrun_is_treat_as_withdraw() {
    let b = update(&[], &with(&[0x80, 4, 9, 0, 0]), &[24, 10, 0, 1]);
    assert_eq!(
        decode_update(&b, &FOUR).unwrap().verdict,
        Verdict::TreatAsWithdraw
    );
}

#[test]
fn bad_origin_and_bad_well_known_lengths_are_treat_as_withdraw() {
    for attrs in [
        vec![0x40, 1, 1, 3, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1],
        vec![0x40, 1, 2, 0, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1],
        vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 3, 192, 0, 2],
        vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 0, 0, 0, 0],
        with(&[0x80, 4, 3, 0, 0, 0]),
        with(&[0x40, 5, 5, 0, 0, 0, 0, 0]),
        with(&[0x80, 9, 3, 1, 1, 1]),
        with(&[0x80, 10, 5, 1, 1, 1, 1, 1]),
        // ORIGIN with the optional bit set: flags conflict.
        vec![0xc0, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1],
        // Missing NEXT_HOP with IPv4 NLRI.
        vec![0x40, 1, 1, 0, 0x40, 2, 0],
        // Missing ORIGIN.
        vec![0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1],
    ] {
        let u = decode_update(&update(&[], &attrs, &[24, 10, 0, 1]), &FOUR).unwrap();
        assert_eq!(u.verdict, Verdict::TreatAsWithdraw, "{attrs:?}");
    }
}

#[test]
fn discardable_attributes_are_dropped() {
    for extra in [
        vec![0x40, 6, 1, 0],             // ATOMIC_AGGREGATE with a value
        vec![0xc0, 7, 5, 0, 0, 0, 0, 0], // AGGREGATOR of length 5
        vec![0xc0, 17, 2, 2, 0],         // AS4_PATH on a 4-octet session
        vec![0x80, 4, 4, 0, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 2], // repeated MED
    ] {
        let u = decode_update(&update(&[], &with(&extra), &[24, 10, 0, 1]), &FOUR).unwrap();
        assert_eq!(u.verdict, Verdict::AttributeDiscard, "{extra:?}");
        assert_eq!(u.announced().len(), 1);
        assert!(!u.attrs.atomic_aggregate && u.attrs.aggregator.is_none());
        assert!(u.attrs.med.is_none() || u.attrs.med == Some(1));
    }
}

#[test]
fn unknown_well_known_attribute_resets_with_3_2_and_the_attribute() {
    let b = update(&[], &with(&[0x40, 99, 2, 7, 7]), &[24, 10, 0, 1]);
    let n = decode(&b, &FOUR).unwrap_err().notification().unwrap();
    assert_eq!((n.code, n.subcode, n.data), (3, 2, vec![0x40, 99, 2, 7, 7]));
}

#[test]
fn unknown_optional_transitive_is_kept_non_transitive_dropped() {
    let b = update(
        &[],
        &with(&[0xc0, 99, 1, 5, 0x80, 98, 1, 6]),
        &[24, 10, 0, 1],
    );
    let u = decode_update(&b, &FOUR).unwrap();
    assert_eq!(u.verdict, Verdict::Clean);
    assert_eq!(
        u.attrs.other,
        vec![RawAttr {
            flags: 0xc0,
            code: 99,
            data: vec![5]
        }]
    );
}

#[test]
fn duplicate_mp_reach_resets() {
    let mp = [0x80, 14, 5, 0, 1, 1, 0, 0];
    let b = update(&[], &[BASE_ATTRS, &mp, &mp].concat(), &[]);
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (3, 1));
}

#[test]
fn mp_reach_bad_next_hop_length_is_treat_as_withdraw() {
    let mp = [0x80, 14, 11, 0, 2, 1, 3, 1, 2, 3, 0, 16, 0xfd, 0];
    let b = update(&[], &[&[0x40, 1, 1, 0, 0x40, 2, 0][..], &mp].concat(), &[]);
    let u = decode_update(&b, &FOUR).unwrap();
    assert_eq!(u.verdict, Verdict::TreatAsWithdraw);
    assert_eq!(u.withdrawn_all(), vec![p("fd00::/16")]);
}

#[test]
fn as4_path_merges_on_two_octet_sessions() {
    // AS_PATH [23456, 65001], AS4_PATH [4200000000, 65001].
    let attrs = [
        &[
            0x40, 1, 1, 0, 0x40, 2, 6, 2, 2, 0x5b, 0xa0, 0xfd, 0xe9, 0x40, 3, 4, 192, 0, 2, 1,
        ][..],
        &[0xc0, 17, 10, 2, 2, 0xfa, 0x56, 0xea, 0x00, 0, 0, 0xfd, 0xe9],
    ]
    .concat();
    let u = decode_update(&update(&[], &attrs, &[24, 10, 0, 1]), &TWO).unwrap();
    assert_eq!(u.verdict, Verdict::Clean);
    assert_eq!(
        u.attrs.as_path.unwrap().0[0].asns,
        vec![4_200_000_000, 65001]
    );
}

#[test]
fn end_of_rib_markers() {
    let b = update(&[], &[], &[]);
    assert_eq!(
        decode_update(&b, &FOUR).unwrap().end_of_rib(),
        Some(Family::Ipv4Unicast)
    );
    let b = update(&[], &[0x80, 15, 3, 0, 2, 1], &[]);
    assert_eq!(
        decode_update(&b, &FOUR).unwrap().end_of_rib(),
        Some(Family::Ipv6Unicast)
    );
    assert_eq!(
        decode_update(&update(&[], BASE_ATTRS, &[8, 10]), &FOUR)
            .unwrap()
            .end_of_rib(),
        None
    );
    for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        let mut b = Vec::new();
        encode(&Message::Update(Update::eor(f)), &FOUR, &mut b);
        assert_eq!(decode_update(&b, &FOUR).unwrap().end_of_rib(), Some(f));
    }
}
