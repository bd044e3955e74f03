//! Conformance of the ledger storage: accounts by natural key, batches with per-transfer
//! outcomes, idempotency, floors (also under concurrency), two phases, the recomputation
//! check, and balance-move release.

use super::{NOW, b, card, draft, event, facts, feed};
use crate::ledger::*;
use crate::*;
use ::ledger::{
    AccountKey, AccountKind, Amount, BookError, IdempotencyKey, Mode, Owner, Posting, Transfer,
    TransferError, TransferKind, TransferState, Unit,
};
use resident::Source;

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn t(k: &str, from: i64, to: i64, fen: i64) -> Transfer {
    Transfer::simple(
        key(k),
        TransferKind::Payment,
        "test",
        from,
        to,
        Unit::Cny,
        Amount(fen),
    )
}

struct Accounts {
    bank: i64,
    alice: i64,
    bob: i64,
    metro: i64,
}

async fn open(s: &dyn Store) -> Accounts {
    let keys = [
        AccountKey::new(
            AccountKind::BankFloat,
            Owner::Bank("ICBC".into()),
            Unit::Cny,
        )
        .unwrap(),
        AccountKey::citizen_online(1),
        AccountKey::citizen_online(2),
        AccountKey::new(
            AccountKind::MerchantPayable,
            Owner::Merchant("metro".into()),
            Unit::Cny,
        )
        .unwrap(),
    ];
    let rows = s
        .ledger_open_accounts(&keys, draft("ledger.account.open"), NOW)
        .await
        .unwrap();
    Accounts {
        bank: rows[0].id,
        alice: rows[1].id,
        bob: rows[2].id,
        metro: rows[3].id,
    }
}

async fn balance(s: &dyn Store, id: i64) -> (i64, i64) {
    let mut after = id - 1;
    let rows = s.ledger_accounts_page(after, 1).await.unwrap();
    after = rows[0].id;
    assert_eq!(after, id);
    (rows[0].balance, rows[0].reserved)
}

async fn assert_books_hold(s: &dyn Store) {
    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None, "{c:?}");
}

/// For a backend's test of `ledger check` against postings written around the store: opens
/// two accounts, posts one transfer between them (the book checks clean) and returns the
/// `(transfer id, account id)` of a posting that dangles by its `missing` side ("account" or
/// "transfer"), for the backend to write past its own guards; then
/// [`ledger_check_names_dangling`].
pub async fn ledger_dangling_posting(s: &dyn Store, missing: &str) -> (i64, i64) {
    let a = open(s).await;
    let out = s
        .ledger_post_batch(
            &[t("top-up-1", a.bank, a.alice, 500)],
            draft("ledger.post"),
            NOW,
        )
        .await
        .unwrap();
    let PostOutcome::Applied { id, .. } = out[0] else {
        panic!("not applied: {out:?}");
    };
    assert_eq!(s.ledger_check().await.unwrap().mismatch, None);
    match missing {
        "account" => (id, a.metro + 1_000),
        "transfer" => (id + 1_000, a.alice),
        other => panic!("no dangling side {other}"),
    }
}

/// `ledger check` names the posting of [`ledger_dangling_posting`] once it is written.
pub async fn ledger_check_names_dangling(
    s: &dyn Store,
    (transfer_id, account): (i64, i64),
    missing: &'static str,
) {
    assert_eq!(
        s.ledger_check().await.unwrap().mismatch,
        Some(Mismatch::Dangling {
            transfer_id,
            account,
            missing,
        })
    );
}

