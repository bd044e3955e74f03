//! Citizen services over HTTP (issue 9): a utility registered as a biller, a bill file with
//! bad lines refused whole, auto-debit agreements, a bill run that debits within the limit,
//! retries when funds are short and notifies every debit and failure, SMS delivered once
//! through the simulated gateway, a bill paid once by the citizen, the biller's payment file,
//! the console page, and role refusals — on SQLite and PostgreSQL.

mod common;

use common::{App, fund, seeded_id};
use ledger::{AccountKey, AccountKind, Owner, TransferKind, Unit};
use platform::Caller;
use platform::testing::Backend;
use serde_json::json;
use sms_link::HttpSmsGateway;
use sms_link::sim::SimSms;
use std::sync::Arc;
use std::time::Duration;
use store::Role;

const FILE_HEADER: &str = "bill_number,customer_no,period,amount_fen,due_date\n";

async fn resident(app: &App, i: u64) -> i64 {
    app.tp.platform.resident_id_of(&seeded_id(i)).await.unwrap()
}

async fn payable(app: &App, merchant: &str) -> i64 {
    let rows = app
        .tp
        .platform
        .ledger_accounts(
            &Caller::cli("test"),
            &[AccountKey::new(
                AccountKind::MerchantPayable,
                Owner::Merchant(merchant.into()),
                Unit::Cny,
            )
            .unwrap()],
        )
        .await
        .unwrap();
    rows[0].balance
}

async fn online(app: &App, i: u64) -> i64 {
    app.tp
        .platform
        .resident_balances(&Caller::cli("test"), &seeded_id(i))
        .await
        .unwrap()
        .online_fen
}

