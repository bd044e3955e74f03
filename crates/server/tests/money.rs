//! Money movements over HTTP on SQLite and PostgreSQL (issue 5): top-ups through the simulated
//! bank (a real HTTP service on a free port) including refusal, a late answer and a bank that
//! never answers, resolved by the sweep; e-purse loads driven end to end on an emulated chip
//! (MAC1 → MAC2 → CREDIT → TAC), with lost confirmations and lost CREDITs resolved by the
//! card's next contact; payments, refunds, a reversal and fees. After each, the books check.

mod common;

use bank_link::HttpBankChannel;
use bank_link::sim::{Mode, SimBank, SimServer};
use chip::host::HostError;
use chip::terminal::{self, LoadRequest};
use chip::{BcdDate, BcdTime, Card, CardNumber, CardType, PersonalizationRecord, TerminalId};
use common::{App, seeded_id, start};
use crypto::{Algorithm, MasterKeys};
use platform::Caller;
use platform::cards::{CardRequest, parse_reason};
use platform::testing::Backend;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use store::Role;

both_backends!(
    topups_succeed_once_and_refusals_create_no_money,
    topups_without_an_answer_stay_pending_until_the_sweep,
    loads_run_end_to_end_on_a_chip,
    loads_without_confirmation_are_resolved_by_the_next_contact,
    payments_refunds_reversals_and_fees,
    concurrent_payments_never_overdraw_and_a_repeated_key_posts_once
);

const ACCOUNT: &str = "6222000000000001";
const POOR: &str = "6222000000000002";
/// The client's time limit in these tests; the late bank answers well after it.
const CLIENT_TIMEOUT_MS: u64 = 300;

struct Money {
    app: App,
    bank: SimBank,
    _sim: SimServer,
}

fn clerk() -> Caller {
    Caller {
        operator_id: Some(1),
        username: "clerk".into(),
        role: Role::CounterClerk,
        department: None,
        origin: "test".into(),
    }
}

async fn setup(backend: Backend) -> Money {
    let app = start(backend).await;
    let bank = SimBank::new();
    bank.open_account(ACCOUNT, 1_000_000);
    bank.open_account(POOR, 500);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = bank.spawn(listener);
    app.tp
        .platform
        .add_payment_channel(Arc::new(HttpBankChannel::new(
            "SIM",
            &sim.url(),
            Duration::from_millis(CLIENT_TIMEOUT_MS),
        )));
    Money {
        app,
        bank,
        _sim: sim,
    }
}

/// An active card for seeded resident `i`.
async fn active_card(app: &App, i: u64) -> String {
    let p = &app.tp.platform;
    let n = p
        .apply_for_card(&clerk(), &seeded_id(i), "ordinary", None)
        .await
        .unwrap()
        .number;
    let routine = parse_reason("routine").unwrap();
    for (c, r) in [
        (clerk(), CardRequest::Approve),
        (Caller::cli("test"), CardRequest::SendToProduction),
        (Caller::cli("test"), CardRequest::ProductionDone),
        (clerk(), CardRequest::Post),
    ] {
        p.card_action(&c, &n, r, routine).await.unwrap();
    }
    p.card_action(
        &clerk(),
        &n,
        CardRequest::Activate,
        parse_reason("holder_request").unwrap(),
    )
    .await
    .unwrap();
    n
}

/// The chip of card `number`, personalized with the development key set, and the platform
/// given a master-key store holding the same set.
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

async fn online_fen(app: &App, i: u64) -> (i64, i64) {
    let b = app
        .tp
        .platform
        .resident_balances(&Caller::cli("test"), &seeded_id(i))
        .await
        .unwrap();
    (b.online_fen, b.online_reserved_fen)
}

async fn card_fen(app: &App, number: &str) -> (i64, i64) {
    let b = app
        .tp
        .platform
        .card_balances(&Caller::cli("test"), number)
        .await
        .unwrap();
    (b.epurse_fen, b.pending_load_fen)
}

async fn books_hold(app: &App) {
    let c = app.tp.platform.ledger_check().await.unwrap();
    assert_eq!(c.mismatch, None);
}

async fn topup(m: &Money, token: &str, i: u64, key: &str, fen: i64, account: &str) -> common::Resp {
    m.app
        .post_json(
            &format!("/api/v1/residents/{}/topups", seeded_id(i)),
            Some(token),
            json!({"idempotency_key": key, "amount_fen": fen, "bank_account": account}),
        )
        .await
}

