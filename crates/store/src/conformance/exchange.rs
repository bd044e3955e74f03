//! The exchange's records: members and services unique, grants and consents only for known
//! parties, withdrawn and revoked once, nonces used once, access rows listed per resident and
//! newest first, head stamps once per sequence number.

use super::{NOW, draft, facts, feed};
use crate::*;
use resident::Source;

fn member(code: &str) -> MemberRow {
    MemberRow {
        code: code.into(),
        name: format!("{code} department"),
        public_key: vec![2; 33],
        status: "active".into(),
        created_ms: NOW,
    }
}

fn access(resident: Option<i64>, consumer: &str, outcome: &str, at: i64) -> AccessRow {
    AccessRow {
        id: 0,
        at_ms: at,
        consumer: consumer.into(),
        service: "police.violations".into(),
        provider: "police".into(),
        resident_id: resident,
        fields: vec!["count".into(), "id_number".into()],
        masked: vec!["id_number".into()],
        purpose: "credit".into(),
        legal_basis: Some("agreement".into()),
        grant_id: Some(1),
        consent_id: None,
        outcome: outcome.into(),
        reason: (outcome != "delivered").then(|| "no_grant".into()),
        request_digest: Some("AB".repeat(32)),
        response_digest: None,
        request_signature: Some("CD".repeat(64)),
        request_batch: Some(format!("l{}.r{}", "01".repeat(32), "02".repeat(32))),
        response_signature: (outcome == "delivered").then(|| "EF".repeat(64)),
        response_batch: None,
        audit_seq: Some(9),
    }
}

