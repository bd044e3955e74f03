//! Conformance of `EcodeStore`: one active device per card, revocation with the card's change
//! in the same transaction, root key states, certificates only for live enrolments.

use super::{NOW, b, card, draft, event, facts, feed};
use crate::*;
use resident::Source;

fn device(card: &str, id: &str, key_byte: u8) -> NewDevice {
    let mut public_key = vec![key_byte; 33];
    public_key[0] = 0x02;
    NewDevice {
        card_number: card.into(),
        device_id: id.into(),
        public_key,
        bound_by: "operator:clerk".into(),
    }
}

fn root(key_id: i64, state: &str) -> RootKeyRow {
    RootKeyRow {
        key_id,
        public_key: vec![0x03; 33],
        kek_id: "kek-pii".into(),
        wrapped: vec![key_id as u8; 48],
        state: state.into(),
        created_ms: NOW,
        changed_ms: NOW,
    }
}

pub async fn ecode_devices_roots_and_certificates(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "a", None, None), facts(2, "b", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let r1 = s.resident_by_blind(&b("id", 1)).await.unwrap().unwrap().id;
    let r2 = s.resident_by_blind(&b("id", 2)).await.unwrap().unwrap().id;
    let (a, c) = ("4101000000000018", "4101000000000026");
    for (n, r, state) in [(a, r1, "active"), (c, r2, "issued")] {
        s.card_insert(
            &card(n, r, state, 1),
            &event(n, "-", state),
            None,
            draft("card"),
            NOW,
        )
        .await
        .unwrap();
    }

    // Only an active card takes a device; one active device per card.
    let r = s.device_bind(&device(c, "p0", 9), None, vec![], NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s
        .device_bind(&device("4101000000000034", "p0", 9), None, vec![], NOW)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let head = s.audit_head().await.unwrap().unwrap().0;
    let first = s
        .device_bind(
            &device(a, "p1", 1),
            None,
            vec![draft("ecode.device.bind")],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        (first.state.as_str(), first.device_id.as_str()),
        ("active", "p1")
    );
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 1);
    // Binding again without naming the active device is a conflict and writes nothing.
    let r = s
        .device_bind(&device(a, "p2", 2), None, vec![draft("x")], NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 1);
    let second = s
        .device_bind(
            &device(a, "p2", 2),
            Some(first.id),
            vec![draft("ecode.device.revoke"), draft("ecode.device.bind")],
            NOW + 1,
        )
        .await
        .unwrap();
    let devices = s.devices_of_card(a).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(
        (
            devices[0].state.as_str(),
            devices[0].revoked_reason.as_deref()
        ),
        ("revoked", Some("replaced"))
    );
    assert_eq!(devices[1], second);
    assert_eq!(
        s.device_by_id(second.id).await.unwrap(),
        Some(second.clone())
    );

    // Root keys: one current; rotation retires it; withdrawal sticks.
    s.ecode_root_insert(&root(1, "current"), draft("ecode.root.generate"), NOW)
        .await
        .unwrap();
    let r = s
        .ecode_root_insert(&root(2, "current"), draft("x"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    s.ecode_root_insert(&root(2, "standby"), draft("ecode.root.generate"), NOW)
        .await
        .unwrap();

    let cert = |root_key_id: i64, device: i64| CertificateRow {
        device,
        card_number: a.into(),
        root_key_id,
        not_before_s: NOW / 1000,
        not_after_s: NOW / 1000 + 7 * 86_400,
        offline_limit_fen: 20_000,
        uses: 7,
        certificate: vec![1; 123],
        issued_by: "operator:clerk".into(),
    };
    s.ecode_certificate_insert(&cert(1, second.id), draft("ecode.certify"), NOW)
        .await
        .unwrap();
    for (row, why) in [
        (cert(2, second.id), "standby root"),
        (cert(1, first.id), "revoked device"),
    ] {
        let r = s.ecode_certificate_insert(&row, draft("x"), NOW).await;
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{why}: {r:?}");
    }
    s.ecode_root_rotate(2, draft("ecode.root.rotate"), NOW)
        .await
        .unwrap();
    let states: Vec<_> = s
        .ecode_roots()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, ["retired", "current"]);
    let r = s.ecode_root_rotate(1, draft("x"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s.ecode_root_rotate(9, draft("x"), NOW).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    s.ecode_root_withdraw(1, draft("ecode.root.withdraw"), NOW)
        .await
        .unwrap();
    let r = s.ecode_root_withdraw(1, draft("x"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    s.ecode_certificate_insert(&cert(2, second.id), draft("ecode.certify"), NOW)
        .await
        .unwrap();
    assert_eq!(s.ecode_certificates_of_card(a, 10).await.unwrap().len(), 2);

    // The card leaves `active`: its device is revoked in the card's own transaction.
    let change = CardChange {
        card: card(a, r1, "reported_lost", 2),
        successor: None,
        events: vec![event(a, "active", "reported_lost")],
        deny: vec![(a.to_string(), DenyOp::Add)],
        moves: vec![],
    };
    s.card_apply(&change, vec![draft("card.report_lost")], NOW + 2)
        .await
        .unwrap();
    let gone = s.device_by_id(second.id).await.unwrap().unwrap();
    assert_eq!(
        (
            gone.state.as_str(),
            gone.revoked_reason.as_deref(),
            gone.revoked_ms
        ),
        ("revoked", Some("card_reported_lost"), Some(NOW))
    );
    let r = s
        .ecode_certificate_insert(&cert(2, second.id), draft("x"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s
        .device_revoke(second.id, "holder_request", "x", draft("x"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s
        .device_revoke(999, "holder_request", "x", draft("x"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));

    // Verification counts: one row per day, purpose and outcome, counted up.
    for (day, purpose, reason) in [
        ("2026-11-29", "pay", "accepted"),
        ("2026-11-30", "pay", "accepted"),
        ("2026-11-30", "pay", "accepted"),
        ("2026-11-30", "pay", "replay"),
        ("2026-11-30", "identity", "accepted"),
        ("2026-12-01", "pay", "accepted"),
    ] {
        s.ecode_stat_add(day, purpose, reason).await.unwrap();
    }
    let stats = s.ecode_stats("2026-11-30", "2026-11-30").await.unwrap();
    let got: Vec<(&str, &str, i64)> = stats
        .iter()
        .map(|r| (r.purpose.as_str(), r.reason.as_str(), r.count))
        .collect();
    assert_eq!(
        got,
        [
            ("identity", "accepted", 1),
            ("pay", "accepted", 2),
            ("pay", "replay", 1)
        ]
    );
    assert_eq!(
        s.ecode_stats("2026-11-29", "2026-12-01")
            .await
            .unwrap()
            .len(),
        5
    );
}
