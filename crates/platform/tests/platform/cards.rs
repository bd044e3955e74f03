//! Cards through the platform on both backends: eligibility, one live card per resident, the
//! life cycle from application to replacement, refused transitions, the deny-list and the
//! balance move a replacement schedules.

use crate::fixture::{Fixture, admin, caller, id, import};
use crate::on_both_backends;
use platform::PlatformError;
use platform::cards::{CardRequest, parse_reason};
use resident::Source;
use store::{DenyOp, Role};

on_both_backends!(a_card_from_application_to_replacement);

async fn a_card_from_application_to_replacement(f: Fixture) {
    let adult = id("410105", 1980, 5, 1, 11);
    let minor = id("410105", 2016, 3, 1, 12);
    let visitor = id("320102", 1990, 1, 1, 13);
    let csv = format!(
        "id_number,name,phone,address,residency\n{adult},张成年,,,resident\n{minor},张小,,,resident\n{visitor},李外地,,,non_resident\n"
    );
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let clerk = caller("clerk", Role::CounterClerk, None);
    let officer = caller("officer", Role::Administrator, None);
    let system = admin();
    let p = &f.p;

    // Eligibility, with reasons.
    let card = p
        .apply_for_card(&clerk, &adult, "ordinary", None)
        .await
        .unwrap();
    assert_eq!((card.state.as_str(), card.version), ("applied", 1));
    assert!(chip::CardNumber::parse(&card.number).is_ok());
    assert_eq!(card.holder_name, "张*年");
    assert!(card.holder_id_number.contains("****"));
    let again = p.apply_for_card(&clerk, &adult, "ordinary", None).await;
    assert!(
        matches!(&again, Err(PlatformError::Conflict(m)) if m.contains("live card")),
        "{again:?}"
    );
    let r = p.apply_for_card(&clerk, &visitor, "ordinary", None).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("not a registered resident")),
        "{r:?}"
    );
    let r = p.apply_for_card(&clerk, &minor, "student", None).await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.contains("guardian")),
        "{r:?}"
    );
    let kid = p
        .apply_for_card(&clerk, &minor, "student", Some(&adult))
        .await
        .unwrap();
    assert_ne!(kid.number, card.number);
    let r = p.apply_for_card(&clerk, &adult, "platinum", None).await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let r = p
        .apply_for_card(
            &caller("c", Role::ClearingOfficer, None),
            &adult,
            "ordinary",
            None,
        )
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Approved, then through a production batch, the bureau, the outlet's stock and its
    // counter to active. The generic card action refuses the acts that have their own path
    // (batch, stock, counter journal), naming it, and changes nothing.
    let n = card.number.clone();
    let routine = parse_reason("routine").unwrap();
    let v = p
        .card_action(&clerk, &n, CardRequest::Approve, routine)
        .await
        .unwrap();
    assert_eq!(v.state, "approved");
    for (who, req, path) in [
        (&officer, CardRequest::SendToProduction, "/api/v1/batches"),
        (&clerk, CardRequest::DeliverToOutlet(3), "/distribution"),
        (&system, CardRequest::DeliverToOutlet(3), "/distribution"),
        (&clerk, CardRequest::HandOver, "/hand-over"),
    ] {
        let r = p.card_action(who, &n, req, routine).await;
        assert!(
            matches!(&r, Err(PlatformError::Forbidden(m)) if m.contains(path)),
            "{req:?}: {r:?}"
        );
    }
    assert_eq!(p.card(&clerk, &n).await.unwrap().version, 2);
    f.install_master_keys();
    let desk =
        platform::demo::issue_approved(&f.p, "ZZ-T1", "desk-clerk", "desk-password-1", &[&n])
            .await
            .unwrap();
    let active = p.card(&clerk, &n).await.unwrap();
    assert_eq!(active.state, "active");
    let states: Vec<String> = p
        .store
        .card_events(&n)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to_state)
        .collect();
    assert_eq!(
        states,
        [
            "applied",
            "approved",
            "in_production",
            "produced",
            "at_outlet",
            "issued",
            "active"
        ]
    );
    assert_eq!(active.version, 7);
    assert!(active.valid_until_s.is_some());

    // Any other transition is refused with the state named, and changes nothing.
    let r = p
        .card_action(
            &clerk,
            &n,
            CardRequest::Activate,
            parse_reason("holder_request").unwrap(),
        )
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("active")),
        "{r:?}"
    );
    let r = p
        .card_action(&clerk, &n, CardRequest::Approve, routine)
        .await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    assert_eq!(p.card(&clerk, &n).await.unwrap().version, 7);
    let r = p
        .card_action(
            &caller("a", Role::Auditor, None),
            &n,
            CardRequest::ReportLost,
            parse_reason("lost").unwrap(),
        )
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    assert!(parse_reason("bored").is_err());
    assert!(CardRequest::parse("fly", None).is_err());
    assert!(CardRequest::parse("deliver_to_outlet", None).is_err());

    // Lost: the card goes on the deny-list. A clerk reports it at the counter (journaled);
    // the generic action refuses a clerk's lost report and replacement.
    assert_eq!(p.store.deny_list_version().await.unwrap(), 0);
    for (req, reason, path) in [
        (CardRequest::ReportLost, "lost", "/lost-reports"),
        (CardRequest::Replace, "lost", "/replacements"),
    ] {
        let r = p
            .card_action(&clerk, &n, req, parse_reason(reason).unwrap())
            .await;
        assert!(
            matches!(&r, Err(PlatformError::Forbidden(m)) if m.contains(path)),
            "{req:?}: {r:?}"
        );
    }
    let lost = p.counter_report_lost(&desk, "ZZ-T1", &n).await.unwrap();
    assert_eq!(lost.state, "reported_lost");
    let d = p.store.deny_list_changes(0, 10).await.unwrap();
    assert_eq!(
        (d.len(), d[0].number.as_str(), d[0].op),
        (1, n.as_str(), DenyOp::Add)
    );

    // Replacement: the old card is replaced, a successor approved, the money scheduled to move.
    let replaced = p
        .counter_replace(&desk, "ZZ-T1", &n, parse_reason("lost").unwrap())
        .await
        .unwrap()
        .card;
    assert_eq!(replaced.state, "replaced");
    // Every counter act of the day is in the outlet's journal.
    let today = {
        use platform::clock::Clock;
        let d = f.clock.today();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let journal: Vec<String> = p
        .counter_journal(&desk, "ZZ-T1", &today)
        .await
        .unwrap()
        .lines
        .into_iter()
        .map(|j| j.act)
        .collect();
    assert_eq!(journal, ["card_issued", "lost_report", "replacement"]);
    let holder = p
        .store
        .card_by_number(&n)
        .await
        .unwrap()
        .unwrap()
        .resident_id;
    let cards = p.store.cards_of_resident(holder).await.unwrap();
    assert_eq!(cards.len(), 2);
    let successor = cards.iter().find(|c| c.number != n).unwrap();
    assert_eq!(successor.state, "approved");
    let moves = p.store.balance_moves_pending(10).await.unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].from_number, n);
    assert_eq!(
        moves[0].to_number.as_deref(),
        Some(successor.number.as_str())
    );
    // Still denied (a replaced card stays on the list), no second add.
    assert_eq!(p.store.deny_list_version().await.unwrap(), 1);
    let events = p.store.card_events(&n).await.unwrap();
    assert_eq!(events.last().unwrap().to_state, "replaced");
    assert_eq!(events.len(), 9, "{events:?}");

    // The signed deny-list a terminal downloads holds exactly the denied card, verifies with
    // the platform's key, and a delta from the empty list gives the same list.
    let pk = crypto::Sm2PublicKey::from_sec1(&p.deny_list_public_key()).unwrap();
    let (v, full) = p.deny_list_full().await.unwrap();
    assert_eq!(v, 1);
    let list = issuance::DenyList::decode(&full, &pk).unwrap();
    let lost_card = chip::CardNumber::parse(&n).unwrap();
    assert!(list.contains(lost_card));
    assert_eq!(list.len(), 1);
    let mut forged = full.clone();
    forged[40] ^= 1;
    assert!(issuance::DenyList::decode(&forged, &pk).is_err());
    let (_, delta) = p.deny_list_delta(0).await.unwrap();
    let delta = issuance::DenyListDelta::decode(&delta, &pk).unwrap();
    let mut terminal =
        issuance::DenyList::from_sorted_sequences(issuance::DenyListVersion(0), vec![]).unwrap();
    terminal.apply(&delta).unwrap();
    assert_eq!(terminal, list);
    assert!(matches!(
        p.deny_list_delta(1).await,
        Err(PlatformError::Conflict(_))
    ));
    assert!(matches!(
        p.deny_list_delta(5).await,
        Err(PlatformError::Invalid { .. })
    ));

    let listed = p.cards(&clerk, Some("replaced"), "", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].holder_name, "张*年");
    assert!(matches!(
        p.cards(&clerk, Some("lost-ish"), "", 10).await,
        Err(PlatformError::Invalid { .. })
    ));
    assert_eq!(p.cards(&clerk, None, "", 10).await.unwrap().len(), 3);
    assert!(p.audit_verify().await.unwrap().is_ok());
}

