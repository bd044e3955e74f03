//! The e-code over HTTP on both backends: a clerk enrols the holder's phone, the phone gets a
//! certificate by a signed request, a terminal loads the root PEM and verifies offline, a
//! connected counter verifies online, and a lost card's phone is refused.

mod common;

use common::{App, start};
use ecode::{CardNumber, Certificate, DeviceId, Phone, RootKeys, Verifier, VerifierConfig};
use platform::Caller;
use platform::cards::{CardRequest, parse_reason};
use platform::clock::Clock;
use platform::testing::Backend;
use store::Role;

async fn active_card(app: &App, clerk: &str) -> String {
    let r = app
        .post_json(
            "/api/v1/cards",
            Some(clerk),
            serde_json::json!({"id_number": common::seeded_id(2), "card_type": "ordinary"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let number = r.json()["number"].as_str().unwrap().to_string();
    // Production is the system's part (no HTTP actor may do it): through the platform.
    let p = &app.tp.platform;
    let counter = Caller {
        operator_id: Some(1),
        username: "clerk".into(),
        role: Role::CounterClerk,
        department: None,
        origin: "test".into(),
    };
    let system = Caller::cli("test");
    for (who, req, reason) in [
        (&counter, CardRequest::Approve, "routine"),
        (&system, CardRequest::SendToProduction, "routine"),
        (&system, CardRequest::ProductionDone, "routine"),
        (&counter, CardRequest::Post, "routine"),
        (&counter, CardRequest::Activate, "holder_request"),
    ] {
        p.card_action(who, &number, req, parse_reason(reason).unwrap())
            .await
            .unwrap();
    }
    number
}

fn request_body(phone: &Phone, card: &str, time: u32) -> serde_json::Value {
    let r = phone.certificate_request(CardNumber::parse(card).unwrap(), time);
    serde_json::json!({
        "card_number": card,
        "device_id": r.device_id.as_str(),
        "public_key": hex::encode_upper(r.device_public_key.to_compressed()),
        "time": r.time,
        "signature": hex::encode_upper(r.signature),
    })
}

async fn ecode_over_http(backend: Backend) {
    let app = start(backend).await;
    let clerk = app.token(Role::CounterClerk).await;
    let admin = app.token(Role::Administrator).await;
    let auditor = app.token(Role::Auditor).await;
    let card = active_card(&app, &clerk).await;
    let now = (app.tp.clock.now_ms() / 1000) as u32;

    // Only an administrator makes root keys; the roots PEM is for terminals.
    assert_eq!(
        app.post_json("/api/v1/ecode/roots", Some(&clerk), serde_json::json!({}))
            .await
            .status,
        403
    );
    let r = app
        .send("POST", "/api/v1/ecode/roots", Some(&admin), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.json()["key_id"].as_u64(), r.json()["state"].as_str()),
        (Some(1), Some("current"))
    );
    let pem = app.get("/api/v1/ecode/roots", Some(&clerk)).await;
    assert_eq!(pem.status, 200);
    assert!(
        pem.body
            .starts_with("# key-id: 1\n-----BEGIN PUBLIC KEY-----"),
        "{}",
        pem.body
    );
    let roots = RootKeys::from_pem(&pem.body).unwrap();

    // Enrol the holder's phone at the counter, then the phone asks for its certificate.
    let mut phone = Phone::new(
        DeviceId::parse("app-0001").unwrap(),
        &crypto::Key32::from_bytes([0x42; 32]),
    )
    .unwrap();
    let key = hex::encode_upper(phone.public_key().to_compressed());
    let r = app
        .post_json(
            &format!("/api/v1/cards/{card}/devices"),
            Some(&clerk),
            serde_json::json!({"device_id": "app-0001", "public_key": key}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let enrolment = r.json()["id"].as_i64().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/cards/{card}/devices"),
            Some(&clerk),
            serde_json::json!({"device_id": "app-0001", "public_key": "02AB"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");

    let r = app
        .post_json(
            "/api/v1/ecode/certificates",
            Some(&clerk),
            request_body(&phone, &card, now),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json();
    assert_eq!(c["offline_limit_fen"], 20_000);
    assert_eq!(c["uses"], serde_json::json!(["pay", "identity", "transit"]));
    assert_eq!(c["not_after"].as_u64(), Some(u64::from(now) + 7 * 86_400));
    let cert =
        Certificate::parse(&hex::decode(c["certificate"].as_str().unwrap()).unwrap()).unwrap();
    phone.install_certificate(cert).unwrap();
    let r = app
        .post_json(
            "/api/v1/ecode/certificates",
            Some(&clerk),
            request_body(&phone, &card, now - 3600),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // A gate offline, and a connected counter online; a second scan online is a replay.
    let code = phone.make_code(now).unwrap();
    let mut gate = Verifier::new(roots, VerifierConfig::default()).unwrap();
    gate.verify_text(&code.to_text(), now + 5, ecode::Purpose::Transit)
        .unwrap();
    let verify = |text: String, token: String| {
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/ecode/verify",
                Some(&token),
                serde_json::json!({"text": text, "purpose": "pay", "amount_fen": 300}),
            )
            .await
        }
    };
    let r = verify(code.to_text(), clerk.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], true, "{}", r.body);
    assert_eq!(r.json()["offline_remaining_fen"], 19_700);
    let r = verify(code.to_text(), clerk.clone()).await.json();
    assert_eq!(
        (r["accepted"].clone(), r["reason"].clone()),
        (false.into(), "replay".into())
    );
    assert_eq!(r["step"], 7);
    let r = verify("ZZC1:XYZ".into(), clerk.clone()).await.json();
    assert_eq!(r["reason"], "format");
    assert_eq!(verify(code.to_text(), auditor.clone()).await.status, 403);

    // Identity at a hotel desk: the full name and ID number; at a counter the ID masked; the
    // citizen's list names both identifications.
    let identify = |text: String, use_: &'static str| {
        let app = &app;
        let clerk = clerk.clone();
        async move {
            app.post_json(
                "/api/v1/ecode/identity",
                Some(&clerk),
                serde_json::json!({"text": text, "use": use_}),
            )
            .await
        }
    };
    let r = identify(phone.make_code(now + 20).unwrap().to_text(), "hotel").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let holder = r.json()["id_number"].as_str().unwrap().to_string();
    assert_eq!(holder.len(), 18, "{}", r.body);
    assert_eq!(r.json()["adult"], true);
    let r = identify(phone.make_code(now + 21).unwrap().to_text(), "counter")
        .await
        .json();
    assert!(r["id_number"].as_str().unwrap().contains("****"), "{r}");
    let r = identify(phone.make_code(now + 22).unwrap().to_text(), "spying").await;
    assert_eq!(r.status, 422, "{}", r.body);
    let uses = app
        .post_json(
            "/api/v1/ecode/identity/uses",
            Some(&auditor),
            serde_json::json!({ "id_number": holder }),
        )
        .await
        .json();
    let details: Vec<&str> = uses
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 2, "{uses}");
    assert!(details[0].starts_with("use=counter") && details[1].starts_with("use=hotel"));

    // The usage page: today's verifications, the refusals by reason (the replay and the
    // malformed code above), in Chinese and in English.
    let zh = app.get("/console/ecode?lang=zh", Some(&auditor)).await;
    assert_eq!(zh.status, 200, "{}", zh.body);
    assert!(zh.body.contains("电子市民卡使用情况") && zh.body.contains("重复使用"));
    let en = app.get("/console/ecode?lang=en", Some(&auditor)).await;
    assert!(en.body.contains("Refusals by reason"), "{}", en.body);
    assert!(
        en.body
            .contains("<code>replay</code></td><td class=\"count\">1</td>"),
        "{}",
        en.body
    );
    assert!(
        en.body
            .contains("<code>format</code></td><td class=\"count\">1</td>"),
        "{}",
        en.body
    );
    assert!(en.body.contains("id=\"usage-chart\""));
    let usage = app
        .tp
        .platform
        .ecode_usage(&platform::Caller::cli("t"), 14)
        .await
        .unwrap();
    let today = usage.days.last().unwrap();
    assert!(today.accepted >= 3 && today.refused >= 2, "{usage:?}");
    assert_eq!(usage.days.len(), 14);

    // The card is reported lost at the counter: its phone goes with it; no certificate; codes
    // refused.
    app.tp
        .platform
        .ensure_outlet_with_clerk(
            &Caller::cli("test"),
            "ZZ-E1",
            &common::App::username(Role::CounterClerk),
            "unused",
        )
        .await
        .unwrap();
    let r = app
        .post_json(
            "/api/v1/outlets/ZZ-E1/lost-reports",
            Some(&clerk),
            serde_json::json!({"card_number": card}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let devices = app
        .get(&format!("/api/v1/cards/{card}/devices"), Some(&auditor))
        .await
        .json();
    assert_eq!(devices[0]["id"].as_i64(), Some(enrolment));
    assert_eq!(devices[0]["state"], "revoked");
    assert_eq!(devices[0]["revoked_reason"], "card_reported_lost");
    let r = app
        .post_json(
            "/api/v1/ecode/certificates",
            Some(&clerk),
            request_body(&phone, &card, now),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("reported_lost"),
        "{}",
        r.body
    );
    let r = verify(phone.make_code(now + 1).unwrap().to_text(), clerk.clone())
        .await
        .json();
    assert_eq!(r["reason"], "deny_listed");
    let r = app
        .post_json(
            &format!("/api/v1/ecode/devices/{enrolment}/revoke"),
            Some(&clerk),
            serde_json::json!({"reason": "holder_request"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
}

both_backends!(ecode_over_http);
