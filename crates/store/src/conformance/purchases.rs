//! Conformance of offline purchase storage: a repeated record is posted once and answered with
//! the first (in a batch and across batches), flags (counter gap, deny-listed, late,
//! shortfall from suspense), the window fixed at posting, balances that the ledger check
//! derives from postings, one audit entry per batch, the batch bound, and many concurrent
//! batches crediting one hot merchant without a deadlock.

use super::{NOW, draft};
use crate::ledger::PostOutcome;
use crate::purchases::*;
use crate::*;
use ::ledger::offline::Flags;
use ::ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};

const W1: &str = "2026-11-30";
const W1_START: i64 = NOW - 3_600_000;
const W2: &str = "2026-12-01";
const W2_START: i64 = W1_START + 86_400_000;

fn card(i: u32) -> String {
    format!("41010000{i:08}")
}

fn purchase(card: &str, counter: u16, fen: u32) -> NewPurchase {
    NewPurchase {
        card_number: card.into(),
        offline_counter: counter,
        amount_fen: fen,
        tx_type: 6,
        algorithm_id: 4,
        terminal_id: "112233445566".into(),
        terminal_serial: u32::from(counter) + 1,
        tx_ms: W1_START + 60_000,
        balance_before_fen: 1_000,
        tac: [1, 2, 3, 4],
        deny_listed: false,
    }
}

fn key(kind: AccountKind, owner: Owner) -> AccountKey {
    AccountKey::new(kind, owner, Unit::Cny).unwrap()
}

/// Loads `fen` onto each card's shadow from the bank float.
async fn fund(s: &dyn Store, cards: &[String], fen: i64) {
    let mut keys = vec![key(AccountKind::BankFloat, Owner::Bank("ICBC".into()))];
    keys.extend(cards.iter().map(|c| AccountKey::epurse_shadow(c)));
    let rows = s
        .ledger_open_accounts(&keys, draft("ledger.account.open"), NOW)
        .await
        .unwrap();
    let loads: Vec<Transfer> = rows[1..]
        .iter()
        .map(|r| {
            Transfer::simple(
                IdempotencyKey::parse(&format!("load-{}", r.id)).unwrap(),
                TransferKind::Load,
                "test load",
                rows[0].id,
                r.id,
                Unit::Cny,
                Amount(fen),
            )
        })
        .collect();
    for chunk in loads.chunks(1_000) {
        let out = s
            .ledger_post_batch(chunk, draft("ledger.post"), NOW)
            .await
            .unwrap();
        assert!(out.iter().all(|o| matches!(o, PostOutcome::Applied { .. })));
    }
}

async fn balance_of(s: &dyn Store, k: &AccountKey) -> i64 {
    s.ledger_account(k).await.unwrap().map_or(0, |a| a.balance)
}

fn metro() -> AccountKey {
    key(
        AccountKind::MerchantPayable,
        Owner::Merchant("metro".into()),
    )
}

fn suspense() -> AccountKey {
    AccountKey::company(AccountKind::Suspense, Unit::Cny).unwrap()
}

fn posted(o: &IngestOutcome) -> (i64, Option<i64>, Flags) {
    match o {
        IngestOutcome::Posted {
            id,
            window,
            transfer_id,
            flags,
        } => {
            assert_eq!(window, W1);
            (*id, *transfer_id, *flags)
        }
        o => panic!("not posted: {o:?}"),
    }
}

/// Ingests `batch` for the metro, stamped with window W1.
async fn ingest_w1(s: &dyn Store, batch: Vec<NewPurchase>) -> Vec<IngestOutcome> {
    s.purchases_ingest(
        &PurchaseBatch {
            merchant: "metro",
            purchases: &batch,
            window: W1,
            window_start_ms: W1_START,
        },
        draft("purchase.ingest"),
        NOW,
    )
    .await
    .unwrap()
}