async fn topups_succeed_once_and_refusals_create_no_money(backend: Backend) {
    let m = setup(backend).await;
    let clerk = m.app.token(Role::CounterClerk).await;
    let r = topup(&m, &clerk, 1, "t-1", 20_000, ACCOUNT).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let j = r.json();
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["account"], "****0001");
    assert!(j["bank_ref"].as_str().unwrap().starts_with("SIM"));
    let order = j["order_id"].as_str().unwrap().to_string();
    assert_eq!(online_fen(&m.app, 1).await, (20_000, 0));
    assert_eq!(m.bank.balance(ACCOUNT), Some(1_000_000 - 20_000));
    // The same request again: the same top-up, one debit.
    let again = topup(&m, &clerk, 1, "t-1", 20_000, ACCOUNT).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json()["order_id"], order.as_str());
    assert_eq!(m.bank.debits(), 1);
    assert_eq!(online_fen(&m.app, 1).await, (20_000, 0));
    // Five clerks sending the same new request at once: one top-up, one debit.
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (base, token) = (m.app.base.clone(), clerk.clone());
        let id = seeded_id(7);
        tasks.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<hyper::body::Bytes>>();
            let body =
                json!({"idempotency_key": "same", "amount_fen": 1_500, "bank_account": ACCOUNT});
            let req = hyper::Request::post(format!("{base}/api/v1/residents/{id}/topups"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    body.to_string(),
                )))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            (
                status,
                j["order_id"].as_str().unwrap().to_string(),
                j["state"].clone(),
            )
        }));
    }
    let mut orders = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, order, state) = t.await.unwrap();
        assert_eq!((status, state), (201, json!("succeeded")));
        orders.insert(order);
    }
    assert_eq!(orders.len(), 1);
    assert_eq!(m.bank.debits(), 2);
    assert_eq!(online_fen(&m.app, 7).await, (1_500, 0));
    // The same key for another amount is refused.
    let other = topup(&m, &clerk, 1, "t-1", 30_000, ACCOUNT).await;
    assert_eq!(other.status, 409, "{}", other.body);
    // Insufficient funds and a declining bank: failed, no money.
    let poor = topup(&m, &clerk, 1, "t-2", 20_000, POOR).await;
    assert_eq!(poor.status, 201);
    assert_eq!(
        (poor.json()["state"].clone(), poor.json()["reason"].clone()),
        (json!("failed"), json!("insufficient_funds"))
    );
    m.bank.set_mode(Mode::Decline);
    let declined = topup(&m, &clerk, 1, "t-3", 100, ACCOUNT).await;
    assert_eq!(declined.json()["reason"], "declined");
    assert_eq!(online_fen(&m.app, 1).await, (20_000, 0));
    // Status by order id; an auditor reads, a department officer may not top up.
    let auditor = m.app.token(Role::Auditor).await;
    let s = m
        .app
        .get(&format!("/api/v1/topups/{order}"), Some(&auditor))
        .await;
    assert_eq!(
        (s.status, s.json()["state"].clone()),
        (200, json!("succeeded"))
    );
    let dept = m.app.token(Role::DepartmentOfficer).await;
    assert_eq!(topup(&m, &dept, 1, "t-4", 100, ACCOUNT).await.status, 403);
    assert_eq!(topup(&m, &clerk, 1, "t-5", 0, ACCOUNT).await.status, 422);
    assert_eq!(topup(&m, &clerk, 1, "t-6", 100, "12345").await.status, 422);
    books_hold(&m.app).await;
}

