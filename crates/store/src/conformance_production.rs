//! Conformance of [`ProductionStore`]: outlets and clerks, batches whose every step is all or
//! nothing, chip serials that never repeat, stock per outlet, the counter journal and closings
//! that happen once.

use crate::*;
use resident::{Field, Residency, Source};

const NOW: i64 = 1_795_000_000_000;

fn blind(n: u32) -> BlindIndex {
    let mut x = [0u8; 32];
    x[..4].copy_from_slice(b"prod");
    x[28..].copy_from_slice(&n.to_be_bytes());
    BlindIndex(x)
}

fn draft(action: &str) -> audit::Draft {
    audit::Draft::new("operator:test", action, "", "test", "")
}

/// `n` residents with approved cards numbered from sequence 1; returns the card numbers.
async fn approved_cards(s: &dyn Store, n: u32) -> Vec<String> {
    let feed = s
        .feed_begin(
            &NewFeed {
                source: Source::Police,
                channel: "test".into(),
                digest: "00".into(),
            },
            draft("resident.feed"),
            NOW,
        )
        .await
        .unwrap();
    let rows: Vec<SealedFacts> = (1..=n)
        .map(|i| SealedFacts {
            id_blind: blind(i),
            id_sealed: format!("sealed-id-{i}").into_bytes(),
            birth_date: "1985-06-15".into(),
            gender: "male".into(),
            region_code: "410105".into(),
            residency: Some(Residency::Resident),
            fields: vec![SealedField {
                field: Field::Name,
                mac: blind(1000 + i),
                sealed: format!("sealed-name-{i}").into_bytes(),
            }],
            change_sealed: vec![1],
        })
        .collect();
    s.residents_apply(feed, &rows, draft("resident.import"), NOW)
        .await
        .unwrap();
    let mut numbers = Vec::new();
    for i in 1..=n {
        let r = s.resident_by_blind(&blind(i)).await.unwrap().unwrap();
        let number = format!("41010000{:07}{}", i, luhn_digit(i));
        s.card_insert(
            &card(&number, r.id, "approved", 1),
            &event(&number, "-", "approved"),
            None,
            draft("card.apply"),
            NOW,
        )
        .await
        .unwrap();
        numbers.push(number);
    }
    numbers
}

/// The Luhn check digit of `4101000 0` + the 7-digit sequence (any digit does for the store,
/// but keep the numbers well-formed).
fn luhn_digit(seq: u32) -> u32 {
    let body = format!("41010000{seq:07}");
    let mut sum = 0;
    for (i, c) in body.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap();
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    (10 - sum % 10) % 10
}

fn card(number: &str, resident_id: i64, state: &str, version: i64) -> CardRow {
    CardRow {
        number: number.into(),
        resident_id,
        state: state.into(),
        state_json: format!("\"{state}\""),
        card_type: "ordinary".into(),
        valid_until_s: None,
        version,
        created_ms: NOW,
        updated_ms: NOW,
    }
}

fn event(number: &str, from: &str, to: &str) -> CardEventRow {
    CardEventRow {
        number: number.into(),
        from_state: from.into(),
        to_state: to.into(),
        action: "test".into(),
        reason: "routine".into(),
        actor: "system".into(),
        at_ms: NOW,
    }
}

/// Moves a stored card one step to `to`.
async fn step(s: &dyn Store, number: &str, to: &str) -> CardChange {
    let mut c = s.card_by_number(number).await.unwrap().unwrap();
    let from = c.state.clone();
    c.state = to.into();
    c.state_json = format!("\"{to}\"");
    c.version += 1;
    CardChange {
        card: c,
        successor: None,
        events: vec![event(number, &from, to)],
        deny: vec![],
        moves: vec![],
    }
}

fn new_batch() -> NewBatch {
    NewBatch {
        algorithm: "SM4".into(),
        key_version: 1,
        transport_key: "transit/transport/v1".into(),
        start_date: "20261126".into(),
        expiry_date: "20361126".into(),
        created_by: "operator:test".into(),
    }
}