pub async fn purchases_post_once_with_flags(s: &dyn Store) {
    let (a, b, c) = (card(1), card(2), card(3));
    fund(s, &[a.clone(), b.clone()], 1_000).await;
    let head0 = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let mut deny = purchase(&c, 5, 100);
    deny.deny_listed = true;
    let batch = vec![
        purchase(&a, 0, 200),
        purchase(&a, 1, 300),
        purchase(&a, 0, 200),
        purchase(&b, 0, 1_050),
        deny,
        purchase(&a, 3, 0),
    ];
    let out = s
        .purchases_ingest(
            &PurchaseBatch {
                merchant: "metro",
                purchases: &batch,
                window: W1,
                window_start_ms: W1_START,
            },
            draft("purchase.ingest"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 6);
    let (a0, t0, f0) = posted(&out[0]);
    assert!(t0.is_some() && !f0.any());
    let (a1, _, f1) = posted(&out[1]);
    assert!(!f1.any());
    assert_eq!(
        out[2],
        IngestOutcome::Duplicate {
            id: a0,
            window: W1.into()
        }
    );
    let (_, _, fb) = posted(&out[3]);
    assert_eq!(fb.shortfall, Amount(50));
    assert_eq!(fb.bits(), Flags::SHORTFALL);
    let (_, _, fc) = posted(&out[4]);
    assert!(fc.deny_listed);
    assert_eq!(fc.gap, Some((0, 4)));
    assert_eq!(fc.shortfall, Amount(100));
    let (_, tap_transfer, ftap) = posted(&out[5]);
    assert_eq!(tap_transfer, None, "an entry tap moves no money");
    assert_eq!(ftap.gap, Some((2, 2)));
    // a: 1,000 - 500; b: 1,000 - 1,000 (50 short); c: nothing (100 short).
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 500);
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&b)).await, 0);
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&c)).await, 0);
    assert_eq!(balance_of(s, &metro()).await, 1_650);
    assert_eq!(balance_of(s, &suspense()).await, 150);
    let head1 = s.audit_head().await.unwrap().unwrap().0;
    assert_eq!(head1, head0 + 1, "one audit entry per batch");
    // The window's running totals: every posted purchase once (the repeat is not one), at its
    // amount, shortfalls included.
    let running = s.clearing_running(W1).await.unwrap();
    assert_eq!(
        (running.purchases, running.purchases_fen, running.movements),
        (5, 200 + 300 + 1_050 + 100, 0)
    );

    // The next window: a repeat of the first batch answers with the first, the missing
    // counter 2 fills the gap without a flag, and a tap from the previous window is late.
    let mut late = purchase(&a, 4, 10);
    late.tx_ms = W2_START - 1;
    let mut fill = purchase(&a, 2, 50);
    fill.tx_ms = W2_START + 1_000;
    let batch2 = vec![purchase(&a, 1, 300), fill, late];
    let out = s
        .purchases_ingest(
            &PurchaseBatch {
                merchant: "metro",
                purchases: &batch2,
                window: W2,
                window_start_ms: W2_START,
            },
            draft("purchase.ingest"),
            NOW + 86_400_000,
        )
        .await
        .unwrap();
    assert_eq!(
        out[0],
        IngestOutcome::Duplicate {
            id: a1,
            window: W1.into()
        }
    );
    match (&out[1], &out[2]) {
        (
            IngestOutcome::Posted {
                window: w1,
                flags: f1,
                ..
            },
            IngestOutcome::Posted {
                window: w2,
                flags: f2,
                ..
            },
        ) => {
            assert_eq!((w1.as_str(), w2.as_str()), (W2, W2));
            assert!(!f1.any());
            assert_eq!(f2.bits(), Flags::LATE);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 440);
    assert_eq!(balance_of(s, &metro()).await, 1_710);

    let row = s.purchase_by_counter(&a, 0).await.unwrap().unwrap();
    assert_eq!((row.id, row.amount_fen), (a0, 200));
    assert_eq!(row.window, W1);
    assert_eq!(row.transfer_id, t0);
    assert_eq!(row.merchant, "metro");
    assert!(s.purchase_by_counter(&a, 9).await.unwrap().is_none());
    let flagged = s.purchase_by_counter(&c, 5).await.unwrap().unwrap();
    assert_eq!(flagged.flags, fc);
    let w1 = s.purchases_of_window(W1, 0, 100).await.unwrap();
    assert_eq!(w1.len(), 5);
    assert_eq!(s.purchases_of_window(W2, 0, 100).await.unwrap().len(), 2);
    // A window's close reads them summed per merchant and amount: the same as the rows.
    for win in [W1, W2] {
        let mut want: std::collections::BTreeMap<(String, i64), i64> = Default::default();
        for r in s.purchases_of_window(win, 0, 100).await.unwrap() {
            *want
                .entry((r.merchant, i64::from(r.amount_fen)))
                .or_default() += 1;
        }
        let got = s.clearing_window_sums(win).await.unwrap();
        assert!(got.iter().all(|g| g.kind == "purchase"), "{got:?}");
        assert_eq!(
            got.into_iter()
                .map(|g| ((g.merchant, g.amount_fen), g.count))
                .collect::<std::collections::BTreeMap<_, _>>(),
            want
        );
    }
    assert!(
        s.clearing_window_sums("1999-01-01")
            .await
            .unwrap()
            .is_empty()
    );
    // The transfer carrying a purchase names the card's shadow among its postings.
    let transfers = s.ledger_transfers_page(0, 1_000).await.unwrap();
    let t = transfers.iter().find(|t| Some(t.id) == t0).unwrap();
    let shadow_a = s
        .ledger_account(&AccountKey::epurse_shadow(&a))
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(t.postings.iter().any(|p| p.account == shadow_a));

    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None, "{c:?}");
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));

    // The bound.
    let big = vec![purchase(&a, 100, 1); PURCHASE_BATCH_MAX + 1];
    let r = s
        .purchases_ingest(
            &PurchaseBatch {
                merchant: "metro",
                purchases: &big,
                window: W2,
                window_start_ms: W2_START,
            },
            draft("purchase.ingest"),
            NOW,
        )
        .await;
    assert!(matches!(r, Err(StoreError::TooMany { .. })), "{r:?}");
}

