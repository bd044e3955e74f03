//! Every life-cycle path of a card through the HTTP API, on both backends: application,
//! rejection and withdrawal; production in a batch through the (emulated) card bureau and its
//! result file; delivery to an outlet and hand-over at its counter, or delivery by post; lost
//! and found, lost again and replaced; frozen and unfrozen; cancelled; renewed; expired. The
//! money on a replaced or cancelled card moves after the cooling-off (to the successor, to the
//! online account), the books stay balanced, and the deny-list a terminal downloads is exactly
//! the cards that must be refused.

mod common;

use issuance::production::{BureauConfig, emulate_bureau};
use platform::Caller;
use serde_json::json;
use store::Role;

const DAY_MS: i64 = 86_400_000;

async fn every_path_over_http(backend: platform::testing::Backend) {
    let app = common::start(backend).await;
    let p = app.tp.platform.clone();
    platform::testing::install_test_master_keys(&app.tp).unwrap();
    let sys = Caller::cli("test");
    // The story spans ten years of the platform's clock: fresh tokens after each jump.
    let token = |role: Role| {
        let p = p.clone();
        let sys = sys.clone();
        async move {
            p.create_api_token(&sys, &common::App::username(role), "lifecycle", 1)
                .await
                .unwrap()
        }
    };
    let clerk = token(Role::CounterClerk).await;
    let admin = token(Role::Administrator).await;
    // More residents than the fixture's ten, so six adults of the city can apply.
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 10..60, 1, p.clock.today(), 0).unwrap();
    p.import_residents(
        &sys,
        resident::Source::Police,
        "more",
        "1".into(),
        Box::new(std::io::Cursor::new(csv)),
        std::sync::Arc::new(|_| {}),
    )
    .await
    .unwrap();

    let act = |number: String, action: &'static str, reason: &'static str, token: String| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/api/v1/cards/{number}/actions"),
                Some(&token),
                json!({"action": action, "reason": reason}),
            )
            .await
        }
    };
    let state = |number: String| {
        let app = &app;
        let auditor = token(Role::Auditor);
        async move {
            let auditor = auditor.await;
            let r = app
                .get(&format!("/api/v1/cards/{number}"), Some(&auditor))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["state"].as_str().unwrap().to_string()
        }
    };

    // Six applications: A..D go all the way, E is rejected, F withdrawn.
    let mut cards = Vec::new();
    let mut ids = Vec::new();
    for i in 0..60 {
        if cards.len() == 6 {
            break;
        }
        let id = platform::demo::id_number(i, 1, time::macros::date!(2026 - 11 - 26));
        let r = app
            .post_json(
                "/api/v1/cards",
                Some(&clerk),
                json!({"id_number": id.as_str(), "card_type": "ordinary"}),
            )
            .await;
        if r.status == 201 {
            cards.push(r.json()["number"].as_str().unwrap().to_string());
            ids.push(id.as_str().to_string());
        }
    }
    assert_eq!(cards.len(), 6, "six adults of the city apply");
    let [a, b, c, d, e, f] = <[String; 6]>::try_from(cards.clone()).unwrap();
    let r = act(e.clone(), "reject", "ineligible", admin.clone()).await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("withdrawn"))
    );
    let r = act(f.clone(), "withdraw", "holder_request", clerk.clone()).await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("withdrawn"))
    );
    for n in [&a, &b, &c, &d] {
        let r = act(n.clone(), "approve", "routine", clerk.clone()).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Production: a batch, its personalization file, the bureau, the result file.
    let r = app
        .post_json(
            "/api/v1/batches",
            Some(&admin),
            json!({"max": 10, "algorithm": "sm4"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let batch = r.json()["batch"]["id"].as_str().unwrap().to_string();
    let perso = app
        .get(
            &format!("/api/v1/batches/{batch}/personalization"),
            Some(&admin),
        )
        .await;
    assert_eq!(perso.status, 200, "{}", perso.body);
    let mut results = Vec::new();
    let run = emulate_bureau(
        perso.bytes.as_slice(),
        &BureauConfig {
            transport_key: crypto::Key16::from_hex(keys::master::conformance::TEST_TRANSPORT_KEY)
                .unwrap(),
            serial_first: 0x7700_0000_0000_0001,
            initial_pin: "123456".into(),
            fail: Vec::new(),
        },
        &mut results,
    )
    .unwrap();
    assert_eq!(run.produced.len(), 4);
    let r = app
        .send(
            "POST",
            &format!("/api/v1/batches/{batch}/results"),
            Some(&admin),
            Some(("text/plain", results)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for n in [&a, &b, &c, &d] {
        assert_eq!(state(n.clone()).await, "produced");
    }

    // A..C to the outlet and over its counter; D by post, activated by the holder's clerk.
    let r = app
        .post_json(
            "/api/v1/outlets",
            Some(&admin),
            json!({"code": "ZZ-L1", "name_zh": "二七网点", "name_en": "Erqi outlet",
                   "address": "二七路 1 号"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/outlets/ZZ-L1/clerks",
            Some(&admin),
            json!({"username": common::App::username(Role::CounterClerk)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post_json(
            &format!("/api/v1/batches/{batch}/distribution"),
            Some(&admin),
            json!({"outlet": "ZZ-L1", "count": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let counter = |what: &'static str, body: serde_json::Value| {
        let app = &app;
        let clerk = clerk.clone();
        async move {
            app.post_json(&format!("/api/v1/outlets/ZZ-L1/{what}"), Some(&clerk), body)
                .await
        }
    };
    for n in [&a, &b, &c] {
        assert_eq!(state(n.clone()).await, "at_outlet");
        let r = counter("hand-over", json!({"card_number": n})).await;
        assert_eq!(
            (r.status, r.json()["state"].as_str()),
            (200, Some("active"))
        );
    }
    assert_eq!(state(d.clone()).await, "produced");
    let r = act(d.clone(), "post", "routine", clerk.clone()).await;
    assert_eq!(r.json()["state"], "issued");
    let r = act(d.clone(), "activate", "holder_request", clerk.clone()).await;
    assert_eq!(r.json()["state"], "active");

    // Money on A's and C's chips (their e-purse shadows).
    for (n, fen, key) in [(&a, 1_234, "load-a"), (&c, 500, "load-c")] {
        common::fund(
            &p,
            ledger::AccountKey::epurse_shadow(n),
            ledger::TransferKind::Load,
            fen,
            key,
        )
        .await;
    }

    // A: lost at the counter, found again (the holder, within the undo period), lost again,
    // replaced at the counter: a successor, the old card deny-listed.
    let r = counter("lost-reports", json!({"card_number": a})).await;
    assert_eq!(r.json()["state"], "reported_lost");
    let r = act(a.clone(), "undo_lost", "holder_request", clerk.clone()).await;
    assert_eq!(r.json()["state"], "active");
    let r = counter("lost-reports", json!({"card_number": a})).await;
    assert_eq!(r.json()["state"], "reported_lost");
    let r = counter("replacements", json!({"card_number": a, "reason": "lost"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a2 = r.json()["successor"].as_str().unwrap().to_string();
    assert_eq!(state(a.clone()).await, "replaced");
    assert_eq!(state(a2.clone()).await, "approved");

    // B: frozen on suspicion of fraud, unfrozen when cleared.
    let r = act(b.clone(), "freeze", "fraud", admin.clone()).await;
    assert_eq!(r.json()["state"], "frozen");
    let r = act(b.clone(), "unfreeze", "cleared", admin.clone()).await;
    assert_eq!(r.json()["state"], "active");

    // C: cancelled at the holder's request.
    let r = act(c.clone(), "cancel", "holder_request", clerk.clone()).await;
    assert_eq!(r.json()["state"], "cancelled");

    // Within the cooling-off the money stays (offline purchases may still arrive); after it,
    // A's goes to its successor (credited at the new chip's first contact) and C's to the
    // holder's online account.
    let bal = |n: String| {
        let app = &app;
        let auditor = token(Role::Auditor);
        async move {
            let auditor = auditor.await;
            let r = app
                .get(&format!("/api/v1/cards/{n}/balances"), Some(&auditor))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()
        }
    };
    p.sweep_cards().await.unwrap();
    assert_eq!(bal(a.clone()).await["epurse_fen"], 1_234);
    app.tp.clock.advance_ms(8 * DAY_MS);
    p.sweep_cards().await.unwrap();
    let (clerk, auditor) = (token(Role::CounterClerk).await, token(Role::Auditor).await);
    assert_eq!(bal(a.clone()).await["epurse_fen"], 0);
    assert_eq!(bal(a2.clone()).await["pending_load_fen"], 1_234);
    assert_eq!(bal(c.clone()).await["epurse_fen"], 0);
    let online = p.resident_balances(&sys, &ids[2]).await.unwrap().online_fen;
    assert_eq!(online, 500);

    // B: renewed in the window before its ten years run out; D: expires.
    let valid_until = app
        .get(&format!("/api/v1/cards/{b}"), Some(&auditor))
        .await
        .json()["valid_until_s"]
        .as_i64()
        .unwrap();
    let now_s = p.clock.now_ms() / 1000;
    let r = act(b.clone(), "renew", "renewal", clerk.clone()).await;
    assert_eq!(r.status, 409, "too early to renew: {}", r.body);
    app.tp
        .clock
        .advance_ms((valid_until - now_s - 30 * 86_400) * 1000);
    let clerk = token(Role::CounterClerk).await;
    let r = act(b.clone(), "renew", "renewal", clerk.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.tp.clock.advance_ms(31 * DAY_MS);
    p.sweep_cards().await.unwrap();
    let auditor = token(Role::Auditor).await;
    assert_eq!(state(d.clone()).await, "expired");

    // Every card in its expected state, and the deny-list a terminal downloads — verified with
    // the platform's key — holds exactly those that must be refused.
    let states: Vec<(String, String)> = {
        let mut v = Vec::new();
        for n in cards.iter().chain([&a2]) {
            v.push((n.clone(), state(n.clone()).await));
        }
        v
    };
    let key = app.get("/api/v1/denylist/key", Some(&auditor)).await.json();
    let pk =
        crypto::Sm2PublicKey::from_sec1(&hex::decode(key["public_key"].as_str().unwrap()).unwrap())
            .unwrap();
    let full = app.get("/api/v1/denylist", Some(&auditor)).await;
    assert_eq!(full.status, 200);
    let list = issuance::DenyList::decode(&full.bytes, &pk).unwrap();
    let mut denied: Vec<String> = list.cards().map(|c| c.to_string()).collect();
    denied.sort();
    let mut expected: Vec<String> = states
        .iter()
        // issuance::must_deny: lost, frozen, replaced (also by renewal), cancelled.
        .filter(|(_, s)| {
            matches!(
                s.as_str(),
                "reported_lost" | "frozen" | "replaced" | "cancelled"
            )
        })
        .map(|(n, _)| n.clone())
        .collect();
    expected.sort();
    assert_eq!(denied, expected, "states {states:?}");
    assert!(denied.contains(&a) && denied.contains(&c), "{states:?}");
    assert!(!denied.contains(&a2), "{states:?}");

    // The books balance.
    let check = app.get("/api/v1/ledger/check", Some(&auditor)).await;
    assert_eq!(check.status, 200, "{}", check.body);
    assert_eq!(check.json()["ok"], true, "{}", check.body);
    assert!(p.audit_verify().await.unwrap().is_ok());
}

both_backends!(every_path_over_http);
