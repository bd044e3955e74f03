//! Citizens over HTTP (issue 9, items 1 and 3) on SQLite and PostgreSQL: a first password set
//! with a code sent to the phone on file (the simulated SMS gateway keeps the messages, so the
//! test reads the code as the citizen would); sign-in with password and SMS code; wrong
//! passwords, lockout, wrong, expired and reused codes, each refused with its own code and a
//! Chinese and English message; citizen sessions apart from operators'; and the app API:
//! cards, balances, transactions, spending, lost and undo, replacement, e-code certificate
//! renewal and an NFC load with the phone relaying between the card and the platform.

mod common;

use chip::host::HostError;
use chip::terminal::{self, LoadRequest};
use chip::{BcdDate, BcdTime, Card, CardNumber, CardType, PersonalizationRecord, TerminalId};
use common::{App, seeded_id};
use crypto::{Algorithm, MasterKeys};
use ledger::{AccountKey, TransferKind};
use platform::Caller;
use platform::testing::Backend;
use serde_json::json;
use sms_link::HttpSmsGateway;
use sms_link::sim::{SimServer, SimSms};
use std::sync::Arc;
use std::time::Duration;
use store::Role;

both_backends!(sign_in_and_its_refusals, the_app_api);

const PASSWORD: &str = "citizen-pass-1";

struct Sms {
    sim: SimSms,
    _server: SimServer,
}

async fn with_sms(app: &App) -> Sms {
    let sim = SimSms::new();
    let server = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    app.tp
        .platform
        .set_sms_gateway(Arc::new(HttpSmsGateway::new(
            &server.url(),
            Duration::from_secs(2),
        )));
    Sms {
        sim,
        _server: server,
    }
}

/// Gives seeded resident `i` a mobile number for notices.
async fn phone_on_file(app: &App, i: u64, phone: &str) {
    app.tp
        .platform
        .notify_prefs_set(
            &Caller::cli("test"),
            &seeded_id(i),
            "zh-CN",
            true,
            Some(phone),
        )
        .await
        .unwrap();
}

/// The six digits of the last SMS the gateway received.
fn last_code(sms: &Sms) -> String {
    let m = sms.sim.messages();
    let text = &m.last().expect("an SMS was sent").text;
    let digits: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .into();
    digits
}

async fn start_sign_in(app: &App, i: u64, password: &str) -> common::Resp {
    app.post_json(
        "/api/v1/citizen/sessions",
        None,
        json!({"id_number": seeded_id(i), "password": password}),
    )
    .await
}

async fn finish_sign_in(app: &App, challenge: &str, code: &str) -> common::Resp {
    app.post_json(
        "/api/v1/citizen/sessions/code",
        None,
        json!({"challenge": challenge, "code": code}),
    )
    .await
}

fn refusal(r: &common::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let j = r.json();
    assert_eq!(j["code"], code, "{}", r.body);
    assert!(
        j["detail_zh"].as_str().is_some_and(|z| !z.is_empty()),
        "{}",
        r.body
    );
    assert!(!j["detail"].as_str().unwrap().is_empty());
}

