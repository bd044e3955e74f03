//! The conformance suite: behaviour every backend must show, written once against the trait.
//! A backend's tests expand [`conformance_tests!`](crate::conformance_tests) with a function
//! that makes a fresh, empty store, so each case runs on its own database.

pub mod ledger;
mod purchases;

pub use self::ledger::*;
pub use purchases::*;
mod apps;
pub use apps::*;
mod disbursements;
pub use disbursements::*;
mod terminals;
pub use terminals::*;
mod clearing;
pub use clearing::*;
mod exchange;
pub use exchange::*;
mod feed_reviews;
pub use feed_reviews::*;
mod exchange_oversight;
pub use exchange_oversight::*;

use crate::*;
use resident::{Field, Residency, Source};

mod ecode;
pub use ecode::ecode_devices_roots_and_certificates;
mod money;
pub use money::*;
mod services;
pub use services::*;
mod points;
pub use self::points::*;

const NOW: i64 = 1_795_000_000_000;

fn b(tag: &str, n: u32) -> BlindIndex {
    let mut x = [0u8; 32];
    x[..tag.len().min(16)].copy_from_slice(&tag.as_bytes()[..tag.len().min(16)]);
    x[28..].copy_from_slice(&n.to_be_bytes());
    BlindIndex(x)
}

fn field(f: Field, value: &str) -> SealedField {
    SealedField {
        field: f,
        mac: b(&format!("{}:{value}", f.as_str()), 0),
        sealed: format!("sealed-{value}").into_bytes(),
    }
}

/// A synthetic row; the "sealed" bytes are opaque to the store, so plain markers do here.
fn facts(n: u32, name: &str, phone: Option<&str>, address: Option<&str>) -> SealedFacts {
    let mut fields = vec![field(Field::Name, name)];
    if let Some(p) = phone {
        fields.push(field(Field::Phone, p));
    }
    if let Some(a) = address {
        fields.push(field(Field::Address, a));
    }
    SealedFacts {
        id_blind: b("id", n),
        id_sealed: format!("sealed-id-{n}").into_bytes(),
        birth_date: "1985-06-15".into(),
        gender: "male".into(),
        region_code: "410105".into(),
        residency: Some(Residency::Resident),
        fields,
        change_sealed: format!("change-{n}-{name}").into_bytes(),
    }
}

fn draft(action: &str) -> audit::Draft {
    audit::Draft::new("operator:test", action, "", "test", "")
}

async fn feed(s: &dyn Store, source: Source) -> i64 {
    s.feed_begin(
        &NewFeed {
            source,
            channel: "csv:test.csv".into(),
            digest: "00".into(),
        },
        draft("resident.feed"),
        NOW,
    )
    .await
    .unwrap()
}

pub async fn residents_apply_is_idempotent(s: &dyn Store) {
    let f1 = feed(s, Source::Police).await;
    let rows = vec![
        facts(1, "a", Some("p1"), Some("addr1")),
        facts(2, "b", None, Some("addr2")),
        facts(3, "c", Some("p3"), None),
    ];
    let c = s
        .residents_apply(f1, &rows, draft("resident.import"), NOW)
        .await
        .unwrap();
    assert_eq!(
        c,
        ApplyCounts {
            inserted: 3,
            updated: 0,
            unchanged: 0,
            held: 0
        }
    );
    // The same rows again change nothing and add no history.
    let c = s
        .residents_apply(f1, &rows, draft("resident.import"), NOW + 1)
        .await
        .unwrap();
    assert_eq!(c.unchanged, 3);
    assert_eq!(c.inserted + c.updated, 0);
    assert_eq!(s.resident_count().await.unwrap(), 3);

    // A second department reports only a phone: the address stays, history grows by one.
    let f2 = feed(s, Source::HrSocialSecurity).await;
    let mut phone_only = facts(2, "b", Some("p2"), None);
    phone_only.residency = None;
    let c = s
        .residents_apply(f2, &[phone_only], draft("resident.import"), NOW + 2)
        .await
        .unwrap();
    assert_eq!(c.updated, 1);
    let r = s.resident_by_blind(&b("id", 2)).await.unwrap().unwrap();
    assert_eq!(r.address_sealed.as_deref(), Some(&b"sealed-addr2"[..]));
    assert_eq!(r.phone_sealed.as_deref(), Some(&b"sealed-p2"[..]));
    assert_eq!(r.residency, Some(Residency::Resident));
    assert_eq!(r.version, 2);
    let h = s.resident_history(r.id).await.unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].source, "police");
    assert_eq!(
        h[0].fields_mask,
        Field::Name.bit() | Field::Address.bit() | Field::Residency.bit()
    );
    assert_eq!(h[1].source, "hr_social_security");
    assert_eq!(h[1].fields_mask, Field::Phone.bit());
    assert_eq!(h[1].feed_id, f2);
    assert_eq!(h[1].at_ms, NOW + 2);
}

