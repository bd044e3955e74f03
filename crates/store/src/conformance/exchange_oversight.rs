//! Conformance: the access log searched by every filter, and consent counts by state.

use super::{NOW, draft, facts, feed};
use crate::*;
use resident::Source;

fn access(
    resident: Option<i64>,
    consumer: &str,
    service: &str,
    outcome: &str,
    at: i64,
) -> AccessRow {
    AccessRow {
        id: 0,
        at_ms: at,
        consumer: consumer.into(),
        service: service.into(),
        provider: "police".into(),
        resident_id: resident,
        fields: vec!["verified".into()],
        masked: vec![],
        purpose: "hotel-checkin".into(),
        legal_basis: Some("law".into()),
        grant_id: Some(1),
        consent_id: None,
        outcome: outcome.into(),
        reason: (outcome != "delivered").then(|| "no_grant".into()),
        request_digest: None,
        response_digest: None,
        request_signature: None,
        request_batch: None,
        response_signature: None,
        response_batch: None,
        audit_seq: None,
    }
}

pub async fn exchange_access_search_and_consent_stats(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "甲", None, None), facts(2, "乙", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let page = s.residents_page(0, 10).await.unwrap();
    let (r1, r2) = (page[0].id, page[1].id);
    for (i, (res, consumer, service, outcome)) in [
        (Some(r1), "hotel-a", "police.identity-checkin", "delivered"),
        (Some(r2), "hotel-a", "police.identity-checkin", "refused"),
        (None, "hotel-b", "police.identity-checkin", "refused"),
        (Some(r1), "bank", "fund.balance", "delivered"),
        (Some(r1), "bank", "fund.balance", "failed"),
    ]
    .into_iter()
    .enumerate()
    {
        s.access_insert(&access(
            res,
            consumer,
            service,
            outcome,
            NOW + i as i64 * 1000,
        ))
        .await
        .unwrap();
    }
    let search = |q: AccessQuery| async move {
        s.accesses_search(&AccessQuery { limit: 100, ..q })
            .await
            .unwrap()
            .iter()
            .map(|a| a.at_ms - NOW)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        search(AccessQuery::default()).await,
        vec![4000, 3000, 2000, 1000, 0]
    );
    let q = |f: fn(&mut AccessQuery)| {
        let mut q = AccessQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        search(q(|q| q.consumer = Some("hotel-a".into()))).await,
        vec![1000, 0]
    );
    assert_eq!(
        search(q(|q| q.service = Some("fund.balance".into()))).await,
        vec![4000, 3000]
    );
    assert_eq!(
        search(q(|q| q.outcome = Some("refused".into()))).await,
        vec![2000, 1000]
    );
    let mut by_resident = AccessQuery {
        resident_id: Some(r1),
        ..AccessQuery::default()
    };
    assert_eq!(search(by_resident.clone()).await, vec![4000, 3000, 0]);
    by_resident.from_ms = Some(NOW + 1);
    by_resident.until_ms = Some(NOW + 4000);
    assert_eq!(search(by_resident).await, vec![3000]);
    let first = s
        .accesses_search(&AccessQuery {
            limit: 2,
            ..AccessQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let before = first[1].id;
    assert_eq!(search(q(|_| ())).await.len(), 5);
    let next = s
        .accesses_search(&AccessQuery {
            before_id: Some(before),
            limit: 10,
            ..AccessQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|a| a.at_ms - NOW).collect::<Vec<_>>(),
        vec![2000, 1000, 0]
    );

    // Consents: one active, one revoked, one expired for one pair; one active for another.
    for code in ["police", "bank"] {
        s.member_insert(
            &MemberRow {
                code: code.into(),
                name: code.into(),
                public_key: vec![2; 33],
                status: "active".into(),
                created_ms: NOW,
            },
            draft("exchange.member"),
            NOW,
        )
        .await
        .unwrap();
    }
    for code in ["fund.balance", "hr.contributions"] {
        s.service_insert(
            &ServiceRow {
                code: code.into(),
                provider: "police".into(),
                name: code.into(),
                description: String::new(),
                input: "id_number".into(),
                fields_json: "[]".into(),
                endpoint: "http://127.0.0.1:9/".into(),
                consent_required: true,
                created_ms: NOW,
            },
            draft("exchange.service"),
            NOW,
        )
        .await
        .unwrap();
    }
    let consent = |resident_id: i64, service: &str, expires_ms: i64| ConsentRow {
        id: 0,
        resident_id,
        consumer: "bank".into(),
        service: service.into(),
        purpose: "loan".into(),
        channel: "counter".into(),
        given_ms: NOW - 10,
        expires_ms,
        revoked_ms: None,
    };
    for (res, service, exp) in [
        (r1, "fund.balance", NOW + 1000),
        (r2, "fund.balance", NOW + 1000),
        (r2, "fund.balance", NOW - 1),
        (r1, "hr.contributions", NOW + 1000),
    ] {
        s.consent_insert(
            &consent(res, service, exp),
            draft("exchange.consent"),
            NOW - 5,
        )
        .await
        .unwrap();
    }
    let revoke = s.consents_of(r2, None).await.unwrap()[0].id;
    s.consent_revoke(revoke, r2, draft("exchange.consent.revoke"), NOW)
        .await
        .unwrap();
    let stats = s.consent_stats(NOW).await.unwrap();
    let got: Vec<(&str, u64, u64, u64)> = stats
        .iter()
        .map(|c| (c.service.as_str(), c.active, c.revoked, c.expired))
        .collect();
    assert_eq!(
        got,
        vec![("fund.balance", 1, 1, 1), ("hr.contributions", 1, 0, 0)]
    );
    assert!(stats.iter().all(|c| c.consumer == "bank"));
}
