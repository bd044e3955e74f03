//! The vault across restarts: the same key store reads what an earlier process sealed; another
//! key store is refused with a key error instead of yielding garbage.

use crate::fixture::{Fixture, PASSPHRASE, admin, id};
use crate::on_both_backends;
use keys::{KeyError, KeyPurpose};
use platform::open::{PII_KEK, PII_KEYS, open_keystore, open_vault};
use platform::{KeySource, PlatformError};
use resident::Source;

on_both_backends!(
    a_restart_with_the_same_keys_reads_the_data,
    another_key_store_is_refused,
);

async fn import_one(f: &Fixture) -> String {
    let a = id("410105", 1985, 6, 15, 123);
    let csv = format!(
        "id_number,name,phone,address,residency\n{a},张三丰,13812345678,郑州市金水区花园路88号,resident\n"
    );
    let r = f
        .import(&admin(), Source::Police, "api", csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.totals.inserted, 1);
    a
}

async fn a_restart_with_the_same_keys_reads_the_data(f: Fixture) {
    let a = import_one(&f).await;
    let stored = f.p.store.data_keys(PII_KEYS).await.unwrap().unwrap();
    assert_eq!(stored.kek_id, PII_KEK);

    let again = f.reopen(f.key_dir.path(), PASSPHRASE).await.unwrap();
    let v = again
        .resident_by_id_number(&admin(), &a, true)
        .await
        .unwrap();
    assert_eq!(v.id_number, a);
    assert_eq!(v.name.as_deref(), Some("张三丰"));
    assert_eq!(v.phone.as_deref(), Some("13812345678"));
    assert_eq!(v.address.as_deref(), Some("郑州市金水区花园路88号"));
    // Lookups by name use the same blind index keys.
    assert_eq!(
        again
            .residents_by_name(&admin(), "张三丰", false)
            .await
            .unwrap()
            .len(),
        1
    );
    // The data keys were not replaced.
    assert_eq!(
        again.store.data_keys(PII_KEYS).await.unwrap().unwrap(),
        stored
    );

    // What the second process writes, the first reads.
    let b = id("410102", 1990, 1, 2, 456);
    let csv = format!("id_number,name,phone,address,residency\n{b},李四,,,\n");
    crate::fixture::import(&again, &admin(), Source::Police, "api", csv.as_bytes())
        .await
        .unwrap();
    let v = f.p.resident_by_id_number(&admin(), &b, true).await.unwrap();
    assert_eq!(v.name.as_deref(), Some("李四"));
    // Both processes appended to one audit chain.
    let n = crate::fixture::audit_seq(&f.p).await as u64;
    assert_eq!(again.audit_verify().await.unwrap(), Ok(n));
}

async fn another_key_store_is_refused(f: Fixture) {
    import_one(&f).await;

    // The right directory with the wrong passphrase does not open.
    let r = open_keystore(
        f.key_dir.path(),
        &KeySource::Passphrase("not the passphrase".into()),
        true,
    );
    assert!(
        matches!(r, Err(PlatformError::Key(KeyError::BadPassphrase))),
        "{r:?}"
    );

    // A new, empty key store lacks the key-encryption key the data keys are wrapped under.
    let other = tempfile::tempdir().unwrap();
    let r = f.reopen(other.path(), "another passphrase entirely").await;
    match r {
        Err(PlatformError::Key(KeyError::UnknownKey(k))) => assert_eq!(k, PII_KEK),
        Err(e) => panic!("expected an unknown-key error, got {e:?}"),
        Ok(_) => panic!("a platform opened with a foreign key store"),
    }

    // A key store with its own key of the same name fails authentication, not silently.
    let third = tempfile::tempdir().unwrap();
    let mut ks = open_keystore(
        third.path(),
        &KeySource::Passphrase(PASSPHRASE.into()),
        true,
    )
    .unwrap();
    ks.ensure(PII_KEK, KeyPurpose::KeyEncryption).unwrap();
    let store = f.connect_again().await;
    let r = open_vault(&*store, &mut ks).await;
    match r {
        Err(PlatformError::Key(KeyError::Unseal)) => {}
        Err(e) => panic!("expected the data keys to fail authentication, got {e:?}"),
        Ok(_) => panic!("a vault opened with a foreign key-encryption key"),
    }
    let e = PlatformError::Key(KeyError::Unseal).to_string();
    assert!(e.starts_with("keys:"), "{e}");

    // The refused attempts left the stored data keys alone: the right keys still read.
    let again = f.reopen(f.key_dir.path(), PASSPHRASE).await.unwrap();
    assert_eq!(again.resident_count().await.unwrap(), 1);
    let v = again
        .residents_by_name(&admin(), "张三丰", true)
        .await
        .unwrap();
    assert_eq!(v[0].phone.as_deref(), Some("13812345678"));
}
