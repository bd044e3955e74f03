//! Points and the credit service over HTTP and through the platform (issue 9 items 6 and 7),
//! on SQLite and PostgreSQL: rules, catalogue and projects; volunteer hours from civil
//! affairs only; rides cut at the daily cap and earned once per event; a bill paid on time
//! earning points; redemption once per request, unknown and withdrawn items, too few points,
//! donation; expiry a year on with the refusal naming expired points; every point accounted
//! for in the ledger; the console pages. Credit: nothing scored or recorded before opt-in,
//! each factor in plain words, a dispute upheld by an officer striking its signal out and the
//! score recomputed, history, opting out deleting everything; role refusals.

mod common;

use common::{App, fund, seeded_id};
use ledger::{AccountKey, AccountKind, TransferKind};
use platform::Caller;
use platform::testing::Backend;
use serde_json::json;
use store::Role;

const DAY_MS: i64 = 86_400_000;

fn civil() -> Caller {
    Caller {
        operator_id: Some(99),
        username: "civil".into(),
        role: Role::DepartmentOfficer,
        department: Some(resident::Source::CivilAffairs),
        origin: "test".into(),
    }
}

async fn balance(app: &App, key: AccountKey) -> i64 {
    app.tp
        .platform
        .ledger_accounts(&Caller::cli("test"), &[key])
        .await
        .unwrap()[0]
        .balance
}