pub async fn ledger_accounts_open_by_natural_key(s: &dyn Store) {
    let head0 = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let a = open(s).await;
    let head1 = s.audit_head().await.unwrap().unwrap().0;
    assert_eq!(head1, head0 + 1, "opening new accounts is audited once");
    let again = open(s).await;
    assert_eq!(
        (again.bank, again.alice, again.metro),
        (a.bank, a.alice, a.metro)
    );
    assert_eq!(
        s.audit_head().await.unwrap().unwrap().0,
        head1,
        "nothing new, no audit"
    );
    let row = s
        .ledger_account(&AccountKey::citizen_online(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.id, row.balance, row.reserved), (a.bob, 0, 0));
    assert!(
        s.ledger_account(&AccountKey::citizen_online(3))
            .await
            .unwrap()
            .is_none()
    );
    // Same owner, other unit: another account.
    let pts =
        AccountKey::new(AccountKind::CitizenOnline, Owner::Resident(1), Unit::Points).unwrap();
    let p = s
        .ledger_open_accounts(&[pts], draft("ledger.account.open"), NOW)
        .await
        .unwrap();
    assert_ne!(p[0].id, a.alice);
    assert_eq!(s.ledger_accounts_page(0, 100).await.unwrap().len(), 5);
}

pub async fn ledger_batches_answer_each_transfer(s: &dyn Store) {
    let a = open(s).await;
    let head = s.audit_head().await.unwrap().unwrap().0;
    let mut unbalanced = t("bad", a.bank, a.alice, 5);
    unbalanced.postings[1].amount = Amount(4);
    let mut conflicting = t("top-a", a.bank, a.alice, 999);
    conflicting.memo = "other".into();
    let batch = vec![
        t("top-a", a.bank, a.alice, 1_000),
        t("top-b", a.bank, a.bob, 500),
        t("pay-1", a.alice, a.metro, 300),
        // Would take Alice below zero: 700 left.
        t("pay-2", a.alice, a.metro, 800),
        // The same request again inside the batch, and the same key with other content.
        t("top-a", a.bank, a.alice, 1_000),
        conflicting,
        t("ghost", a.bank, 9_999, 10),
        unbalanced,
        // The merchant payable has no floor; the bank (an asset) may go below zero.
        t("refund", a.metro, a.bob, 50),
    ];
    let out = s
        .ledger_post_batch(&batch, draft("ledger.post"), NOW)
        .await
        .unwrap();
    assert_eq!(out.len(), batch.len());
    let id0 = match out[0] {
        PostOutcome::Applied {
            id,
            state: TransferState::Posted,
        } => id,
        ref o => panic!("{o:?}"),
    };
    assert!(matches!(out[1], PostOutcome::Applied { .. }));
    assert!(matches!(out[2], PostOutcome::Applied { .. }));
    assert!(
        matches!(out[3], PostOutcome::Rejected(BookError::BelowFloor { account, available: 700, .. }) if account == a.alice),
        "{:?}",
        out[3]
    );
    assert_eq!(
        out[4],
        PostOutcome::Duplicate {
            id: id0,
            state: TransferState::Posted
        }
    );
    assert_eq!(
        out[5],
        PostOutcome::KeyConflict {
            id: id0,
            state: TransferState::Posted
        }
    );
    assert_eq!(
        out[6],
        PostOutcome::Rejected(BookError::UnknownAccount(9_999))
    );
    assert!(matches!(
        out[7],
        PostOutcome::Rejected(BookError::Invalid(TransferError::Unbalanced { .. }))
    ));
    assert!(matches!(out[8], PostOutcome::Applied { .. }));
    assert_eq!(balance(s, a.alice).await, (700, 0));
    assert_eq!(balance(s, a.bob).await, (550, 0));
    assert_eq!(balance(s, a.metro).await, (250, 0));
    assert_eq!(balance(s, a.bank).await, (1_500, 0));
    assert_eq!(
        s.audit_head().await.unwrap().unwrap().0,
        head + 1,
        "one audit entry per batch"
    );

    // The whole batch again: every accepted transfer answers with its original result,
    // nothing is written, no audit is appended.
    let again = s
        .ledger_post_batch(&batch, draft("ledger.post"), NOW + 1)
        .await
        .unwrap();
    for (i, (x, y)) in out.iter().zip(&again).enumerate() {
        match x.accepted() {
            Some((id, state)) => assert_eq!(y, &PostOutcome::Duplicate { id, state }, "#{i}"),
            None if i == 5 => assert_eq!(x, y),
            None => assert!(matches!(y, PostOutcome::Rejected(_)), "#{i}: {y:?}"),
        }
    }
    assert_eq!(balance(s, a.alice).await, (700, 0));
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 1);

    // Queries: the transfer with its postings, pages, a statement.
    let tr = s.ledger_transfer("pay-1").await.unwrap().unwrap();
    assert_eq!(tr.kind, TransferKind::Payment);
    assert_eq!(tr.state, TransferState::Posted);
    assert_eq!(tr.posted_ms, Some(NOW));
    assert_eq!(
        tr.postings,
        vec![
            Posting::debit(a.alice, Unit::Cny, Amount(300)),
            Posting::credit(a.metro, Unit::Cny, Amount(300))
        ]
    );
    assert!(s.ledger_transfer("pay-2").await.unwrap().is_none());
    let page = s.ledger_transfers_page(0, 100).await.unwrap();
    assert_eq!(
        page.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["top-a", "top-b", "pay-1", "refund"]
    );
    assert!(page.iter().all(|t| t.postings.len() == 2));
    assert_eq!(
        s.ledger_transfers_page(page[1].id, 1).await.unwrap()[0].key,
        "pay-1"
    );
    let st = s.ledger_statement(a.alice, 0, 100).await.unwrap();
    assert_eq!(
        st.iter()
            .map(|l| (
                l.key.as_str(),
                l.posting.side.as_str(),
                l.posting.amount.get()
            ))
            .collect::<Vec<_>>(),
        [("top-a", "credit", 1_000), ("pay-1", "debit", 300)]
    );
    assert_books_hold(s).await;

    // Bounds: an oversized batch is refused whole.
    let big: Vec<Transfer> = (0..=LEDGER_BATCH_MAX)
        .map(|i| t(&format!("big-{i}"), a.bank, a.alice, 1))
        .collect();
    let r = s.ledger_post_batch(&big, draft("ledger.post"), NOW).await;
    assert!(matches!(r, Err(StoreError::TooMany { .. })), "{r:?}");
    assert_eq!(balance(s, a.alice).await, (700, 0));
}

