//! The deny-list wire format: SM2-signed round trips, deltas, and every
//! malformed input refused with its own error.

use chip::CardNumber;
use crypto::{Key32, Sm2SigningKey};
use issuance::{
    DENY_LIST_ENTRIES_MAX, DenyList, DenyListDelta, DenyListError, DenyListSigner, DenyListVersion,
    SignatureError, Unsigned,
};
use proptest::prelude::*;

fn key(byte: u8) -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&Key32::from_slice(&[byte; 32]).unwrap()).unwrap()
}

fn card(sequence: u32) -> CardNumber {
    CardNumber::from_sequence(sequence).unwrap()
}

fn list(version: u64, sequences: &[u32]) -> DenyList {
    DenyList::from_cards(DenyListVersion(version), sequences.iter().map(|&s| card(s)))
}

/// Raw wire bytes with arbitrary (possibly inconsistent) fields, signed.
#[allow(clippy::too_many_arguments)]
fn raw(
    format: u8,
    kind: u8,
    version: u64,
    base: u64,
    adds: u32,
    removes: u32,
    body: &[u8],
    signer: &dyn DenyListSigner,
) -> Vec<u8> {
    let mut out = b"CCDL".to_vec();
    out.push(format);
    out.push(kind);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&base.to_be_bytes());
    out.extend_from_slice(&adds.to_be_bytes());
    out.extend_from_slice(&removes.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    let signature = signer.sign(&out);
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(&signature);
    out
}

#[test]
fn full_list_round_trips_under_sm2_and_answers_lookups() {
    let signer = key(0x11);
    let public = signer.public_key();
    let original = list(5, &[900_000_000, 3, 1, 200, 3]);
    assert_eq!(original.sequences(), &[1, 3, 200, 900_000_000]);
    let bytes = original.encode(&signer);
    // 34-byte header, varints 1 + 1 + 2 + 5 bytes, 2 + 64 signature.
    assert_eq!(bytes.len(), 34 + 9 + 2 + 64);
    let decoded = DenyList::decode(&bytes, &public).unwrap();
    assert_eq!(decoded, original);
    assert!(decoded.contains(card(200)));
    assert!(!decoded.contains(card(201)));
    assert_eq!(decoded.cards().next(), Some(card(1)));

    // Any flipped byte, or another key, fails.
    for i in [0, 10, 40, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(DenyList::decode(&bad, &public).is_err(), "byte {i}");
    }
    let mut body_flip = bytes.clone();
    body_flip[36] ^= 0x01;
    assert_eq!(
        DenyList::decode(&body_flip, &public),
        Err(DenyListError::Signature(SignatureError::Invalid))
    );
    assert_eq!(
        DenyList::decode(&bytes, &key(0x22).public_key()),
        Err(DenyListError::Signature(SignatureError::Invalid))
    );
    // A signed list is not accepted as unsigned.
    assert!(DenyList::decode(&bytes, &Unsigned).is_err());
}

#[test]
fn delta_applied_to_version_n_gives_version_n_plus_k() {
    let signer = key(0x11);
    let public = signer.public_key();
    let old = list(10, &[1, 5, 9, 12, 40]);
    let new = list(13, &[2, 5, 12, 40, 41, 999_999_999]);
    let delta = old.delta_to(&new).unwrap();
    assert_eq!(delta.adds(), &[2, 41, 999_999_999]);
    assert_eq!(delta.removes(), &[1, 9]);
    let wire = delta.encode(&signer);
    let decoded = DenyListDelta::decode(&wire, &public).unwrap();
    assert_eq!(decoded, delta);
    let mut terminal = DenyList::decode(&old.encode(&signer), &public).unwrap();
    terminal.apply(&decoded).unwrap();
    assert_eq!(terminal, new);

    // The same delta again: the versions no longer chain, nothing changes.
    assert_eq!(
        terminal.apply(&decoded),
        Err(DenyListError::VersionMismatch {
            list: DenyListVersion(13),
            base: DenyListVersion(10)
        })
    );
    assert_eq!(terminal, new);
    // A full list is not a delta and the other way round.
    assert!(matches!(
        DenyListDelta::decode(&old.encode(&signer), &public),
        Err(DenyListError::WrongKind { .. })
    ));
    assert!(matches!(
        DenyList::decode(&wire, &public),
        Err(DenyListError::WrongKind { .. })
    ));
}