on_both_backends!(the_sweep_freezes_lost_cards_and_expires_old_ones);

/// Walks a new card of resident `who` to active.
async fn active_card(f: &Fixture, who: &str) -> String {
    let clerk = caller("clerk", Role::CounterClerk, None);
    let p = &f.p;
    let n = p
        .apply_for_card(&clerk, who, "ordinary", None)
        .await
        .unwrap()
        .number;
    let routine = parse_reason("routine").unwrap();
    for (c, r) in [
        (&clerk, CardRequest::Approve),
        (&admin(), CardRequest::SendToProduction),
        (&admin(), CardRequest::ProductionDone),
        (&clerk, CardRequest::Post),
    ] {
        p.card_action(c, &n, r, routine).await.unwrap();
    }
    p.card_action(
        &clerk,
        &n,
        CardRequest::Activate,
        parse_reason("holder_request").unwrap(),
    )
    .await
    .unwrap();
    n
}

async fn the_sweep_freezes_lost_cards_and_expires_old_ones(f: Fixture) {
    let a = id("410105", 1970, 1, 1, 21);
    let b = id("410105", 1971, 1, 1, 22);
    let csv = format!(
        "id_number,name,phone,address,residency\n{a},王甲,,,resident\n{b},王乙,,,resident\n"
    );
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let lost = active_card(&f, &a).await;
    let kept = active_card(&f, &b).await;
    let desk =
        f.p.ensure_outlet_with_clerk(&admin(), "ZZ-S1", "desk", "desk-password-1")
            .await
            .unwrap();
    f.p.counter_report_lost(&desk, "ZZ-S1", &lost)
        .await
        .unwrap();
    let clerk = caller("clerk", Role::CounterClerk, None);

    // Within the undo period nothing happens, however often the sweep runs.
    f.clock.advance_ms(6 * 86_400_000);
    assert_eq!(
        f.p.sweep_cards().await.unwrap(),
        platform::cards::SweepReport::default()
    );
    assert_eq!(
        f.p.card(&clerk, &lost).await.unwrap().state,
        "reported_lost"
    );

    // After it, the lost card is frozen, once.
    f.clock.advance_ms(2 * 86_400_000);
    let r = f.p.sweep_cards().await.unwrap();
    assert_eq!((r.frozen, r.expired), (1, 0));
    assert_eq!(f.p.card(&clerk, &lost).await.unwrap().state, "frozen");
    assert_eq!(
        f.p.sweep_cards().await.unwrap(),
        platform::cards::SweepReport::default()
    );
    // The undo is no longer possible.
    let undo =
        f.p.card_action(
            &clerk,
            &lost,
            CardRequest::UndoLost,
            parse_reason("holder_request").unwrap(),
        )
        .await;
    assert!(matches!(undo, Err(PlatformError::Conflict(_))), "{undo:?}");

    // Ten years on, both cards expire; the frozen one leaves the deny-list (the terminal
    // refuses it by its expiry date anyway), and its money is scheduled back to the holder.
    f.clock.advance_ms(platform::cards::VALIDITY_S * 1000);
    let r = f.p.sweep_cards().await.unwrap();
    assert_eq!((r.frozen, r.expired), (0, 2));
    assert_eq!(f.p.card(&clerk, &kept).await.unwrap().state, "expired");
    let changes = f.p.store.deny_list_changes(0, 10).await.unwrap();
    assert_eq!(
        changes.last().map(|c| (c.number.as_str(), c.op)),
        Some((lost.as_str(), DenyOp::Remove))
    );
    let refunds = f.p.store.balance_moves_pending(10).await.unwrap();
    assert!(
        refunds
            .iter()
            .any(|m| m.from_number == kept && m.to_number.is_none()),
        "{refunds:?}"
    );
    assert!(f.p.audit_verify().await.unwrap().is_ok());
}

