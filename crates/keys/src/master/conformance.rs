//! One conformance check every [`MasterKeyStore`] backend runs in its tests: the worked
//! examples of the `epurse.md` appendix, computed through the store with the test key set
//! entered as components.
//!
//! It panics with a message naming the failed step, as test helpers do.

use crypto::{Algorithm, DivData, Key16, MasterKeys, TransactionType};

use super::{
    KeyComponent, KeyRef, LoadFields, MasterKeyStore, MasterPurpose, PurchaseTacFields,
    unwrap_card_key,
};

/// Diversification data of the appendix card 4101000000000018.
pub const WORKED_DIV: DivData = DivData([0x41, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18]);

/// A fixed transport key for tests (never a production value).
pub const TEST_TRANSPORT_KEY: &str = "0123456789ABCDEFFEDCBA9876543210";

/// The expected values of the appendix, per profile.
struct Expected {
    dpk: &'static str,
    dlk: &'static str,
    dtk: &'static str,
    load_mac1: &'static str,
    load_mac2: &'static str,
    load_tac: &'static str,
    purchase_tac: &'static str,
}

fn expected(alg: Algorithm) -> Expected {
    match alg {
        Algorithm::Tdes => Expected {
            dpk: "EADC26959BFE2F7101D3BC07751ECC7E",
            dlk: "F80B5941A5EA099DF3C532F005763209",
            dtk: "E9D6C886B6534FECAF3819A6B9B16EFA",
            load_mac1: "69D93206",
            load_mac2: "A7A92C92",
            load_tac: "0DE58309",
            purchase_tac: "576613F0",
        },
        Algorithm::Sm4 => Expected {
            dpk: "1E0E9E084ACC18A4608FA02CD7840326",
            dlk: "86B72C1C35B3527BB7F2232BDF43D2C2",
            dtk: "72BDC1AECB19668C133EE5149422DFE5",
            load_mac1: "B5E7F8A1",
            load_mac2: "9F2C3024",
            load_tac: "25F4F5AE",
            purchase_tac: "629B5799",
        },
    }
}

fn mac(text: &str) -> [u8; 4] {
    hex::decode(text).unwrap().try_into().unwrap()
}

/// Splits `key` into three components (two fixed masks and the remainder), as three
/// custodians would enter it, each with its KCV under `alg`.
pub fn split_into_components(key: &Key16, alg: Algorithm) -> Vec<KeyComponent> {
    let a = [0x5Au8; 16];
    let b: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xC3);
    let c: [u8; 16] = core::array::from_fn(|i| key.expose()[i] ^ a[i] ^ b[i]);
    [a, b, c]
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let k = Key16::from_bytes(*part);
            KeyComponent::parse(i + 1, &hex::encode(part), &hex::encode(k.kcv(alg)), alg).unwrap()
        })
        .collect()
}

/// Imports the test key set (purchase, load, TAC) into `store` for application `app` by
/// components, plus the test transport key, and returns their references in that order.
pub fn import_test_set(store: &dyn MasterKeyStore, app: &str) -> [KeyRef; 4] {
    let test = MasterKeys::test_set();
    let transport = Key16::from_hex(TEST_TRANSPORT_KEY).unwrap();
    [
        (MasterPurpose::Purchase, test.purchase),
        (MasterPurpose::Load, test.load),
        (MasterPurpose::Tac, test.tac),
        (MasterPurpose::Transport, transport),
    ]
    .map(|(purpose, key)| {
        let r = KeyRef::new(app, purpose, 1).unwrap();
        let info = store
            .import_components(
                &r,
                &split_into_components(&key, Algorithm::Tdes),
                Algorithm::Tdes,
                Some(key.kcv(Algorithm::Tdes)),
            )
            .unwrap_or_else(|e| panic!("import {r}: {e}"));
        assert_eq!(
            info.kcv_tdes,
            Some(key.kcv(Algorithm::Tdes)),
            "KCV of imported {r}"
        );
        r
    })
}

