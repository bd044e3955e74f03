//! Conformance of points and the credit service: rules, catalogue and projects replaced by
//! key; earnings once per key and cut at the daily cap, in the ledger as points; spending
//! refused below zero and answered once per key; expiry of the oldest lots once a day; credit
//! signals only while opted in, disputes opened once and resolved once, opting out deleting
//! everything.

use super::{NOW, b, draft, facts, feed};
use crate::credit::*;
use crate::points::*;
use crate::*;
use ::ledger::{AccountKey, AccountKind, BookError};
use resident::Source;

async fn resident(s: &dyn Store, n: u32) -> i64 {
    let f = feed(s, Source::Police).await;
    s.residents_apply(
        f,
        &[facts(n, "a", None, None)],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    s.resident_by_blind(&b("id", n)).await.unwrap().unwrap().id
}

fn earning(r: i64, key: &str, asked: i64, day: i64, acc: (i64, i64)) -> NewEarning {
    NewEarning {
        resident_id: r,
        kind: "ride".into(),
        key: key.into(),
        asked,
        daily_cap: 10,
        day,
        expires_day: day + 365,
        account: acc.0,
        issuance: acc.1,
    }
}

pub async fn points_earn_spend_and_expire_once(s: &dyn Store) {
    let r = resident(s, 1).await;
    // Default rules are there; a rule, an item and a project are replaced by key.
    let rules = s.points_rules().await.unwrap();
    assert_eq!(rules.len(), 4);
    let mut ride = rules.iter().find(|x| x.kind == "ride").unwrap().clone();
    assert_eq!((ride.points_per_unit, ride.daily_cap), (1, 10));
    ride.daily_cap = 12;
    ride.updated_ms = NOW;
    s.points_rule_set(&ride, draft("points.rule"))
        .await
        .unwrap();
    assert_eq!(
        s.points_rules()
            .await
            .unwrap()
            .iter()
            .find(|x| x.kind == "ride")
            .unwrap()
            .daily_cap,
        12
    );
    let mut item = PointsItemRow {
        code: "bus-2".into(),
        name_zh: "公交乘车券".into(),
        name_en: "Bus voucher".into(),
        kind: "ride_voucher".into(),
        cost_points: 200,
        active: true,
        updated_ms: NOW,
    };
    s.points_item_set(&item, draft("points.item"))
        .await
        .unwrap();
    item.cost_points = 150;
    s.points_item_set(&item, draft("points.item"))
        .await
        .unwrap();
    assert_eq!(s.points_items().await.unwrap(), vec![item.clone()]);
    let project = CharityProjectRow {
        code: "trees".into(),
        name_zh: "植树".into(),
        name_en: "Trees".into(),
        active: true,
        updated_ms: NOW,
    };
    s.points_project_set(&project, draft("points.project"))
        .await
        .unwrap();
    assert_eq!(s.points_projects().await.unwrap(), vec![project]);

    let accounts = s
        .ledger_open_accounts(
            &[
                AccountKey::citizen_points(r),
                AccountKey::points_company(AccountKind::PointsIssuance),
                AccountKey::points_company(AccountKind::PointsRedeemed),
                AccountKey::points_company(AccountKind::PointsExpired),
                AccountKey::points_charity("trees").unwrap(),
            ],
            draft("ledger.open"),
            NOW,
        )
        .await
        .unwrap();
    let (mine, issuance, redeemed, expired, charity) = (
        accounts[0].id,
        accounts[1].id,
        accounts[2].id,
        accounts[3].id,
        accounts[4].id,
    );
    let acc = (mine, issuance);

    // Day 100: 6 + 6 fit; the third is cut to what the cap of 10 leaves; the fourth is refused;
    // a repeated key answers the first; the next day starts afresh.
    let out = s
        .points_earn(
            &[
                earning(r, "points-earn:ride:a", 6, 100, acc),
                earning(r, "points-earn:ride:b", 3, 100, acc),
                earning(r, "points-earn:ride:c", 6, 100, acc),
                earning(r, "points-earn:ride:d", 1, 100, acc),
                earning(r, "points-earn:ride:a", 6, 100, acc),
            ],
            draft("points.earn"),
            NOW,
        )
        .await
        .unwrap();
    let points: Vec<Option<i64>> = out
        .iter()
        .map(|o| match o {
            EarnOutcome::Earned(e) => Some(e.points),
            _ => None,
        })
        .collect();
    assert_eq!(points, vec![Some(6), Some(3), Some(1), None, None]);
    assert_eq!(out[3], EarnOutcome::CapReached { earned_today: 10 });
    assert!(
        matches!(&out[4], EarnOutcome::Duplicate(e) if e.points == 6 && e.key == "points-earn:ride:a")
    );
    let out = s
        .points_earn(
            &[earning(r, "points-earn:ride:e", 500, 101, acc)],
            draft("points.earn"),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(&out[0], EarnOutcome::Earned(e) if e.points == 10 && e.expires_day == Some(466))
    );
    // A key stored by an earlier call answers with that entry, and earns nothing more.
    let out = s
        .points_earn(
            &[earning(r, "points-earn:ride:a", 6, 101, acc)],
            draft("points.earn"),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(&out[0], EarnOutcome::Duplicate(e) if e.points == 6 && e.day == 100),
        "{out:?}"
    );
    let balance =
        |id: i64| async move { s.ledger_accounts_page(id - 1, 1).await.unwrap()[0].balance };
    assert_eq!(balance(mine).await, 20);
    assert_eq!(balance(issuance).await, 20);

    // Spending: refused below zero (nothing written), then once per key.
    let spend = |key: &str, op: &str, points: i64, sink: i64, target: &str| NewSpend {
        resident_id: r,
        op: op.into(),
        key: key.into(),
        target: target.into(),
        points,
        day: 200,
        account: mine,
        sink,
    };
    let o = s
        .points_spend(
            &spend("redeem:1", OP_REDEEM, 21, redeemed, "bus-2"),
            draft("points.redeem"),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(o, SpendOutcome::Refused(BookError::BelowFloor { .. })),
        "{o:?}"
    );
    assert_eq!(s.points_entry("redeem:1").await.unwrap(), None);
    let o = s
        .points_spend(
            &spend("redeem:1", OP_REDEEM, 5, redeemed, "bus-2"),
            draft("points.redeem"),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(o, SpendOutcome::Spent(ref e) if e.points == 5));
    let again = s
        .points_spend(
            &spend("redeem:1", OP_REDEEM, 5, redeemed, "bus-2"),
            draft("points.redeem"),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(again, SpendOutcome::Duplicate(ref e) if e.points == 5));
    let other = s
        .points_spend(
            &spend("redeem:1", OP_REDEEM, 6, redeemed, "bus-2"),
            draft("points.redeem"),
            NOW,
        )
        .await;
    assert!(matches!(other, Err(StoreError::Conflict(_))), "{other:?}");
    s.points_spend(
        &spend("donate:1", OP_DONATE, 2, charity, "trees"),
        draft("points.donate"),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(balance(mine).await, 13);

    // Expiry. Day 465: the day-100 lot (10) is due, 7 already left: 3 expire, once.
    assert_eq!(
        s.points_expiry_due(464, 0, 10).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(s.points_expiry_due(465, 0, 10).await.unwrap(), vec![r]);
    let e = s
        .points_expire(r, 465, mine, expired, draft("points.expire"), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.points, e.key.clone()), (3, expire_key(r, 465)));
    assert_eq!(
        s.points_expiry_due(465, 0, 10).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(
        s.points_expire(r, 465, mine, expired, draft("points.expire"), NOW)
            .await
            .unwrap(),
        None
    );
    // Day 466: the day-101 lot (10) is due too; outflow 10 covers the first: all 10 expire.
    let e = s
        .points_expire(r, 466, mine, expired, draft("points.expire"), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.points, 10);
    assert_eq!(balance(mine).await, 0);
    let t = s.points_totals(r, 466).await.unwrap();
    assert_eq!(
        (
            t.earned,
            t.redeemed,
            t.donated,
            t.expired,
            t.due,
            t.balance()
        ),
        (20, 5, 2, 13, 20, 0)
    );
    // Every point is somewhere: issued = redeemed + donated + expired + held.
    assert_eq!(
        balance(issuance).await,
        balance(redeemed).await
            + balance(charity).await
            + balance(expired).await
            + balance(mine).await
    );
    let entries = s.points_entries(r, 0, 100).await.unwrap();
    assert_eq!(entries.len(), 8);
    assert_eq!(entries[0].op, OP_EXPIRE);
    let older = s.points_entries(r, entries[1].id, 100).await.unwrap();
    assert_eq!(older.len(), 6);
    assert!(s.ledger_check().await.unwrap().mismatch.is_none());
}

fn signal(r: i64, kind: &str, key: &str, day: i64) -> NewSignal {
    NewSignal {
        resident_id: r,
        kind: kind.into(),
        key: key.into(),
        quantity: 1,
        day,
        source: "test".into(),
    }
}

pub async fn credit_opt_in_signals_disputes_and_opt_out(s: &dyn Store) {
    let r = resident(s, 2).await;
    // Not opted in: signals are dropped.
    assert_eq!(
        s.credit_signals_record(&[signal(r, "bill_on_time", "bill:1", 10)], NOW)
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        s.credit_opt_in(999_999, draft("credit.opt_in"), NOW).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        s.credit_opt_in(r, draft("credit.opt_in"), NOW)
            .await
            .unwrap()
    );
    assert!(
        !s.credit_opt_in(r, draft("credit.opt_in"), NOW)
            .await
            .unwrap()
    );
    assert_eq!(s.credit_enrolled(r).await.unwrap(), Some(NOW));
    // Once per key.
    let n = s
        .credit_signals_record(
            &[
                signal(r, "bill_on_time", "bill:1", 10),
                signal(r, "fare_evasion", "fare:1", 11),
                signal(r, "bill_on_time", "bill:1", 10),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let sig = s.credit_signals(r, 0).await.unwrap();
    assert_eq!(sig.len(), 2);
    assert_eq!(s.credit_signals(r, 11).await.unwrap().len(), 1);
    let fare = sig
        .iter()
        .find(|x| x.kind == "fare_evasion")
        .unwrap()
        .clone();
    assert!(!fare.struck);

    // Scores: one per day, replaced; newest first.
    for (day, score) in [(10, 600), (11, 570), (11, 571)] {
        s.credit_score_save(
            &ScoreRow {
                resident_id: r,
                day,
                score,
                factors: "[]".into(),
                computed_ms: NOW,
            },
            draft("credit.score"),
        )
        .await
        .unwrap();
    }
    let scores = s.credit_scores(r, 10).await.unwrap();
    assert_eq!(
        scores.iter().map(|x| (x.day, x.score)).collect::<Vec<_>>(),
        vec![(11, 571), (10, 600)]
    );

    // Disputes: only about one's own signal, one open at a time, resolved once.
    let other = resident(s, 3).await;
    assert!(matches!(
        s.credit_dispute_open(other, fare.id, "not me", draft("credit.dispute"), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let d = s
        .credit_dispute_open(
            r,
            fare.id,
            "I tapped my e-code",
            draft("credit.dispute"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(d.status, DISPUTE_OPEN);
    assert!(matches!(
        s.credit_dispute_open(r, fare.id, "again", draft("credit.dispute"), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.credit_disputes(Some(DISPUTE_OPEN), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let done = s
        .credit_dispute_resolve(
            d.id,
            true,
            "officer",
            "gate log shows the tap",
            draft("credit.resolve"),
            NOW + 1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status.as_str(), done.officer.as_deref()),
        (DISPUTE_UPHELD, Some("officer"))
    );
    assert_eq!(
        s.credit_dispute_resolve(
            d.id,
            false,
            "officer",
            "x",
            draft("credit.resolve"),
            NOW + 2
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        s.credit_dispute(d.id).await.unwrap().unwrap().resolved_ms,
        Some(NOW + 1)
    );
    assert!(
        s.credit_signals(r, 0)
            .await
            .unwrap()
            .iter()
            .find(|x| x.id == fare.id)
            .unwrap()
            .struck
    );
    assert_eq!(
        s.credit_disputes(Some(DISPUTE_OPEN), 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(s.credit_disputes(None, 10).await.unwrap().len(), 1);
    assert_eq!(s.credit_disputes_of(r).await.unwrap().len(), 1);

    // Opting out deletes everything; a score saved after it is not kept.
    assert!(
        s.credit_opt_out(r, draft("credit.opt_out"), NOW)
            .await
            .unwrap()
    );
    assert!(
        !s.credit_opt_out(r, draft("credit.opt_out"), NOW)
            .await
            .unwrap()
    );
    assert_eq!(s.credit_enrolled(r).await.unwrap(), None);
    assert!(s.credit_signals(r, 0).await.unwrap().is_empty());
    assert!(s.credit_scores(r, 10).await.unwrap().is_empty());
    assert!(s.credit_disputes_of(r).await.unwrap().is_empty());
    s.credit_score_save(
        &ScoreRow {
            resident_id: r,
            day: 12,
            score: 600,
            factors: "[]".into(),
            computed_ms: NOW,
        },
        draft("credit.score"),
    )
    .await
    .unwrap();
    assert!(s.credit_scores(r, 10).await.unwrap().is_empty());
}