on_both_backends!(deltas_from_every_version_rebuild_the_full_list);

/// A terminal holding the list at any earlier version, applying the delta from there, holds
/// exactly the current full list — also when cards left and re-entered the list in between
/// (the delta folds each card's changes; a lost report undone cancels out).
async fn deltas_from_every_version_rebuild_the_full_list(f: Fixture) {
    let people: Vec<String> = (0..3).map(|i| id("410105", 1975, 1, 1, 41 + i)).collect();
    let csv = format!(
        "id_number,name,phone,address,residency\n{}",
        people
            .iter()
            .map(|p| format!("{p},赵某,,,resident\n"))
            .collect::<String>()
    );
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let mut cards = Vec::new();
    for who in &people {
        cards.push(active_card(&f, who).await);
    }
    let p = &f.p;
    let clerk = caller("clerk", Role::CounterClerk, None);
    let pk = crypto::Sm2PublicKey::from_sec1(&p.deny_list_public_key()).unwrap();
    let desk = p
        .ensure_outlet_with_clerk(&admin(), "ZZ-D1", "desk", "desk-password-1")
        .await
        .unwrap();
    let (lost, undo) = (CardRequest::ReportLost, CardRequest::UndoLost);
    let mut held = Vec::new();
    for (i, step) in [
        (0, lost),
        (1, lost),
        (0, undo),
        (2, lost),
        (1, undo),
        (0, lost),
    ]
    .into_iter()
    .enumerate()
    {
        let (card, request) = step;
        let reason = if request == CardRequest::ReportLost {
            "lost"
        } else {
            "holder_request"
        };
        if request == CardRequest::ReportLost {
            p.counter_report_lost(&desk, "ZZ-D1", &cards[card])
                .await
                .unwrap();
        } else {
            p.card_action(&clerk, &cards[card], request, parse_reason(reason).unwrap())
                .await
                .unwrap();
        }
        let (v, full) = p.deny_list_full().await.unwrap();
        assert_eq!(v, i as i64 + 1);
        held.push(issuance::DenyList::decode(&full, &pk).unwrap());
        // The cached delta from the empty list follows the version as it moves on.
        let (dv, bytes) = p.deny_list_delta(0).await.unwrap();
        assert_eq!(dv, v);
        let delta = issuance::DenyListDelta::decode(&bytes, &pk).unwrap();
        assert_eq!(
            delta.version().0 as i64,
            v,
            "a new version builds a new delta"
        );
    }
    let (now, full) = p.deny_list_full().await.unwrap();
    let current = issuance::DenyList::decode(&full, &pk).unwrap();
    let listed: Vec<_> = current.cards().map(|c| c.to_string()).collect();
    let mut expected = vec![cards[0].clone(), cards[2].clone()];
    expected.sort();
    assert_eq!(listed, expected);
    for mut terminal in held.into_iter().take(now as usize - 1) {
        let since = terminal.version().0 as i64;
        let built = p.deny_list_deltas_built();
        let (_, bytes) = p.deny_list_delta(since).await.unwrap();
        assert_eq!(p.deny_list_deltas_built(), built + 1);
        // The next terminal asking gets the same bytes, not built again.
        let (_, again) = p.deny_list_delta(since).await.unwrap();
        assert_eq!(again, bytes);
        assert_eq!(
            p.deny_list_deltas_built(),
            built + 1,
            "the delta from {since} is kept for the next terminal"
        );
        let delta = issuance::DenyListDelta::decode(&bytes, &pk).unwrap();
        // Card 0 went lost → found → lost again after version 1: no change from there.
        if since == 1 {
            assert!(!delta.adds().contains(&issuance::card_sequence(
                chip::CardNumber::parse(&cards[0]).unwrap()
            )));
        }
        terminal.apply(&delta).unwrap();
        assert_eq!(terminal, current, "from version {since}");
    }
}
