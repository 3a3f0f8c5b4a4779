//! Crafted inputs on which zettabgp 0.6 panicked or mis-decoded, kept as regressions.

use super::*;

#[test]
fn probe_header_length_under_19_is_bad_length() {
    let mut b = vec![0xff; 16];
    b.extend_from_slice(&[0, 18, 4]);
    let e = decode(&b, &FOUR).unwrap_err();
    assert_eq!(e, DecodeError::BadLength(18));
    assert_eq!(e.notification().unwrap().data, vec![0, 18]);
    assert_eq!(frame_len(&b), Err(DecodeError::BadLength(18)));
}

#[test]
fn probe_mp_reach_of_length_2_resets_with_3_1() {
    let b = update(&[], &with(&[0x80, 14, 2, 0, 2]), &[]);
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (3, 1));
}

#[test]
fn probe_mp_unreach_of_length_1_resets_with_3_1() {
    let b = update(&[], &[0x80, 15, 1, 0], &[]);
    assert_eq!(code_of(&decode(&b, &FOUR).unwrap_err()), (3, 1));
}

#[test]
fn probe_one_byte_attribute_block_is_treat_as_withdraw() {
    let b = update(&[], &[0x40], &[24, 10, 0, 1]);
    let u = decode_update(&b, &FOUR).unwrap();
    assert_eq!(u.verdict, Verdict::TreatAsWithdraw);
    assert!(u.announced().is_empty());
    assert_eq!(u.withdrawn_all(), vec![p("10.0.1.0/24")]);
}

#[test]
fn probe_communities_of_length_5_is_treat_as_withdraw() {
    let b = update(&[], &with(&[0xc0, 8, 5, 0, 0, 0, 1, 2]), &[24, 10, 0, 1]);
    let u = decode_update(&b, &FOUR).unwrap();
    assert_eq!(u.verdict, Verdict::TreatAsWithdraw);
    assert_eq!(u.withdrawn_all(), vec![p("10.0.1.0/24")]);
}

#[test]
fn probe_large_community_of_length_13_is_treat_as_withdraw() {
    let mut a = vec![0xc0, 32, 13];
    a.extend_from_slice(&[1; 13]);
    let b = update(&[], &with(&a), &[24, 10, 0, 1]);
    assert_eq!(
        decode_update(&b, &FOUR).unwrap().verdict,
        Verdict::TreatAsWithdraw
    );
}

#[test]
fn probe_as_path_2_1_0_is_treat_as_withdraw() {
    for caps in [FOUR, TWO] {
        let attrs = [0x40, 1, 1, 0, 0x40, 2, 3, 2, 1, 0, 0x40, 3, 4, 192, 0, 2, 1];
        let b = update(&[], &attrs, &[24, 10, 0, 1]);
        let u = decode_update(&b, &caps).unwrap();
        assert_eq!(u.verdict, Verdict::TreatAsWithdraw);
    }
}

#[test]
fn probe_as_path_2_0_7_terminates_as_treat_as_withdraw() {
    let attrs = [0x40, 1, 1, 0, 0x40, 2, 3, 2, 0, 7, 0x40, 3, 4, 192, 0, 2, 1];
    let b = update(&[], &attrs, &[24, 10, 0, 1]);
    assert_eq!(
        decode_update(&b, &FOUR).unwrap().verdict,
        Verdict::TreatAsWithdraw
    );
}

#[test]
fn probe_ipv4_route_with_ipv6_next_hop_rfc8950() {
    // MP_REACH AFI 1 SAFI 1, next hop 2001:db8::1 (16 bytes), 10.0.1.0/24.
    let nh: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut mp = vec![0x80, 14, 0, 0, 1, 1, 16];
    mp.extend_from_slice(&nh.octets());
    mp.extend_from_slice(&[0, 24, 10, 0, 1]);
    mp[2] = (mp.len() - 3) as u8;
    let attrs = [&[0x40, 1, 1, 0, 0x40, 2, 0][..], &mp].concat();
    let u = decode_update(&update(&[], &attrs, &[]), &FOUR).unwrap();
    assert_eq!(u.verdict, Verdict::Clean);
    assert_eq!(
        u.announced(),
        vec![(
            p("10.0.1.0/24"),
            MpNextHop {
                global: IpAddr::V6(nh),
                link_local: None
            }
        )]
    );
}

#[test]
fn probe_notification_data_is_kept_whole() {
    let data: Vec<u8> = (0..40).collect();
    let b = frame(3, &[[6u8, 2].as_slice(), &data].concat());
    assert_eq!(
        decode(&b, &FOUR).unwrap(),
        Message::Notification(Notification {
            code: 6,
            subcode: 2,
            data
        })
    );
}

#[test]
fn probe_no_add_path_guessing() {
    // Bytes that an add-path guesser reads as path id 1 + 10.1.2.0/24.
    let b = update(&[], BASE_ATTRS, &[0, 0, 0, 1, 24, 10, 1, 2]);
    let u = decode_update(&b, &FOUR).unwrap();
    assert_eq!(
        u.nlri,
        vec![
            p("0.0.0.0/0"),
            p("0.0.0.0/0"),
            p("0.0.0.0/0"),
            p("0.0.0.0/1"),
            p("1.0.0.0/10")
        ]
    );
}

#[test]
fn probe_plain_ipv4_update_decodes_regardless_of_transport() {
    let b = update(&[], BASE_ATTRS, &[26, 10, 0, 1, 64]);
    let u = decode_update(&b, &FOUR).unwrap();
    assert_eq!(u.announced()[0].0, p("10.0.1.64/26"));
    assert_eq!(
        u.announced()[0].1.global,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    );
}

#[test]
fn probe_open_with_fqdn_domain_and_unknown_caps_is_accepted() {
    let mut caps = vec![65, 4, 0, 0, 0xfd, 0xe9, 1, 4, 0, 1, 0, 1];
    caps.extend_from_slice(&[
        73, 11, 5, b'n', b'o', b'd', b'e', b'1', 4, b'l', b'a', b'b', b'x',
    ]);
    caps.extend_from_slice(&[200, 3, 1, 2, 3]);
    let mut body = vec![
        4,
        0xfd,
        0xe9,
        0,
        90,
        10,
        0,
        0,
        1,
        (caps.len() + 2) as u8,
        2,
        caps.len() as u8,
    ];
    body.extend_from_slice(&caps);
    let Message::Open(o) = decode(&frame(1, &body), &FOUR).unwrap() else {
        panic!()
    };
    assert_eq!(o.asn, 65001);
    assert!(o.caps.contains(&Capability::Fqdn {
        hostname: "node1".into(),
        domain: "labx".into()
    }));
    assert!(o.caps.contains(&Capability::Unknown {
        code: 200,
        data: vec![1, 2, 3]
    }));
    assert_eq!(o.families(), vec![Family::Ipv4Unicast]);
}