async fn outlet(s: &dyn Store, code: &str) -> OutletRow {
    s.outlet_create(
        &NewOutlet {
            code: code.into(),
            name_zh: "金水服务网点".into(),
            name_en: "Jinshui outlet".into(),
            address: "金水路 1 号".into(),
        },
        draft("outlet.create"),
        NOW,
    )
    .await
    .unwrap()
}

pub async fn outlets_and_clerks(s: &dyn Store) {
    let a = outlet(s, "ZZ-01").await;
    assert!(a.active);
    let dup = s
        .outlet_create(
            &NewOutlet {
                code: "ZZ-01".into(),
                name_zh: "x".into(),
                name_en: "x".into(),
                address: "x".into(),
            },
            draft("outlet.create"),
            NOW,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let b = outlet(s, "ZZ-02").await;
    assert_eq!(s.outlets_list().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(s.outlet_by_code("ZZ-02").await.unwrap(), Some(b.clone()));
    assert_eq!(s.outlet_by_id(a.id).await.unwrap(), Some(a.clone()));
    assert!(s.outlet_by_code("nope").await.unwrap().is_none());
    s.outlet_set_active(b.id, false, draft("outlet.deactivate"), NOW)
        .await
        .unwrap();
    assert!(!s.outlet_by_id(b.id).await.unwrap().unwrap().active);

    let clerk = s
        .operator_create(
            &NewOperator {
                username: "clerk1".into(),
                display_name: "Clerk".into(),
                password_hash: "$argon2id$fake".into(),
                role: Role::CounterClerk,
                department: None,
            },
            draft("operator.create"),
            NOW,
        )
        .await
        .unwrap();
    assert!(s.clerk_outlet(clerk.id).await.unwrap().is_none());
    s.clerk_assign(clerk.id, a.id, draft("outlet.assign"), NOW)
        .await
        .unwrap();
    assert_eq!(s.clerk_outlet(clerk.id).await.unwrap().unwrap().id, a.id);
    assert_eq!(s.outlet_clerks(a.id).await.unwrap(), vec!["clerk1"]);
    // Reassigning moves the clerk: one outlet at a time.
    s.clerk_assign(clerk.id, b.id, draft("outlet.assign"), NOW)
        .await
        .unwrap();
    assert_eq!(s.clerk_outlet(clerk.id).await.unwrap().unwrap().id, b.id);
    assert!(s.outlet_clerks(a.id).await.unwrap().is_empty());
}

pub async fn batches_change_all_or_nothing(s: &dyn Store) {
    let numbers = approved_cards(s, 4).await;
    let cands = s.production_candidates("", 10).await.unwrap();
    assert_eq!(cands.len(), 4);
    assert_eq!(cands[0].card.number, numbers[0]);
    assert_eq!(cands[0].name_sealed.as_deref(), Some(&b"sealed-name-1"[..]));
    assert_eq!(
        s.production_candidates(&numbers[1], 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // A stale change (version already taken) refuses the whole batch: no batch, no card moved.
    let mut changes = Vec::new();
    for n in &numbers[..3] {
        changes.push(step(s, n, "in_production").await);
    }
    let mut stale = changes.clone();
    stale[2].card.version = 1;
    let head = s.audit_head().await.unwrap().unwrap().0;
    let r = s
        .batch_create(&new_batch(), &stale, vec![draft("batch.create")], NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert!(s.batches_recent(10).await.unwrap().is_empty());
    assert_eq!(
        s.card_by_number(&numbers[0]).await.unwrap().unwrap().state,
        "approved"
    );
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head);

    let batch = s
        .batch_create(&new_batch(), &changes, vec![draft("batch.create")], NOW)
        .await
        .unwrap();
    assert_eq!((batch.state.as_str(), batch.card_count), ("created", 3));
    assert_eq!(s.batch_by_id(batch.id).await.unwrap(), Some(batch.clone()));
    let cards = s.batch_cards(batch.id, 0, 10).await.unwrap();
    assert_eq!(
        cards
            .iter()
            .map(|c| (c.idx, c.card.number.as_str(), c.card.state.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (1, numbers[0].as_str(), "in_production"),
            (2, numbers[1].as_str(), "in_production"),
            (3, numbers[2].as_str(), "in_production")
        ]
    );
    assert_eq!(s.batch_cards(batch.id, 2, 10).await.unwrap().len(), 1);
    assert_eq!(s.production_candidates("", 10).await.unwrap().len(), 1);

    // Results before any export are refused.
    let outcomes = vec![
        BatchOutcome {
            number: numbers[0].clone(),
            chip_serial: Some("0102030400000001".into()),
            failure: None,
        },
        BatchOutcome {
            number: numbers[1].clone(),
            chip_serial: Some("0102030400000002".into()),
            failure: None,
        },
        BatchOutcome {
            number: numbers[2].clone(),
            chip_serial: None,
            failure: Some("print head jam".into()),
        },
    ];
    let mut import_changes = vec![
        step(s, &numbers[0], "produced").await,
        step(s, &numbers[1], "produced").await,
        step(s, &numbers[2], "approved").await,
    ];
    let r = s
        .batch_import(batch.id, "D1", &outcomes, &import_changes, vec![], NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    s.batch_exported(batch.id, "E1", draft("batch.export"), NOW)
        .await
        .unwrap();
    s.batch_exported(batch.id, "E1", draft("batch.export"), NOW)
        .await
        .unwrap();
    let b = s.batch_by_id(batch.id).await.unwrap().unwrap();
    assert_eq!((b.state.as_str(), b.exports), ("exported", 2));

    // A serial given twice refuses the whole import.
    let mut twice = outcomes.clone();
    twice[1].chip_serial = twice[0].chip_serial.clone();
    let r = s
        .batch_import(batch.id, "D1", &twice, &import_changes, vec![], NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(
        s.batch_by_id(batch.id).await.unwrap().unwrap().state,
        "exported"
    );
    assert!(s.card_chip(&numbers[0]).await.unwrap().is_none());
    assert_eq!(
        s.card_by_number(&numbers[0]).await.unwrap().unwrap().state,
        "in_production"
    );

    s.batch_import(
        batch.id,
        "D1",
        &outcomes,
        &import_changes,
        vec![draft("batch.import")],
        NOW,
    )
    .await
    .unwrap();
    let b = s.batch_by_id(batch.id).await.unwrap().unwrap();
    assert_eq!(
        (
            b.state.as_str(),
            b.produced,
            b.failed,
            b.import_digest.as_deref()
        ),
        ("imported", 2, 1, Some("D1"))
    );
    let chip = s.card_chip(&numbers[1]).await.unwrap().unwrap();
    assert_eq!(
        (chip.chip_serial.as_str(), chip.batch_id),
        ("0102030400000002", Some(batch.id))
    );
    let cards = s.batch_cards(batch.id, 0, 10).await.unwrap();
    assert_eq!(cards[2].outcome.as_deref(), Some("failed"));
    assert_eq!(cards[2].failure.as_deref(), Some("print head jam"));
    assert_eq!(cards[2].card.state, "approved");
    // A second import is refused.
    import_changes.truncate(0);
    let r = s
        .batch_import(batch.id, "D1", &outcomes, &import_changes, vec![], NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");

    // Distribution: stock by state, waiting cards.
    let o = outlet(s, "ZZ-09").await;
    let deliver = vec![
        step(s, &numbers[0], "at_outlet").await,
        step(s, &numbers[1], "at_outlet").await,
    ];
    s.batch_distribute(
        batch.id,
        o.id,
        &deliver,
        vec![draft("batch.distribute")],
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        s.outlet_stock(o.id).await.unwrap(),
        vec![("at_outlet".to_string(), 2)]
    );
    let waiting = s.outlet_waiting(o.id, "", 10).await.unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!(
        s.batch_by_id(batch.id).await.unwrap().unwrap().distributed,
        2
    );
    // Delivering the same card twice is refused.
    let again = vec![step(s, &numbers[0], "at_outlet").await];
    let r = s
        .batch_distribute(batch.id, o.id, &again, vec![], NOW)
        .await;
    assert!(r.is_err(), "{r:?}");
}

pub async fn counter_journal_and_closing(s: &dyn Store) {
    let numbers = approved_cards(s, 2).await;
    let o = outlet(s, "ZZ-03").await;
    let entry = |act: &str, card: &str, fee: i64| JournalEntry {
        outlet_id: o.id,
        clerk_id: 7,
        clerk: "clerk1".into(),
        business_day: "2026-11-26".into(),
        act: act.into(),
        card_number: Some(card.into()),
        fee_fen: fee,
        at_ms: NOW,
    };
    // Two steps of one card in one act, with the chip and the outlet.
    let mut first = step(s, &numbers[0], "in_production").await;
    first.card.version = 2;
    let mut second = first.clone();
    second.card.state = "produced".into();
    second.card.version = 3;
    second.events = vec![event(&numbers[0], "in_production", "produced")];
    s.counter_apply(
        &CounterAct {
            changes: vec![first, second],
            journal: entry("instant_issued", &numbers[0], 0),
            chip: Some(ChipRow {
                number: numbers[0].clone(),
                chip_serial: "00000000000000AA".into(),
                batch_id: None,
                outlet_id: Some(o.id),
                recorded_ms: NOW,
            }),
            stock: Some((numbers[0].clone(), o.id)),
        },
        vec![draft("counter.instant")],
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        s.card_by_number(&numbers[0])
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        s.outlet_stock(o.id).await.unwrap(),
        vec![("produced".to_string(), 1)]
    );
    // A failing card change writes no journal row.
    let mut stale = step(s, &numbers[1], "in_production").await;
    stale.card.version = 9;
    let r = s
        .counter_apply(
            &CounterAct {
                changes: vec![stale],
                journal: entry("replacement", &numbers[1], 2000),
                chip: None,
                stock: None,
            },
            vec![],
            NOW,
        )
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let ok = step(s, &numbers[1], "in_production").await;
    s.counter_apply(
        &CounterAct {
            changes: vec![ok],
            journal: entry("replacement", &numbers[1], 2000),
            chip: None,
            stock: None,
        },
        vec![draft("counter.replace")],
        NOW,
    )
    .await
    .unwrap();
    let day = s.journal_day(o.id, "2026-11-26").await.unwrap();
    assert_eq!(
        day.iter()
            .map(|j| (j.entry.act.as_str(), j.entry.fee_fen))
            .collect::<Vec<_>>(),
        vec![("instant_issued", 0), ("replacement", 2000)]
    );
    assert!(s.journal_day(o.id, "2026-11-27").await.unwrap().is_empty());

    let closing = NewClosing {
        outlet_id: o.id,
        business_day: "2026-11-26".into(),
        declared_fen: 1500,
        closed_by: "operator:clerk1".into(),
    };
    let head = s.audit_head().await.unwrap().unwrap().0;
    let row = s
        .day_close(
            &closing,
            &|r| draft(&format!("counter.close {}", r.difference_fen)),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.acts,
            row.expected_fen,
            row.declared_fen,
            row.difference_fen
        ),
        (2, 2000, 1500, -500)
    );
    let entries = s.audit_recent(None, 1).await.unwrap();
    assert_eq!(
        (entries[0].seq, entries[0].draft.action.as_str()),
        (head + 1, "counter.close -500")
    );
    assert_eq!(s.day_closing(o.id, "2026-11-26").await.unwrap(), Some(row));
    let again = s.day_close(&closing, &|_| draft("x"), NOW).await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(m)) if m.contains("already closed")),
        "{again:?}"
    );
    // The closed day takes no more acts.
    let late = step(s, &numbers[1], "produced").await;
    let r = s
        .counter_apply(
            &CounterAct {
                changes: vec![late],
                journal: entry("card_issued", &numbers[1], 0),
                chip: None,
                stock: None,
            },
            vec![],
            NOW,
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains("closed")),
        "{r:?}"
    );
    assert_eq!(s.journal_day(o.id, "2026-11-26").await.unwrap().len(), 2);
}

/// Expands the production cases for a backend (called from `conformance_tests!`).
#[macro_export]
macro_rules! production_conformance_tests {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn production_outlets_and_clerks() {
            let s = $make.await;
            $crate::conformance_production::outlets_and_clerks(&s).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn production_batches_change_all_or_nothing() {
            let s = $make.await;
            $crate::conformance_production::batches_change_all_or_nothing(&s).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn production_counter_journal_and_closing() {
            let s = $make.await;
            $crate::conformance_production::counter_journal_and_closing(&s).await;
        }
    };
}