pub async fn a_failed_batch_writes_nothing(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    let head_before = s.audit_head().await.unwrap();
    let rows = vec![facts(1, "a", None, None), facts(1, "a2", None, None)];
    let err = s
        .residents_apply(f, &rows, draft("resident.import"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.resident_count().await.unwrap(), 0);
    assert_eq!(s.audit_head().await.unwrap(), head_before);

    let too_many: Vec<SealedFacts> = (0..=APPLY_BATCH_MAX as u32)
        .map(|n| facts(n, "x", None, None))
        .collect();
    let err = s
        .residents_apply(f, &too_many, draft("resident.import"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooMany { .. }), "{err:?}");
    // One below the bound is accepted.
    let c = s
        .residents_apply(
            f,
            &too_many[..APPLY_BATCH_MAX],
            draft("resident.import"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(c.inserted, APPLY_BATCH_MAX as u64);
}

pub async fn residents_lookups_and_pages(s: &dyn Store) {
    let f = feed(s, Source::Police).await;
    let rows: Vec<SealedFacts> = (1..=25)
        .map(|n| facts(n, if n % 5 == 0 { "same" } else { "other" }, None, None))
        .collect();
    s.residents_apply(f, &rows, draft("resident.import"), NOW)
        .await
        .unwrap();
    assert!(s.resident_by_blind(&b("id", 99)).await.unwrap().is_none());
    let r = s.resident_by_blind(&b("id", 7)).await.unwrap().unwrap();
    assert_eq!(r.id_sealed, b"sealed-id-7");
    assert_eq!(r.region_code, "410105");
    let same = s
        .residents_by_name(&field(Field::Name, "same").mac, 100)
        .await
        .unwrap();
    assert_eq!(same.len(), 5);
    let limited = s
        .residents_by_name(&field(Field::Name, "same").mac, 2)
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    let p1 = s.residents_page(0, 10).await.unwrap();
    let p2 = s.residents_page(p1[9].id, 10).await.unwrap();
    let p3 = s.residents_page(p2[9].id, 10).await.unwrap();
    assert_eq!((p1.len(), p2.len(), p3.len()), (10, 10, 5));
    assert!(p1[9].id < p2[0].id);

    s.feed_finish(
        f,
        &FeedTotals {
            rows: 26,
            inserted: 25,
            rejected: 1,
            ..Default::default()
        },
        NOW + 5,
    )
    .await
    .unwrap();
    let feeds = s.feeds_recent(10).await.unwrap();
    assert_eq!(feeds[0].id, f);
    assert_eq!(feeds[0].totals.rejected, 1);
    assert_eq!(feeds[0].finished_ms, Some(NOW + 5));
    assert!(matches!(
        s.feed_finish(f + 1000, &FeedTotals::default(), NOW).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn audit_chain_holds_under_concurrency(s: &'static dyn Store) {
    let mut tasks = Vec::new();
    for t in 0..8 {
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                s.audit_append(
                    audit::Draft::new(format!("t{t}"), "test.append", format!("{i}"), "test", ""),
                    NOW + i,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(audit_verify(s).await.unwrap(), Ok(120));
    let head = s.audit_head().await.unwrap().unwrap();
    assert_eq!(head.0, 120);
    let recent = s.audit_recent(Some("test.append"), 5).await.unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0].seq, 120);
    assert!(s.audit_recent(Some("nothing"), 5).await.unwrap().is_empty());
    // One record's entries (each task wrote records "0".."14"), newest first, by action too.
    let of7 = s.audit_of_record("7", None, 100).await.unwrap();
    assert_eq!(of7.len(), 8);
    assert!(of7.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(of7.iter().all(|e| e.draft.record == "7"));
    assert_eq!(
        s.audit_of_record("7", Some("test.append"), 3)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        s.audit_of_record("7", Some("other"), 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.audit_of_record("99", None, 3).await.unwrap().is_empty());
}

pub async fn operators_and_credentials(s: &dyn Store) {
    let op = NewOperator {
        username: "clerk1".into(),
        display_name: "Clerk".into(),
        password_hash: "$argon2id$fake".into(),
        role: Role::DepartmentOfficer,
        department: Some(Source::CivilAffairs),
    };
    let created = s
        .operator_create(&op, draft("operator.create"), NOW)
        .await
        .unwrap();
    assert_eq!(created.role, Role::DepartmentOfficer);
    assert_eq!(created.department, Some(Source::CivilAffairs));
    let dup = s.operator_create(&op, draft("operator.create"), NOW).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(s.operators_list().await.unwrap().len(), 1);
    let found = s.operator_by_username("clerk1").await.unwrap().unwrap();
    assert_eq!(found.id, created.id);
    assert!(s.operator_by_username("nobody").await.unwrap().is_none());

    let token = [7u8; 32];
    s.credential_create(
        &NewCredential {
            token_hash: token,
            operator_id: created.id,
            kind: CredentialKind::ApiToken,
            label: "dept system".into(),
            expires_ms: NOW + 1000,
        },
        draft("token.create"),
        NOW,
    )
    .await
    .unwrap();
    let (who, kind, expires) = s.credential_lookup(&token, NOW).await.unwrap().unwrap();
    assert_eq!(
        (who.id, kind, expires),
        (created.id, CredentialKind::ApiToken, NOW + 1000)
    );
    assert!(
        s.credential_lookup(&token, NOW + 1000)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.credential_lookup(&[8u8; 32], NOW)
            .await
            .unwrap()
            .is_none()
    );
    s.credential_revoke(&token, NOW + 1).await.unwrap();
    assert!(
        s.credential_lookup(&token, NOW + 2)
            .await
            .unwrap()
            .is_none()
    );
    // operator.create and token.create were audited; the failed duplicate was not.
    assert_eq!(audit_verify(s).await.unwrap(), Ok(2));
}

pub async fn data_keys_first_writer_wins(s: &dyn Store) {
    assert!(s.data_keys("pii").await.unwrap().is_none());
    let first = StoredDataKeys {
        purpose: "pii".into(),
        kek_id: "kek-1".into(),
        wrapped: vec![1, 2, 3],
    };
    assert_eq!(s.data_keys_insert(&first).await.unwrap(), first);
    let second = StoredDataKeys {
        wrapped: vec![9],
        ..first.clone()
    };
    assert_eq!(s.data_keys_insert(&second).await.unwrap(), first);
    s.ping().await.unwrap();
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

pub async fn card_sequence_never_repeats(s: &dyn Store) {
    let mut last = 0;
    for _ in 0..20 {
        let n = s.card_sequence_next().await.unwrap();
        assert!(n > last, "{n} after {last}");
        last = n;
    }
    assert_eq!(last, 20);
}

pub async fn cards_keep_one_live_card_and_change_atomically(s: &dyn Store) {
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
    let (a, bb, c) = ("4101000000000018", "4101000000000026", "4101000000000034");
    s.card_insert(
        &card(a, r1, "active", 1),
        &event(a, "-", "applied"),
        None,
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();
    // A second live card for the same resident is refused by the database.
    let dup = s
        .card_insert(
            &card(bb, r1, "applied", 1),
            &event(bb, "-", "applied"),
            None,
            draft("card.apply"),
            NOW,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(s.card_by_number(bb).await.unwrap().is_none());
    // The same number twice is refused too.
    let again = s
        .card_insert(
            &card(a, r2, "applied", 1),
            &event(a, "-", "applied"),
            None,
            draft("card.apply"),
            NOW,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    // Replacement: the old card is replaced, the successor inserted, the old one denied and
    // its balance scheduled to move — in one transaction.
    let head = s.audit_head().await.unwrap().unwrap().0;
    let change = CardChange {
        card: card(a, r1, "replaced", 2),
        successor: Some(card(bb, r1, "approved", 1)),
        events: vec![event(a, "active", "replaced"), event(bb, "-", "approved")],
        deny: vec![(a.to_string(), DenyOp::Add)],
        moves: vec![BalanceMoveRow {
            from_number: a.into(),
            to_number: Some(bb.into()),
            not_before_s: NOW / 1000 + 7 * 86_400,
        }],
    };
    s.card_apply(
        &change,
        vec![draft("card.replace"), draft("card.create")],
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 2);
    assert_eq!(
        s.card_by_number(a).await.unwrap().unwrap().state,
        "replaced"
    );
    assert_eq!(s.card_by_number(bb).await.unwrap().unwrap().version, 1);
    let cards = s.cards_of_resident(r1).await.unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(s.card_events(a).await.unwrap().len(), 2);
    assert_eq!(s.deny_list_version().await.unwrap(), 1);
    let changes = s.deny_list_changes(0, 100).await.unwrap();
    assert_eq!(
        (changes.len(), changes[0].op, changes[0].number.as_str()),
        (1, DenyOp::Add, a)
    );
    assert!(s.deny_list_changes(1, 100).await.unwrap().is_empty());
    assert_eq!(s.balance_moves_pending(10).await.unwrap(), change.moves);

    // A stale version is a conflict and writes nothing: no event, no deny change, no audit.
    let stale = CardChange {
        card: card(a, r1, "cancelled", 2),
        successor: None,
        events: vec![event(a, "replaced", "cancelled")],
        deny: vec![(a.to_string(), DenyOp::Remove)],
        moves: vec![],
    };
    let r = s.card_apply(&stale, vec![draft("card.cancel")], NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.deny_list_version().await.unwrap(), 1);
    assert_eq!(s.card_events(a).await.unwrap().len(), 2);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 2);

    // A successor that would be a second live card is refused with everything else.
    s.card_insert(
        &card(c, r2, "active", 1),
        &event(c, "-", "active"),
        None,
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();
    let bad = CardChange {
        card: card(c, r2, "frozen", 2),
        successor: Some(card("4101000000000042", r2, "approved", 1)),
        events: vec![],
        deny: vec![(c.to_string(), DenyOp::Add)],
        moves: vec![],
    };
    let r = s.card_apply(&bad, vec![], NOW).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.card_by_number(c).await.unwrap().unwrap().state, "active");
    assert_eq!(s.deny_list_version().await.unwrap(), 1);

    let replaced = s.cards_page(Some("replaced"), "", 10).await.unwrap();
    assert_eq!(replaced.len(), 1);
    assert_eq!(s.cards_page(None, "", 10).await.unwrap().len(), 3);
    assert_eq!(s.cards_page(None, a, 10).await.unwrap().len(), 2);
    assert_eq!(audit_verify(s).await.unwrap().map(|n| n > 0), Ok(true));
}

/// Expands one `#[tokio::test]` per conformance case. `$make` is an expression evaluating to
/// a future of a fresh store (`impl Store`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            residents_apply_is_idempotent,
            a_failed_batch_writes_nothing,
            residents_lookups_and_pages,
            operators_and_credentials,
            data_keys_first_writer_wins,
            card_sequence_never_repeats,
            cards_keep_one_live_card_and_change_atomically,
            applications_and_enrolments,
            ecode_devices_roots_and_certificates,
            ledger_accounts_open_by_natural_key,
            ledger_batches_answer_each_transfer,
            ledger_pending_reserves_then_posts_or_voids,
            balance_moves_release_once,
            apps_registry_and_card_functions,
            disbursements_submit_decide_and_record_once,
            merchants_and_terminals_activate_once,
            terminal_fleet_binds_psams_and_answers_batches_once,
            money_movements_record_once_and_change_by_compare_and_set,
            money_group_commit_answers_each_item,
            money_group_commit_of_fresh_keys_keeps_floors_and_posts_once,
            money_payments_enter_the_window_of_their_posting,
            money_payments_never_enter_a_closed_window,
            purchases_post_once_with_flags,
            purchases_repeat_under_another_counter_posts_once,
            purchases_never_enter_a_closed_window,
            purchases_kept_batch_answer_with_postings,
            clearing_windows_close_once,
            clearing_windows_list_latest_first_with_totals,
            statements_import_once_and_exceptions_resolve_once,
            fee_rules_are_added_never_changed,
            exchange_members_grants_consents_and_access,
            feeds_hold_contradictions_for_review_once,
            exchange_access_search_and_consent_stats,
            notifications_enqueue_once_and_deliver_once,
            bills_upload_all_or_nothing_and_settle_once,
            points_earn_spend_and_expire_once,
            credit_opt_in_signals_disputes_and_opt_out);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn money_refunds_never_exceed_the_payment() {
            let s: &'static dyn $crate::Store = Box::leak(Box::new($make.await));
            $crate::conformance::money_refunds_never_exceed_the_payment(s).await;
        }

        #[tokio::test]
        async fn purchases_carry_over_follows_the_books() {
            let s = $make.await;
            $crate::conformance::purchases_carry_over_follows_the_books(&s, &s).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn purchases_hot_merchant_under_concurrency() {
            let s: &'static dyn $crate::Store = Box::leak(Box::new($make.await));
            $crate::conformance::purchases_hot_merchant_under_concurrency(s).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ledger_floors_hold_under_concurrency() {
            let s: &'static dyn $crate::Store = Box::leak(Box::new($make.await));
            $crate::conformance::ledger_floors_hold_under_concurrency(s).await;
        }
        $crate::production_conformance_tests!($make);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn audit_chain_holds_under_concurrency() {
            let s: &'static dyn $crate::Store = Box::leak(Box::new($make.await));
            $crate::conformance::audit_chain_holds_under_concurrency(s).await;
        }
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let s = $make.await;
                $crate::conformance::$name(&s).await;
            }
        )*
    };
}

pub async fn applications_and_enrolments(s: &dyn Store) {
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
    let (a, bb) = ("4101000000000018", "4101000000000026");
    let app = |number: &str| ApplicationRow {
        number: number.into(),
        channel: "online".into(),
        delivery: "outlet_later".into(),
        outlet_code: Some("ZZ-1".into()),
        photo_ref: Some("police:P1".into()),
        guardian_resident_id: Some(r2),
        created_ms: NOW,
    };
    s.card_insert(
        &card(a, r1, "applied", 1),
        &event(a, "-", "applied"),
        Some(&app(a)),
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(s.card_application(a).await.unwrap(), Some(app(a)));
    // A refused card (second live card) leaves no application row and no audit entry.
    let head = s.audit_head().await.unwrap().unwrap().0;
    let dup = s
        .card_insert(
            &card(bb, r1, "applied", 1),
            &event(bb, "-", "applied"),
            Some(&app(bb)),
            draft("card.apply"),
            NOW,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(s.card_application(bb).await.unwrap(), None);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head);

    // One live enrolment per resident and per card.
    let e = NewEnrolment {
        resident_id: r2,
        issuer_region: "320100".into(),
        card_blind: b("ssc", 1),
        card_sealed: b"sealed-ssc".to_vec(),
    };
    let row = s
        .enrolment_insert(&e, draft("resident.enrol"), NOW)
        .await
        .unwrap();
    assert_eq!((row.resident_id, row.withdrawn_ms), (r2, None));
    let same_card = NewEnrolment {
        resident_id: r1,
        ..e.clone()
    };
    let r = s
        .enrolment_insert(&same_card, draft("resident.enrol"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let same_resident = NewEnrolment {
        card_blind: b("ssc", 2),
        ..e.clone()
    };
    let r = s
        .enrolment_insert(&same_resident, draft("resident.enrol"), NOW)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.enrolments_of_resident(r2).await.unwrap(), vec![row]);
    assert!(s.enrolments_of_resident(r1).await.unwrap().is_empty());
}