pub async fn ledger_pending_reserves_then_posts_or_voids(s: &dyn Store) {
    let a = open(s).await;
    s.ledger_post_batch(
        &[t("top", a.bank, a.alice, 1_000)],
        draft("ledger.post"),
        NOW,
    )
    .await
    .unwrap();
    let hold = t("hold-1", a.alice, a.metro, 600).pending();
    let hold2 = t("hold-2", a.alice, a.metro, 300).pending();
    let out = s
        .ledger_post_batch(
            &[hold.clone(), hold2, t("spend", a.alice, a.bob, 200)],
            draft("ledger.post"),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(
        out[0],
        PostOutcome::Applied {
            state: TransferState::Pending,
            ..
        }
    ));
    assert!(matches!(
        out[1],
        PostOutcome::Applied {
            state: TransferState::Pending,
            ..
        }
    ));
    // 1000 - 600 - 300 = 100 available: the reserved money cannot be spent again.
    assert!(
        matches!(
            out[2],
            PostOutcome::Rejected(BookError::BelowFloor { available: 100, .. })
        ),
        "{:?}",
        out[2]
    );
    assert_eq!(balance(s, a.alice).await, (1_000, 900));
    assert_eq!(balance(s, a.metro).await, (0, 0));
    assert_books_hold(s).await;

    let res = s
        .ledger_resolve_batch(
            &[
                Resolve {
                    key: key("hold-1"),
                    post: true,
                },
                Resolve {
                    key: key("hold-2"),
                    post: false,
                },
                Resolve {
                    key: key("hold-1"),
                    post: true,
                },
                Resolve {
                    key: key("hold-2"),
                    post: true,
                },
                Resolve {
                    key: key("nothing"),
                    post: true,
                },
                Resolve {
                    key: key("top"),
                    post: false,
                },
            ],
            draft("ledger.resolve"),
            NOW + 5,
        )
        .await
        .unwrap();
    assert!(matches!(
        res[0],
        PostOutcome::Applied {
            state: TransferState::Posted,
            ..
        }
    ));
    assert!(matches!(
        res[1],
        PostOutcome::Applied {
            state: TransferState::Voided,
            ..
        }
    ));
    assert!(matches!(
        res[2],
        PostOutcome::Duplicate {
            state: TransferState::Posted,
            ..
        }
    ));
    assert!(matches!(
        res[3],
        PostOutcome::KeyConflict {
            state: TransferState::Voided,
            ..
        }
    ));
    assert_eq!(res[4], PostOutcome::NotFound);
    assert!(matches!(
        res[5],
        PostOutcome::KeyConflict {
            state: TransferState::Posted,
            ..
        }
    ));
    assert_eq!(balance(s, a.alice).await, (400, 0));
    assert_eq!(balance(s, a.metro).await, (600, 0));
    let h = s.ledger_transfer("hold-1").await.unwrap().unwrap();
    assert_eq!(
        (h.mode, h.state, h.posted_ms),
        (Mode::Pending, TransferState::Posted, Some(NOW + 5))
    );
    let v = s.ledger_transfer("hold-2").await.unwrap().unwrap();
    assert_eq!((v.state, v.posted_ms), (TransferState::Voided, None));
    // The original request again answers with the transfer as it is now.
    let again = s
        .ledger_post_batch(&[hold], draft("ledger.post"), NOW)
        .await
        .unwrap();
    assert!(matches!(
        again[0],
        PostOutcome::Duplicate {
            state: TransferState::Posted,
            ..
        }
    ));
    assert_books_hold(s).await;
}