async fn topups_without_an_answer_stay_pending_until_the_sweep(backend: Backend) {
    let m = setup(backend).await;
    let clerk = m.app.token(Role::CounterClerk).await;
    let officer = m.app.token(Role::ClearingOfficer).await;
    // The bank debits but answers long after the client gave up.
    m.bank.set_mode(Mode::Late { delay_ms: 30_000 });
    let r = topup(&m, &clerk, 2, "late", 5_000, ACCOUNT).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["state"], "pending");
    assert_eq!(
        online_fen(&m.app, 2).await,
        (0, 0),
        "no money before the bank's success"
    );
    // The bank never answers and never debits.
    m.bank.set_mode(Mode::Hang);
    let h = topup(&m, &clerk, 3, "hang", 7_000, ACCOUNT).await;
    assert_eq!(
        (h.status, h.json()["state"].clone()),
        (202, json!("pending"))
    );
    let hang_order = h.json()["order_id"].as_str().unwrap().to_string();
    assert_eq!(m.bank.debits(), 1);
    // The sweep asks by order id: the late one succeeded, the lost one is closed as failed.
    m.bank.set_mode(Mode::Normal);
    let s = m
        .app
        .post_json("/api/v1/topups/resolve", Some(&officer), json!({}))
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(
        s.json(),
        json!({"asked": 2, "succeeded": 1, "failed": 1, "still_pending": 0})
    );
    assert_eq!(online_fen(&m.app, 2).await, (5_000, 0));
    assert_eq!(online_fen(&m.app, 3).await, (0, 0));
    // Asking again later changes nothing, and the closed order is never debited.
    let again = topup(&m, &clerk, 3, "hang", 7_000, ACCOUNT).await;
    assert_eq!(
        (
            again.json()["state"].clone(),
            again.json()["reason"].clone()
        ),
        (json!("failed"), json!("not_received"))
    );
    assert_eq!(again.json()["order_id"], hang_order.as_str());
    let s = m
        .app
        .post_json("/api/v1/topups/resolve", Some(&officer), json!({}))
        .await;
    assert_eq!(s.json()["asked"], 0);
    assert_eq!(m.bank.debits(), 1);
    assert_eq!(m.bank.balance(ACCOUNT), Some(1_000_000 - 5_000));
    // A clerk may not sweep.
    let r = m
        .app
        .post_json("/api/v1/topups/resolve", Some(&clerk), json!({}))
        .await;
    assert_eq!(r.status, 403);
    books_hold(&m.app).await;
}

fn load_request(amount_fen: u32) -> LoadRequest {
    LoadRequest {
        amount_fen,
        terminal_id: TerminalId::parse("112233445566").unwrap(),
        date: BcdDate::parse("20261126").unwrap(),
        time: BcdTime::new(12, 0, 0).unwrap(),
    }
}

/// Runs the terminal's load flow on `card`, the host being the platform over HTTP; returns
/// the load's id and the TAC (None when `drop_credit` stops the flow before CREDIT).
fn run_load(
    m: &Money,
    token: &str,
    card: &mut Card,
    number: &str,
    key: &str,
    amount_fen: u32,
    drop_credit: bool,
) -> (i64, Option<[u8; 4]>, u16) {
    let mut load_id = 0;
    let mut counter = 0;
    let rt = tokio::runtime::Handle::current();
    let outcome = terminal::load(card, &load_request(amount_fen), &mut |init| {
        let mut body = init.balance_before_fen.to_be_bytes().to_vec();
        body.extend_from_slice(&init.online_counter.to_be_bytes());
        body.extend_from_slice(&[init.key_version, init.algorithm.id()]);
        body.extend_from_slice(&init.random);
        body.extend_from_slice(&init.mac1);
        counter = init.online_counter;
        let r = tokio::task::block_in_place(|| {
            rt.block_on(m.app.post_json(
                &format!("/api/v1/cards/{number}/loads"),
                Some(token),
                json!({
                    "idempotency_key": key,
                    "amount_fen": amount_fen,
                    "initialize_response": hex::encode(&body),
                    "terminal_id": "112233445566",
                    "date": "20261126",
                    "time": "120000",
                }),
            ))
        });
        assert_eq!(r.status, 201, "{}", r.body);
        let j = r.json();
        assert_eq!(j["state"], "authorized");
        load_id = j["id"].as_i64().unwrap();
        if drop_credit {
            return Err(HostError::Mac1Invalid);
        }
        let mac2 = hex::decode(j["mac2"].as_str().unwrap()).unwrap();
        Ok(mac2.try_into().unwrap())
    });
    match outcome {
        Ok(o) => (load_id, Some(o.tac), counter),
        Err(_) if drop_credit => (load_id, None, counter),
        Err(e) => panic!("load flow: {e}"),
    }
}

async fn funded(m: &Money, i: u64, fen: i64) {
    let clerk = m.app.token(Role::CounterClerk).await;
    let r = topup(m, &clerk, i, &format!("fund-{i}"), fen, ACCOUNT).await;
    assert_eq!(r.json()["state"], "succeeded", "{}", r.body);
}

fn chip_balance(card: &mut Card) -> u32 {
    terminal::read_card(card).unwrap();
    let r = card.process(&[0x80, 0x5C, 0x00, 0x02, 0x04]);
    u32::from_be_bytes(r[..4].try_into().unwrap())
}