#[test]
fn deltas_that_do_not_fit_the_list_change_nothing() {
    let v = DenyListVersion;
    let mut base = list(1, &[1, 2, 3]);
    let add_listed = DenyListDelta::new(v(1), v(2), [card(2)], []).unwrap();
    assert_eq!(
        base.apply(&add_listed),
        Err(DenyListError::AlreadyListed(2))
    );
    let remove_missing = DenyListDelta::new(v(1), v(2), [card(7)], [card(8)]).unwrap();
    assert_eq!(
        base.apply(&remove_missing),
        Err(DenyListError::NotListed(8))
    );
    assert_eq!(base, list(1, &[1, 2, 3]));
    assert_eq!(
        DenyListDelta::new(v(2), v(2), [card(4)], []),
        Err(DenyListError::BadVersionChain {
            base: v(2),
            version: v(2)
        })
    );
    assert_eq!(
        DenyListDelta::new(v(1), v(2), [card(4)], [card(4)]),
        Err(DenyListError::AddedAndRemoved(4))
    );
    assert_eq!(
        list(3, &[1]).delta_to(&list(2, &[1])),
        Err(DenyListError::BadVersionChain {
            base: v(3),
            version: v(2)
        })
    );
    assert_eq!(
        DenyList::from_sorted_sequences(v(1), vec![1, 3, 2]),
        Err(DenyListError::Unsorted {
            previous: 3,
            next: 2
        })
    );
    assert_eq!(
        DenyList::from_sorted_sequences(v(1), vec![1, 3, 3]),
        Err(DenyListError::Duplicate(3))
    );
    assert_eq!(
        DenyList::from_sorted_sequences(v(1), vec![1_000_000_000]),
        Err(DenyListError::SequenceOutOfRange(1_000_000_000))
    );
    let ok = DenyListDelta::new(v(1), v(3), [card(9)], [card(1)]).unwrap();
    base.apply(&ok).unwrap();
    assert_eq!(base, list(3, &[2, 3, 9]));
}

