//! Conformance of money movements: one request key is one movement, a refused transfer writes
//! no movement, state changes are compare-and-set with their resolutions in the same
//! transaction, refunds never exceed the payment (also under concurrency), one open load per
//! card.

use super::{NOW, draft};
use crate::ledger::*;
use crate::money::*;
use crate::*;
use ::ledger::{
    AccountKey, AccountKind, Amount, BookError, IdempotencyKey, Owner, Transfer, TransferKind,
    TransferState, Unit,
};

fn t(k: &str, kind: TransferKind, from: i64, to: i64, fen: i64) -> Transfer {
    Transfer::simple(
        IdempotencyKey::parse(k).unwrap(),
        kind,
        "test",
        from,
        to,
        Unit::Cny,
        Amount(fen),
    )
}

fn movement(kind: MovementKind, key: &str, amount: i64, state: &str) -> NewMovement {
    NewMovement {
        kind,
        request_key: format!("{}:{key}", kind.as_str()),
        digest: [7; 32],
        resident_id: 1,
        card_number: None,
        counterparty: "metro".into(),
        amount,
        parent_id: None,
        state: state.into(),
        external_ref: None,
        detail: "{}".into(),
    }
}

struct Ids {
    bank: i64,
    online: i64,
    metro: i64,
    owed: i64,
}

/// A payment of `fen` from the online account to the metro, keyed `key`.
fn payment(ids: &Ids, key: &str, fen: i64) -> (NewMovement, Transfer) {
    (
        movement(MovementKind::Payment, key, fen, "paid"),
        t(
            &format!("payment:{key}"),
            TransferKind::Payment,
            ids.online,
            ids.metro,
            fen,
        ),
    )
}

async fn accounts(s: &dyn Store) -> Ids {
    let rows = s
        .ledger_open_accounts(
            &[
                AccountKey::new(AccountKind::BankFloat, Owner::Bank("SIM".into()), Unit::Cny)
                    .unwrap(),
                AccountKey::citizen_online(1),
                AccountKey::new(
                    AccountKind::MerchantPayable,
                    Owner::Merchant("metro".into()),
                    Unit::Cny,
                )
                .unwrap(),
                AccountKey::epurse_pending_load("4101000000000018"),
            ],
            draft("ledger.account.open"),
            NOW,
        )
        .await
        .unwrap();
    Ids {
        bank: rows[0].id,
        online: rows[1].id,
        metro: rows[2].id,
        owed: rows[3].id,
    }
}

async fn balance(s: &dyn Store, key: AccountKey) -> (i64, i64) {
    let a = s.ledger_account(&key).await.unwrap().unwrap();
    (a.balance, a.reserved)
}

async fn fund(s: &dyn Store, ids: &Ids, fen: i64) {
    let out = s
        .ledger_post_batch(
            &[t("fund", TransferKind::TopUp, ids.bank, ids.online, fen)],
            draft("ledger.post"),
            NOW,
        )
        .await
        .unwrap();
    assert!(out[0].accepted().is_some(), "{out:?}");
}

