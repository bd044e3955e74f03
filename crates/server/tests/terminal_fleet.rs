//! The terminal agent (`terminal-agent`) against the platform over HTTP on both backends: taps
//! written durably and uploaded once; a batch id resent gets the first answer; the PSAM binding
//! refuses records of another terminal's PSAM; hostile uploads (oversized, garbage, another
//! merchant's records, forged signature, unbound terminal) change nothing; the deny-list comes
//! signed through the terminal channel; parameters answer "unchanged"; the fleet page and the
//! metrics show the terminal.

mod common;

use crypto::{Key32, Sm2SigningKey};
use platform::clock::Clock;
use serde_json::json;
use store::Role;
use terminal_agent::{Agent, Limits, PlatformClient, Ride, TapError, TapRequest};

fn real_now_s() -> i64 {
    platform::clock::now_in_city().unix_timestamp()
}

/// The platform's manual clock set to the real time, so the agent's signed requests (real
/// clock) fall in the window.
fn clock_to_real_time(app: &common::App) {
    let now = app.tp.clock.now_ms();
    app.tp.clock.advance_ms(real_now_s() * 1000 - now);
}

async fn merchant(app: &common::App, admin: &str, code: &str) {
    let r = app
        .post_json(
            "/api/v1/merchants",
            Some(admin),
            json!({"code": code, "name": code, "category": "transit",
                   "settlement_account": "41050100000009"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Registers and activates a terminal; returns its key.
async fn terminal(
    app: &common::App,
    admin: &str,
    id: &str,
    merchant: &str,
    psam_at_registration: Option<&str>,
    psam_at_activation: Option<&str>,
    seed: u8,
) -> Sm2SigningKey {
    let r = app
        .post_json(
            "/api/v1/terminals",
            Some(admin),
            json!({"id": id, "merchant": merchant, "kind": "validator", "site": "B2",
                   "psam_terminal_id": psam_at_registration}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let code = r.json()["activation_code"].as_str().unwrap().to_string();
    let key = Sm2SigningKey::from_secret(&Key32::from_bytes([seed; 32])).unwrap();
    let r = app
        .post_json(
            "/api/v1/terminal/activation",
            None,
            json!({"id": id, "activation_code": code,
                   "public_key": hex::encode_upper(key.public_key().to_compressed()),
                   "software_version": "agent-1", "psam_terminal_id": psam_at_activation}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    key
}

fn payable(app: &common::App, merchant: &str) -> impl std::future::Future<Output = i64> {
    let store = app.tp.platform.store.clone();
    let key = ledger::AccountKey::new(
        ledger::AccountKind::MerchantPayable,
        ledger::Owner::Merchant(merchant.into()),
        ledger::Unit::Cny,
    )
    .unwrap();
    async move {
        store
            .ledger_account(&key)
            .await
            .unwrap()
            .map_or(0, |a| a.balance)
    }
}

fn bus(line: &str, at_s: i64, tap_ref: &str) -> TapRequest {
    TapRequest {
        tap_ref: Some(tap_ref.into()),
        ride: Ride::Bus { line: line.into() },
        at_s,
    }
}

async fn agent_over_http(backend: platform::testing::Backend) {
    let app = common::start(backend).await;
    clock_to_real_time(&app);
    platform::testing::install_test_master_keys(&app.tp).unwrap();
    let admin = app.token(Role::Administrator).await;
    merchant(&app, &admin, "bus").await;
    merchant(&app, &admin, "shop").await;
    let key = terminal(
        &app,
        &admin,
        "BUS-0101",
        "bus",
        Some("000000000101"),
        None,
        0x31,
    )
    .await;
    let shop_key = terminal(
        &app,
        &admin,
        "POS-0201",
        "shop",
        None,
        Some("000000000201"),
        0x32,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("terminal.sqlite");
    let psam = chip::TerminalId::parse("000000000101").unwrap();
    let limits = Limits {
        queue_max: 6,
        ..Limits::default()
    };
    let agent = Agent::open(&db, psam, limits).await.unwrap();
    let cards = agent.emulator_provision(810_000, 4, 5_000).await.unwrap();
    assert_eq!(cards.len(), 4);
    let client = PlatformClient::new(&app.base, "BUS-0101", key.clone()).unwrap();

    // Parameters and the deny-list, through the signed channel.
    let sync = agent.sync(&client, None).await.unwrap();
    assert!(sync.parameters_changed);
    let again = agent.sync(&client, None).await.unwrap();
    assert!(
        !again.parameters_changed,
        "the same version: nothing changed"
    );
    assert_eq!(again.parameters_version, sync.parameters_version);

    // Taps: bus B2 (2 yuan), a student card (index 3) half, a metro ride.
    let now = real_now_s();
    let mut charged = 0;
    for (i, card) in cards.iter().enumerate() {
        let d = agent
            .tap_emulated(*card, &bus("B2", now, &format!("t{i}")))
            .await
            .unwrap();
        charged += i64::from(d.charged_fen);
        assert!(!d.already);
    }
    assert_eq!(charged, 200 * 3 + 100, "three full fares, one student half");
    // The same reference again: not taken twice.
    let d = agent
        .tap_emulated(cards[0], &bus("B2", now, "t0"))
        .await
        .unwrap();
    assert!(d.already);
    assert_eq!(agent.emulated_balance(cards[0]).await.unwrap(), Some(4_800));
    let entry = TapRequest {
        tap_ref: Some("m-in".into()),
        ride: Ride::MetroEntry {
            station: "M1-01".into(),
        },
        at_s: now,
    };
    assert_eq!(
        agent
            .tap_emulated(cards[1], &entry)
            .await
            .unwrap()
            .charged_fen,
        0
    );
    let exit = TapRequest {
        tap_ref: Some("m-out".into()),
        ride: Ride::MetroExit {
            station: "M1-04".into(),
        },
        at_s: now + 600,
    };
    let d = agent.tap_emulated(cards[1], &exit).await.unwrap();
    assert_eq!(d.charged_fen, 300, "6.2 km: 2 yuan base + 1 band");
    charged += 300;
    // The queue holds six: the seventh tap is refused before the card is touched.
    let r = agent
        .tap_emulated(cards[2], &bus("B2", now, "t-full"))
        .await;
    assert!(matches!(r, Err(TapError::QueueFull { max: 6 })), "{r:?}");
    assert_eq!(agent.emulated_balance(cards[2]).await.unwrap(), Some(4_800));
    assert_eq!(agent.pending(), 6);

    // Reopened (a restart): the queue, the cards and the PSAM's serial are as they were.
    drop(agent);
    let agent = Agent::open(&db, psam, Limits::default()).await.unwrap();
    assert_eq!(agent.pending(), 6);
    assert_eq!(agent.emulated_balance(cards[1]).await.unwrap(), Some(4_500));

    let report = agent.upload_once(&client).await.unwrap();
    assert_eq!((report.accepted, report.refused), (6, 0), "{report:?}");
    assert_eq!(agent.pending(), 0);
    assert_eq!(payable(&app, "bus").await, charged);
    // Nothing left: another round sends nothing and posts nothing.
    assert_eq!(agent.upload_once(&client).await.unwrap().batches, 0);
    assert_eq!(payable(&app, "bus").await, charged);

    // A batch id resent gets the first answer, byte for byte; the same id with another body
    // is refused.
    // (A transfer from the card's earlier ride when within the window: the fare is the tap's.)
    let fare = agent
        .tap_emulated(cards[0], &bus("B906", now, "t-batch"))
        .await
        .unwrap()
        .charged_fen as i64;
    assert!(fare > 0);
    let body =
        |id: &str, records: &str| format!("{{\"batch_id\":\"{id}\",\"records\":[{records}]}}");
    let first = client
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            body("B-1", "").into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    let again = client
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            body("B-1", "").into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!((again.status, &again.body), (200, &first.body));
    let other = client
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            body("B-1", "{}").into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(other.status, 409, "{:?}", other.body);
    let report = agent.upload_once(&client).await.unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(payable(&app, "bus").await, charged + fare);
    let charged = charged + fare;

    // Hostile input changes nothing.
    // Records made with another terminal's PSAM (the shop's): answered malformed, not posted.
    let shop_dir = tempfile::tempdir().unwrap();
    let shop_agent = Agent::open(
        &shop_dir.path().join("t.sqlite"),
        chip::TerminalId::parse("000000000201").unwrap(),
        Limits::default(),
    )
    .await
    .unwrap();
    let shop_cards = shop_agent
        .emulator_provision(820_000, 1, 5_000)
        .await
        .unwrap();
    shop_agent
        .tap_emulated(
            shop_cards[0],
            &TapRequest {
                tap_ref: None,
                ride: Ride::Pos { amount_fen: 1_234 },
                at_s: now,
            },
        )
        .await
        .unwrap();
    // The bus terminal sends the shop's record as its own.
    let as_bus = PlatformClient::new(&app.base, "BUS-0101", key.clone()).unwrap();
    let report = shop_agent.upload_once(&as_bus).await.unwrap();
    assert_eq!((report.accepted, report.refused), (0, 1));
    let refused = shop_agent.refused(10).await.unwrap();
    assert!(
        refused[0]
            .2
            .as_deref()
            .unwrap()
            .contains("PSAM 000000000201"),
        "{refused:?}"
    );
    assert_eq!(payable(&app, "bus").await, charged);
    assert_eq!(payable(&app, "shop").await, 0);
    // Oversized: 10,001 records.
    let many = vec!["{}"; 10_001].join(",");
    let r = client
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            body("B-2", &many).into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 413, "{:?}", r.body);
    // Garbage bytes.
    let r = client
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            vec![0xFF, 0x00, 0x13, 0x37],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(String::from_utf8_lossy(&r.body).contains("not an upload"));
    // A forged signature: the shop terminal's key under the bus terminal's id.
    let forged = PlatformClient::new(&app.base, "BUS-0101", shop_key.clone()).unwrap();
    let r = forged
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            body("B-3", "").into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(payable(&app, "bus").await, charged);

    // A terminal without a PSAM cannot upload; activation with another PSAM than the
    // registered one is refused.
    let r = app
        .post_json(
            "/api/v1/terminals",
            Some(&admin),
            json!({"id": "BUS-0102", "merchant": "bus", "kind": "validator", "site": "B2",
                   "psam_terminal_id": "000000000102"}),
        )
        .await;
    let code = r.json()["activation_code"].as_str().unwrap().to_string();
    let k3 = Sm2SigningKey::from_secret(&Key32::from_bytes([0x33; 32])).unwrap();
    let activation = |psam: &'static str| {
        json!({"id": "BUS-0102", "activation_code": code.clone(),
               "public_key": hex::encode_upper(k3.public_key().to_compressed()),
               "software_version": "agent-1", "psam_terminal_id": psam})
    };
    let r = app
        .post_json(
            "/api/v1/terminal/activation",
            None,
            activation("000000000109"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("000000000102"), "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/terminal/activation",
            None,
            activation("000000000102"),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "the code was not spent by the refusal: {}",
        r.body
    );
    let r = app
        .post_json(
            "/api/v1/terminals",
            Some(&admin),
            json!({"id": "BUS-0103", "merchant": "bus", "kind": "validator", "site": "B2"}),
        )
        .await;
    let code = r.json()["activation_code"].as_str().unwrap().to_string();
    let k4 = Sm2SigningKey::from_secret(&Key32::from_bytes([0x34; 32])).unwrap();
    let r = app
        .post_json(
            "/api/v1/terminal/activation",
            None,
            json!({"id": "BUS-0103", "activation_code": code,
                   "public_key": hex::encode_upper(k4.public_key().to_compressed()),
                   "software_version": "agent-1"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let unbound = PlatformClient::new(&app.base, "BUS-0103", k4).unwrap();
    let r = unbound
        .send(
            "POST",
            "/api/v1/terminal/uploads",
            body("B-4", "").into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);

    // The deny-list through the terminal channel: full, signed by the platform's key.
    let full = client
        .send("GET", "/api/v1/terminal/denylist", Vec::new())
        .await
        .unwrap();
    assert_eq!(full.status, 200);
    let deny_key =
        crypto::Sm2PublicKey::from_sec1(&app.tp.platform.deny_list_public_key()).unwrap();
    let list = issuance::DenyList::decode(&full.body, &deny_key).unwrap();
    assert_eq!(Some(list.version().0 as i64), full.deny_list_version);
    let mut tampered = full.body.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(issuance::DenyList::decode(&tampered, &deny_key).is_err());

    // Parameters with a report, then the fleet page and the metrics show the terminal.
    agent.sync(&client, None).await.unwrap();
    let page = app.get("/console/terminals?lang=en", Some(&admin)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("terminal-BUS-0101"), "{}", page.body);
    assert!(page.body.contains("000000000101"));
    // BUS-0102 activated but never heard from: silent.
    assert!(page.body.contains("data-alert=\"silent\""), "{}", page.body);
    let zh = app.get("/console/terminals", Some(&admin)).await;
    assert!(zh.body.contains("终端监控"));
    let metrics = app.get("/metrics", None).await;
    assert!(
        metrics.body.contains("citycard_terminals_silent"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("citycard_terminal_records_uploaded_total")
    );
    let st = app.tp.platform.terminal_fleet_view().await.unwrap();
    let bus = st
        .rows
        .iter()
        .find(|r| r.entry.terminal.id == "BUS-0101")
        .unwrap();
    let status = bus.entry.status.as_ref().unwrap();
    assert_eq!(status.records_pending, Some(0));
    assert_eq!(
        status.uploaded_records, 8,
        "the agent's 6 and 1, the empty B-1, the shop's record sent as its own"
    );
    let doc = app.get("/api/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v1/terminal/denylist"].is_object());
}

/// Issue 7's "done when" at a gate: a phone enrolled and certified pays at the gate while the
/// gate cannot reach the platform (checked offline by the agent's Verifier); the gate refuses a
/// replayed, a stale, a forged and an over-limit code on its own; the upload that fails while
/// offline loses nothing; back online the payment is uploaded and debited once; after the
/// card is reported lost the gate's next sync brings the deny-list and the card's codes are
/// refused.
async fn ecode_at_an_offline_gate(backend: platform::testing::Backend) {
    let app = common::start(backend).await;
    clock_to_real_time(&app);
    platform::testing::install_test_master_keys(&app.tp).unwrap();
    let admin = app.token(Role::Administrator).await;
    merchant(&app, &admin, "bus").await;
    let key = terminal(
        &app,
        &admin,
        "GATE-0301",
        "bus",
        Some("000000000301"),
        None,
        0x33,
    )
    .await;

    // An active card, a phone enrolled and certified, 5.00 yuan in the holder's account.
    let p = &app.tp.platform;
    let sys = platform::Caller::cli("test");
    let now = real_now_s();
    let (card, holder, mut phone) =
        common::card_with_phone(p, 3, "gate-phone", 0x44, now as u32 - 5).await;
    let limit = phone.certificate().unwrap().fields().offline_limit_fen;
    let resident = p
        .resident_by_id_number(&sys, &holder, false)
        .await
        .unwrap()
        .resident_id;
    common::fund(
        p,
        ledger::AccountKey::citizen_online(resident),
        ledger::TransferKind::TopUp,
        500,
        "fund-gate",
    )
    .await;
    let balance = || async { p.resident_balances(&sys, &holder).await.unwrap().online_fen };

    // The gate syncs once: the parameter download brings the e-code roots, kept in its store
    // (they are there after a restart). Then its platform address is unreachable (a closed
    // port).
    let dir = tempfile::tempdir().unwrap();
    let psam = chip::TerminalId::parse("000000000301").unwrap();
    let agent = Agent::open(&dir.path().join("gate.sqlite"), psam, Limits::default())
        .await
        .unwrap();
    let online = PlatformClient::new(&app.base, "GATE-0301", key.clone()).unwrap();
    agent.sync(&online, None).await.unwrap();
    drop(agent);
    let agent = Agent::open(&dir.path().join("gate.sqlite"), psam, Limits::default())
        .await
        .unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let offline = PlatformClient::new(&closed, "GATE-0301", key.clone()).unwrap();

    let code = phone.make_code(now as u32).unwrap().to_text();
    let done = agent.tap_ecode(&code, 200, Some("e1"), now).await.unwrap();
    assert_eq!(
        (done.charged_fen, done.card_number.map(|c| c.to_string())),
        (200, Some(card.clone()))
    );
    let refused = |e: TapError, what: &str| {
        assert!(
            matches!(&e, TapError::Ecode(m) if m.contains(what)),
            "{e} should name {what}"
        );
    };
    // Replayed at the gate, stale (shown ten minutes after it was made), forged, over the limit.
    refused(
        agent
            .tap_ecode(&code, 200, Some("e2"), now + 1)
            .await
            .unwrap_err(),
        "replay",
    );
    let later = phone.make_code(now as u32).unwrap().to_text();
    refused(
        agent
            .tap_ecode(&later, 200, Some("e3"), now + 600)
            .await
            .unwrap_err(),
        "not fresh",
    );
    let mut forged = phone.make_code(now as u32).unwrap().to_text().into_bytes();
    let i = forged.len() - 12;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let e = agent
        .tap_ecode(&forged, 200, Some("e4"), now)
        .await
        .unwrap_err();
    assert!(matches!(e, TapError::Ecode(_)), "{e}");
    let big = phone.make_code(now as u32).unwrap().to_text();
    refused(
        agent
            .tap_ecode(&big, limit.min(100_000), Some("e5"), now)
            .await
            .unwrap_err(),
        "offline limit",
    );
    assert_eq!(agent.pending(), 1, "only the accepted payment waits");

    // Offline: the upload fails and nothing is lost.
    assert!(agent.upload_once(&offline).await.is_err());
    assert_eq!(agent.pending(), 1);
    assert_eq!(balance().await, 500);
    // Back online: uploaded and debited once.
    let report = agent.upload_once(&online).await.unwrap();
    assert_eq!((report.accepted, report.refused), (1, 0), "{report:?}");
    assert_eq!(agent.pending(), 0);
    assert_eq!(balance().await, 300);
    assert_eq!(payable(&app, "bus").await, 200);
    assert_eq!(agent.upload_once(&online).await.unwrap().batches, 0);
    assert_eq!(balance().await, 300);

    // The card is reported lost; the gate's next sync brings the deny-list.
    let desk = p
        .ensure_outlet_with_clerk(&sys, "ZZ-GATE1", "gate-desk", "gate desk password 1")
        .await
        .unwrap();
    p.counter_report_lost(&desk, "ZZ-GATE1", &card)
        .await
        .unwrap();
    agent.sync(&online, None).await.unwrap();
    let after = phone.make_code(now as u32 + 2).unwrap().to_text();
    refused(
        agent
            .tap_ecode(&after, 200, Some("e6"), now + 2)
            .await
            .unwrap_err(),
        "deny-list",
    );
}

both_backends!(agent_over_http, ecode_at_an_offline_gate);