#[test]
fn malformed_input_is_refused_with_a_typed_error() {
    let s = Unsigned;
    let decode = |bytes: &[u8]| DenyList::decode(bytes, &Unsigned);
    let good = raw(1, 0, 1, 0, 2, 0, &[5, 1], &s);
    assert_eq!(decode(&good).unwrap(), list(1, &[5, 6]));

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(decode(&bad_magic), Err(DenyListError::BadMagic));
    assert_eq!(
        decode(&raw(2, 0, 1, 0, 2, 0, &[5, 1], &s)),
        Err(DenyListError::UnsupportedFormat(2))
    );
    assert!(matches!(
        decode(&raw(1, 9, 1, 0, 2, 0, &[5, 1], &s)),
        Err(DenyListError::WrongKind { found: 9, .. })
    ));
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 2, 0, &[5, 0], &s)),
        Err(DenyListError::Duplicate(5))
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 7, 2, 0, &[5, 1], &s)),
        Err(DenyListError::FullListWithDeltaFields)
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 1, 1, &[5, 1], &s)),
        Err(DenyListError::FullListWithDeltaFields)
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 3, 0, &[5, 1], &s)),
        Err(DenyListError::BodyTooShort {
            body_len: 2,
            entries: 3
        })
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 1, 0, &[5, 1], &s)),
        Err(DenyListError::BodyNotConsumed(1))
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 0, DENY_LIST_ENTRIES_MAX + 1, 0, &[5, 1], &s)),
        Err(DenyListError::TooManyEntries {
            count: u64::from(DENY_LIST_ENTRIES_MAX) + 1
        })
    );
    // 1,000,000,000 as a varint: out of the 9-digit range.
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 1, 0, &[0x80, 0x94, 0xEB, 0xDC, 0x03], &s)),
        Err(DenyListError::SequenceOutOfRange(1_000_000_000))
    );
    // A gap that pushes past the range.
    assert_eq!(
        decode(&raw(
            1,
            0,
            1,
            0,
            2,
            0,
            &[0xFF, 0x93, 0xEB, 0xDC, 0x03, 2],
            &s
        )),
        Err(DenyListError::SequenceOutOfRange(1_000_000_001))
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 1, 0, &[0x80; 6], &s)),
        Err(DenyListError::BadVarint(0))
    );
    assert_eq!(
        decode(&raw(1, 0, 1, 0, 1, 0, &[0x80], &s)),
        Err(DenyListError::BadVarint(0))
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(decode(&trailing), Err(DenyListError::TrailingBytes(1)));
    let mut long_sig = good[..good.len() - 2].to_vec();
    long_sig.extend_from_slice(&2000u16.to_be_bytes());
    assert_eq!(
        decode(&long_sig),
        Err(DenyListError::SignatureTooLong(2000))
    );
    // Deltas: adds and removes overlapping, or a broken version chain.
    assert_eq!(
        DenyListDelta::decode(&raw(1, 1, 2, 1, 1, 1, &[5, 5], &s), &Unsigned),
        Err(DenyListError::AddedAndRemoved(5))
    );
    assert_eq!(
        DenyListDelta::decode(&raw(1, 1, 2, 2, 1, 0, &[5], &s), &Unsigned),
        Err(DenyListError::BadVersionChain {
            base: DenyListVersion(2),
            version: DenyListVersion(2)
        })
    );
    // Every truncation is an error, never a panic.
    for len in 0..good.len() {
        assert!(decode(&good[..len]).is_err(), "length {len}");
    }
    assert!(matches!(
        decode(&good[..10]),
        Err(DenyListError::Truncated {
            needed: 14,
            available: 10
        })
    ));
}

#[test]
fn a_dense_list_costs_about_one_byte_per_card() {
    let cards: Vec<u32> = (1..=10_000).map(|i| i * 50).collect();
    let bytes = list(1, &cards).encode(&Unsigned);
    // Gaps of 50 fit one varint byte each.
    assert_eq!(bytes.len(), 34 + 10_000 + 2);
}

proptest! {
    #[test]
    fn random_lists_round_trip_and_deltas_chain(
        a in proptest::collection::btree_set(1u32..=999_999_999, 0..200),
        b in proptest::collection::btree_set(1u32..=999_999_999, 0..200),
    ) {
        let old = DenyList::from_sorted_sequences(DenyListVersion(1), a.into_iter().collect()).unwrap();
        let new = DenyList::from_sorted_sequences(DenyListVersion(4), b.into_iter().collect()).unwrap();
        prop_assert_eq!(&DenyList::decode(&old.encode(&Unsigned), &Unsigned).unwrap(), &old);
        let delta = old.delta_to(&new).unwrap();
        let delta = DenyListDelta::decode(&delta.encode(&Unsigned), &Unsigned).unwrap();
        let mut applied = old.clone();
        applied.apply(&delta).unwrap();
        prop_assert_eq!(applied, new);
    }

    #[test]
    fn mutated_bytes_never_panic(
        seqs in proptest::collection::vec(1u32..=999_999_999, 0..50),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = DenyList::from_cards(DenyListVersion(1), seqs.iter().map(|&s| card(s))).encode(&Unsigned);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = DenyList::decode(&bytes, &Unsigned);
        let _ = DenyListDelta::decode(&bytes, &Unsigned);
        let cut = cut.index(bytes.len() + 1);
        let _ = DenyList::decode(&bytes[..cut], &Unsigned);
    }
}
