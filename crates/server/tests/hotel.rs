//! Identity verification for hotels through the exchange (issue 8, item 7) on both backends:
//! the simulated police as a real HTTP service holding the register and recording check-ins;
//! a hotel member signing its requests; the card path (holder data as read from the chip) and
//! the e-code path (the exchange resolves the holder); a name mismatch, a forged and a replayed
//! request, a hotel without a grant and a replayed e-code refused and logged; the hotel sees
//! only whether the guest is verified, the name masked and the check-in number.

mod common;

use common::App;
use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use ecode::{CardNumber, Certificate, DeviceId, Phone};
use exchange::{Envelope, MessageKind};
use exchange_link::sim::{Kind, SimProvider, SimServer, dev_key};
use platform::Caller;
use platform::cards::{CardRequest, parse_reason};
use platform::clock::Clock;
use platform::testing::{Backend, T0_MS};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::Role;

const NOW_S: i64 = T0_MS / 1000;
const DAY_MS: i64 = 86_400_000;
const SERVICE: &str = "police.identity-checkin";

fn hotel_key() -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&Key32::from_bytes([0x51; 32])).unwrap()
}

fn stranger_key() -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&Key32::from_bytes([0x52; 32])).unwrap()
}

fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0x1000);
    format!("{:032x}", N.fetch_add(1, Ordering::Relaxed))
}

struct Answer {
    status: u16,
    body: Value,
    headers: hyper::HeaderMap,
    bytes: Vec<u8>,
}