/// A record that repeats a stored purchase under another offline counter (the TAC covers card,
/// terminal and serial but not the counter) is answered with the stored purchase and moves no
/// money, in a batch whose other records post — also when the repeat comes last, after fresh
/// records of the same card were planned.
/// A load between two ingests of the same cards, and another process (`other`, a second store
/// on the same database; `s` itself when there is none) posting the next counters of a card:
/// what the first ingest carried over must not be trusted past either. Each ingest must see
/// the books as they are: the load covers a purchase (no shortfall), the other process's
/// counters leave no gap and make a resend a duplicate.
pub async fn purchases_carry_over_follows_the_books(s: &dyn Store, other: &dyn Store) {
    let (a, b) = (card(41), card(42));
    fund(s, &[a.clone(), b.clone()], 1_000).await;
    // The first ingest reads both cards; the second would start from what the first left.
    let out = ingest_w1(s, vec![purchase(&a, 0, 900), purchase(&b, 0, 100)]).await;
    assert!(out.iter().all(|o| !posted(o).2.any()), "{out:?}");
    // A load of 500 onto a's shadow (a: 100 + 500), by another path of the same store.
    let float = s
        .ledger_account(&key(AccountKind::BankFloat, Owner::Bank("ICBC".into())))
        .await
        .unwrap()
        .unwrap()
        .id;
    let shadow_a = s
        .ledger_account(&AccountKey::epurse_shadow(&a))
        .await
        .unwrap()
        .unwrap()
        .id;
    let load = Transfer::simple(
        IdempotencyKey::parse("second-load-a").unwrap(),
        TransferKind::Load,
        "test load",
        float,
        shadow_a,
        Unit::Cny,
        Amount(500),
    );
    let out = s
        .ledger_post_batch(&[load], draft("ledger.post"), NOW)
        .await
        .unwrap();
    assert!(matches!(out[0], PostOutcome::Applied { .. }), "{out:?}");
    let out = ingest_w1(s, vec![purchase(&a, 1, 550), purchase(&b, 1, 100)]).await;
    let (_, _, fa) = posted(&out[0]);
    assert_eq!(fa.shortfall, Amount(0), "the load is seen: {fa:?}");
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 50);
    // Another process posts b's counters 2 and 3: entry taps, which move no money, so only the
    // counters say that the books changed.
    let out = ingest_w1(other, vec![purchase(&b, 2, 0), purchase(&b, 3, 0)]).await;
    assert!(out.iter().all(|o| !posted(o).2.any()), "{out:?}");
    // The first process: b 4 follows 3 without a gap, and b 2 again is a duplicate.
    let out = ingest_w1(s, vec![purchase(&b, 4, 100)]).await;
    let (_, _, f4) = posted(&out[0]);
    assert!(
        !f4.any(),
        "no gap after the other process's counters: {f4:?}"
    );
    let out = ingest_w1(s, vec![purchase(&b, 2, 0)]).await;
    assert!(
        matches!(out[0], IngestOutcome::Duplicate { .. }),
        "a repeat of the other process's purchase: {:?}",
        out[0]
    );
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&b)).await, 700);
    // And again, carried from the first process's own last ingest.
    let out = ingest_w1(s, vec![purchase(&b, 6, 800), purchase(&a, 2, 50)]).await;
    let (_, _, f6) = posted(&out[0]);
    assert_eq!(f6.gap, Some((5, 5)));
    assert_eq!(f6.shortfall, Amount(100));
    assert!(!posted(&out[1]).2.any());
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 0);
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&b)).await, 0);
    assert_eq!(balance_of(s, &suspense()).await, 100);
    assert_eq!(
        balance_of(s, &metro()).await,
        900 + 100 + 550 + 100 + 100 + 800 + 50
    );
    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None, "{c:?}");
}

