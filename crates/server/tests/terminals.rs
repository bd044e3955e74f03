//! The terminal network over HTTP on both backends: a merchant and its terminal registered,
//! activation with the one-time code (a wrong or spent code refused), and requests signed by
//! the terminal's key accepted, while a replayed nonce, a skewed clock, a changed request and
//! a missing header are refused with the reason.

mod common;

use crypto::{Key32, Sm2SigningKey};
use http_body_util::BodyExt;
use serde_json::json;
use store::Role;

async fn signed_get(
    app: &common::App,
    key: &Sm2SigningKey,
    id: &str,
    path: &str,
    time_s: i64,
    nonce: &str,
    tamper: bool,
) -> (u16, serde_json::Value) {
    let parts = terminals::RequestParts {
        terminal_id: id,
        time_s,
        nonce,
        method: "GET",
        path_and_query: path,
        body: b"",
    };
    let mut sig = terminals::sign(key, &parts);
    if tamper {
        sig.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let req = hyper::Request::builder()
        .method("GET")
        .uri(format!("{}{path}", app.base))
        .header("x-terminal-id", id)
        .header("x-terminal-time", time_s.to_string())
        .header("x-terminal-nonce", nonce)
        .header("x-terminal-signature", sig)
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn terminals_over_http(backend: platform::testing::Backend) {
    let app = common::start(backend).await;
    let admin = app.token(Role::Administrator).await;
    let r = app
        .post_json(
            "/api/v1/merchants",
            Some(&admin),
            json!({"code": "metro", "name": "郑州地铁", "category": "transit",
                   "settlement_account": "41050100000001"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/terminals",
            Some(&admin),
            json!({"id": "GATE-0104", "merchant": "metro", "kind": "gate", "site": "M1-04"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let code = r.json()["activation_code"].as_str().unwrap().to_string();
    let key = Sm2SigningKey::from_secret(&Key32::from_bytes([0x5A; 32])).unwrap();
    let public = hex::encode_upper(key.public_key().to_compressed());
    let activate = |code: String| {
        let app = &app;
        let public = public.clone();
        async move {
            app.post_json(
                "/api/v1/terminal/activation",
                None,
                json!({"id": "GATE-0104", "activation_code": code, "public_key": public,
                       "software_version": "2.1.0"}),
            )
            .await
        }
    };
    assert_eq!(activate("AAAA-BBBB-CCCC-DDDD".into()).await.status, 403);
    let r = activate(code.to_lowercase()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "active");
    assert_eq!(
        activate(code.clone()).await.status,
        403,
        "the code is spent"
    );

    let now = p_now(&app);
    let path = "/api/v1/terminal/parameters";
    let (status, body) = signed_get(
        &app,
        &key,
        "GATE-0104",
        path,
        now,
        "0123456789abcdef",
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["merchant"], "metro");
    assert_eq!(body["fares"]["metro"]["base_fen"], 200);
    assert_eq!(body["server_time_s"], now);
    // The same nonce again: a replay.
    let (status, body) = signed_get(
        &app,
        &key,
        "GATE-0104",
        path,
        now,
        "0123456789abcdef",
        false,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("replay"),
        "{body}"
    );
    // A clock ten minutes off, a signature changed, another terminal's id.
    let (status, body) = signed_get(
        &app,
        &key,
        "GATE-0104",
        path,
        now - 600,
        "1123456789abcdef",
        false,
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("clock"), "{body}");
    let (status, body) =
        signed_get(&app, &key, "GATE-0104", path, now, "2123456789abcdef", true).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    let (status, _) = signed_get(
        &app,
        &key,
        "GATE-9999",
        path,
        now,
        "3123456789abcdef",
        false,
    )
    .await;
    assert_eq!(status, 401);
    // No headers at all.
    let r = app.get(path, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["detail"].as_str().unwrap().contains("header"));

    // The terminal uploads what its validators recorded (real TACs from the card emulator),
    // signed with its key, body included: posted for its merchant; sent again, duplicates; a
    // body changed after signing is refused.
    platform::testing::install_test_master_keys(&app.tp).unwrap();
    let (d, t) = (
        chip::BcdDate::new(2026, 11, 26).unwrap(),
        chip::BcdTime::new(9, 30, 0).unwrap(),
    );
    let mut fleet = chip::fleet::Fleet::new(
        800_000,
        1,
        crypto::Algorithm::Sm4,
        chip::TerminalId([0x44; 6]),
    );
    fleet.load(0, 1_000, d, t).unwrap();
    let records: Vec<serde_json::Value> = (0..2)
        .map(|_| {
            let raw = fleet.buy(0, 200, d, t).unwrap().to_raw();
            json!({
                "card_number": raw.card_number, "algorithm_id": raw.algorithm_id,
                "key_version": raw.key_version, "offline_counter": raw.offline_counter,
                "amount_fen": raw.amount_fen, "tx_type": raw.tx_type,
                "terminal_id": raw.terminal_id, "terminal_serial": raw.terminal_serial,
                "date": raw.date, "time": raw.time,
                "balance_before_fen": raw.balance_before_fen, "tac": raw.tac,
            })
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "records": records })).unwrap();
    let upload = "/api/v1/terminal/uploads";
    let (status, v) = signed(
        &app,
        &key,
        "POST",
        upload,
        now,
        "a123456789abcdef",
        &body,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["posted"].as_i64(), v["duplicate"].as_i64()),
        (Some(2), Some(0)),
        "{v}"
    );
    let (status, v) = signed(
        &app,
        &key,
        "POST",
        upload,
        now,
        "b123456789abcdef",
        &body,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["posted"].as_i64(), v["duplicate"].as_i64()),
        (Some(0), Some(2)),
        "{v}"
    );
    let mut changed = body.clone();
    let at = changed.iter().position(|&c| c == b'2').unwrap();
    changed[at] = b'9';
    let (status, v) = signed(
        &app,
        &key,
        "POST",
        upload,
        now,
        "c123456789abcdef",
        &body,
        Some(changed),
    )
    .await;
    assert_eq!(status, 401, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("signature"), "{v}");
    let shadow = app
        .tp
        .platform
        .store
        .ledger_account(
            &ledger::AccountKey::new(
                ledger::AccountKind::MerchantPayable,
                ledger::Owner::Merchant("metro".into()),
                ledger::Unit::Cny,
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shadow.balance, 400,
        "the terminal's merchant is owed the two purchases"
    );

    let list = app.get("/api/v1/terminals", Some(&admin)).await.json();
    assert_eq!(list[0]["software_version"], "2.1.0");
    let doc = app.get("/api/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v1/terminal/parameters"].is_object());
}

/// Sends `body` signed as it is, or `send_instead` (a body changed after signing).
#[allow(clippy::too_many_arguments)]
async fn signed(
    app: &common::App,
    key: &Sm2SigningKey,
    method: &str,
    path: &str,
    time_s: i64,
    nonce: &str,
    body: &[u8],
    send_instead: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let parts = terminals::RequestParts {
        terminal_id: "GATE-0104",
        time_s,
        nonce,
        method,
        path_and_query: path,
        body,
    };
    let sig = terminals::sign(key, &parts);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("x-terminal-id", "GATE-0104")
        .header("x-terminal-time", time_s.to_string())
        .header("x-terminal-nonce", nonce)
        .header("x-terminal-signature", sig)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            send_instead.unwrap_or_else(|| body.to_vec()),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn p_now(app: &common::App) -> i64 {
    use platform::clock::Clock;
    app.tp.clock.now_ms().div_euclid(1000)
}

both_backends!(terminals_over_http);
