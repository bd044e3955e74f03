//! Conformance of citizen services: notification preferences and the outbox (written once by
//! key, claimed once per lease, finished by compare and set), billers, bills uploaded all or
//! nothing, agreements, the bills a run may debit, and settlement once.

use super::{NOW, b, draft, facts, feed};
use crate::*;
use resident::Source;

async fn two_residents(s: &dyn Store) -> (i64, i64) {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "a", Some("p1"), None), facts(2, "b", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    (
        s.resident_by_blind(&b("id", 1)).await.unwrap().unwrap().id,
        s.resident_by_blind(&b("id", 2)).await.unwrap().unwrap().id,
    )
}

fn notice(key: &str, resident_id: i64, channel: &str) -> NewNotification {
    NewNotification {
        key: key.into(),
        resident_id,
        channel: channel.into(),
        template: "bill_debited".into(),
        language: "zh-CN".into(),
        body: format!("body {key}"),
        phone_sealed: (channel == "sms").then(|| b"sealed-phone".to_vec()),
    }
}

pub async fn notifications_enqueue_once_and_deliver_once(s: &dyn Store) {
    let (r1, r2) = two_residents(s).await;
    // Preferences: set, replaced, unknown resident refused.
    let p = NotifyPrefsRow {
        resident_id: r1,
        language: "en".into(),
        sms_enabled: false,
        phone_sealed: Some(b"sealed".to_vec()),
        updated_ms: NOW,
    };
    s.notify_prefs_set(&p, draft("notify.prefs"), NOW)
        .await
        .unwrap();
    let p2 = NotifyPrefsRow {
        sms_enabled: true,
        phone_sealed: None,
        ..p.clone()
    };
    s.notify_prefs_set(&p2, draft("notify.prefs"), NOW + 1)
        .await
        .unwrap();
    let got = s.notify_prefs(r1).await.unwrap().unwrap();
    assert_eq!(
        (got.sms_enabled, got.phone_sealed, got.updated_ms),
        (true, None, NOW + 1)
    );
    assert_eq!(s.notify_prefs(r2).await.unwrap(), None);
    assert_eq!(s.notify_prefs_many(&[r1, r2]).await.unwrap().len(), 1);
    // The outbox reads its residents' records in one go; unknown ids are left out.
    let mut got: Vec<i64> = s
        .residents_by_ids(&[r2, r1, 999_999])
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    got.sort_unstable();
    let mut want = vec![r1, r2];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(s.residents_by_ids(&[]).await.unwrap().is_empty());
    let too_many = vec![r1; crate::RESIDENTS_BY_IDS_MAX + 1];
    assert!(matches!(
        s.residents_by_ids(&too_many).await,
        Err(StoreError::TooMany { .. })
    ));
    let r = s
        .notify_prefs_set(
            &NotifyPrefsRow {
                resident_id: 999_999,
                ..p.clone()
            },
            draft("notify.prefs"),
            NOW,
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    // Enqueue: a key is written once; in-app rows are unread, SMS rows pending.
    let batch = vec![
        notice("n1:sms", r1, "sms"),
        notice("n1:app", r1, "inapp"),
        notice("n2:sms", r2, "sms"),
    ];
    assert_eq!(s.notify_enqueue(&batch, NOW).await.unwrap(), 3);
    assert_eq!(s.notify_enqueue(&batch, NOW + 5).await.unwrap(), 0);
    let app = s.notification_by_key("n1:app").await.unwrap().unwrap();
    assert_eq!(app.status, NOTIFY_UNREAD);
    let too_many = vec![notice("x", r1, "inapp"); NOTIFY_BATCH_MAX + 1];
    assert!(matches!(
        s.notify_enqueue(&too_many, NOW).await,
        Err(StoreError::TooMany { .. })
    ));

    // Claims: each pending row once per lease; nothing due before its time.
    let c = s.notify_claim(NOW, 60_000, 10).await.unwrap();
    assert_eq!(
        c.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(),
        vec!["n1:sms", "n2:sms"]
    );
    assert!(
        c.iter()
            .all(|n| n.attempts == 1 && n.phone_sealed.is_some())
    );
    assert!(
        s.notify_claim(NOW + 1, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Sent once; a stale claim's outcome changes nothing.
    let sent = DeliveryOutcome::Sent {
        gateway_ref: "G1".into(),
    };
    assert!(s.notify_finish(c[0].id, 1, &sent, NOW + 2).await.unwrap());
    assert!(!s.notify_finish(c[0].id, 1, &sent, NOW + 3).await.unwrap());
    let retry = DeliveryOutcome::Retry {
        error: "timeout".into(),
        next_attempt_ms: NOW + 30_000,
    };
    assert!(!s.notify_finish(c[1].id, 7, &retry, NOW + 2).await.unwrap());
    assert!(s.notify_finish(c[1].id, 1, &retry, NOW + 2).await.unwrap());
    // Due again after the retry delay (the lease was cut short by the outcome).
    assert!(
        s.notify_claim(NOW + 29_999, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let c2 = s.notify_claim(NOW + 30_000, 60_000, 10).await.unwrap();
    assert_eq!((c2.len(), c2[0].attempts), (1, 2));
    let failed = DeliveryOutcome::Failed {
        error: "rejected".into(),
    };
    assert!(
        s.notify_finish(c2[0].id, 2, &failed, NOW + 30_001)
            .await
            .unwrap()
    );
    let done = s.notification_by_key("n2:sms").await.unwrap().unwrap();
    assert_eq!(
        (
            done.status.as_str(),
            done.last_error.as_deref(),
            done.done_ms
        ),
        ("failed", Some("rejected"), Some(NOW + 30_001))
    );
    let first = s.notification_by_key("n1:sms").await.unwrap().unwrap();
    assert_eq!(
        (first.status.as_str(), first.gateway_ref.as_deref()),
        ("sent", Some("G1"))
    );

    // Inbox and reading: only the resident's own, once.
    let inbox = s.notifications_of(r1, Some("inapp"), 10).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(s.notifications_of(r1, None, 10).await.unwrap().len(), 2);
    // The unread count is the resident's own in-app messages only (SMS rows never count).
    assert_eq!(s.notifications_unread(r1).await.unwrap(), 1);
    // Resident 2 has an SMS only.
    assert_eq!(s.notifications_unread(r2).await.unwrap(), 0);
    assert!(!s.notification_read(inbox[0].id, r2, NOW).await.unwrap());
    assert_eq!(s.notifications_unread(r1).await.unwrap(), 1);
    assert!(s.notification_read(inbox[0].id, r1, NOW).await.unwrap());
    assert!(!s.notification_read(inbox[0].id, r1, NOW).await.unwrap());
    assert_eq!(s.notifications_unread(r1).await.unwrap(), 0);
    let read = s.notifications_of(r1, Some("inapp"), 10).await.unwrap();
    assert_eq!(
        (read[0].status.as_str(), read[0].done_ms),
        (NOTIFY_READ, Some(NOW))
    );
    assert_eq!(
        s.notifications_page(Some("sent"), 10).await.unwrap().len(),
        1
    );
    assert_eq!(s.notifications_page(None, 10).await.unwrap().len(), 3);
    let counts = s.notify_counts().await.unwrap();
    let count = |c: &str, st: &str| {
        counts
            .iter()
            .find(|x| x.channel == c && x.status == st)
            .map_or(0, |x| x.count)
    };
    assert_eq!(
        (
            count("sms", "sent"),
            count("sms", "failed"),
            count("inapp", "read")
        ),
        (1, 1, 1)
    );
}

fn bill(n: &str, customer: &str, fen: i64, due: &str) -> NewBill {
    NewBill {
        bill_number: n.into(),
        customer_no: customer.into(),
        period: "2026-11".into(),
        amount_fen: fen,
        due_date: due.into(),
    }
}

pub async fn bills_upload_all_or_nothing_and_settle_once(s: &dyn Store) {
    let (r1, r2) = two_residents(s).await;
    let biller = BillerRow {
        code: "water".into(),
        kind: "water".into(),
        created_ms: NOW,
    };
    let r = s.biller_insert(&biller, draft("biller.create"), NOW).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    s.merchant_insert(
        &MerchantRow {
            code: "water".into(),
            name: "自来水公司".into(),
            category: "utility".into(),
            settlement_account: "41050100000009".into(),
            created_ms: NOW,
        },
        draft("merchant.create"),
        NOW,
    )
    .await
    .unwrap();
    s.biller_insert(&biller, draft("biller.create"), NOW)
        .await
        .unwrap();
    let r = s.biller_insert(&biller, draft("biller.create"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.billers().await.unwrap(), vec![biller.clone()]);

    let first = vec![
        bill("W1", "C1", 4_500, "2026-12-15"),
        bill("W2", "C2", 9_000, "2026-12-15"),
        bill("W3", "C3", 100, "2026-12-31"),
    ];
    let up = s
        .bills_upload("water", &first, draft("bills.upload"), NOW)
        .await
        .unwrap();
    assert_eq!((up.inserted, up.unchanged), (3, 0));
    // The same again is unchanged; one changed bill refuses the whole upload.
    let mut again = first.clone();
    again.push(bill("W4", "C1", 1, "2026-12-15"));
    let up = s
        .bills_upload("water", &again, draft("bills.upload"), NOW + 1)
        .await
        .unwrap();
    assert_eq!((up.inserted, up.unchanged), (1, 3));
    let changed = vec![
        bill("W5", "C1", 1, "2026-12-15"),
        bill("W2", "C2", 9_001, "2026-12-15"),
    ];
    let r = s
        .bills_upload("water", &changed, draft("bills.upload"), NOW + 2)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.bill("water", "W5").await.unwrap(), None);
    let twice = vec![bill("W6", "C1", 1, "2026-12-15"); 2];
    let r = s
        .bills_upload("water", &twice, draft("bills.upload"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = s
        .bills_upload("gas", &first, draft("bills.upload"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(
        s.bills_of_customer("water", "C1", 10).await.unwrap().len(),
        2
    );

    // Agreements: one active per household.
    let a = AgreementRow {
        id: 0,
        resident_id: r1,
        biller: "water".into(),
        customer_no: "C1".into(),
        limit_fen: 5_000,
        status: "active".into(),
        created_ms: NOW,
    };
    let a1 = s
        .agreement_insert(&a, draft("agreement.sign"), NOW)
        .await
        .unwrap();
    assert_eq!((a1.resident_id, a1.status.as_str()), (r1, "active"));
    let r = s.agreement_insert(&a, draft("agreement.sign"), NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let a2 = s
        .agreement_insert(
            &AgreementRow {
                resident_id: r2,
                customer_no: "C2".into(),
                ..a.clone()
            },
            draft("agreement.sign"),
            NOW,
        )
        .await
        .unwrap();
    // Due on 2026-12-15: W1, W2, W4 (C3 has no agreement, W3 is due later).
    let due = s.bills_due("2026-12-15", NOW, 0, 100).await.unwrap();
    let numbers: Vec<&str> = due.iter().map(|d| d.bill.bill_number.as_str()).collect();
    assert_eq!(numbers, vec!["W1", "W2", "W4"]);
    assert_eq!(due[1].agreement.id, a2.id);
    let after = s
        .bills_due("2026-12-15", NOW, due[0].bill.id, 1)
        .await
        .unwrap();
    assert_eq!(after[0].bill.bill_number, "W2");

    // Settle: W1 paid once; W2 short of funds, retried later; W4 stopped.
    let paid = |id: i64, pay: i64| BillPaid {
        bill_id: id,
        payment_id: pay,
        paid_by: "auto".into(),
        paid_ms: NOW + 10,
    };
    let n = s
        .bills_settle(
            &[paid(due[0].bill.id, 11)],
            &[
                BillDebitFailed {
                    bill_id: due[1].bill.id,
                    error: "insufficient_funds".into(),
                    next_debit_ms: Some(NOW + 3_600_000),
                },
                BillDebitFailed {
                    bill_id: due[2].bill.id,
                    error: "over_limit".into(),
                    next_debit_ms: None,
                },
            ],
            NOW + 10,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        s.bills_settle(&[paid(due[0].bill.id, 12)], &[], NOW + 11)
            .await
            .unwrap(),
        0
    );
    let w1 = s.bill("water", "W1").await.unwrap().unwrap();
    assert_eq!(
        (w1.status.as_str(), w1.payment_id, w1.next_debit_ms),
        ("paid", Some(11), None)
    );
    let w2 = s.bill("water", "W2").await.unwrap().unwrap();
    assert_eq!(
        (w2.debit_attempts, w2.last_error.as_deref()),
        (1, Some("insufficient_funds"))
    );
    assert!(
        s.bills_due("2026-12-15", NOW + 20, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let later = s
        .bills_due("2026-12-16", NOW + 3_600_000, 0, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].bill.bill_number, "W2");
    // A cancelled agreement takes its bills out of the run.
    assert!(
        !s.agreement_cancel(a2.id, r1, draft("agreement.cancel"), NOW)
            .await
            .unwrap()
    );
    assert!(
        s.agreement_cancel(a2.id, r2, draft("agreement.cancel"), NOW)
            .await
            .unwrap()
    );
    assert!(
        s.bills_due("2026-12-16", NOW + 3_600_000, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.agreements_of(r2).await.unwrap()[0].status, "cancelled");
    let paid_list = s.bills_paid("water", NOW, NOW + 11, 100).await.unwrap();
    assert_eq!(paid_list.len(), 1);
    assert!(
        s.bills_paid("water", NOW, NOW + 10, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Runs are recorded and finished once.
    let id = s.bill_run_start("2026-12-15", NOW).await.unwrap();
    let run = BillRunRow {
        id,
        due_on: "2026-12-15".into(),
        started_ms: NOW,
        finished_ms: Some(NOW + 5),
        considered: 3,
        debited: 1,
        debited_fen: 4_500,
        short_of_funds: 1,
        over_limit: 1,
        notices: 6,
    };
    s.bill_run_finish(&run, draft("bills.run")).await.unwrap();
    let r = s.bill_run_finish(&run, draft("bills.run")).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.bill_runs(10).await.unwrap(), vec![run]);
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));
}
