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
    send_signed(app, key, id, "GET", path, time_s, nonce, b"", None, tamper).await
}

/// Signs a request as terminal `id` and sends it: `body` as signed, or `send_instead` (a body
/// changed after signing); `tamper` flips the signature's first byte.
#[allow(clippy::too_many_arguments)]
async fn send_signed(
    app: &common::App,
    key: &Sm2SigningKey,
    id: &str,
    method: &str,
    path: &str,
    time_s: i64,
    nonce: &str,
    body: &[u8],
    send_instead: Option<Vec<u8>>,
    tamper: bool,
) -> (u16, serde_json::Value) {
    let parts = terminals::RequestParts {
        terminal_id: id,
        time_s,
        nonce,
        method,
        path_and_query: path,
        body,
    };
    let mut sig = terminals::sign(key, &parts);
    if tamper {
        sig.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("x-terminal-id", id)
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
            json!({"id": "GATE-0104", "merchant": "metro", "kind": "gate", "site": "M1-04",
                   "psam_terminal_id": "444444444444"}),
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

    ecode_payments(&app, &key, now).await;

    let list = app.get("/api/v1/terminals", Some(&admin)).await.json();
    assert_eq!(list[0]["software_version"], "2.1.0");
    let doc = app.get("/api/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v1/terminal/parameters"].is_object());
}

/// Sends `body` signed as it is, or `send_instead` (a body changed after signing), as the
/// gate `GATE-0104`.
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
    send_signed(
        app,
        key,
        "GATE-0104",
        method,
        path,
        time_s,
        nonce,
        body,
        send_instead,
        false,
    )
    .await
}