async fn loads_run_end_to_end_on_a_chip(backend: Backend) {
    let m = setup(backend).await;
    funded(&m, 4, 10_000).await;
    let number = active_card(&m.app, 4).await;
    let mut card = chip_for(&m.app, &number);
    let clerk = m.app.token(Role::CounterClerk).await;
    let (id, tac, _) = run_load(&m, &clerk, &mut card, &number, "load-1", 3_000, false);
    assert_eq!(chip_balance(&mut card), 3_000);
    // Held until the card confirms: reserved on the online account, nothing on the shadow.
    assert_eq!(online_fen(&m.app, 4).await, (10_000, 3_000));
    assert_eq!(card_fen(&m.app, &number).await, (0, 0));
    let tac = hex::encode(tac.unwrap());
    // A wrong TAC is refused and changes nothing.
    let bad = m
        .app
        .post_json(
            &format!("/api/v1/loads/{id}/confirm"),
            Some(&clerk),
            json!({"tac": "00000000"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let ok = m
        .app
        .post_json(
            &format!("/api/v1/loads/{id}/confirm"),
            Some(&clerk),
            json!({"tac": tac}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        (ok.json()["state"].clone(), ok.json()["resolution"].clone()),
        (json!("completed"), json!("confirmed"))
    );
    assert_eq!(ok.json()["mac2"], json!(null));
    // Confirming again answers the same; the money moved once.
    let again = m
        .app
        .post_json(
            &format!("/api/v1/loads/{id}/confirm"),
            Some(&clerk),
            json!({"tac": tac}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(online_fen(&m.app, 4).await, (7_000, 0));
    assert_eq!(card_fen(&m.app, &number).await, (3_000, 0));
    // More than the online account holds: refused, no MAC2, the chip keeps its balance.
    let mut refused = None;
    let r = terminal::load(&mut card, &load_request(8_000), &mut |init| {
        let mut body = init.balance_before_fen.to_be_bytes().to_vec();
        body.extend_from_slice(&init.online_counter.to_be_bytes());
        body.extend_from_slice(&[init.key_version, init.algorithm.id()]);
        body.extend_from_slice(&init.random);
        body.extend_from_slice(&init.mac1);
        let rt = tokio::runtime::Handle::current();
        let r = tokio::task::block_in_place(|| {
            rt.block_on(m.app.post_json(
                &format!("/api/v1/cards/{number}/loads"),
                Some(&clerk),
                json!({"idempotency_key": "load-2", "amount_fen": 8_000,
                       "initialize_response": hex::encode(&body),
                       "terminal_id": "112233445566", "date": "20261126", "time": "120000"}),
            ))
        });
        refused = Some(r.status);
        Err(HostError::Mac1Invalid)
    });
    assert!(r.is_err());
    assert_eq!(refused, Some(409));
    assert_eq!(chip_balance(&mut card), 3_000);
    // An altered INITIALIZE FOR LOAD answer (balance raised) fails MAC1.
    let mut forged = 0u32.to_be_bytes().to_vec();
    forged[3] = 1;
    forged.extend_from_slice(&[0, 1, 1, Algorithm::Sm4.id(), 1, 2, 3, 4, 5, 6, 7, 8]);
    let r = m
        .app
        .post_json(
            &format!("/api/v1/cards/{number}/loads"),
            Some(&clerk),
            json!({"idempotency_key": "forged", "amount_fen": 100,
                   "initialize_response": hex::encode(&forged),
                   "terminal_id": "112233445566", "date": "20261126", "time": "120000"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["errors"][0]["field"], "initialize_response");
    assert_eq!(online_fen(&m.app, 4).await, (7_000, 0));
    books_hold(&m.app).await;
}

async fn loads_without_confirmation_are_resolved_by_the_next_contact(backend: Backend) {
    let m = setup(backend).await;
    funded(&m, 5, 10_000).await;
    let number = active_card(&m.app, 5).await;
    let mut card = chip_for(&m.app, &number);
    let clerk = m.app.token(Role::CounterClerk).await;
    let officer = m.app.token(Role::ClearingOfficer).await;

    // 1. The card was credited but the TAC never reached the platform.
    let (lost_tac, tac, c1) = run_load(&m, &clerk, &mut card, &number, "a", 1_000, false);
    assert!(tac.is_some());
    assert_eq!(chip_balance(&mut card), 1_000);
    // 2. The next contact (another load) shows the online counter advanced: the first load
    //    completed. This time CREDIT never reaches the card.
    let (lost_credit, tac, c2) = run_load(&m, &clerk, &mut card, &number, "b", 2_000, true);
    assert_eq!((tac, c2), (None, c1 + 1));
    let first = m
        .app
        .get(&format!("/api/v1/loads/{lost_tac}"), Some(&clerk))
        .await
        .json();
    assert_eq!(
        (first["state"].clone(), first["resolution"].clone()),
        (json!("completed"), json!("counter"))
    );
    assert_eq!(card_fen(&m.app, &number).await, (1_000, 0));
    assert_eq!(online_fen(&m.app, 5).await, (9_000, 2_000));
    assert_eq!(chip_balance(&mut card), 1_000);
    // 3. The counter at the next contact has not moved: the second load did not happen and
    //    its money is the online account's again; the new load goes ahead.
    let (third, tac, c3) = run_load(&m, &clerk, &mut card, &number, "c", 500, false);
    assert_eq!(c3, c2);
    let second = m
        .app
        .get(&format!("/api/v1/loads/{lost_credit}"), Some(&clerk))
        .await
        .json();
    assert_eq!(
        (second["state"].clone(), second["resolution"].clone()),
        (json!("returned"), json!("counter"))
    );
    assert_eq!(online_fen(&m.app, 5).await, (9_000, 500));
    // 4. Explicit evidence for the third, whose TAC is lost too: the balance seen on the card.
    assert!(tac.is_some());
    let wrong = m
        .app
        .post_json(
            &format!("/api/v1/loads/{third}/resolve"),
            Some(&officer),
            json!({"balance_fen": 1_234}),
        )
        .await;
    assert_eq!(wrong.status, 409, "{}", wrong.body);
    let r = m
        .app
        .post_json(
            &format!("/api/v1/loads/{third}/resolve"),
            Some(&officer),
            json!({"balance_fen": chip_balance(&mut card)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["state"].clone(), r.json()["resolution"].clone()),
        (json!("completed"), json!("balance"))
    );
    // Money neither lost nor doubled: chip 1,500 = shadow; online 10,000 − 1,500.
    assert_eq!(chip_balance(&mut card), 1_500);
    assert_eq!(card_fen(&m.app, &number).await, (1_500, 0));
    assert_eq!(online_fen(&m.app, 5).await, (8_500, 0));
    books_hold(&m.app).await;
}

async fn payments_refunds_reversals_and_fees(backend: Backend) {
    let m = setup(backend).await;
    funded(&m, 6, 10_000).await;
    let number = active_card(&m.app, 6).await;
    let officer = m.app.token(Role::ClearingOfficer).await;
    let pay = |key: &str, fen: i64| {
        json!({"idempotency_key": key, "card_number": number, "merchant": "canteen-7",
               "amount_fen": fen, "reference": "order 88"})
    };
    let r = m
        .app
        .post_json("/api/v1/payments", Some(&officer), pay("p-1", 1_000))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["state"], "paid");
    let again = m
        .app
        .post_json("/api/v1/payments", Some(&officer), pay("p-1", 1_000))
        .await;
    assert_eq!((again.status, again.json()["id"].as_i64()), (201, Some(id)));
    assert_eq!(online_fen(&m.app, 6).await, (9_000, 0));
    let too_much = m
        .app
        .post_json("/api/v1/payments", Some(&officer), pay("p-2", 100_000))
        .await;
    assert_eq!(too_much.status, 409, "{}", too_much.body);
    let clerk = m.app.token(Role::CounterClerk).await;
    let r = m
        .app
        .post_json("/api/v1/payments", Some(&clerk), pay("p-3", 1))
        .await;
    assert_eq!(r.status, 403);
    // Refunds up to what was paid, never more.
    let refund = |key: &str, fen: i64| json!({"idempotency_key": key, "amount_fen": fen, "reason": "returned goods"});
    let path = format!("/api/v1/payments/{id}/refunds");
    let r = m
        .app
        .post_json(&path, Some(&officer), refund("r-1", 300))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = m
        .app
        .post_json(&path, Some(&officer), refund("r-2", 800))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(online_fen(&m.app, 6).await, (9_300, 0));
    // The reversal gives back the rest, once.
    let rev = format!("/api/v1/payments/{id}/reversal");
    let r = m.app.send("POST", &rev, Some(&officer), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["kind"].clone(), r.json()["amount_fen"].clone()),
        (json!("reversal"), json!(700))
    );
    let r2 = m.app.send("POST", &rev, Some(&officer), None).await;
    assert_eq!(r2.json()["id"], r.json()["id"]);
    assert_eq!(online_fen(&m.app, 6).await, (10_000, 0));
    let r = m
        .app
        .post_json(&path, Some(&officer), refund("r-3", 1))
        .await;
    assert_eq!(r.status, 409);
    let p = m
        .app
        .get(&format!("/api/v1/payments/{id}"), Some(&officer))
        .await
        .json();
    assert_eq!(
        (p["state"].clone(), p["returned_fen"].clone()),
        (json!("reversed"), json!(1_000))
    );
    assert_eq!(p["returns"].as_array().unwrap().len(), 2);
    // A fee to the tax department's collection account, paid at the counter by ID number.
    let fee = m
        .app
        .post_json(
            "/api/v1/fees",
            Some(&clerk),
            json!({"idempotency_key": "f-1", "id_number": seeded_id(6), "department": "tax",
                   "item": "vehicle_tax", "amount_fen": 2_500, "reference": "2026 vehicle tax"}),
        )
        .await;
    assert_eq!(fee.status, 201, "{}", fee.body);
    assert_eq!(
        (fee.json()["kind"].clone(), fee.json()["payee"].clone()),
        (json!("fee"), json!("tax"))
    );
    assert_eq!(online_fen(&m.app, 6).await, (7_500, 0));
    let collected = m
        .app
        .tp
        .platform
        .store
        .ledger_account(
            &ledger::AccountKey::new(
                ledger::AccountKind::DepartmentCollection,
                ledger::Owner::Department("tax".into()),
                ledger::Unit::Cny,
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collected.balance, 2_500);
    // Twenty payments of 6.00 at once from 100.00, recorded in group commits: sixteen fit.
    funded(&m, 8, 10_000).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (base, token, id) = (m.app.base.clone(), officer.clone(), seeded_id(8));
        tasks.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<hyper::body::Bytes>>();
            let body = json!({"idempotency_key": format!("c-{i}"), "id_number": id,
                "merchant": "metro", "amount_fen": 600, "reference": "gate"});
            let req = hyper::Request::post(format!("{base}/api/v1/payments"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    body.to_string(),
                )))
                .unwrap();
            client.request(req).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![201; 16], vec![409; 4]].concat());
    assert_eq!(online_fen(&m.app, 8).await, (400, 0));
    // Neither payer nor both: refused.
    let r = m
        .app
        .post_json(
            "/api/v1/fees",
            Some(&clerk),
            json!({"idempotency_key": "f-2", "department": "tax", "item": "x",
                   "amount_fen": 1, "reference": ""}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    books_hold(&m.app).await;
}

/// Forty payments from one account at once, ten of them one request sent ten times: they go
/// through the group commit together, so several groups plan against the same balance. The
/// account has money for ten: exactly ten distinct payments are taken, the account ends at
/// zero and never below, the repeated request answers one payment every time (or is refused
/// every time), and the books balance.
async fn concurrent_payments_never_overdraw_and_a_repeated_key_posts_once(backend: Backend) {
    let m = setup(backend).await;
    funded(&m, 8, 1_000).await;
    let officer = Caller {
        operator_id: Some(2),
        username: "officer".into(),
        role: Role::ClearingOfficer,
        department: None,
        origin: "test".into(),
    };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (p, officer) = (m.app.tp.platform.clone(), officer.clone());
        let key = if i % 4 == 0 {
            "same".to_string()
        } else {
            format!("k-{i}")
        };
        tasks.push(tokio::spawn(async move {
            let r = p
                .pay(
                    &officer,
                    &platform::money::PaymentRequest {
                        key: key.clone(),
                        payer: platform::money::Payer::IdNumber(seeded_id(8)),
                        merchant: "kiosk-3".into(),
                        amount_fen: 100,
                        reference: "snack".into(),
                    },
                )
                .await;
            (key, r.map(|v| v.id))
        }));
    }
    let mut taken = std::collections::BTreeSet::new();
    let mut same = Vec::new();
    for t in tasks {
        let (key, r) = t.await.unwrap();
        match &r {
            Ok(id) => {
                taken.insert(*id);
            }
            Err(platform::PlatformError::Conflict(text)) => {
                assert!(text.contains("available"), "{text}")
            }
            Err(e) => panic!("{key}: {e}"),
        }
        if key == "same" {
            same.push(r.ok());
        }
    }
    assert_eq!(taken.len(), 10, "{taken:?}");
    assert_eq!(same.len(), 10);
    assert!(same.iter().all(|r| *r == same[0]), "{same:?}");
    assert_eq!(online_fen(&m.app, 8).await, (0, 0));
    books_hold(&m.app).await;
}