pub async fn exchange_members_grants_consents_and_access(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "甲", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let resident = s.residents_page(0, 10).await.unwrap()[0].id;

    for code in ["police", "card-company"] {
        s.member_insert(&member(code), draft("exchange.member"), NOW)
            .await
            .unwrap();
    }
    let r = s
        .member_insert(&member("police"), draft("exchange.member"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.member("police").await.unwrap(), Some(member("police")));
    assert_eq!(s.members().await.unwrap().len(), 2);

    let svc = ServiceRow {
        code: "police.violations".into(),
        provider: "police".into(),
        name: "交通违法".into(),
        description: "by ID number".into(),
        input: "id_number".into(),
        fields_json: "[]".into(),
        endpoint: "http://127.0.0.1:9/v1/violations".into(),
        consent_required: true,
        created_ms: NOW,
    };
    s.service_insert(&svc, draft("exchange.service"), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.service("police.violations").await.unwrap(),
        Some(svc.clone())
    );
    let r = s.service_insert(&svc, draft("exchange.service"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let orphan = ServiceRow {
        code: "x.y".into(),
        provider: "nobody".into(),
        ..svc.clone()
    };
    let r = s
        .service_insert(&orphan, draft("exchange.service"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(s.services().await.unwrap(), vec![svc.clone()]);

    let g = GrantRow {
        id: 0,
        consumer: "card-company".into(),
        service: "police.violations".into(),
        fields: vec!["count".into(), "id_number".into()],
        full_fields: vec![],
        purpose: "credit".into(),
        legal_basis: "agreement".into(),
        valid_from_ms: NOW,
        valid_until_ms: NOW + 1_000,
        withdrawn_ms: None,
        created_ms: NOW,
    };
    let gid = s
        .grant_insert(&g, draft("exchange.grant"), NOW)
        .await
        .unwrap();
    let stored = s.grant(gid).await.unwrap().unwrap();
    assert_eq!(
        stored,
        GrantRow {
            id: gid,
            ..g.clone()
        }
    );
    let stray = GrantRow {
        consumer: "nobody".into(),
        ..g.clone()
    };
    let r = s.grant_insert(&stray, draft("exchange.grant"), NOW).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(
        s.grants_of(Some("card-company"), Some("police.violations"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s.grants_of(Some("police"), None).await.unwrap().is_empty());
    let w = s
        .grant_withdraw(gid, draft("exchange.grant.withdraw"), NOW + 5)
        .await
        .unwrap();
    assert_eq!(w.withdrawn_ms, Some(NOW + 5));
    let r = s
        .grant_withdraw(gid, draft("exchange.grant.withdraw"), NOW + 6)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s
        .grant_withdraw(gid + 100, draft("exchange.grant.withdraw"), NOW + 6)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    let c = ConsentRow {
        id: 0,
        resident_id: resident,
        consumer: "card-company".into(),
        service: "police.violations".into(),
        purpose: "credit".into(),
        channel: "operator".into(),
        given_ms: NOW,
        expires_ms: NOW + 10_000,
        revoked_ms: None,
    };
    let cid = s
        .consent_insert(&c, draft("exchange.consent"), NOW)
        .await
        .unwrap();
    let r = s
        .consent_insert(
            &ConsentRow {
                resident_id: resident + 1_000,
                ..c.clone()
            },
            draft("exchange.consent"),
            NOW,
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let mine = s
        .consents_of(resident, Some(("card-company", "police.violations")))
        .await
        .unwrap();
    assert_eq!(
        mine,
        vec![ConsentRow {
            id: cid,
            ..c.clone()
        }]
    );
    assert!(
        s.consents_of(resident, Some(("police", "police.violations")))
            .await
            .unwrap()
            .is_empty()
    );
    // Another resident cannot revoke it.
    let r = s
        .consent_revoke(cid, resident + 1, draft("exchange.consent.revoke"), NOW + 1)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let revoked = s
        .consent_revoke(cid, resident, draft("exchange.consent.revoke"), NOW + 1)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_ms, Some(NOW + 1));
    let r = s
        .consent_revoke(cid, resident, draft("exchange.consent.revoke"), NOW + 2)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(
        s.consents_of(resident, None).await.unwrap()[0].revoked_ms,
        Some(NOW + 1)
    );

    // Nonces: once per member; purged by age.
    s.exchange_nonce_use("card-company", "AA00AA00AA00AA00", NOW)
        .await
        .unwrap();
    let r = s
        .exchange_nonce_use("card-company", "aa00aa00aa00aa00", NOW + 1)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    s.exchange_nonce_use("police", "AA00AA00AA00AA00", NOW + 10)
        .await
        .unwrap();
    assert_eq!(s.exchange_nonces_purge(NOW + 5).await.unwrap(), 1);
    s.exchange_nonce_use("card-company", "AA00AA00AA00AA00", NOW + 20)
        .await
        .unwrap();

    // Access rows: per resident, newest first, exactly as written.
    let a1 = access(Some(resident), "card-company", "delivered", NOW + 1);
    let a2 = access(Some(resident), "card-company", "refused", NOW + 2);
    let a3 = access(None, "police", "refused", NOW + 3);
    let mut ids = vec![];
    for a in [&a1, &a2, &a3] {
        ids.push(s.access_insert(a).await.unwrap());
    }
    let theirs = s.accesses_of_resident(resident, 100).await.unwrap();
    assert_eq!(
        theirs,
        vec![
            AccessRow {
                id: ids[1],
                ..a2.clone()
            },
            AccessRow {
                id: ids[0],
                ..a1.clone()
            }
        ]
    );
    assert_eq!(s.accesses_of_resident(resident, 1).await.unwrap().len(), 1);
    assert_eq!(
        s.accesses_recent(None, Some("refused"), 100)
            .await
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    assert_eq!(
        s.accesses_recent(Some("police"), None, 100)
            .await
            .unwrap()
            .len(),
        1
    );

    // The group commit: nonces claimed in one transaction, a replay within the batch and of an
    // earlier claim refused; calls' audit entries and access rows written together.
    let claim = |member: &str, nonce: &str| NonceClaim {
        member: member.into(),
        nonce: nonce.into(),
        at_ms: NOW + 30,
    };
    let fresh = s
        .exchange_nonces_claim(&[
            claim("card-company", "BB00BB00BB00BB00"),
            claim("card-company", "aa00aa00aa00aa00"),
            claim("police", "BB00BB00BB00BB00"),
            claim("card-company", "bb00bb00bb00bb00"),
        ])
        .await
        .unwrap();
    assert_eq!(fresh, vec![true, false, true, false]);
    let head_before = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let b1 = access(Some(resident), "card-company", "delivered", NOW + 40);
    let b2 = access(None, "police", "refused", NOW + 41);
    let entries = s
        .exchange_log_batch(
            vec![
                (draft("exchange.call"), b1.clone()),
                (draft("exchange.call.refused"), b2.clone()),
            ],
            NOW + 42,
        )
        .await
        .unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![head_before + 1, head_before + 2]
    );
    let newest = s.accesses_recent(None, None, 2).await.unwrap();
    assert_eq!(newest[0].audit_seq, Some(head_before + 2));
    assert_eq!(newest[0].outcome, "refused");
    assert_eq!(newest[1].audit_seq, Some(head_before + 1));
    assert_eq!(newest[1].resident_id, Some(resident));
    assert!(crate::audit_verify(s).await.unwrap().is_ok());

    // Head stamps: once per sequence number, newest first.
    let h = HeadStampRow {
        seq: 4,
        hash: [9; 32],
        stamped_ms: NOW,
        signature: vec![1; 64],
    };
    s.head_stamp_insert(&h).await.unwrap();
    let r = s.head_stamp_insert(&h).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    s.head_stamp_insert(&HeadStampRow {
        seq: 7,
        ..h.clone()
    })
    .await
    .unwrap();
    let stamps = s.head_stamps(10).await.unwrap();
    assert_eq!(stamps.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![7, 4]);
    assert_eq!(stamps[1], h);
}