/// Runs the appendix worked example for `alg` through `store`, whose keys `refs` come from
/// [`import_test_set`].
pub fn check_worked_example(store: &dyn MasterKeyStore, refs: &[KeyRef; 4], alg: Algorithm) {
    let [purchase, load, tac, transport] = refs;
    let want = expected(alg);
    let tk = Key16::from_hex(TEST_TRANSPORT_KEY).unwrap();
    for (master, value) in [(purchase, want.dpk), (load, want.dlk), (tac, want.dtk)] {
        let wrapped = store
            .diversify_wrapped(master, alg, &WORKED_DIV, transport)
            .unwrap_or_else(|e| panic!("diversify {master} ({alg:?}): {e}"));
        let card_key = unwrap_card_key(alg, &tk, &wrapped.wrapped);
        assert_eq!(
            hex::encode_upper(card_key.expose()),
            value,
            "card key from {master} ({alg:?})"
        );
        assert_eq!(wrapped.kcv, card_key.kcv(alg), "card key KCV of {master}");
    }

    // Holder data sealed for the bureau: CBC under the transport key with the given IV,
    // readable with the transport key (as the bureau holds it); refused when not whole blocks.
    let iv = [0x41, 0x01, 0, 0, 0, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0];
    let data = *b"41010219900101123X\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    let sealed = store
        .encrypt_for_transport(transport, alg, &iv, &data)
        .unwrap_or_else(|e| panic!("encrypt_for_transport ({alg:?}): {e}"));
    assert_eq!(
        sealed,
        crypto::cbc_encrypt(alg, &tk, &iv, &data).unwrap(),
        "sealed holder data ({alg:?})"
    );
    assert_ne!(&sealed[..], &data[..]);
    assert!(
        store
            .encrypt_for_transport(transport, alg, &iv, &data[..20])
            .is_err()
    );
    assert!(matches!(
        store.encrypt_for_transport(purchase, alg, &iv, &data),
        Err(super::MasterKeyError::WrongPurpose { .. })
    ));

    let load_fields = LoadFields {
        balance_before_fen: 0,
        online_counter: 0,
        random: [0x01, 0x02, 0x03, 0x04],
        amount_fen: 0x1388,
        terminal_id: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66],
        date: [0x20, 0x26, 0x11, 0x26],
        time: [0x14, 0x30, 0x00],
    };
    let div = &WORKED_DIV;
    assert!(
        store
            .check_load_mac1(load, alg, div, &load_fields, &mac(want.load_mac1))
            .unwrap(),
        "load MAC1 ({alg:?})"
    );
    assert!(
        !store
            .check_load_mac1(load, alg, div, &load_fields, &[0, 0, 0, 0])
            .unwrap(),
        "a wrong load MAC1 must not verify"
    );
    assert_eq!(
        store
            .issue_load_mac2(load, alg, div, &load_fields, &mac(want.load_mac1))
            .unwrap(),
        mac(want.load_mac2),
        "load MAC2 ({alg:?})"
    );
    assert!(
        matches!(
            store.issue_load_mac2(load, alg, div, &load_fields, &[0, 0, 0, 0]),
            Err(super::MasterKeyError::Mac1Invalid)
        ),
        "no MAC2 for a wrong MAC1"
    );
    assert!(
        store
            .verify_load_tac(tac, alg, div, &load_fields, &mac(want.load_tac))
            .unwrap(),
        "load TAC ({alg:?})"
    );

    let purchase_fields = PurchaseTacFields {
        amount_fen: 0xC8,
        tx_type: TransactionType::Purchase,
        terminal_id: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66],
        terminal_serial: 7,
        date: [0x20, 0x26, 0x11, 0x26],
        time: [0x14, 0x30, 0x00],
    };
    assert!(
        store
            .verify_purchase_tac(tac, alg, div, &purchase_fields, &mac(want.purchase_tac))
            .unwrap(),
        "purchase TAC ({alg:?})"
    );
    let mut altered = purchase_fields.clone();
    altered.amount_fen += 1;
    assert!(
        !store
            .verify_purchase_tac(tac, alg, div, &altered, &mac(want.purchase_tac))
            .unwrap(),
        "an altered purchase must not verify"
    );
    // The TAC check insists on the TAC master key.
    assert!(matches!(
        store.verify_purchase_tac(load, alg, div, &purchase_fields, &mac(want.purchase_tac)),
        Err(super::MasterKeyError::WrongPurpose { .. })
    ));
    // The batch check gives one verdict per upload, in order, under the same rules.
    let check = |fields: &PurchaseTacFields| super::PurchaseTacCheck {
        algorithm: alg,
        div: *div,
        fields: fields.clone(),
        tac: mac(want.purchase_tac),
    };
    let checks = [
        check(&purchase_fields),
        check(&altered),
        check(&purchase_fields),
    ];
    assert_eq!(
        store.verify_purchase_tacs(tac, &checks).unwrap(),
        vec![true, false, true],
        "batch purchase TACs ({alg:?})"
    );
    assert!(matches!(
        store.verify_purchase_tacs(load, &checks),
        Err(super::MasterKeyError::WrongPurpose { .. })
    ));
}