async fn points_earn_redeem_donate_expire(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let admin = app.token(Role::Administrator).await;
    let officer = app.token(Role::ClearingOfficer).await;
    let clerk = app.token(Role::CounterClerk).await;
    let id0 = seeded_id(0);
    let r0 = p.resident_id_of(&id0).await.unwrap();

    // Rules: the defaults; only the administrator changes them.
    let r = app.get("/api/v1/points/rules", Some(&clerk)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().unwrap().len(), 4);
    let rule = json!({"kind": "ride", "points_per_unit": 1, "daily_cap": 10,
                      "validity_days": 365, "active": true});
    let r = app
        .post_json("/api/v1/points/rules", Some(&officer), rule.clone())
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post_json(
            "/api/v1/points/rules",
            Some(&admin),
            json!({"kind": "ride", "points_per_unit": 1, "daily_cap": 0,
                   "validity_days": 365, "active": true}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = app
        .post_json("/api/v1/points/rules", Some(&admin), rule)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Catalogue and a charity project.
    for item in [
        json!({"code": "bus-2", "name_zh": "公交乘车券 2 元", "name_en": "Bus voucher, 2 yuan",
               "kind": "ride_voucher", "cost_points": 30, "active": true}),
        json!({"code": "museum", "name_zh": "河南博物院门票", "name_en": "Henan Museum ticket",
               "kind": "museum_ticket", "cost_points": 50, "active": false}),
    ] {
        let r = app
            .post_json("/api/v1/points/catalogue", Some(&admin), item)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/points/projects",
            Some(&admin),
            json!({"code": "trees", "name_zh": "黄河植树", "name_en": "Trees by the Yellow River",
                   "active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Volunteer hours: civil affairs only; 8 hours reach the cap of 160.
    let e = p
        .points_report(
            &civil(),
            points::EarnKind::VolunteerHour,
            "civil-1",
            &id0,
            8,
        )
        .await
        .unwrap();
    assert_eq!(
        (e.points, e.capped, e.expires_on.as_str()),
        (160, false, "2027-11-26")
    );
    let police = Caller {
        department: Some(resident::Source::Police),
        ..civil()
    };
    assert!(matches!(
        p.points_report(&police, points::EarnKind::VolunteerHour, "x", &id0, 1)
            .await,
        Err(platform::PlatformError::Forbidden(_))
    ));
    let r = app
        .post_json(
            "/api/v1/points/events",
            Some(&officer),
            json!({"kind": "volunteer_hour", "event_id": "v2", "id_number": id0, "units": 1}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Rides: one point each up to the cap of 10 a day; the same event earns once.
    for i in 0..10 {
        let r = app
            .post_json(
                "/api/v1/points/events",
                Some(&officer),
                json!({"kind": "ride", "event_id": format!("metro:{i}"), "id_number": id0, "units": 1}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["points"], 1);
    }
    let r = app
        .post_json(
            "/api/v1/points/events",
            Some(&officer),
            json!({"kind": "ride", "event_id": "metro:10", "id_number": id0, "units": 1}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("daily cap"), "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/points/events",
            Some(&officer),
            json!({"kind": "ride", "event_id": "metro:3", "id_number": id0, "units": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["points"].as_i64(), r.json()["duplicate"].as_bool()),
        (Some(1), Some(true))
    );
    let r = app
        .post_json(
            "/api/v1/points/events",
            Some(&officer),
            json!({"kind": "ride", "event_id": "bad id", "id_number": id0, "units": 1}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // A bill paid on time earns 10.
    let r = app
        .post_json(
            "/api/v1/merchants",
            Some(&admin),
            json!({"code": "water", "name": "郑州自来水", "category": "utility",
                   "settlement_account": "41050100000009"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/billers",
            Some(&admin),
            json!({"code": "water", "kind": "water"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .send(
            "POST",
            "/api/v1/billers/water/bills/file",
            Some(&officer),
            Some((
                "text/csv",
                b"bill_number,customer_no,period,amount_fen,due_date\nW1,C1,2026-11,4500,2026-11-30\n"
                    .to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    fund(
        p,
        AccountKey::citizen_online(r0),
        TransferKind::TopUp,
        10_000,
        "fund-0",
    )
    .await;
    let r = app
        .post_json(
            "/api/v1/billers/water/bills/W1/payment",
            Some(&clerk),
            json!({"id_number": id0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = app
        .post_json(
            "/api/v1/points/of-citizen",
            Some(&clerk),
            json!({"id_number": id0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["balance"].as_i64(), v["earned"].as_i64()),
        (Some(180), Some(180))
    );
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "bill_on_time" && e["points"] == 10),
        "{v}"
    );

    // Redemption once per request; unknown and withdrawn items refused.
    let redeem = |item: &str, req: &str| json!({"id_number": id0, "item": item, "request_id": req});
    let a = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk),
            redeem("bus-2", "r1"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let b = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk),
            redeem("bus-2", "r1"),
        )
        .await;
    assert_eq!(a.json()["id"], b.json()["id"]);
    let r = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk),
            redeem("nope", "r2"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk),
            redeem("museum", "r3"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&officer),
            redeem("bus-2", "r4"),
        )
        .await;
    assert_eq!(r.status, 403);

    // Donation; too many points and unknown projects refused.
    let donate = |project: &str, n: i64, req: &str| json!({"id_number": id0, "project": project, "points": n, "request_id": req});
    let r = app
        .post_json(
            "/api/v1/points/donations",
            Some(&clerk),
            donate("trees", 20, "d1"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/points/donations",
            Some(&clerk),
            donate("trees", 131, "d2"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("130 are available"), "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/points/donations",
            Some(&clerk),
            donate("wells", 1, "d3"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Every point is somewhere.
    let issued = balance(
        &app,
        AccountKey::points_company(AccountKind::PointsIssuance),
    )
    .await;
    let held = balance(&app, AccountKey::citizen_points(r0)).await;
    let redeemed = balance(
        &app,
        AccountKey::points_company(AccountKind::PointsRedeemed),
    )
    .await;
    let donated = balance(&app, AccountKey::points_charity("trees").unwrap()).await;
    assert_eq!((issued, held, redeemed, donated), (180, 130, 30, 20));

    // The console page, in Chinese and English.
    let page = app.get("/console/points?lang=zh", Some(&clerk)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("兑换目录") && page.body.contains("item-bus-2"),
        "{}",
        page.body
    );
    let page = app.get("/console/points?lang=en", Some(&admin)).await;
    assert!(
        page.body.contains("Redemption catalogue")
            && page.body.contains("Trees by the Yellow River")
    );
    assert!(page.body.contains("<td>20</td>"), "{}", page.body);

    // A year and a day on, the points earned today have expired: redeeming says so.
    app.tp.clock.advance_ms(366 * DAY_MS);
    // Tokens live a day: fresh ones.
    let (admin, officer, clerk) = (
        app.token(Role::Administrator).await,
        app.token(Role::ClearingOfficer).await,
        app.token(Role::CounterClerk).await,
    );
    let museum = json!({"code": "museum", "name_zh": "河南博物院门票", "name_en": "Henan Museum ticket",
                        "kind": "museum_ticket", "cost_points": 50, "active": true});
    let r = app
        .post_json("/api/v1/points/catalogue", Some(&admin), museum)
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .post_json(
            "/api/v1/points/redemptions",
            Some(&clerk),
            redeem("museum", "r5"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("130 points have expired"), "{}", r.body);
    // The run finds nothing more; a second run neither.
    for _ in 0..2 {
        let r = app
            .post_json("/api/v1/points/expiry", Some(&officer), json!({}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["points"], 0);
    }
    assert_eq!(balance(&app, AccountKey::citizen_points(r0)).await, 0);
    assert_eq!(
        balance(&app, AccountKey::points_company(AccountKind::PointsExpired)).await,
        130
    );
    assert!(p.ledger_check().await.unwrap().mismatch.is_none());
}

async fn expiry_run_expires_only_the_old_lots(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let id1 = seeded_id(1);
    p.points_report(&civil(), points::EarnKind::VolunteerHour, "c-old", &id1, 2)
        .await
        .unwrap();
    app.tp.clock.advance_ms(200 * DAY_MS);
    p.points_report(&civil(), points::EarnKind::VolunteerHour, "c-new", &id1, 1)
        .await
        .unwrap();
    app.tp.clock.advance_ms(170 * DAY_MS);
    let officer = app.token(Role::ClearingOfficer).await;
    let r = app
        .post_json("/api/v1/points/expiry", Some(&officer), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["residents"].as_i64(), r.json()["points"].as_i64()),
        (Some(1), Some(40))
    );
    let v = p.points_of(&Caller::cli("test"), &id1).await.unwrap();
    assert_eq!((v.balance, v.expired), (20, 40));
    let r = app
        .post_json("/api/v1/points/expiry", Some(&officer), json!({}))
        .await;
    assert_eq!(r.json()["points"], 0);
}

async fn credit_opt_in_score_dispute_opt_out(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let officer = app.token(Role::ClearingOfficer).await;
    let clerk = app.token(Role::CounterClerk).await;
    let id3 = seeded_id(3);
    let who = json!({"id_number": id3});
    let fare = |ev: &str| json!({"kind": "fare_evasion", "event_id": ev, "id_number": id3});

    // Not opted in: never scored, nothing recorded.
    let r = app
        .post_json("/api/v1/credit/score", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = app
        .post_json("/api/v1/credit/signals", Some(&officer), fare("f0"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recorded"], false);

    let r = app
        .post_json("/api/v1/credit/opt-in", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.json()["changed"], true, "{}", r.body);
    for ev in ["f1", "f2", "f2"] {
        let r = app
            .post_json("/api/v1/credit/signals", Some(&officer), fare(ev))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/credit/signals",
            Some(&officer),
            json!({"kind": "library_return_on_time", "event_id": "lib-1", "id_number": id3}),
        )
        .await;
    assert_eq!(r.json()["recorded"], true);
    let r = app
        .post_json(
            "/api/v1/credit/signals",
            Some(&officer),
            json!({"kind": "bill_on_time", "event_id": "b", "id_number": id3}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    p.points_report(&civil(), points::EarnKind::VolunteerHour, "vh-1", &id3, 8)
        .await
        .unwrap();

    // 600 − 2×30 + 1 + 8 = 549, every factor explained.
    let r = app
        .post_json("/api/v1/credit/score", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["score"], 549, "{v}");
    assert_eq!(v["factors"].as_array().unwrap().len(), 6);
    let fare_factor = v["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "fare_evasion")
        .unwrap()
        .clone();
    assert_eq!(fare_factor["contribution"], -60);
    assert!(
        fare_factor["text_zh"]
            .as_str()
            .unwrap()
            .contains("逃票记录2次")
    );
    assert!(
        fare_factor["text_en"]
            .as_str()
            .unwrap()
            .starts_with("2 fare evasion records")
    );
    assert!(
        v["incentives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["eligible"] == false)
    );
    let signal_id = v["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "fare_evasion")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // A dispute: opened once, resolved by an officer (not the clerk), once.
    let body = json!({"id_number": id3, "signal_id": signal_id, "reason": "那天我刷的是e码"});
    let r = app
        .post_json("/api/v1/credit/disputes", Some(&clerk), body.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let did = r.json()["id"].as_i64().unwrap();
    let r = app
        .post_json("/api/v1/credit/disputes", Some(&clerk), body)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let page = app.get("/console/credit?lang=zh", Some(&officer)).await;
    assert!(
        page.body.contains("待处理的异议") && page.body.contains(&format!("dispute-{did}")),
        "{}",
        page.body
    );
    let path = format!("/api/v1/credit/disputes/{did}/resolution");
    let resolve = json!({"uphold": true, "note": "gate log shows an e-code tap"});
    let r = app.post_json(&path, Some(&clerk), resolve.clone()).await;
    assert_eq!(r.status, 403);
    let r = app.post_json(&path, Some(&officer), resolve.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "upheld");
    let r = app.post_json(&path, Some(&officer), resolve).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let page = app.get("/console/credit?lang=en", Some(&officer)).await;
    assert!(
        page.body.contains("status-upheld") && page.body.contains("gate log shows"),
        "{}",
        page.body
    );

    // The struck signal no longer counts: 579; a day later, history has two days.
    app.tp.clock.advance_ms(DAY_MS);
    let (officer, clerk) = (
        app.token(Role::ClearingOfficer).await,
        app.token(Role::CounterClerk).await,
    );
    let r = app
        .post_json("/api/v1/credit/score", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.json()["score"], 579, "{}", r.body);
    let r = app
        .post_json("/api/v1/credit/history", Some(&clerk), who.clone())
        .await;
    let h = r.json();
    assert_eq!(
        h.as_array()
            .unwrap()
            .iter()
            .map(|x| x["score"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![579, 579],
        "{h}"
    );

    // Opting out deletes everything; nothing is recorded or scored afterwards.
    let r = app
        .post_json("/api/v1/credit/opt-out", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.json()["changed"], true);
    let r = app
        .post_json("/api/v1/credit/score", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.status, 409);
    let r = app
        .post_json("/api/v1/credit/history", Some(&clerk), who.clone())
        .await;
    assert_eq!(r.status, 409);
    let r = app
        .post_json("/api/v1/credit/signals", Some(&officer), fare("f9"))
        .await;
    assert_eq!(r.json()["recorded"], false);
    let r = app.get("/api/v1/credit/disputes", Some(&officer)).await;
    assert_eq!(r.json().as_array().unwrap().len(), 0, "{}", r.body);
    // The officer's decision stays on the audit log.
    let entries = p
        .store
        .audit_recent(Some("credit.dispute.resolve"), 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].draft.detail, "upheld");
}

both_backends!(
    points_earn_redeem_donate_expire,
    expiry_run_expires_only_the_old_lots,
    credit_opt_in_score_dispute_opt_out
);