/// Many tasks debit one account at once: it never goes below zero and no money appears or
/// disappears.
pub async fn ledger_floors_hold_under_concurrency(s: &'static dyn Store) {
    let a = open(s).await;
    s.ledger_post_batch(
        &[t("seed", a.bank, a.alice, 10_000)],
        draft("ledger.post"),
        NOW,
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for task in 0..12 {
        let (alice, metro) = (a.alice, a.metro);
        tasks.push(tokio::spawn(async move {
            let mut applied = 0;
            for i in 0..10 {
                // Batches of two, each 100 fen: 240 asked for, 100 possible.
                let batch = [
                    t(&format!("d-{task}-{i}-a"), alice, metro, 100),
                    t(&format!("d-{task}-{i}-b"), alice, metro, 100),
                ];
                let out = s
                    .ledger_post_batch(&batch, draft("ledger.post"), NOW)
                    .await
                    .unwrap();
                for o in out {
                    match o {
                        PostOutcome::Applied { .. } => applied += 1,
                        PostOutcome::Rejected(BookError::BelowFloor { .. }) => {}
                        o => panic!("{o:?}"),
                    }
                }
            }
            applied
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap();
    }
    assert_eq!(applied, 100);
    assert_eq!(balance(s, a.alice).await, (0, 0));
    assert_eq!(balance(s, a.metro).await, (10_000, 0));
    assert_eq!(balance(s, a.bank).await, (10_000, 0));
    assert_books_hold(s).await;
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));
}

pub async fn balance_moves_release_once(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(1, "a", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let r1 = s.resident_by_blind(&b("id", 1)).await.unwrap().unwrap().id;
    let (old, new) = ("4101000000000018", "4101000000000026");
    s.card_insert(
        &card(old, r1, "active", 1),
        &event(old, "-", "active"),
        None,
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();
    let due_s = NOW / 1000 + 100;
    s.card_apply(
        &CardChange {
            card: card(old, r1, "replaced", 2),
            successor: Some(card(new, r1, "approved", 1)),
            events: vec![],
            deny: vec![],
            moves: vec![BalanceMoveRow {
                from_number: old.into(),
                to_number: Some(new.into()),
                not_before_s: due_s,
            }],
        },
        vec![draft("card.replace")],
        NOW,
    )
    .await
    .unwrap();
    assert!(s.balance_moves_due(due_s - 1, 10).await.unwrap().is_empty());
    let due = s.balance_moves_due(due_s, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].from_number.as_str(), due[0].to_number.as_deref()),
        (old, Some(new))
    );

    let rows = s
        .ledger_open_accounts(
            &[
                AccountKey::new(
                    AccountKind::BankFloat,
                    Owner::Bank("ICBC".into()),
                    Unit::Cny,
                )
                .unwrap(),
                AccountKey::epurse_shadow(old),
                AccountKey::epurse_pending_load(old),
                AccountKey::epurse_pending_load(new),
                AccountKey::new(
                    AccountKind::MerchantPayable,
                    Owner::Merchant("metro".into()),
                    Unit::Cny,
                )
                .unwrap(),
            ],
            draft("ledger.account.open"),
            NOW,
        )
        .await
        .unwrap();
    let (bank, shadow, owed_old, owed_new, metro) =
        (rows[0].id, rows[1].id, rows[2].id, rows[3].id, rows[4].id);
    s.ledger_post_batch(
        &[
            t("load", bank, shadow, 5_000),
            t("owed", bank, owed_old, 700),
            // A hold on the old card keeps the release waiting.
            t("held", shadow, metro, 100).pending(),
        ],
        draft("ledger.post"),
        NOW,
    )
    .await
    .unwrap();
    let release = MoveRelease {
        move_id: due[0].id,
        memo: "replacement".into(),
        sweeps: vec![(shadow, owed_new), (owed_old, owed_new)],
    };
    let r = s
        .balance_move_release(&release, draft("ledger.balance_move"), NOW)
        .await
        .unwrap();
    assert_eq!(
        r,
        ReleaseOutcome::Deferred {
            account: shadow,
            reserved: 100
        }
    );
    assert_eq!(s.balance_moves_due(due_s, 10).await.unwrap().len(), 1);
    s.ledger_resolve_batch(
        &[Resolve {
            key: key("held"),
            post: true,
        }],
        draft("ledger.resolve"),
        NOW,
    )
    .await
    .unwrap();
    let head = s.audit_head().await.unwrap().unwrap().0;
    let r = s
        .balance_move_release(&release, draft("ledger.balance_move"), NOW)
        .await
        .unwrap();
    let ReleaseOutcome::Released {
        transfer_id: Some(tid),
        moved,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(moved, 4_900 + 700);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 1);
    let tr = s
        .ledger_transfer(release.key().as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((tr.id, tr.kind), (tid, TransferKind::BalanceMove));
    assert_eq!(balance(s, shadow).await, (0, 0));
    assert_eq!(balance(s, owed_old).await, (0, 0));
    assert_eq!(balance(s, owed_new).await, (5_600, 0));
    // Twice: nothing more.
    let r = s
        .balance_move_release(&release, draft("ledger.balance_move"), NOW)
        .await
        .unwrap();
    assert_eq!(r, ReleaseOutcome::AlreadyReleased);
    assert_eq!(balance(s, owed_new).await, (5_600, 0));
    assert!(s.balance_moves_due(due_s, 10).await.unwrap().is_empty());
    assert!(s.balance_moves_pending(10).await.unwrap().is_empty());
    assert_books_hold(s).await;
    let missing = MoveRelease {
        move_id: 9_999,
        ..release
    };
    assert!(matches!(
        s.balance_move_release(&missing, draft("ledger.balance_move"), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
}