async fn checkin_raw(
    app: &App,
    key: &Sm2SigningKey,
    member: &str,
    body: &Value,
    nonce: &str,
    tamper: bool,
) -> Answer {
    use http_body_util::BodyExt;
    let bytes = body.to_string().into_bytes();
    let now_s = app.tp.clock.now_ms() / 1000;
    let env = Envelope {
        kind: MessageKind::Request,
        member,
        time_s: now_s,
        nonce,
        service: SERVICE,
        reply_to: "",
        body: &bytes,
    };
    let mut sig = env.sign(key);
    if tamper {
        sig.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("{}/api/v1/exchange/checkin", app.base))
        .header("content-type", "application/json")
        .header("x-exchange-member", member)
        .header("x-exchange-time", now_s.to_string())
        .header("x-exchange-nonce", nonce)
        .header("x-exchange-signature", sig)
        .body(http_body_util::Full::new(bytes.into()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
        bytes,
    }
}

fn by_card(id_number: &str, name: &str, room: &str) -> Value {
    json!({"service": SERVICE, "purpose": "hotel-checkin", "via": "card",
        "id_number": id_number, "name": name, "room": room})
}

/// An active card for seeded resident 2 (production through the platform).
async fn active_card(app: &App, clerk: &str) -> String {
    let r = app
        .post_json(
            "/api/v1/cards",
            Some(clerk),
            json!({"id_number": common::seeded_id(2), "card_type": "ordinary"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let number = r.json()["number"].as_str().unwrap().to_string();
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

/// The holder's phone with a certificate for `card`.
async fn phone_for(app: &App, clerk: &str, admin: &str, card: &str, now: u32) -> Phone {
    let r = app
        .send("POST", "/api/v1/ecode/roots", Some(admin), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut phone = Phone::new(
        DeviceId::parse("app-0009").unwrap(),
        &Key32::from_bytes([0x43; 32]),
    )
    .unwrap();
    let key = hex::encode_upper(phone.public_key().to_compressed());
    let r = app
        .post_json(
            &format!("/api/v1/cards/{card}/devices"),
            Some(clerk),
            json!({"device_id": "app-0009", "public_key": key}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let req = phone.certificate_request(CardNumber::parse(card).unwrap(), now);
    let r = app
        .post_json(
            "/api/v1/ecode/certificates",
            Some(clerk),
            json!({
                "card_number": card,
                "device_id": req.device_id.as_str(),
                "public_key": hex::encode_upper(req.device_public_key.to_compressed()),
                "time": req.time,
                "signature": hex::encode_upper(req.signature),
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cert = Certificate::parse(&hex::decode(r.json()["certificate"].as_str().unwrap()).unwrap())
        .unwrap();
    phone.install_certificate(cert).unwrap();
    phone
}

async fn name_of(app: &App, admin: &str, id: &str) -> String {
    let r = app
        .get(&format!("/api/v1/residents/{id}?unmask=true"), Some(admin))
        .await;
    r.json()["name"].as_str().unwrap().to_string()
}

async fn hotel_checkin(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    p.exchange_attach_transport(Arc::new(exchange_link::HttpProviderTransport::new()));
    p.exchange_set_timeout_ms(500);
    let admin = app.token(Role::Administrator).await;
    let clerk = app.token(Role::CounterClerk).await;
    let key = app.get("/api/v1/exchange/key", None).await.json();
    let exchange_key =
        Sm2PublicKey::from_sec1(&hex::decode(key["public_key"].as_str().unwrap()).unwrap())
            .unwrap();

    // The police with their register, and two hotels, one of them granted.
    let police = SimProvider::new(
        Kind::Police,
        dev_key(Kind::Police),
        app.tp.clock.clone() as Arc<dyn Clock>,
    );
    police.trust("exchange", exchange_key.clone());
    let _server: SimServer =
        police.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let url = _server.url();
    for (code, name, pk) in [
        ("police", "市公安局", dev_key(Kind::Police).public_key()),
        ("hotel-jinshui", "金水宾馆", hotel_key().public_key()),
        ("hotel-other", "另一家宾馆", stranger_key().public_key()),
    ] {
        let r = app
            .post_json(
                "/api/v1/exchange/members",
                Some(&admin),
                json!({"code": code, "name": name, "public_key": hex::encode(pk.to_compressed())}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/exchange/services",
            Some(&admin),
            serde_json::to_value(Kind::identity_service(&url)).unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_json(
            "/api/v1/exchange/grants",
            Some(&admin),
            json!({"consumer": "hotel-jinshui", "service": SERVICE,
                "fields": ["verified", "status", "name", "checkin_id"], "full_fields": [],
                "purpose": "hotel-checkin", "legal_basis": "旅馆业治安管理办法 第六条",
                "valid_from_ms": T0_MS - DAY_MS, "valid_until_ms": T0_MS + 365 * DAY_MS}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let guest = common::seeded_id(1);
    let guest_name = name_of(&app, &admin, &guest).await;
    police.register(&guest, &guest_name);

    // Card path, the holder data as read from the chip: verified, the name masked, no ID back.
    let n1 = nonce();
    let a = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&guest, &guest_name, "8203"),
        &n1,
        false,
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.bytes));
    let data = &a.body["data"];
    assert_eq!(data["verified"], true, "{}", a.body);
    assert_eq!(data["status"], "verified");
    let shown = data["name"].as_str().unwrap();
    assert_ne!(shown, guest_name, "the hotel sees the name masked");
    assert!(shown.contains('*'), "{shown}");
    assert!(data.get("id_number").is_none(), "{data}");
    assert!(
        !String::from_utf8_lossy(&a.bytes).contains(&guest),
        "no ID number in the answer"
    );
    assert!(data["checkin_id"].as_str().unwrap().starts_with("CK"));
    let h = |n: &str| a.headers.get(n).unwrap().to_str().unwrap().to_string();
    Envelope {
        kind: MessageKind::Delivery,
        member: &h("x-exchange-member"),
        time_s: h("x-exchange-time").parse().unwrap(),
        nonce: &h("x-exchange-nonce"),
        service: SERVICE,
        reply_to: &h("x-exchange-reply-to"),
        body: &a.bytes,
    }
    .verify(&exchange_key, &h("x-exchange-signature"), NOW_S)
    .expect("signed by the exchange");
    let recorded = police.checkins();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (
            recorded[0].hotel.as_str(),
            recorded[0].room.as_str(),
            recorded[0].via.as_str(),
            recorded[0].verified
        ),
        ("hotel-jinshui", "8203", "card", true)
    );
    assert_eq!(
        recorded[0].id_number, guest,
        "the police get the full record"
    );

    // A name that is not the register's: not verified, and the police still know of it.
    let a = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&guest, "李冒名", "8204"),
        &nonce(),
        false,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        (
            a.body["data"]["verified"].clone(),
            a.body["data"]["status"].clone()
        ),
        (json!(false), json!("mismatch"))
    );
    assert_eq!(police.checkins().len(), 2);
    assert!(!police.checkins()[1].verified);

    // Forged, replayed, unsigned, ungranted: refused before the police hear of it.
    let a = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&guest, &guest_name, "1"),
        &nonce(),
        true,
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&guest, &guest_name, "8203"),
        &n1,
        false,
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("replay"),
        "{}",
        a.body
    );
    // Signed with another member's key under the hotel's name: a forgery too.
    let a = checkin_raw(
        &app,
        &stranger_key(),
        "hotel-jinshui",
        &by_card(&guest, &guest_name, "1"),
        &nonce(),
        false,
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = checkin_raw(
        &app,
        &stranger_key(),
        "hotel-other",
        &by_card(&guest, &guest_name, "1"),
        &nonce(),
        false,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(police.checkins().len(), 2);

    // The e-code path: the exchange finds the holder behind a verified code.
    let card = active_card(&app, &clerk).await;
    let now = (app.tp.clock.now_ms() / 1000) as u32;
    let mut phone = phone_for(&app, &clerk, &admin, &card, now).await;
    let holder = common::seeded_id(2);
    police.register(&holder, &name_of(&app, &admin, &holder).await);
    let text = phone.make_code(now).unwrap().to_text();
    let body = json!({"service": SERVICE, "purpose": "hotel-checkin", "via": "ecode",
        "ecode": text, "room": "8301"});
    let a = checkin_raw(&app, &hotel_key(), "hotel-jinshui", &body, &nonce(), false).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.bytes));
    assert_eq!(a.body["data"]["verified"], true, "{}", a.body);
    assert_eq!(a.body["via"], "ecode");
    let last = police.checkins().pop().unwrap();
    assert_eq!(
        (last.id_number.as_str(), last.via.as_str()),
        (holder.as_str(), "ecode")
    );
    // The same code again (a new request): the e-code is a replay.
    let a = checkin_raw(&app, &hotel_key(), "hotel-jinshui", &body, &nonce(), false).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("ecode_replay"),
        "{}",
        a.body
    );
    let a = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &json!({"service": SERVICE, "purpose": "hotel-checkin", "via": "ecode", "ecode": "ZZC1:XYZ"}),
        &nonce(),
        false,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(police.checkins().len(), 3);

    // Every attempt is logged; the guest's tracker lists their two check-ins.
    let refused = app
        .get(
            "/api/v1/exchange/access?outcome=refused&limit=100",
            Some(&admin),
        )
        .await
        .json();
    let mut reasons: Vec<String> = refused
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["service"] == SERVICE)
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "ecode_format",
            "ecode_replay",
            "no_grant",
            "replay",
            "signature",
            "signature"
        ],
        "{refused}"
    );
    let tracker = app
        .post_json(
            "/api/v1/residents/data-access",
            Some(&clerk),
            json!({"id_number": guest}),
        )
        .await
        .json();
    let mine: Vec<&Value> = tracker
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["service"] == SERVICE)
        .collect();
    // Their two check-ins, and the ungranted hotel's attempt about them.
    let delivered: Vec<&&Value> = mine
        .iter()
        .filter(|r| r["outcome"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), 2, "{tracker}");
    assert!(
        delivered
            .iter()
            .all(|r| r["consumer"] == "hotel-jinshui" && r["masked"] == json!(["name"]))
    );
    let refused: Vec<&&Value> = mine.iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 1, "{tracker}");
    assert_eq!(
        (
            refused[0]["consumer"].as_str(),
            refused[0]["reason"].as_str()
        ),
        (Some("hotel-other"), Some("no_grant"))
    );
}

/// The console pages under `/console/exchange` (Chinese first, English on request), the access
/// log searched by every filter, consent statistics and the citizen's consents with state.
async fn console_search_and_consents(backend: Backend) {
    let app = common::start(backend).await;
    let p = &app.tp.platform;
    p.exchange_attach_transport(Arc::new(exchange_link::HttpProviderTransport::new()));
    let admin = app.token(Role::Administrator).await;
    let clerk = app.token(Role::CounterClerk).await;
    let auditor = app.token(Role::Auditor).await;
    let key = app.get("/api/v1/exchange/key", None).await.json();
    let exchange_key =
        Sm2PublicKey::from_sec1(&hex::decode(key["public_key"].as_str().unwrap()).unwrap())
            .unwrap();
    let police = SimProvider::new(
        Kind::Police,
        dev_key(Kind::Police),
        app.tp.clock.clone() as Arc<dyn Clock>,
    );
    police.trust("exchange", exchange_key);
    let server = police.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    for (code, name, pk) in [
        ("police", "市公安局", dev_key(Kind::Police).public_key()),
        ("hotel-jinshui", "金水宾馆", hotel_key().public_key()),
    ] {
        let r = app
            .post_json(
                "/api/v1/exchange/members",
                Some(&admin),
                json!({"code": code, "name": name, "public_key": hex::encode(pk.to_compressed())}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for svc in [
        Kind::identity_service(&server.url()),
        Kind::Police.service(&server.url()),
    ] {
        let r = app
            .post_json(
                "/api/v1/exchange/services",
                Some(&admin),
                serde_json::to_value(svc).unwrap(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_json(
            "/api/v1/exchange/grants",
            Some(&admin),
            json!({"consumer": "hotel-jinshui", "service": SERVICE,
                "fields": ["verified", "name"], "full_fields": [],
                "purpose": "hotel-checkin", "legal_basis": "旅馆业治安管理办法",
                "valid_from_ms": T0_MS - DAY_MS, "valid_until_ms": T0_MS + 365 * DAY_MS}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (g1, g2) = (common::seeded_id(1), common::seeded_id(2));
    police.register(&g1, &name_of(&app, &admin, &g1).await);
    let ok = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&g1, &name_of(&app, &admin, &g1).await, "1"),
        &nonce(),
        false,
    )
    .await;
    assert_eq!(ok.status, 200);
    app.tp.clock.advance_ms(DAY_MS / 4);
    let ok = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&g2, "某人", "2"),
        &nonce(),
        false,
    )
    .await;
    assert_eq!(ok.status, 200);
    let bad = checkin_raw(
        &app,
        &hotel_key(),
        "hotel-jinshui",
        &by_card(&g1, "x", "3"),
        &nonce(),
        true,
    )
    .await;
    assert_eq!(bad.status, 401);

    // Consents of citizen 1: one to be revoked, one to expire, one that holds.
    let give = |service: &'static str, expires: i64| {
        let (app, clerk, g1) = (&app, clerk.clone(), g1.clone());
        async move {
            let r = app
                .post_json(
                    "/api/v1/exchange/consents",
                    Some(&clerk),
                    json!({"id_number": g1, "consumer": "hotel-jinshui", "service": service,
                        "purpose": "hotel-checkin", "expires_ms": expires}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.json()["id"].as_i64().unwrap()
        }
    };
    let now = app.tp.clock.now_ms();
    let revoked = give(SERVICE, now + 30 * DAY_MS).await;
    give("police.traffic-violations", now + DAY_MS / 8).await;
    let r = app
        .post_json(
            &format!("/api/v1/exchange/consents/{revoked}/revoke"),
            Some(&clerk),
            json!({"id_number": g1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    give(SERVICE, now + 60 * DAY_MS).await;
    app.tp.clock.advance_ms(DAY_MS / 4);

    let r = app
        .post_json(
            "/api/v1/residents/consents",
            Some(&clerk),
            json!({"id_number": g1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let states: Vec<(String, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap().into(),
                c["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (SERVICE.into(), "active".into()),
            ("police.traffic-violations".into(), "expired".into()),
            (SERVICE.into(), "revoked".into()),
        ]
    );
    assert_eq!(r.json()[0]["consumer_name"], "金水宾馆");
    assert_eq!(r.json()[0]["service_name"], "身份核验与入住登记");
    let dept = app.token(Role::DepartmentOfficer).await;
    let r = app
        .post_json(
            "/api/v1/residents/consents",
            Some(&dept),
            json!({"id_number": g1}),
        )
        .await;
    assert_eq!(r.status, 403);
    let stats = app
        .get("/api/v1/exchange/consents/stats", Some(&auditor))
        .await
        .json();
    assert_eq!(
        stats,
        json!([
            {"consumer": "hotel-jinshui", "service": SERVICE, "active": 1, "revoked": 1, "expired": 0},
            {"consumer": "hotel-jinshui", "service": "police.traffic-violations", "active": 0, "revoked": 0, "expired": 1},
        ])
    );

    // The access log by every filter.
    let search = |body: Value| {
        let (app, auditor) = (&app, auditor.clone());
        async move {
            let r = app
                .post_json("/api/v1/exchange/access/search", Some(&auditor), body)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json().as_array().unwrap().len()
        }
    };
    assert_eq!(search(json!({})).await, 3);
    assert_eq!(
        search(json!({"consumer": "hotel-jinshui", "service": SERVICE})).await,
        3
    );
    assert_eq!(search(json!({"consumer": "bank"})).await, 0);
    assert_eq!(
        search(json!({"id_number": g1})).await,
        1,
        "the forged call names no one"
    );
    assert_eq!(
        search(json!({"id_number": g2, "outcome": "delivered"})).await,
        1
    );
    assert_eq!(search(json!({"outcome": "refused"})).await, 1);
    assert_eq!(search(json!({"until_ms": T0_MS + DAY_MS / 8})).await, 1);
    assert_eq!(search(json!({"from_ms": T0_MS + DAY_MS / 8})).await, 2);
    let r = app
        .post_json(
            "/api/v1/exchange/access/search",
            Some(&auditor),
            json!({"outcome": "lost"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = app
        .post_json("/api/v1/exchange/access/search", Some(&clerk), json!({}))
        .await;
    assert_eq!(r.status, 403);
    let audited = app
        .get(
            "/api/v1/audit?action=exchange.access.read&limit=10",
            Some(&admin),
        )
        .await
        .json();
    assert_eq!(
        audited.as_array().unwrap().len(),
        2,
        "searches by citizen are audited"
    );

    // The console: Chinese first, English on request.
    let r = app.get("/console/exchange", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("服务目录") && r.body.contains("身份核验与入住登记"),
        "{}",
        r.body
    );
    assert!(r.body.contains("verified (internal)") && r.body.contains("name (personal)"));
    let r = app.get("/console/exchange?lang=en", Some(&admin)).await;
    assert!(r.body.contains("Service catalog"), "{}", r.body);
    let r = app
        .get("/console/exchange/grants?lang=zh", Some(&auditor))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("旅馆业治安管理办法") && r.body.contains("有效"),
        "{}",
        r.body
    );
    let r = app.get("/console/exchange/consents", Some(&auditor)).await;
    assert!(
        r.body.contains("<td class=\"revoked\">1</td>"),
        "{}",
        r.body
    );
    let r = app.get("/console/exchange/access", Some(&auditor)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.matches("<tr class=\"").count(), 3, "{}", r.body);
    let form = "consumer=hotel-jinshui&outcome=refused&id_number=&from=&until=".to_string();
    let r = app
        .send(
            "POST",
            "/console/exchange/access",
            Some(&auditor),
            Some(("application/x-www-form-urlencoded", form.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body.matches("<tr class=\"refused\"").count(),
        1,
        "{}",
        r.body
    );
    assert!(r.body.contains("signature"));
    let form = format!("id_number={g2}&from=2000-01-01&until=2100-01-01");
    let r = app
        .send(
            "POST",
            "/console/exchange/access",
            Some(&auditor),
            Some(("application/x-www-form-urlencoded", form.into_bytes())),
        )
        .await;
    assert_eq!(
        r.body.matches("<tr class=\"delivered\"").count(),
        1,
        "{}",
        r.body
    );
    assert!(!r.body.contains(&g2), "the ID number is not echoed back");
    let r = app
        .send(
            "POST",
            "/console/exchange/access",
            Some(&auditor),
            Some((
                "application/x-www-form-urlencoded",
                b"from=yesterday".to_vec(),
            )),
        )
        .await;
    assert!(r.body.contains("id=\"access-error\""), "{}", r.body);
    assert_eq!(
        app.get("/console/exchange/access", Some(&clerk))
            .await
            .status,
        403
    );
}

both_backends!(hotel_checkin, console_search_and_consents);