pub async fn purchases_repeat_under_another_counter_posts_once(s: &dyn Store) {
    let (a, b) = (card(41), card(42));
    fund(s, &[a.clone(), b.clone()], 1_000).await;
    let first = ingest_w1(s, vec![purchase(&a, 0, 200), purchase(&b, 0, 100)]).await;
    let (a0, _, _) = posted(&first[0]);
    let metro0 = balance_of(s, &metro()).await;
    let head0 = s.audit_head().await.unwrap().unwrap().0;

    // The same tap (card a, terminal, serial 1) under counter 7, behind two fresh records.
    let mut replay = purchase(&a, 7, 200);
    replay.terminal_serial = 1;
    let out = ingest_w1(s, vec![purchase(&a, 1, 30), purchase(&b, 1, 40), replay]).await;
    posted(&out[0]);
    posted(&out[1]);
    assert_eq!(
        out[2],
        IngestOutcome::Duplicate {
            id: a0,
            window: W1.into()
        }
    );
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 770);
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&b)).await, 860);
    assert_eq!(balance_of(s, &metro()).await, metro0 + 70);
    assert!(s.purchase_by_counter(&a, 7).await.unwrap().is_none());
    assert_eq!(
        s.audit_head().await.unwrap().unwrap().0,
        head0 + 1,
        "one audit entry, the retried plan leaves nothing behind"
    );
    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None, "{c:?}");
}

/// An upload stamped with a window that closed while it waited for the writer is posted into
/// the next window, late; the close counted the window's purchases under the lock.
pub async fn purchases_never_enter_a_closed_window(s: &dyn Store) {
    let a = card(51);
    fund(s, std::slice::from_ref(&a), 1_000).await;
    posted(&ingest_w1(s, vec![purchase(&a, 0, 100)]).await[0]);
    let closing = ClearingWindowRow {
        window_id: W1.into(),
        closed_ms: NOW,
        closed_by: "operator:clr".into(),
        digest: "AB".into(),
    };
    let refused = s
        .clearing_close(&closing, &[], 0, draft("clearing.close"), NOW)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert!(
        s.clearing_close(&closing, &[], 1, draft("clearing.close"), NOW)
            .await
            .unwrap()
    );
    let out = ingest_w1(s, vec![purchase(&a, 1, 50)]).await;
    match &out[0] {
        IngestOutcome::Posted { window, flags, .. } => {
            assert_eq!(window, W2);
            assert_eq!(
                flags.bits(),
                Flags::LATE,
                "stamped in W1, posted in W2: late"
            );
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(s.purchases_of_window(W1, 0, 10).await.unwrap().len(), 1);
    assert_eq!(s.purchases_of_window(W2, 0, 10).await.unwrap().len(), 1);
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 850);
}

pub async fn purchases_hot_merchant_under_concurrency(s: &'static dyn Store) {
    const TASKS: u32 = 6;
    const CARDS: u32 = 40;
    const TAPS: u16 = 5;
    let cards: Vec<String> = (0..TASKS * CARDS).map(|i| card(100 + i)).collect();
    fund(s, &cards, 10_000).await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mine: Vec<String> =
            cards[(task * CARDS) as usize..((task + 1) * CARDS) as usize].to_vec();
        tasks.push(tokio::spawn(async move {
            let mut posted = 0;
            for tap in 0..TAPS {
                // Each batch also repeats the previous tap of every card.
                let mut batch: Vec<NewPurchase> =
                    mine.iter().map(|c| purchase(c, tap, 100)).collect();
                if tap > 0 {
                    batch.extend(mine.iter().map(|c| purchase(c, tap - 1, 100)));
                }
                let out = s
                    .purchases_ingest(
                        &PurchaseBatch {
                            merchant: "metro",
                            purchases: &batch,
                            window: W1,
                            window_start_ms: W1_START,
                        },
                        draft("purchase.ingest"),
                        NOW,
                    )
                    .await
                    .expect("no batch fails, no deadlock");
                for o in out {
                    if matches!(o, IngestOutcome::Posted { .. }) {
                        posted += 1;
                    }
                }
            }
            posted
        }));
    }
    let mut posted = 0;
    for t in tasks {
        posted += t.await.unwrap();
    }
    let expected = TASKS * CARDS * u32::from(TAPS);
    assert_eq!(posted, expected);
    assert_eq!(balance_of(s, &metro()).await, i64::from(expected) * 100);
    assert_eq!(
        balance_of(s, &AccountKey::epurse_shadow(&cards[0])).await,
        10_000 - i64::from(TAPS) * 100
    );
    assert_eq!(balance_of(s, &suspense()).await, 0);
    let c = s.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None, "{c:?}");
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));
}