/// A full sign-in of seeded resident `i` (password already set): the app's bearer token.
async fn signed_in(app: &App, sms: &Sms, i: u64) -> String {
    let r = start_sign_in(app, i, PASSWORD).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let challenge = r.json()["challenge"].as_str().unwrap().to_string();
    let r = finish_sign_in(app, &challenge, &last_code(sms)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["token"].as_str().unwrap().to_string()
}

async fn sign_in_and_its_refusals(backend: Backend) {
    let app = common::start(backend).await;
    let sms = with_sms(&app).await;
    phone_on_file(&app, 1, "13800000001").await;
    phone_on_file(&app, 2, "13800000002").await;
    // Resident 2's password was set at a counter.
    app.tp
        .platform
        .citizen_password_set_by(&common::clerk(), &seeded_id(2), PASSWORD)
        .await
        .unwrap();

    // No password yet: refused like a wrong one.
    refusal(
        &start_sign_in(&app, 1, PASSWORD).await,
        401,
        "bad_credentials",
    );

    // A first password, with a code sent to the phone on file.
    let r = app
        .post_json(
            "/api/v1/citizen/password-codes",
            None,
            json!({"id_number": seeded_id(1)}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["phone_masked"], "138****0001");
    let challenge = r.json()["challenge"].as_str().unwrap().to_string();
    let code = last_code(&sms);
    assert!(sms.sim.messages().last().unwrap().phone.contains("****"));
    let set = |challenge: String, code: String, password: &'static str| {
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/citizen/password",
                None,
                json!({"challenge": challenge, "code": code, "password": password}),
            )
            .await
        }
    };
    // Too short a password is refused and does not use the code up.
    let r = set(challenge.clone(), code.clone(), "short").await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = set(challenge.clone(), code.clone(), PASSWORD).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // The code works once.
    refusal(
        &set(challenge.clone(), code.clone(), "another-pass-1").await,
        401,
        "code_used",
    );
    // An unknown ID number gets an answer like any other (no SMS is sent).
    let before = sms.sim.messages().len();
    let r = app
        .post_json(
            "/api/v1/citizen/password-codes",
            None,
            json!({"id_number": seeded_id(7)}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // Seeded 7 exists but may have no mobile of its own; an invented number never gets one.
    let r = app
        .post_json(
            "/api/v1/citizen/password-codes",
            None,
            json!({"id_number": "110105194912310029"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(sms.sim.messages().len() <= before + 1);

    // Sign-in: the right password sends a code; a wrong code is refused with the tries left.
    let r = start_sign_in(&app, 1, PASSWORD).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let challenge = r.json()["challenge"].as_str().unwrap().to_string();
    let code = last_code(&sms);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = finish_sign_in(&app, &challenge, wrong).await;
    refusal(&r, 401, "code_wrong");
    assert!(r.json()["detail"].as_str().unwrap().contains("4 attempt"));
    // The right code then signs in, once.
    let r = finish_sign_in(&app, &challenge, &code).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_string();
    refusal(
        &finish_sign_in(&app, &challenge, &code).await,
        401,
        "code_used",
    );

    // The session opens the citizen's API, and only that.
    let me = app.get("/api/v1/me/profile", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(
        me.json()["id_number_masked"]
            .as_str()
            .unwrap()
            .contains('*')
    );
    assert_eq!(app.get("/api/v1/residents", Some(&token)).await.status, 401);
    let clerk = app.token(Role::CounterClerk).await;
    assert_eq!(
        app.get("/api/v1/me/profile", Some(&clerk)).await.status,
        401
    );
    assert_eq!(app.get("/api/v1/me/profile", None).await.status, 401);

    // An expired code.
    let r = start_sign_in(&app, 1, PASSWORD).await;
    let challenge = r.json()["challenge"].as_str().unwrap().to_string();
    let code = last_code(&sms);
    app.tp
        .clock
        .advance_ms(platform::citizens::CODE_TTL_MS + 1_000);
    refusal(
        &finish_sign_in(&app, &challenge, &code).await,
        401,
        "code_expired",
    );

    // Wrong passwords: counted down, then the ID number is locked, even for the right one.
    for left in (0..platform::citizens::PASSWORD_FAILURES_MAX).rev() {
        let r = start_sign_in(&app, 2, "wrong-password-9").await;
        refusal(&r, 401, "bad_credentials");
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("{left} attempt")),
            "{}",
            r.body
        );
    }
    let r = start_sign_in(&app, 2, PASSWORD).await;
    refusal(&r, 429, "locked");
    assert!(r.json()["detail"].as_str().unwrap().contains("minute"));
    assert!(r.json()["detail_zh"].as_str().unwrap().contains("分钟"));
    // Another citizen is not locked by it.
    assert_eq!(start_sign_in(&app, 1, PASSWORD).await.status, 202);
    // The lock ends with its window.
    app.tp
        .clock
        .advance_ms(platform::citizens::LOCK_WINDOW_MS + 1_000);
    assert_eq!(start_sign_in(&app, 2, PASSWORD).await.status, 202);

    // Signing out ends the session.
    let r = app
        .send("DELETE", "/api/v1/me/session", Some(&token), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        app.get("/api/v1/me/profile", Some(&token)).await.status,
        401
    );

    // Every step is on the audit log, under the citizen or as an anonymous failure.
    let admin = app.token(Role::Administrator).await;
    let audit = app.get("/api/v1/audit?limit=500", Some(&admin)).await.body;
    for action in [
        "citizen.password.set",
        "citizen.sign_in",
        "citizen.sign_in.fail",
        "citizen.sign_in.locked",
        "citizen.sign_out",
    ] {
        assert!(audit.contains(action), "{action} not audited");
    }
}

fn load_request(amount_fen: u32) -> LoadRequest {
    LoadRequest {
        amount_fen,
        terminal_id: TerminalId::parse("112233445566").unwrap(),
        date: BcdDate::parse("20261126").unwrap(),
        time: BcdTime::new(12, 0, 0).unwrap(),
    }
}

fn chip_for(app: &App, number: &str) -> Card {
    let start = BcdDate::parse("20250101").unwrap();
    let record = PersonalizationRecord {
        card_number: CardNumber::parse(number).unwrap(),
        holder_name: "测试".into(),
        id_number: "410102199001011237".into(),
        card_type: CardType::Ordinary,
        start_date: start,
        expiry_date: start.plus_years(10).unwrap(),
        algorithm: Algorithm::Sm4,
        employee: false,
        pin: "123456".into(),
        rng_seed: 7,
    };
    let path = app.tp.dir.path().join("master-keys.json");
    if !path.exists() {
        let store = keys::master::FileMasterKeyStore::create(&path, b"test master keys").unwrap();
        store.load_test_key_set(keys::master::APP_TRANSIT).unwrap();
        app.tp.platform.set_master_keys(Arc::new(store));
    }
    chip::personalize(&record, &MasterKeys::test_set()).unwrap()
}

async fn the_app_api(backend: Backend) {
    let app = common::start(backend).await;
    let sms = with_sms(&app).await;
    let p = &app.tp.platform;
    // Resident 4 holds an active card with a phone enrolled and certified; 5 has a card too.
    let now_s = (platform::testing::T0_MS / 1000) as u32;
    let (card, holder, phone) = common::card_with_phone(p, 4, "phone-4", 4, now_s).await;
    let (other_card, _, _) = common::card_with_phone(p, 5, "phone-5", 5, now_s).await;
    phone_on_file(&app, 4, "13800000004").await;
    p.citizen_password_set_by(&common::clerk(), &holder, PASSWORD)
        .await
        .unwrap();
    let token = signed_in(&app, &sms, 4).await;
    let resident = p.resident_id_of(&holder).await.unwrap();
    common::fund(
        p,
        AccountKey::citizen_online(resident),
        TransferKind::TopUp,
        10_000,
        "fund-4",
    )
    .await;

    // My cards and balances; another's card is not mine.
    let r = app.get("/api/v1/me/cards", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["number"], card.as_str());
    assert_eq!(r.json()[0]["state"], "active");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let b = app.get("/api/v1/me/balances", Some(&token)).await.json();
    assert_eq!(b["online_fen"], 10_000);
    let act = |number: String, action: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_json(
                &format!("/api/v1/me/cards/{number}/actions"),
                Some(&token),
                json!({"action": action}),
            )
            .await
        }
    };
    assert_eq!(act(other_card.clone(), "report_lost").await.status, 404);
    let r = act(card.clone(), "report_lost").await;
    assert_eq!(r.json()["state"], "reported_lost", "{}", r.body);
    let r = act(card.clone(), "undo_lost").await;
    assert_eq!(r.json()["state"], "active", "{}", r.body);
    assert_eq!(act(card.clone(), "undo_lost").await.status, 409);
    assert_eq!(act(card.clone(), "fly").await.status, 422);

    // The lost report revoked the phone's enrolment: the citizen enrols it again, then renews
    // its e-code certificate; a request for another's card is refused.
    let key = hex::encode(phone.public_key().to_compressed());
    let r = app
        .post_json(
            &format!("/api/v1/me/cards/{card}/devices"),
            Some(&token),
            json!({"device_id": "phone-4", "public_key": key}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            &format!("/api/v1/me/cards/{card}/devices"),
            Some(&token),
            json!({"device_id": "portal-x", "public_key": key}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let number = ecode::CardNumber::parse(&card).unwrap();
    let req = phone.certificate_request(number, now_s + 10);
    let body = json!({
        "card_number": card,
        "device_id": req.device_id.as_str(),
        "public_key": hex::encode(req.device_public_key.to_compressed()),
        "time": req.time,
        "signature": hex::encode(req.signature),
    });
    let r = app
        .post_json("/api/v1/me/ecode/certificates", Some(&token), body.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json()["not_after"].as_u64().unwrap() > u64::from(now_s));
    let mut forged = body.clone();
    forged["card_number"] = json!(other_card);
    assert_eq!(
        app.post_json("/api/v1/me/ecode/certificates", Some(&token), forged)
            .await
            .status,
        404
    );

    // An NFC load: the phone relays the card's INITIALIZE FOR LOAD answer and gets MAC2.
    let mut chip = chip_for(&app, &card);
    let mut load_id = 0;
    let rt = tokio::runtime::Handle::current();
    let outcome = terminal::load(&mut chip, &load_request(3_000), &mut |init| {
        let mut body = init.balance_before_fen.to_be_bytes().to_vec();
        body.extend_from_slice(&init.online_counter.to_be_bytes());
        body.extend_from_slice(&[init.key_version, init.algorithm.id()]);
        body.extend_from_slice(&init.random);
        body.extend_from_slice(&init.mac1);
        let r = tokio::task::block_in_place(|| {
            rt.block_on(app.post_json(
                &format!("/api/v1/me/cards/{card}/loads"),
                Some(&token),
                json!({"idempotency_key": "nfc-1", "amount_fen": 3_000,
                       "initialize_response": hex::encode(&body),
                       "terminal_id": "112233445566", "date": "20261126", "time": "120000"}),
            ))
        });
        assert_eq!(r.status, 201, "{}", r.body);
        load_id = r.json()["id"].as_i64().unwrap();
        let mac2 = hex::decode(r.json()["mac2"].as_str().unwrap()).unwrap();
        mac2.try_into().map_err(|_| HostError::Mac1Invalid)
    })
    .expect("load flow");
    let r = app
        .post_json(
            &format!("/api/v1/me/loads/{load_id}/confirm"),
            Some(&token),
            json!({"tac": hex::encode(outcome.tac)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "completed");
    let b = app.get("/api/v1/me/balances", Some(&token)).await.json();
    assert_eq!(b["online_fen"], 7_000);
    assert_eq!(b["cards"][0]["epurse_fen"], 3_000);

    // Transactions with filters, and the spending chart's data.
    let r = app
        .get("/api/v1/me/transactions?kind=load", Some(&token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines = r.json();
    let lines = lines.as_array().unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}"); // out of the account, into the e-purse
    assert!(
        lines
            .iter()
            .any(|l| l["account"] == "online" && l["amount_fen"] == -3_000)
    );
    assert!(
        lines
            .iter()
            .any(|l| l["account"] == card.as_str() && l["amount_fen"] == 3_000)
    );
    let r = app
        .get(
            "/api/v1/me/transactions?account=online&kind=top_up",
            Some(&token),
        )
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(
        app.get(
            "/api/v1/me/transactions?account=4101000000000999",
            Some(&token)
        )
        .await
        .status,
        404
    );
    let r = app.get("/api/v1/me/spending", Some(&token)).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6, "{}", r.body);

    // A consent given at a counter: listed, then revoked by the citizen, once.
    let admin = app.token(Role::Administrator).await;
    let kind = exchange_link::sim::Kind::Fund;
    for body in [
        json!({"code": kind.member(), "name": kind.member_name(),
               "public_key": hex::encode(exchange_link::sim::dev_key(kind).public_key().to_compressed())}),
        json!({"code": "card-company", "name": "card-company",
               "public_key": hex::encode(crypto::Sm2SigningKey::from_secret(&crypto::Key32::from_bytes([0x41; 32])).unwrap().public_key().to_compressed())}),
    ] {
        let r = app
            .post_json("/api/v1/exchange/members", Some(&admin), body)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/exchange/services",
            Some(&admin),
            serde_json::to_value(kind.service("http://127.0.0.1:9")).unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let clerk = app.token(Role::CounterClerk).await;
    let r = app
        .post_json(
            "/api/v1/exchange/consents",
            Some(&clerk),
            json!({"id_number": holder, "consumer": "card-company", "service": "fund.balance",
                   "purpose": "loan-check", "expires_ms": platform::testing::T0_MS + 30 * 86_400_000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let consent = r.json()["id"].as_i64().unwrap();
    let r = app.get("/api/v1/me/consents", Some(&token)).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.body);
    let revoke = format!("/api/v1/me/consents/{consent}/revocation");
    let r = app.post_json(&revoke, Some(&token), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["revoked_ms"].is_i64(), "{}", r.body);
    assert_eq!(
        app.post_json(&revoke, Some(&token), json!({})).await.status,
        409
    );

    // The rest answers for this citizen.
    for path in [
        "/api/v1/me/benefits",
        "/api/v1/me/bills",
        "/api/v1/me/data-access",
    ] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = app.get("/api/v1/me/messages", Some(&token)).await;
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["template"] == "one_time_code")
    );

    // A replacement for a damaged card: the old one is replaced, a successor is on its way.
    let r = act(card.clone(), "replace_damaged").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cards = app.get("/api/v1/me/cards", Some(&token)).await.json();
    assert_eq!(cards.as_array().unwrap().len(), 2, "{cards}");
    assert!(
        cards
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["state"] == "approved")
    );

    // Reads of personal data are audited under the citizen.
    let admin = app.token(Role::Administrator).await;
    let audit = app.get("/api/v1/audit?limit=500", Some(&admin)).await.body;
    assert!(audit.contains(&format!("citizen:{resident}")), "{audit}");
    assert!(audit.contains("ledger.statement.read"));
}