/// E-code payments (issue 7.5) uploaded by the gate: paid from the holder's online account,
/// once per code; one the account cannot pay becomes a debt that blocks a new certificate
/// until it is settled; the offline limit counts across uploads.
async fn ecode_payments(app: &common::App, key: &Sm2SigningKey, now: i64) {
    let p = &app.tp.platform;
    let sys = platform::Caller::cli("test");
    let clerk = common::clerk();
    let (card, holder, mut phone) =
        common::card_with_phone(p, 2, "pay-phone", 0x43, now as u32).await;
    let number = ecode::CardNumber::parse(&card).unwrap();
    // 5.00 yuan in the holder's online account.
    let resident = p
        .resident_by_id_number(&sys, &holder, false)
        .await
        .unwrap()
        .resident_id;
    let fund = |fen: i64, k: &'static str| {
        common::fund(
            p,
            ledger::AccountKey::citizen_online(resident),
            ledger::TransferKind::TopUp,
            fen,
            k,
        )
    };
    fund(500, "fund-ecode-1").await;
    let online = || async { p.resident_balances(&sys, &holder).await.unwrap().online_fen };

    let upload = |items: Vec<(String, i64)>, nonce: &'static str| {
        let body = serde_json::to_vec(&json!({
            "payments": items.iter().map(|(t, a)| json!({"text": t, "amount_fen": a})).collect::<Vec<_>>()
        }))
        .unwrap();
        async move {
            signed(
                app,
                key,
                "POST",
                "/api/v1/terminal/ecode-payments",
                now,
                nonce,
                &body,
                None,
            )
            .await
        }
    };
    let first = phone.make_code(now as u32).unwrap().to_text();
    let (status, v) = upload(vec![(first.clone(), 300)], "e123456789abcdef").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[0]["result"], "paid", "{v}");
    assert_eq!(online().await, 200);
    // The same code again (a re-sent upload): nothing more is taken.
    let (_, v) = upload(
        vec![(first, 300), ("ZZC1:NOPE".into(), 1)],
        "e223456789abcdef",
    )
    .await;
    assert_eq!(
        (v[0]["result"].as_str(), v[1]["result"].as_str()),
        (Some("duplicate"), Some("malformed"))
    );
    assert_eq!(online().await, 200);
    // 5.00 on 2.00 left: a debt; no new certificate until it is settled.
    let second = phone.make_code(now as u32 + 5).unwrap().to_text();
    let (_, v) = upload(vec![(second, 500)], "e323456789abcdef").await;
    assert_eq!(v[0]["result"], "debt", "{v}");
    assert_eq!(online().await, 200);
    let r = p
        .ecode_certify(&clerk, &phone.certificate_request(number, now as u32 + 6))
        .await;
    assert!(
        matches!(&r, Err(platform::PlatformError::Conflict(m)) if m.contains("unpaid")),
        "{r:?}"
    );
    fund(1_000, "fund-ecode-2").await;
    let open = p.ecode_settle_debts(&clerk, &card).await.unwrap();
    assert!(open.is_empty());
    assert_eq!(online().await, 700);
    p.ecode_certify(&clerk, &phone.certificate_request(number, now as u32 + 7))
        .await
        .unwrap();
    // The offline limit (200.00 yuan) across uploads: the payment that passes it is flagged.
    fund(30_000, "fund-ecode-3").await;
    let big = phone.make_code(now as u32 + 8).unwrap().to_text();
    let (_, v) = upload(vec![(big, 19_500)], "e423456789abcdef").await;
    assert_eq!(
        (v[0]["result"].as_str(), v[0]["over_limit"].as_bool()),
        (Some("paid"), Some(true)),
        "{v}"
    );
    assert_eq!(online().await, 11_200);

    // A connected POS asks online before it accepts, checked at the platform's clock.
    app.tp.clock.advance_ms(10_000);
    let t = now as u32 + 10;
    let ask = |text: String, fen: i64, nonce: &'static str| {
        let body = serde_json::to_vec(&json!({"text": text, "amount_fen": fen})).unwrap();
        async move {
            signed(
                app,
                key,
                "POST",
                "/api/v1/terminal/ecode-payments/online",
                p_now(app),
                nonce,
                &body,
                None,
            )
            .await
        }
    };
    let code = phone.make_code(t).unwrap().to_text();
    let (status, v) = ask(code.clone(), 100, "f123456789abcdef").await;
    assert_eq!(status, 200, "{v}");
    // Paid at once; authorised online, so not counted against the offline limit already passed.
    assert_eq!(
        (v["result"].as_str(), v["over_limit"].as_bool()),
        (Some("paid"), Some(false)),
        "{v}"
    );
    let first_id = v["payment_id"].clone();
    assert_eq!(online().await, 11_100);
    // The POS retries after a timeout: the same payment, nothing more taken.
    let (_, v) = ask(code, 100, "f223456789abcdef").await;
    assert_eq!(
        (v["result"].as_str(), &v["payment_id"]),
        (Some("duplicate"), &first_id)
    );
    assert_eq!(online().await, 11_100);
    // More than the account holds: declined at the till, and no debt is made.
    let code = phone.make_code(t).unwrap().to_text();
    let (_, v) = ask(code, 15_000, "f323456789abcdef").await;
    assert_eq!(v["result"], "declined", "{v}");
    assert_eq!(online().await, 11_100);
    assert!(p.ecode_debts(&clerk, &card).await.unwrap().is_empty());
    // Forged: a code changed after the phone signed it.
    let mut forged = phone.make_code(t).unwrap().to_text().into_bytes();
    let i = forged.len() - 20;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let (_, v) = ask(String::from_utf8(forged).unwrap(), 100, "f523456789abcdef").await;
    assert!(
        matches!(v["result"].as_str(), Some("refused" | "malformed")),
        "{v}"
    );
    assert_eq!(online().await, 11_100);
    // A code shown 15 minutes ago is stale online (an offline upload would still pay it).
    let stale = phone.make_code(t).unwrap().to_text();
    app.tp.clock.advance_ms(900_000);
    let (_, v) = ask(stale, 100, "f423456789abcdef").await;
    assert_eq!(v["result"], "refused", "{v}");
    assert!(v["reason"].as_str().is_some(), "{v}");
    assert_eq!(online().await, 11_100);
}

fn p_now(app: &common::App) -> i64 {
    use platform::clock::Clock;
    app.tp.clock.now_ms().div_euclid(1000)
}

both_backends!(terminals_over_http);
