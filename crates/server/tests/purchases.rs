//! `POST /api/v1/purchases` over HTTP on both backends: records made by the card emulator are
//! posted once and answered per record (posted, duplicate, bad TAC, malformed with the field),
//! roles are enforced, and an oversized upload is refused with problem details.

mod common;

use chip::fleet::Fleet;
use chip::{BcdDate, BcdTime, TerminalId};
use common::start;
use crypto::Algorithm;
use keys::master::FileMasterKeyStore;
use platform::testing::Backend;
use serde_json::json;
use std::sync::Arc;
use store::Role;

fn record(r: &chip::host::UploadRecord) -> serde_json::Value {
    let raw = r.to_raw();
    json!({
        "card_number": raw.card_number,
        "algorithm_id": raw.algorithm_id,
        "key_version": raw.key_version,
        "offline_counter": raw.offline_counter,
        "amount_fen": raw.amount_fen,
        "tx_type": raw.tx_type,
        "terminal_id": raw.terminal_id,
        "terminal_serial": raw.terminal_serial,
        "date": raw.date,
        "time": raw.time,
        "balance_before_fen": raw.balance_before_fen,
        "tac": raw.tac,
    })
}

async fn upload_over_http(backend: Backend) {
    let app = start(backend).await;
    let masters =
        FileMasterKeyStore::create(&app.tp.dir.path().join("master.json"), b"test").unwrap();
    masters
        .load_test_key_set(keys::master::APP_TRANSIT)
        .unwrap();
    app.tp.platform.set_master_keys(Arc::new(masters));

    let (d, t) = (
        BcdDate::new(2026, 11, 26).unwrap(),
        BcdTime::new(10, 0, 0).unwrap(),
    );
    let mut fleet = Fleet::new(700_000, 1, Algorithm::Sm4, TerminalId([0x33; 6]));
    fleet.load(0, 2_000, d, t).unwrap();
    let first = record(&fleet.buy(0, 300, d, t).unwrap());
    let second = record(&fleet.buy(0, 200, d, t).unwrap());
    let mut forged = second.clone();
    forged["amount_fen"] = json!(20);
    let mut missing = first.clone();
    missing.as_object_mut().unwrap().remove("terminal_id");

    let clearing = app.token(Role::ClearingOfficer).await;
    let body = json!({"merchant": "metro", "records": [first, first, forged, missing, second]});
    let r = app
        .post_json("/api/v1/purchases", Some(&clearing), body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (
            &v["posted"],
            &v["duplicate"],
            &v["bad_tac"],
            &v["malformed"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(1))
    );
    let results = v["results"].as_array().unwrap();
    let first_id = results[0]["purchase_id"].as_i64().unwrap();
    assert_eq!(results[0]["result"], "posted");
    assert_eq!(results[0]["window"], "2026-11-26");
    // Loaded on the chip but not on the platform: the shadow is short, suspense pays.
    assert_eq!(results[0]["flags"]["shortfall_fen"], 300);
    assert_eq!(results[1]["result"], "duplicate");
    assert_eq!(results[1]["purchase_id"].as_i64(), Some(first_id));
    assert_eq!(results[2]["result"], "bad_tac");
    assert_eq!(results[3]["result"], "malformed");
    assert_eq!(results[3]["field"], "terminal_id");
    assert_eq!(results[4]["result"], "posted");

    // Uploading it all again posts nothing new.
    let r = app
        .post_json("/api/v1/purchases", Some(&clearing), body)
        .await;
    assert_eq!(r.json()["posted"], 0);
    assert_eq!(r.json()["duplicate"], 3);

    // The TAC does not cover the offline counter: the first record re-sent with another
    // counter still passes the TAC check, and is answered as the purchase it repeats.
    let mut recounted = first.clone();
    recounted["offline_counter"] = json!(first["offline_counter"].as_i64().unwrap() + 7);
    let r = app
        .post_json(
            "/api/v1/purchases",
            Some(&clearing),
            json!({"merchant": "metro", "records": [recounted]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["posted"].as_i64(), r.json()["duplicate"].as_i64()),
        (Some(0), Some(1)),
        "{}",
        r.body
    );
    assert_eq!(
        r.json()["results"][0]["purchase_id"].as_i64(),
        Some(first_id)
    );

    // Only clearing officers and administrators upload; the size is bounded.
    let clerk = app.token(Role::CounterClerk).await;
    let r = app
        .post_json(
            "/api/v1/purchases",
            Some(&clerk),
            json!({"merchant": "metro", "records": []}),
        )
        .await;
    assert_eq!(r.status, 403);
    let many = vec![json!({}); platform::purchases::UPLOAD_RECORDS_MAX + 1];
    let r = app
        .post_json(
            "/api/v1/purchases",
            Some(&clearing),
            json!({"merchant": "metro", "records": many}),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("10000"), "{}", r.body);

    let doc = app.get("/api/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v1/purchases"]["post"].is_object());

    // Clearing: the window of the purchases closes only after its cut-off; its report (the
    // metro's two purchases, 0.30 % transit fee per purchase, half up) is written once; its
    // settlement file is ISO 20022 pain.001 to the metro's account.
    app.tp
        .platform
        .merchant_create(
            &platform::Caller::cli("test"),
            "metro",
            "郑州地铁",
            "transit",
            "41050100000001",
        )
        .await
        .unwrap();
    let close = "/api/v1/clearing/windows/2026-11-26/close";
    let r = app.send("POST", close, Some(&clearing), None).await;
    assert_eq!(r.status, 409, "still open: {}", r.body);
    app.tp.clock.advance_ms(12 * 3_600_000);
    let r = app.send("POST", close, Some(&clearing), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["lines"].as_array().unwrap().len(), 1, "{report}");
    let line = &report["lines"][0];
    assert_eq!(
        (
            line["merchant"].as_str(),
            line["category"].as_str(),
            line["count"].as_i64(),
            line["gross_fen"].as_i64(),
            line["fee_fen"].as_i64(),
            line["net_fen"].as_i64()
        ),
        (
            Some("metro"),
            Some("transit"),
            Some(2),
            Some(500),
            Some(2),
            Some(498)
        )
    );
    let again = app.send("POST", close, Some(&clearing), None).await.json();
    assert_eq!(again["digest"], report["digest"]);
    assert_eq!(again["closed_ms"], report["closed_ms"]);
    let xml = app
        .get(
            "/api/v1/clearing/windows/2026-11-26/settlement?execution_date=2026-11-27",
            Some(&clearing),
        )
        .await;
    assert_eq!(xml.status, 200, "{}", xml.body);
    let doc = clearing::pain001::parse(&xml.body).unwrap();
    assert_eq!(doc.instructions.len(), 1);
    assert_eq!(
        (
            doc.instructions[0].creditor_account.as_str(),
            doc.instructions[0].amount_fen
        ),
        ("41050100000001", 498)
    );

    // Reconciliation: the bank's statement books the transfer at 4.90 instead of 4.98 and a
    // 0.15 debit no instruction asked for (a bank fee); a credit is not settlement.
    use clearing::camt053::{Direction, Entry, Statement};
    let e2e = doc.instructions[0].end_to_end_id.clone();
    let day = time::macros::date!(2026 - 11 - 27);
    let entry = |reference: &str, fen: i64, direction, e2e: Option<String>| Entry {
        reference: reference.into(),
        amount_fen: fen,
        direction,
        booked: day,
        end_to_end_id: e2e,
    };
    let statement = |entries: Vec<Entry>| {
        Statement {
            id: "STMT-20261127".into(),
            account: "1702020109000012345".into(),
            entries,
        }
        .to_xml("2026-11-27T18:00:00+08:00")
        .unwrap()
    };
    let a = statement(vec![
        entry("BK001", 490, Direction::Debit, Some(e2e.clone())),
        entry("BK002", 15, Direction::Debit, None),
        entry("BK003", 100_000, Direction::Credit, None),
    ]);
    let post = |body: String| {
        let clearing = clearing.clone();
        let app = &app;
        async move {
            app.send(
                "POST",
                "/api/v1/clearing/statements",
                Some(&clearing),
                Some(("application/xml", body.into_bytes())),
            )
            .await
        }
    };
    let r = post(a.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["entries"].as_i64(), v["matched"].as_i64()),
        (Some(3), Some(0)),
        "{v}"
    );
    let kinds: Vec<_> = v["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["sent_fen"].as_i64(),
                e["booked_fen"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("amount_mismatch".to_owned(), Some(498), Some(490)),
            ("unexpected".to_owned(), None, Some(15)),
        ]
    );
    // The same file again: nothing recorded twice.
    let v = post(a).await.json();
    assert_eq!(v["already_imported"], true, "{v}");
    let open = app
        .get("/api/v1/clearing/exceptions?state=open", Some(&clearing))
        .await
        .json();
    assert_eq!(open.as_array().unwrap().len(), 2, "{open}");
    // Another file under the same id is refused; garbage is named.
    let r = post(statement(vec![entry(
        "BK009",
        498,
        Direction::Debit,
        Some(e2e),
    )]))
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = post("<Document><nope/>".into()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("camt.053"), "{}", r.body);

    // An operator resolves the fee with a note: once; the note is required.
    let id = open[1]["id"].as_i64().unwrap();
    let path = format!("/api/v1/clearing/exceptions/{id}/resolution");
    let r = app
        .post_json(&path, Some(&clearing), json!({"resolution": "  "}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = app
        .post_json(
            &path,
            Some(&clearing),
            json!({"resolution": "bank fee for the transfer, booked to fee expense"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "resolved");
    let r = app
        .post_json(&path, Some(&clearing), json!({"resolution": "again"}))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/clearing/exceptions/999999/resolution",
            Some(&clearing),
            json!({"resolution": "x"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let open = app
        .get("/api/v1/clearing/exceptions?state=open", Some(&clearing))
        .await
        .json();
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["kind"], "amount_mismatch");
}

both_backends!(upload_over_http);