/// A terminal's named batch: its answer is stored in the transaction of its postings (built
/// from the outcomes), the terminal's uploaded count raised with it; the same batch id again
/// writes nothing and returns the stored row; an empty batch keeps its answer too.
pub async fn purchases_kept_batch_answer_with_postings(s: &dyn Store) {
    s.merchant_insert(
        &MerchantRow {
            code: "bus".into(),
            name: "公交".into(),
            category: "transit".into(),
            settlement_account: "41050100000002".into(),
            created_ms: NOW,
        },
        draft("merchant.create"),
        NOW,
    )
    .await
    .unwrap();
    s.terminal_insert(
        &TerminalRow {
            id: "BUS-K".into(),
            merchant: "bus".into(),
            kind: "validator".into(),
            site: "B2".into(),
            status: "registered".into(),
            activation_digest: None,
            public_key: None,
            psam_serial: None,
            software_version: None,
            registered_ms: NOW,
            activated_ms: None,
        },
        draft("terminal.register"),
        NOW,
    )
    .await
    .unwrap();
    let a = card(41);
    fund(s, std::slice::from_ref(&a), 1_000).await;
    let records = vec![purchase(&a, 0, 200), purchase(&a, 1, 300)];
    let batch = PurchaseBatch {
        merchant: "bus",
        purchases: &records,
        window: W1,
        window_start_ms: W1_START,
    };
    let answer = |o: &[IngestOutcome]| format!("{} outcomes", o.len()).into_bytes();
    let kept = KeptBatch {
        terminal: "BUS-K",
        batch_id: "k1",
        kind: "card",
        digest: "D1",
        records: 3,
        answer: &answer,
    };
    let head0 = s.audit_head().await.unwrap().map_or(0, |h| h.0);
    let first = s
        .purchases_ingest_kept(&batch, &kept, draft("purchase.ingest"), NOW)
        .await
        .unwrap();
    let KeptIngest::Ingested {
        outcomes,
        answer: a1,
    } = first
    else {
        panic!("ingested: {first:?}");
    };
    assert_eq!(outcomes.len(), 2);
    posted(&outcomes[0]);
    posted(&outcomes[1]);
    assert_eq!(a1, b"2 outcomes");
    let stored = s.terminal_batch("BUS-K", "k1").await.unwrap().unwrap();
    assert_eq!(stored.answer, b"2 outcomes");
    assert_eq!((stored.digest.as_str(), stored.records), ("D1", 3));
    let status = s.terminal_statuses().await.unwrap();
    let st = status.iter().find(|t| t.terminal == "BUS-K").unwrap();
    assert_eq!(st.uploaded_records, 3);
    assert_eq!(st.last_upload_ms, Some(NOW));

    // The same batch again (a resend racing the first): nothing ingested, the stored row.
    let again = s
        .purchases_ingest_kept(&batch, &kept, draft("purchase.ingest"), NOW + 5)
        .await
        .unwrap();
    assert_eq!(again, KeptIngest::Stored(stored));
    assert_eq!(
        s.audit_head().await.unwrap().unwrap().0,
        head0 + 1,
        "the resend wrote nothing"
    );
    assert_eq!(balance_of(s, &AccountKey::epurse_shadow(&a)).await, 500);
    let st = s.terminal_statuses().await.unwrap();
    assert_eq!(
        st.iter()
            .find(|t| t.terminal == "BUS-K")
            .unwrap()
            .uploaded_records,
        3
    );

    // A batch whose every record was refused before the store still keeps its answer.
    let none = PurchaseBatch {
        purchases: &[],
        ..batch
    };
    let empty = KeptBatch {
        batch_id: "k2",
        records: 1,
        ..kept
    };
    let r = s
        .purchases_ingest_kept(&none, &empty, draft("purchase.ingest"), NOW + 9)
        .await
        .unwrap();
    assert_eq!(
        r,
        KeptIngest::Ingested {
            outcomes: vec![],
            answer: b"0 outcomes".to_vec()
        }
    );
    assert_eq!(
        s.terminal_batch("BUS-K", "k2")
            .await
            .unwrap()
            .unwrap()
            .answer,
        b"0 outcomes"
    );
    let check = s.ledger_check().await.unwrap();
    assert!(check.mismatch.is_none(), "{:?}", check.mismatch);
}