async fn bills_debit_retry_notify(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    let sms = SimSms::new();
    let _sms_server = sms.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    p.set_sms_gateway(Arc::new(HttpSmsGateway::new(
        &_sms_server.url(),
        Duration::from_secs(2),
    )));
    let admin = app.token(Role::Administrator).await;
    let officer = app.token(Role::ClearingOfficer).await;
    let clerk = app.token(Role::CounterClerk).await;

    // Billers: a utility merchant only.
    for (code, cat) in [("water", "utility"), ("shop", "shop")] {
        let r = app
            .post_json(
                "/api/v1/merchants",
                Some(&admin),
                json!({"code": code, "name": if code == "water" {"郑州自来水"} else {"小店"},
                       "category": cat, "settlement_account": "41050100000009"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/billers",
            Some(&admin),
            json!({"code": "shop", "kind": "water"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/billers",
            Some(&admin),
            json!({"code": "water", "kind": "lava"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/billers",
            Some(&officer),
            json!({"code": "water", "kind": "water"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/billers",
            Some(&admin),
            json!({"code": "water", "kind": "water"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // A file with bad lines stores nothing and names each line.
    let bad = format!(
        "{FILE_HEADER}W1,C1,2026-11,4500,2026-11-26\nW2,C2,2026-11,-5,2026-11-26\nW3,C3,2026-13,1,2026-11-26\n"
    );
    let r = app
        .send(
            "POST",
            "/api/v1/billers/water/bills/file",
            Some(&officer),
            Some(("text/csv", bad.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("line 3") && r.body.contains("line 4"),
        "{}",
        r.body
    );
    let r = app
        .get("/api/v1/billers/water/bills/W1", Some(&officer))
        .await;
    assert_eq!(r.status, 404);
    let good = format!(
        "{FILE_HEADER}W1,C1,2026-11,4500,2026-11-26\nW2,C2,2026-11,3000,2026-11-26\nW3,C3,2026-11,20000,2026-11-26\nW4,C1,2026-12,100,2026-12-26\n"
    );
    let r = app
        .send(
            "POST",
            "/api/v1/billers/water/bills/file",
            Some(&officer),
            Some(("text/csv", good.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["inserted"], 4);
    // JSON upload: a changed bill refuses the whole upload.
    let r = app
        .post_json(
            "/api/v1/billers/water/bills",
            Some(&officer),
            json!({"bills": [
                {"bill_number": "W5", "customer_no": "C9", "period": "2026-11", "amount_fen": 1, "due_date": "2026-11-26"},
                {"bill_number": "W1", "customer_no": "C1", "period": "2026-11", "amount_fen": 4501, "due_date": "2026-11-26"}]}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        app.get("/api/v1/billers/water/bills/W5", Some(&officer))
            .await
            .status,
        404
    );

    // Agreements: residents 0, 1, 2 for C1, C2, C3; C3's bill is above its limit.
    for (i, c, limit) in [(0, "C1", 10_000), (1, "C2", 10_000), (2, "C3", 10_000)] {
        let r = app
            .post_json(
                "/api/v1/agreements",
                Some(&clerk),
                json!({"id_number": seeded_id(i), "biller": "water", "customer_no": c, "limit_fen": limit}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/agreements",
            Some(&clerk),
            json!({"id_number": seeded_id(3), "biller": "water", "customer_no": "C1", "limit_fen": 1}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // Resident 1 prefers English notices.
    let r = app
        .post_json(
            "/api/v1/notifications/preferences",
            Some(&clerk),
            json!({"id_number": seeded_id(1), "language": "en", "sms_enabled": true, "phone": "13900001111"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["phone_masked"], "139****1111");

    let r0 = resident(&app, 0).await;
    fund(
        p,
        AccountKey::citizen_online(r0),
        TransferKind::TopUp,
        10_000,
        "fund-0",
    )
    .await;

    // The run: W1 debited, W2 short of funds (retried later), W3 over the limit; W4 not due.
    let r = app
        .post_json(
            "/api/v1/bill-runs",
            Some(&clerk),
            json!({"due_on": "2026-11-26"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post_json(
            "/api/v1/bill-runs",
            Some(&officer),
            json!({"due_on": "2026-11-26"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let run = r.json();
    assert_eq!(
        (
            run["considered"].clone(),
            run["debited"].clone(),
            run["debited_fen"].clone(),
            run["short_of_funds"].clone(),
            run["over_limit"].clone(),
            run["notices"].clone()
        ),
        (
            json!(3),
            json!(1),
            json!(4500),
            json!(1),
            json!(1),
            json!(6)
        )
    );
    assert_eq!(
        (online(&app, 0).await, payable(&app, "water").await),
        (5_500, 4_500)
    );
    let w2 = app
        .get("/api/v1/billers/water/bills/W2", Some(&officer))
        .await
        .json();
    assert_eq!(
        (w2["status"].clone(), w2["debit_attempts"].clone()),
        (json!("open"), json!(1))
    );
    // Again at once: nothing is due, nothing moves.
    let r = app
        .post_json(
            "/api/v1/bill-runs",
            Some(&officer),
            json!({"due_on": "2026-11-26"}),
        )
        .await;
    assert_eq!(r.json()["considered"], 0);
    assert_eq!(payable(&app, "water").await, 4_500);

    // Funds arrive; an hour later the retry debits W2.
    let r1 = resident(&app, 1).await;
    fund(
        p,
        AccountKey::citizen_online(r1),
        TransferKind::TopUp,
        3_000,
        "fund-1",
    )
    .await;
    app.tp.clock.advance_ms(3_600_000);
    let r = app
        .post_json(
            "/api/v1/bill-runs",
            Some(&officer),
            json!({"due_on": "2026-11-26"}),
        )
        .await;
    assert_eq!(
        (r.json()["debited"].clone(), r.json()["considered"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        (online(&app, 1).await, payable(&app, "water").await),
        (0, 7_500)
    );

    // The over-limit bill is paid by the citizen at the counter, once.
    let r2 = resident(&app, 2).await;
    fund(
        p,
        AccountKey::citizen_online(r2),
        TransferKind::TopUp,
        50_000,
        "fund-2",
    )
    .await;
    let pay = json!({"id_number": seeded_id(2)});
    let a = app
        .post_json(
            "/api/v1/billers/water/bills/W3/payment",
            Some(&clerk),
            pay.clone(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let b = app
        .post_json("/api/v1/billers/water/bills/W3/payment", Some(&clerk), pay)
        .await;
    assert_eq!(a.json()["id"], b.json()["id"]);
    assert_eq!(
        (online(&app, 2).await, payable(&app, "water").await),
        (30_000, 27_500)
    );
    let w3 = app
        .get("/api/v1/billers/water/bills/W3", Some(&officer))
        .await
        .json();
    assert_eq!(
        (w3["status"].clone(), w3["paid_by"].clone()),
        (json!("paid"), json!("citizen"))
    );

    // Notices: in-app for every debit and failure, SMS delivered once each.
    let inbox = app
        .post_json(
            "/api/v1/notifications/inbox",
            Some(&clerk),
            json!({"id_number": seeded_id(1), "channel": "inapp"}),
        )
        .await
        .json();
    let bodies: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].contains("paid by auto-debit"), "{bodies:?}");
    assert!(bodies[1].contains("balance is too low"), "{bodies:?}");
    let r = app
        .send("POST", "/api/v1/notifications/delivery", Some(&admin), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sent"], 5);
    let r = app
        .send("POST", "/api/v1/notifications/delivery", Some(&admin), None)
        .await;
    assert_eq!(r.json()["claimed"], 0);
    assert_eq!((sms.delivered(), sms.duplicates()), (5, 0));
    assert!(
        sms.messages()
            .iter()
            .any(|m| m.phone == "139****1111" && m.text.starts_with("[CityCard]"))
    );
    let counts = app
        .get("/api/v1/notifications/counts", Some(&admin))
        .await
        .json();
    assert!(
        counts
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["channel"] == "sms" && c["status"] == "sent" && c["count"] == 5)
    );

    // Agreements and bills of a citizen.
    let mine = app
        .post_json(
            "/api/v1/bills/of-citizen",
            Some(&clerk),
            json!({"id_number": seeded_id(0)}),
        )
        .await
        .json();
    assert_eq!(mine["bills"].as_array().unwrap().len(), 2);
    let aid = mine["agreements"][0]["id"].as_i64().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/agreements/{aid}/cancellation"),
            Some(&clerk),
            json!({"id_number": seeded_id(1)}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post_json(
            &format!("/api/v1/agreements/{aid}/cancellation"),
            Some(&clerk),
            json!({"id_number": seeded_id(0)}),
        )
        .await;
    assert_eq!(r.status, 204);

    // The payment file of the day: the three paid bills, total in the trailer.
    let f = app
        .get(
            "/api/v1/billers/water/payment-file?day=2026-11-26",
            Some(&officer),
        )
        .await;
    assert_eq!(f.status, 200, "{}", f.body);
    let lines: Vec<&str> = f.body.lines().collect();
    assert_eq!(lines.len(), 5, "{}", f.body);
    assert!(
        lines[4].starts_with("#trailer,water,2026-11-26,3,27500,"),
        "{}",
        f.body
    );

    // The console page, in Chinese and English.
    let page = app.get("/console/services?lang=zh", Some(&officer)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("代扣批次") && page.body.contains("run-1"),
        "{}",
        page.body
    );
    let page = app.get("/console/services?lang=en", Some(&admin)).await;
    assert!(page.body.contains("Bill runs") && page.body.contains("count-sms-sent"));
    assert!(!page.body.contains("13900001111"));

    assert!(p.ledger_check().await.unwrap().mismatch.is_none());
}

both_backends!(bills_debit_retry_notify);
