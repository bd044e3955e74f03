use super::conformance::{check_worked_example, import_test_set};
use super::*;

fn store() -> (tempfile::TempDir, FileMasterKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileMasterKeyStore::create(&dir.path().join("master.json"), b"pass").unwrap();
    (dir, store)
}

#[test]
fn file_store_runs_the_worked_examples_for_both_profiles() {
    let (_dir, store) = store();
    let refs = import_test_set(&store, "transit");
    check_worked_example(&store, &refs, Algorithm::Tdes);
    check_worked_example(&store, &refs, Algorithm::Sm4);
    // Imported by components, yet the values are the test set: the store says so.
    assert!(store.test_key_set_present().unwrap());
}

#[test]
fn generated_keys_persist_sealed_and_are_not_the_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let store = FileMasterKeyStore::create(&path, b"pass").unwrap();
    let r = KeyRef::transit(MasterPurpose::Tac, 1);
    let info = store.generate(&r).unwrap();
    assert_eq!(info.origin, KeyOrigin::Generated);
    assert!(matches!(store.generate(&r), Err(MasterKeyError::Exists(_))));
    assert!(!store.test_key_set_present().unwrap());
    drop(store);

    let store = FileMasterKeyStore::open(&path, b"pass").unwrap();
    assert_eq!(store.list().unwrap(), vec![info]);
    assert!(matches!(
        FileMasterKeyStore::open(&path, b"wrong"),
        Err(MasterKeyError::Store(crate::KeyError::BadPassphrase))
    ));
    assert!(format!("{store:?}").contains("keys: 1"));
}

#[test]
fn test_key_set_is_flagged() {
    let (_dir, store) = store();
    assert!(!store.test_key_set_present().unwrap());
    let infos = store.load_test_key_set("transit").unwrap();
    assert_eq!(infos.len(), 3);
    assert!(infos.iter().all(|i| i.origin == KeyOrigin::TestKeySet));
    assert!(store.test_key_set_present().unwrap());
    // The file holds no key in clear.
    let text = std::fs::read_to_string(_dir.path().join("master.json")).unwrap();
    assert!(
        !text
            .to_uppercase()
            .contains("33445566778899AABBCCDDEEFF001122")
    );
}

#[test]
fn components_are_checked_one_by_one_and_combined() {
    let kcv = |hex_key: &str| hex::encode(Key16::from_hex(hex_key).unwrap().kcv(Algorithm::Tdes));
    let a = "11111111111111111111111111111111";
    let b = "22222222222222222222222222222222";
    let good_a = KeyComponent::parse(1, a, &kcv(a), Algorithm::Tdes).unwrap();
    assert!(!format!("{good_a:?}").contains("1111"));
    assert!(matches!(
        KeyComponent::parse(2, b, &kcv(a), Algorithm::Tdes),
        Err(MasterKeyError::ComponentKcvMismatch { index: 2 })
    ));
    assert!(matches!(
        KeyComponent::parse(2, "zz", "000000", Algorithm::Tdes),
        Err(MasterKeyError::InvalidComponent { index: 2 })
    ));
    let good_b = KeyComponent::parse(2, b, &kcv(b), Algorithm::Tdes).unwrap();
    let combined = combine_components(&[good_a.clone(), good_b.clone()]).unwrap();
    assert_eq!(
        hex::encode_upper(combined.expose()),
        "33333333333333333333333333333333"
    );
    assert!(matches!(
        combine_components(std::slice::from_ref(&good_a)),
        Err(MasterKeyError::ComponentCount(1))
    ));

    let (_dir, store) = store();
    let r = KeyRef::transit(MasterPurpose::Load, 2);
    assert!(matches!(
        store.import_components(
            &r,
            &[good_a.clone(), good_b.clone()],
            Algorithm::Tdes,
            Some([0; 3])
        ),
        Err(MasterKeyError::KeyKcvMismatch { .. })
    ));
    let info = store
        .import_components(&r, &[good_a, good_b], Algorithm::Tdes, None)
        .unwrap();
    assert_eq!(info.origin, KeyOrigin::Components);
    assert_eq!(
        info.kcv_tdes,
        Some(combined.kcv(Algorithm::Tdes)),
        "final KCV returned"
    );
}

#[test]
fn key_refs_parse_and_validate() {
    let r = KeyRef::parse("transit/ecode_root/v3").unwrap();
    assert_eq!(
        r,
        KeyRef::new("transit", MasterPurpose::EcodeRoot, 3).unwrap()
    );
    assert_eq!(r.to_string(), "transit/ecode_root/v3");
    for bad in [
        "",
        "transit/tac",
        "transit/nope/v1",
        "Transit/tac/v1",
        "a/tac/1",
        "a/tac/v1/x",
    ] {
        assert!(KeyRef::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn wrap_round_trips_and_diversify_needs_a_transport_key() {
    let tk = Key16::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
    let ck = Key16::from_hex("E9D6C886B6534FECAF3819A6B9B16EFA").unwrap();
    for alg in [Algorithm::Tdes, Algorithm::Sm4] {
        let w = wrap_card_key(alg, &tk, &ck);
        assert_ne!(&w, ck.expose());
        assert_eq!(unwrap_card_key(alg, &tk, &w), ck);
    }
    let (_dir, store) = store();
    let refs = import_test_set(&store, "transit");
    assert!(matches!(
        store.diversify_wrapped(
            &refs[0],
            Algorithm::Tdes,
            &conformance::WORKED_DIV,
            &refs[1]
        ),
        Err(MasterKeyError::WrongPurpose { .. })
    ));
    assert!(matches!(
        store.diversify_wrapped(
            &refs[3],
            Algorithm::Tdes,
            &conformance::WORKED_DIV,
            &refs[3]
        ),
        Err(MasterKeyError::WrongPurpose { .. })
    ));
}

#[test]
fn trait_is_object_safe_and_shareable() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn MasterKeyStore>();
    let (_dir, store) = store();
    let shared: std::sync::Arc<dyn MasterKeyStore> = std::sync::Arc::new(store);
    assert_eq!(shared.backend(), "file");
}

#[test]
fn production_check_refuses_the_test_key_set_only() {
    let (_dir, store) = store();
    store
        .generate(&KeyRef::transit(MasterPurpose::Tac, 1))
        .unwrap();
    assert!(refuse_test_key_set(&store).is_ok());
    store.load_test_key_set("transit2").unwrap();
    let err = refuse_test_key_set(&store).unwrap_err();
    assert!(matches!(
        err,
        MasterKeyError::TestKeySetInProduction { backend: "file" }
    ));
    assert!(err.to_string().contains("test key set"), "{err}");
}