pub async fn money_movements_record_once_and_change_by_compare_and_set(s: &dyn Store) {
    let ids = accounts(s).await;
    // A top-up: pending until the bank answers; reserves nothing, moves nothing.
    let mut m = movement(MovementKind::TopUp, "k1", 5_000, "pending");
    m.external_ref = Some("ORDER1".into());
    let pending = t(
        "topup:ORDER1",
        TransferKind::TopUp,
        ids.bank,
        ids.online,
        5_000,
    )
    .pending();
    let head0 = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let Recorded::Created(row) = s
        .money_record(
            &m,
            None,
            std::slice::from_ref(&pending),
            draft("money.topup"),
            NOW,
        )
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head0 + 1);
    assert_eq!(
        (row.state.as_str(), row.amount, row.returned),
        ("pending", 5_000, 0)
    );
    assert_eq!(row.digest, [7; 32]);
    assert_eq!(balance(s, AccountKey::citizen_online(1)).await, (0, 0));
    // The same key again: the stored movement, nothing written.
    let again = s
        .money_record(
            &m,
            None,
            std::slice::from_ref(&pending),
            draft("money.topup"),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(again, Recorded::Existing(row.clone()));
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head0 + 1);
    assert_eq!(
        s.money_by_ref(MovementKind::TopUp, "ORDER1").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        s.money_by_key("top_up:k1").await.unwrap().map(|r| r.id),
        Some(row.id)
    );
    let listed = s
        .money_list(MovementKind::TopUp, "pending", None, NOW, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![row.id]
    );
    assert!(
        s.money_list(MovementKind::TopUp, "pending", None, NOW - 1, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Success: pending → succeeded and the transfer posted, in one transaction.
    let success = Transition {
        id: row.id,
        from: "pending".into(),
        to: "succeeded".into(),
        detail: Some("{\"bank_ref\":\"B1\"}".into()),
        resolves: vec![Resolve {
            key: IdempotencyKey::parse("topup:ORDER1").unwrap(),
            post: true,
        }],
        transfers: vec![],
    };
    let Transitioned::Changed(done) = s
        .money_transition(&success, draft("money.topup.succeeded"), NOW + 2)
        .await
        .unwrap()
    else {
        panic!("not changed")
    };
    assert_eq!(done.state, "succeeded");
    assert_eq!(done.detail, "{\"bank_ref\":\"B1\"}");
    assert_eq!(done.updated_ms, NOW + 2);
    assert_eq!(balance(s, AccountKey::citizen_online(1)).await, (5_000, 0));
    assert_eq!(
        s.ledger_transfer("topup:ORDER1")
            .await
            .unwrap()
            .unwrap()
            .state,
        TransferState::Posted
    );
    // A late failure finds it no longer pending: nothing written.
    let failure = Transition {
        to: "failed".into(),
        resolves: vec![Resolve {
            key: IdempotencyKey::parse("topup:ORDER1").unwrap(),
            post: false,
        }],
        ..success.clone()
    };
    let stale = s
        .money_transition(&failure, draft("money.topup.failed"), NOW + 3)
        .await
        .unwrap();
    assert_eq!(stale, Transitioned::Stale(done.clone()));
    assert_eq!(balance(s, AccountKey::citizen_online(1)).await, (5_000, 0));

    // A payment the account cannot cover writes no movement.
    let pay = movement(MovementKind::Payment, "too-much", 9_000, "paid");
    let r = s
        .money_record(
            &pay,
            None,
            &[t(
                "payment:too-much",
                TransferKind::Payment,
                ids.online,
                ids.metro,
                9_000,
            )],
            draft("money.payment"),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(r, Recorded::Rejected(BookError::BelowFloor { .. })),
        "{r:?}"
    );
    assert_eq!(s.money_by_key("payment:too-much").await.unwrap(), None);

    // One load awaiting confirmation per card.
    let mut load = movement(MovementKind::Load, "l1", 100, "authorized");
    load.card_number = Some("4101000000000018".into());
    let hold = |k: &str| t(k, TransferKind::Load, ids.online, ids.owed, 100).pending();
    assert!(matches!(
        s.money_record(&load, None, &[hold("load:1")], draft("money.load"), NOW)
            .await
            .unwrap(),
        Recorded::Created(_)
    ));
    assert_eq!(
        balance(s, AccountKey::citizen_online(1)).await,
        (5_000, 100)
    );
    let mut second = movement(MovementKind::Load, "l2", 100, "authorized");
    second.card_number = load.card_number.clone();
    let e = s
        .money_record(&second, None, &[hold("load:2")], draft("money.load"), NOW)
        .await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    assert_eq!(
        balance(s, AccountKey::citizen_online(1)).await,
        (5_000, 100)
    );
    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None);
}

pub async fn money_refunds_never_exceed_the_payment(s: &'static dyn Store) {
    let ids = accounts(s).await;
    fund(s, &ids, 10_000).await;
    let pay = movement(MovementKind::Payment, "p", 1_000, "paid");
    let Recorded::Created(p) = s
        .money_record(
            &pay,
            None,
            &[t(
                "payment:p",
                TransferKind::Payment,
                ids.online,
                ids.metro,
                1_000,
            )],
            draft("money.payment"),
            NOW,
        )
        .await
        .unwrap()
    else {
        panic!("payment not created")
    };
    // Twenty refunds of 150 at once: six fit in 1,000.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let pid = p.id;
        let (metro, online) = (ids.metro, ids.online);
        tasks.push(tokio::spawn(async move {
            let mut r = movement(MovementKind::Refund, &format!("r{i}"), 150, "done");
            r.parent_id = Some(pid);
            let change = ParentChange {
                id: pid,
                add: 150,
                require_state: "paid".into(),
                returned_before: None,
                set_state: None,
            };
            s.money_record(
                &r,
                Some(&change),
                &[t(
                    &format!("refund:r{i}"),
                    TransferKind::Refund,
                    metro,
                    online,
                    150,
                )],
                draft("money.refund"),
                NOW,
            )
            .await
            .unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Recorded::Created(_) => created += 1,
            Recorded::ParentRefused(now) => assert!(now.returned + 150 > now.amount),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 6);
    let now = s.money_by_id(p.id).await.unwrap().unwrap();
    assert_eq!(now.returned, 900);
    assert_eq!(s.money_children(p.id).await.unwrap().len(), 6);
    assert_eq!(
        balance(s, AccountKey::citizen_online(1)).await,
        (10_000 - 1_000 + 900, 0)
    );
    // A reversal that saw an older `returned` is refused; with the current one it returns
    // the rest and closes the payment.
    let mut rev = movement(MovementKind::Reversal, "rev", 100, "done");
    rev.parent_id = Some(p.id);
    let change = |before: i64| ParentChange {
        id: p.id,
        add: 100,
        require_state: "paid".into(),
        returned_before: Some(before),
        set_state: Some("reversed".into()),
    };
    let transfer = t(
        "reversal:p",
        TransferKind::Reversal,
        ids.metro,
        ids.online,
        100,
    );
    let r = s
        .money_record(
            &rev,
            Some(&change(750)),
            std::slice::from_ref(&transfer),
            draft("r"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(r, Recorded::ParentRefused(now.clone()));
    let r = s
        .money_record(&rev, Some(&change(900)), &[transfer], draft("r"), NOW)
        .await
        .unwrap();
    assert!(matches!(r, Recorded::Created(_)), "{r:?}");
    let closed = s.money_by_id(p.id).await.unwrap().unwrap();
    assert_eq!(
        (closed.state.as_str(), closed.returned),
        ("reversed", 1_000)
    );
    assert_eq!(balance(s, AccountKey::citizen_online(1)).await, (10_000, 0));
    let mut late = movement(MovementKind::Refund, "late", 1, "done");
    late.parent_id = Some(p.id);
    let r = s
        .money_record(
            &late,
            Some(&ParentChange {
                id: p.id,
                add: 1,
                require_state: "paid".into(),
                returned_before: None,
                set_state: None,
            }),
            &[t(
                "refund:late",
                TransferKind::Refund,
                ids.metro,
                ids.online,
                1,
            )],
            draft("r"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(r, Recorded::ParentRefused(closed));
    assert_eq!(s.ledger_check().await.unwrap().mismatch, None);
}

pub async fn money_group_commit_answers_each_item(s: &dyn Store) {
    let ids = accounts(s).await;
    fund(s, &ids, 1_000).await;
    let pay = |key: &str, fen: i64| payment(&ids, key, fen);
    // One recorded alone first: the batch finds it stored.
    let before = pay("before", 100);
    let Recorded::Created(stored) = s
        .money_record(
            &before.0,
            None,
            std::slice::from_ref(&before.1),
            draft("p"),
            NOW,
        )
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let head0 = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let items = vec![
        pay("a", 300),
        pay("too-much", 5_000),
        pay("a", 300),
        before.clone(),
        pay("b", 200),
    ];
    let audits: Vec<audit::Draft> = (0..items.len()).map(|_| draft("money.payment")).collect();
    let out = s.money_record_many(&items, &audits, NOW + 1).await.unwrap();
    assert_eq!(out.len(), 5);
    let Recorded::Created(a) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(
        (a.amount, a.state.as_str(), a.created_ms),
        (300, "paid", NOW + 1)
    );
    assert!(
        matches!(out[1], Recorded::Rejected(BookError::BelowFloor { .. })),
        "{:?}",
        out[1]
    );
    assert_eq!(out[2], Recorded::Existing(a.clone()));
    assert_eq!(out[3], Recorded::Existing(stored));
    assert!(matches!(&out[4], Recorded::Created(b) if b.amount == 200));
    // One audit entry per recorded movement, none for the others.
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head0 + 2);
    assert_eq!(s.money_by_key("payment:too-much").await.unwrap(), None);
    assert_eq!(
        balance(s, AccountKey::citizen_online(1)).await,
        (1_000 - 600, 0)
    );
    // Nothing new: nothing written.
    let again = s
        .money_record_many(&items[..1], &audits[..1], NOW + 2)
        .await
        .unwrap();
    assert_eq!(again, vec![Recorded::Existing(a.clone())]);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head0 + 2);
    assert_eq!(s.ledger_check().await.unwrap().mismatch, None);
}

/// A group of keys never seen before (the usual group commit): a key twice in the group posts
/// once and both answer the same row, a payment past the balance is refused while the ones
/// around it are written, the account ends exactly at zero and never below, every written
/// payment has its audit entry in one unbroken chain.
pub async fn money_group_commit_of_fresh_keys_keeps_floors_and_posts_once(s: &dyn Store) {
    let ids = accounts(s).await;
    fund(s, &ids, 1_000).await;
    let pay = |key: &str, fen: i64| payment(&ids, key, fen);
    let head0 = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let items = vec![
        pay("f1", 400),
        pay("f1", 400),
        pay("f2", 700),
        pay("f3", 600),
        pay("f4", 1),
    ];
    let audits: Vec<audit::Draft> = (0..items.len()).map(|_| draft("money.payment")).collect();
    let out = s.money_record_many(&items, &audits, NOW + 3).await.unwrap();
    let Recorded::Created(f1) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!((f1.amount, f1.request_key.as_str()), (400, "payment:f1"));
    assert_eq!(out[1], Recorded::Existing(f1.clone()));
    assert!(
        matches!(
            out[2],
            Recorded::Rejected(BookError::BelowFloor { available: 600, .. })
        ),
        "{:?}",
        out[2]
    );
    assert!(
        matches!(&out[3], Recorded::Created(r) if r.amount == 600),
        "{:?}",
        out[3]
    );
    assert!(
        matches!(
            out[4],
            Recorded::Rejected(BookError::BelowFloor { available: 0, .. })
        ),
        "{:?}",
        out[4]
    );
    assert_eq!(balance(s, AccountKey::citizen_online(1)).await, (0, 0));
    let metro = AccountKey::new(
        AccountKind::MerchantPayable,
        Owner::Merchant("metro".into()),
        Unit::Cny,
    )
    .unwrap();
    assert_eq!(balance(s, metro).await, (1_000, 0));
    for (key, stored) in [
        ("payment:f1", true),
        ("payment:f2", false),
        ("payment:f3", true),
    ] {
        assert_eq!(
            s.money_by_key(key).await.unwrap().is_some(),
            stored,
            "{key}"
        );
        let transfer = s.ledger_transfer(key).await.unwrap();
        assert_eq!(transfer.is_some(), stored, "{key}");
    }
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head0 + 2);
    assert_eq!(crate::audit_verify(s).await.unwrap(), Ok(head0 as u64 + 2));
    assert_eq!(s.ledger_check().await.unwrap().mismatch, None);
}

pub async fn money_payments_enter_the_window_of_their_posting(s: &dyn Store) {
    let ids = accounts(s).await;
    fund(s, &ids, 10_000).await;
    let cal = ::ledger::WindowCalendar::default();
    let w = cal.window_of(NOW);
    // The last millisecond of NOW's window, and the first of the next.
    let (last, first) = (cal.end_ms(w) - 1, cal.end_ms(w));
    let pay = |key: &str, fen: i64| payment(&ids, key, fen);
    let created = |r: Recorded| match r {
        Recorded::Created(row) => row,
        r => panic!("{r:?}"),
    };
    // Alone, and in a group commit: the window of the moment they are written.
    let (m, tr) = pay("alone", 1_000);
    let alone = created(
        s.money_record(&m, None, &[tr], draft("p"), last)
            .await
            .unwrap(),
    );
    assert_eq!(alone.window_id.as_deref(), Some(w.to_string().as_str()));
    let items = vec![pay("late-1", 2_000), pay("late-2", 500)];
    let audits = vec![draft("p"), draft("p")];
    let out = s.money_record_many(&items, &audits, first).await.unwrap();
    let late = created(out[0].clone());
    assert_eq!(
        late.window_id.as_deref(),
        Some(w.next().to_string().as_str())
    );
    // A refund of a payment takes the window of its own posting, not its payment's.
    let mut refund = movement(MovementKind::Refund, "r1", 300, "done");
    refund.parent_id = Some(alone.id);
    let change = ParentChange {
        id: alone.id,
        add: 300,
        require_state: "paid".into(),
        returned_before: None,
        set_state: None,
    };
    let back = t(
        "refund:r1",
        TransferKind::Refund,
        ids.metro,
        ids.online,
        300,
    );
    let refund = created(
        s.money_record(&refund, Some(&change), &[back], draft("r"), first + 5)
            .await
            .unwrap(),
    );
    assert_eq!(
        refund.window_id.as_deref(),
        Some(w.next().to_string().as_str())
    );
    // Fees, their refunds and top-ups are not merchants' money: no window.
    let mut fee = movement(MovementKind::Fee, "fee", 400, "paid");
    fee.counterparty = "police".into();
    let fee_t = t("fee:fee", TransferKind::Fee, ids.online, ids.metro, 400);
    let fee = created(
        s.money_record(&fee, None, &[fee_t], draft("f"), last)
            .await
            .unwrap(),
    );
    assert_eq!(fee.window_id, None);
    let mut fee_back = movement(MovementKind::Reversal, "fee", 400, "done");
    fee_back.parent_id = Some(fee.id);
    let fee_back = created(
        s.money_record(
            &fee_back,
            Some(&ParentChange {
                id: fee.id,
                add: 400,
                require_state: "paid".into(),
                returned_before: None,
                set_state: Some("reversed".into()),
            }),
            &[t(
                "reversal:fee",
                TransferKind::Reversal,
                ids.metro,
                ids.online,
                400,
            )],
            draft("r"),
            last,
        )
        .await
        .unwrap(),
    );
    assert_eq!(fee_back.window_id, None);
    let key = |r: &MovementRow| r.request_key.clone();
    let of = |win: String, after: i64, limit: u32| async move {
        s.money_of_window(&win, after, limit).await.unwrap()
    };
    // The window's rows in id order, paged.
    assert_eq!(
        of(w.to_string(), 0, 50)
            .await
            .iter()
            .map(key)
            .collect::<Vec<_>>(),
        vec!["payment:alone"]
    );
    let next = of(w.next().to_string(), 0, 50).await;
    assert_eq!(
        next.iter().map(key).collect::<Vec<_>>(),
        vec!["payment:late-1", "payment:late-2", "refund:r1"]
    );
    // Summed for a window's close: per kind, counterparty and amount, as the rows say.
    let mut want: Vec<(String, String, i64, i64)> = Vec::new();
    for r in &next {
        match want.iter_mut().find(|x| {
            (x.0.as_str(), x.1.as_str(), x.2) == (r.kind.as_str(), &r.counterparty, r.amount)
        }) {
            Some(x) => x.3 += 1,
            None => want.push((
                r.kind.as_str().to_string(),
                r.counterparty.clone(),
                r.amount,
                1,
            )),
        }
    }
    want.sort();
    let sums = s.clearing_window_sums(&w.next().to_string()).await.unwrap();
    assert_eq!(
        sums.into_iter()
            .map(|g| (g.kind, g.merchant, g.amount_fen, g.count))
            .collect::<Vec<_>>(),
        want
    );
    let page = of(w.next().to_string(), next[0].id, 1).await;
    assert_eq!(
        page.iter().map(key).collect::<Vec<_>>(),
        vec!["payment:late-2"]
    );
    // The running totals of a window before it closes: payments less what was given back in
    // it; fees are not in any window.
    let running = |win: String| async move { s.clearing_running(&win).await.unwrap() };
    assert_eq!(
        running(w.to_string()).await,
        WindowRunningRow {
            purchases: 0,
            purchases_fen: 0,
            movements: 1,
            movements_fen: 1_000,
        }
    );
    assert_eq!(
        running(w.next().to_string()).await,
        WindowRunningRow {
            purchases: 0,
            purchases_fen: 0,
            movements: 3,
            movements_fen: 2_000 + 500 - 300,
        }
    );
    assert_eq!(
        running("2020-01-01".into()).await,
        WindowRunningRow::default()
    );
    // The calendar is the platform's: a midnight cut-off puts the same instant elsewhere.
    let midnight = ::ledger::WindowCalendar::new(0, 8 * 60).unwrap();
    s.money_windows_set(midnight);
    let (m, tr) = pay("midnight", 100);
    let row = created(
        s.money_record(&m, None, &[tr], draft("p"), first)
            .await
            .unwrap(),
    );
    assert_eq!(midnight.window_of(first), w);
    assert_eq!(row.window_id.as_deref(), Some(w.to_string().as_str()));
    s.money_windows_set(cal);
    assert_eq!(s.ledger_check().await.unwrap().mismatch, None);
}

/// A payment stamped with a window that closed while it waited for the writer goes to the next
/// window still open, alone and in a group commit; a close whose report was made from another
/// number of postings than the window holds under the lock is refused and writes nothing.
pub async fn money_payments_never_enter_a_closed_window(s: &dyn Store) {
    let ids = accounts(s).await;
    fund(s, &ids, 10_000).await;
    let cal = ::ledger::WindowCalendar::default();
    let w = cal.window_of(NOW);
    let last = cal.end_ms(w) - 1;
    let pay = |key: &str, fen: i64| payment(&ids, key, fen);
    let closing = |id: String| ClearingWindowRow {
        window_id: id,
        closed_ms: NOW,
        closed_by: "operator:clr".into(),
        digest: "AB".into(),
    };
    let (m, tr) = pay("before", 100);
    s.money_record(&m, None, &[tr], draft("p"), last)
        .await
        .unwrap();
    // The report was made from no postings, but the window holds one: refused, nothing kept.
    let refused = s
        .clearing_close(
            &closing(w.to_string()),
            &[],
            0,
            draft("clearing.close"),
            NOW,
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(why)) if why.contains("holds 1 postings")),
        "{refused:?}"
    );
    assert!(s.clearing_window(&w.to_string()).await.unwrap().is_none());
    assert!(
        s.clearing_close(
            &closing(w.to_string()),
            &[],
            1,
            draft("clearing.close"),
            NOW
        )
        .await
        .unwrap()
    );
    // Stamped in the closed window (they waited for the lock while it closed): the next one.
    let (m, tr) = pay("waited", 200);
    let alone = match s
        .money_record(&m, None, &[tr], draft("p"), last)
        .await
        .unwrap()
    {
        Recorded::Created(row) => row,
        r => panic!("{r:?}"),
    };
    let next = w.next().to_string();
    assert_eq!(alone.window_id.as_deref(), Some(next.as_str()));
    let out = s
        .money_record_many(&[pay("group", 300)], &[draft("p")], last)
        .await
        .unwrap();
    match &out[0] {
        Recorded::Created(row) => assert_eq!(row.window_id.as_deref(), Some(next.as_str())),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        s.money_of_window(&w.to_string(), 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.money_of_window(&next, 0, 10).await.unwrap().len(), 2);
    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None, "{c:?}");
}
