//! The data-sharing exchange over HTTP on both backends, with the four simulated department
//! providers as real HTTP services: members, catalog, grants and consents set up through the
//! API; calls signed by the consumer delivered minimised, masked and signed by the exchange;
//! the citizen's tracker showing exactly the calls about them; and every security case of
//! issue 8 — no grant, a withdrawn or expired grant, no or a revoked consent, fields beyond
//! the grant, a forged, unsigned or replayed call, a provider's forged, misdirected, slow or
//! oversized answer, an audit row altered afterwards — refused or detected, each one logged.

mod common;

use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use exchange::message::{BatchProof, HEADER_BATCH, sign_group, verify_recorded};
use exchange::{BatchCache, Envelope, MessageKind};
use exchange_link::sim::{Kind, Mode, SimProvider, SimServer, dev_key};
use platform::clock::Clock;
use platform::testing::{Backend, T0_MS};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::Role;

const NOW_S: i64 = T0_MS / 1000;
const DAY_MS: i64 = 86_400_000;

fn consumer_key() -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&Key32::from_bytes([0x41; 32])).unwrap()
}

fn bank_key() -> Sm2SigningKey {
    Sm2SigningKey::from_secret(&Key32::from_bytes([0x42; 32])).unwrap()
}

fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{:032x}", N.fetch_add(1, Ordering::Relaxed))
}

struct World {
    app: common::App,
    admin: String,
    clerk: String,
    providers: Vec<(SimProvider, SimServer)>,
    exchange_key: Sm2PublicKey,
}

impl World {
    fn provider(&self, kind: Kind) -> &SimProvider {
        &self
            .providers
            .iter()
            .find(|(p, _)| p.kind() == kind)
            .unwrap()
            .0
    }
}

/// The four providers running and registered, `card-company` and `bank` as consumers, one
/// grant per service for `card-company`, and seeded resident 1's consents to the three services
/// that need one.
async fn world(backend: Backend) -> World {
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
    let mut providers = Vec::new();
    for kind in Kind::ALL {
        let sim = SimProvider::new(kind, dev_key(kind), app.tp.clock.clone() as Arc<dyn Clock>);
        sim.trust("exchange", exchange_key.clone());
        let server = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let r = app
            .post_json(
                "/api/v1/exchange/members",
                Some(&admin),
                json!({"code": kind.member(), "name": kind.member_name(),
                    "public_key": hex::encode(dev_key(kind).public_key().to_compressed())}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = app
            .post_json(
                "/api/v1/exchange/services",
                Some(&admin),
                serde_json::to_value(kind.service(&server.url())).unwrap(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        providers.push((sim, server));
    }
    for (code, key) in [("card-company", consumer_key()), ("bank", bank_key())] {
        let r = app
            .post_json(
                "/api/v1/exchange/members",
                Some(&admin),
                json!({"code": code, "name": code,
                    "public_key": hex::encode(key.public_key().to_compressed())}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for (service, fields, full, purpose) in [
        (
            "police.traffic-violations",
            vec!["id_number", "violations", "points"],
            vec![],
            "credit-score",
        ),
        (
            "fund.balance",
            vec!["id_number", "account_status", "balance_fen"],
            vec!["id_number", "balance_fen"],
            "loan-check",
        ),
        (
            "hr.contributions",
            vec!["insured", "months_paid"],
            vec!["insured", "months_paid"],
            "employment",
        ),
        (
            "civil.dibao-eligibility",
            vec!["eligible", "allowance_fen"],
            vec!["eligible"],
            "fare-concession",
        ),
    ] {
        let r = app
            .post_json(
                "/api/v1/exchange/grants",
                Some(&admin),
                json!({"consumer": "card-company", "service": service, "fields": fields,
                    "full_fields": full, "purpose": purpose,
                    "legal_basis": format!("data sharing agreement for {service}"),
                    "valid_from_ms": T0_MS - DAY_MS, "valid_until_ms": T0_MS + 365 * DAY_MS}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for (service, purpose) in [
        ("fund.balance", "loan-check"),
        ("hr.contributions", "employment"),
        ("civil.dibao-eligibility", "fare-concession"),
    ] {
        let r = app
            .post_json(
                "/api/v1/exchange/consents",
                Some(&clerk),
                json!({"id_number": common::seeded_id(1), "consumer": "card-company",
                    "service": service, "purpose": purpose, "expires_ms": T0_MS + 30 * DAY_MS}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    World {
        app,
        admin,
        clerk,
        providers,
        exchange_key,
    }
}

struct Answer {
    status: u16,
    body: Value,
    headers: hyper::HeaderMap,
    bytes: Vec<u8>,
}

/// Sends a call signed by `key` as `member`; `tamper` flips the signature's first byte.
async fn call_raw(
    w: &World,
    key: &Sm2SigningKey,
    member: &str,
    body: &Value,
    nonce: &str,
    tamper: bool,
) -> Answer {
    let bytes = body.to_string().into_bytes();
    let env = Envelope {
        kind: MessageKind::Request,
        member,
        time_s: NOW_S,
        nonce,
        service: body["service"].as_str().unwrap_or(""),
        reply_to: "",
        body: &bytes,
    };
    let mut sig = env.sign(key);
    if tamper {
        sig.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    }
    send(
        w,
        &[
            ("x-exchange-member", member.to_string()),
            ("x-exchange-time", NOW_S.to_string()),
            ("x-exchange-nonce", nonce.to_string()),
            ("x-exchange-signature", sig),
        ],
        bytes,
    )
    .await
}

async fn send(w: &World, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let mut b = hyper::Request::builder()
        .method("POST")
        .uri(format!("{}/api/v1/exchange/call", w.app.base))
        .header("content-type", "application/json");
    for (n, v) in headers {
        b = b.header(*n, v);
    }
    let resp = client
        .request(b.body(http_body_util::Full::new(body.into())).unwrap())
        .await
        .unwrap();
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

async fn call(w: &World, service: &str, id_number: &str, fields: &[&str], purpose: &str) -> Answer {
    let body = json!({"service": service, "id_number": id_number, "fields": fields,
        "purpose": purpose});
    call_raw(w, &consumer_key(), "card-company", &body, &nonce(), false).await
}

/// Checks the exchange's signature on a delivery for the request `nonce` (signed alone, or in
/// a batch with its path in `x-exchange-batch`).
fn delivered_by_exchange(w: &World, a: &Answer, service: &str) {
    let h = |n: &str| a.headers.get(n).unwrap().to_str().unwrap().to_string();
    let batch = a
        .headers
        .get(HEADER_BATCH)
        .map(|v| v.to_str().unwrap().to_string());
    let env = Envelope {
        kind: MessageKind::Delivery,
        member: &h("x-exchange-member"),
        time_s: h("x-exchange-time").parse().unwrap(),
        nonce: &h("x-exchange-nonce"),
        service,
        reply_to: &h("x-exchange-reply-to"),
        body: &a.bytes,
    };
    env.verify_batched(
        &w.exchange_key,
        &h("x-exchange-signature"),
        batch.as_deref(),
        NOW_S,
        &BatchCache::new(),
    )
    .unwrap();
    assert_eq!(h("x-exchange-reply-to"), a.body["call"].as_str().unwrap());
}

fn refused(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let detail = a.body["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with(&format!("{code}:")),
        "{code}: {}",
        a.body
    );
}

/// The administrator withdraws `consumer`'s grant on `service`.
async fn withdraw_grant(w: &World, consumer: &str, service: &str) {
    let grants = w
        .app
        .get("/api/v1/exchange/grants", Some(&w.admin))
        .await
        .json();
    let id = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["service"] == service && g["consumer"] == consumer)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = w
        .app
        .post_json(
            &format!("/api/v1/exchange/grants/{id}/withdraw"),
            Some(&w.admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn tracker(w: &World, id_number: &str) -> Vec<Value> {
    let r = w
        .app
        .post_json(
            "/api/v1/residents/data-access",
            Some(&w.clerk),
            json!({"id_number": id_number}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

async fn providers_serve_real_calls_and_the_tracker_shows_exactly_them(backend: Backend) {
    let w = world(backend).await;
    let id1 = common::seeded_id(1);
    let id2 = common::seeded_id(2);
    assert!(tracker(&w, &id1).await.is_empty());

    // Police: the ID number masked, the personal points masked, the count as it is.
    let a = call(&w, "police.traffic-violations", &id1, &[], "credit-score").await;
    assert_eq!(a.status, 200, "{}", a.body);
    delivered_by_exchange(&w, &a, "police.traffic-violations");
    let truth = Kind::Police.answer(&id1);
    assert_eq!(
        a.body["data"],
        json!({"id_number": resident::mask_id_number(&id1),
            "violations": truth["violations"], "points": "***"})
    );
    assert!(
        a.body["data"]["id_number"]
            .as_str()
            .unwrap()
            .contains("***********")
    );
    assert_eq!(a.body["masked"], json!(["id_number", "points"]));

    // Fund: the grant allows the full ID number and balance.
    let a = call(
        &w,
        "fund.balance",
        &id1,
        &["id_number", "balance_fen"],
        "loan-check",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    delivered_by_exchange(&w, &a, "fund.balance");
    let truth = Kind::Fund.answer(&id1);
    assert_eq!(
        a.body["data"],
        json!({"id_number": id1, "balance_fen": truth["balance_fen"]})
    );
    assert!(a.body["consent"].is_i64());

    let a = call(&w, "hr.contributions", &id1, &[], "employment").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let truth = Kind::Hr.answer(&id1);
    assert_eq!(
        a.body["data"],
        json!({"insured": truth["insured"], "months_paid": truth["months_paid"]})
    );
    let a = call(&w, "civil.dibao-eligibility", &id1, &[], "fare-concession").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let truth = Kind::Civil.answer(&id1);
    assert_eq!(a.body["data"]["eligible"], truth["eligible"]);
    assert_eq!(a.body["data"]["allowance_fen"], json!("***"));
    // Police needs no consent: resident 2 can be looked up.
    let a = call(
        &w,
        "police.traffic-violations",
        &id2,
        &["violations"],
        "credit-score",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (sim, _) in &w.providers {
        let (answered, refused) = sim.counts();
        assert!(answered >= 1, "{:?} answered nothing", sim.kind());
        assert_eq!(refused, 0);
    }

    // The tracker: exactly these four calls about resident 1, newest first, with who, what,
    // why and under what; resident 2 sees only theirs.
    let t = tracker(&w, &id1).await;
    let summary: Vec<(String, String, String, String)> = t
        .iter()
        .map(|a| {
            (
                a["consumer"].as_str().unwrap().into(),
                a["service"].as_str().unwrap().into(),
                a["purpose"].as_str().unwrap().into(),
                a["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    let row = |s: &str, p: &str| {
        (
            "card-company".to_string(),
            s.to_string(),
            p.to_string(),
            "delivered".to_string(),
        )
    };
    assert_eq!(
        summary,
        vec![
            row("civil.dibao-eligibility", "fare-concession"),
            row("hr.contributions", "employment"),
            row("fund.balance", "loan-check"),
            row("police.traffic-violations", "credit-score"),
        ]
    );
    assert_eq!(t[3]["fields"], json!(["id_number", "violations", "points"]));
    assert_eq!(t[3]["masked"], json!(["id_number", "points"]));
    assert!(t[3]["consent_id"].is_null());
    assert!(t[2]["consent_id"].is_i64());
    assert!(
        t[3]["legal_basis"]
            .as_str()
            .unwrap()
            .contains("police.traffic-violations")
    );
    assert_eq!(t[3]["provider"], "police");
    for a in &t {
        assert_eq!(a["request_digest"].as_str().unwrap().len(), 64);
        assert_eq!(a["response_digest"].as_str().unwrap().len(), 64);
    }
    let t2 = tracker(&w, &id2).await;
    assert_eq!(t2.len(), 1);
    assert_eq!(t2[0]["fields"], json!(["violations"]));

    // The digests are on the hash-chained audit log, under the resident's record.
    let seq = t[3]["audit_seq"].as_i64().unwrap();
    let entries = w
        .app
        .tp
        .platform
        .store
        .audit_range(seq - 1, 1)
        .await
        .unwrap();
    let e = &entries[0];
    assert_eq!(e.draft.action, "exchange.call");
    assert_eq!(e.draft.actor, "member:card-company");
    assert!(e.draft.record.starts_with("resident:"));
    assert!(
        e.draft.detail.contains(&format!(
            "request_sm3={}",
            t[3]["request_digest"].as_str().unwrap()
        )),
        "{}",
        e.draft.detail
    );
    assert!(!e.draft.detail.contains(&id1), "no ID number in the log");
}

async fn every_security_case_is_refused_and_logged(backend: Backend) {
    let w = world(backend).await;
    let id1 = common::seeded_id(1);
    let id3 = common::seeded_id(3);
    let police = |id: &str| {
        json!({"service": "police.traffic-violations", "id_number": id, "fields": [],
            "purpose": "credit-score"})
    };

    // A consumer without a grant.
    let a = call_raw(&w, &bank_key(), "bank", &police(&id1), &nonce(), false).await;
    refused(&a, 403, "no_grant");
    // Fields beyond the grant.
    let a = call(
        &w,
        "police.traffic-violations",
        &id1,
        &["id_number", "fines_unpaid_fen"],
        "credit-score",
    )
    .await;
    refused(&a, 403, "fields_beyond_grant");
    // Another purpose than granted.
    let a = call(&w, "police.traffic-violations", &id1, &[], "marketing").await;
    refused(&a, 403, "purpose_not_granted");
    // No consent (resident 3 gave none), then a revoked consent.
    let a = call(&w, "fund.balance", &id3, &[], "loan-check").await;
    refused(&a, 403, "no_consent");
    let ok = call(&w, "fund.balance", &id1, &[], "loan-check").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let consent_id = ok.body["consent"].as_i64().unwrap();
    let r = w
        .app
        .post_json(
            &format!("/api/v1/exchange/consents/{consent_id}/revoke"),
            Some(&w.clerk),
            json!({"id_number": id1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Another citizen cannot revoke it, and it is revoked once.
    let r = w
        .app
        .post_json(
            &format!("/api/v1/exchange/consents/{consent_id}/revoke"),
            Some(&w.clerk),
            json!({"id_number": id1}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let a = call(&w, "fund.balance", &id1, &[], "loan-check").await;
    refused(&a, 403, "consent_revoked");
    // A withdrawn grant.
    withdraw_grant(&w, "card-company", "hr.contributions").await;
    let a = call(&w, "hr.contributions", &id1, &[], "employment").await;
    refused(&a, 403, "grant_withdrawn");
    // An expired grant.
    let r = w
        .app
        .post_json(
            "/api/v1/exchange/grants",
            Some(&w.admin),
            json!({"consumer": "bank", "service": "police.traffic-violations",
                "fields": ["violations"], "purpose": "credit-score", "legal_basis": "old",
                "valid_from_ms": T0_MS - 30 * DAY_MS, "valid_until_ms": T0_MS - DAY_MS}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = call_raw(&w, &bank_key(), "bank", &police(&id1), &nonce(), false).await;
    refused(&a, 403, "grant_expired");

    // A forged signature, a call signed by another member's key, an unsigned call, a replay.
    let a = call_raw(
        &w,
        &consumer_key(),
        "card-company",
        &police(&id1),
        &nonce(),
        true,
    )
    .await;
    refused(&a, 401, "signature");
    let a = call_raw(
        &w,
        &bank_key(),
        "card-company",
        &police(&id1),
        &nonce(),
        false,
    )
    .await;
    refused(&a, 401, "signature");
    let a = send(&w, &[], police(&id1).to_string().into_bytes()).await;
    refused(&a, 401, "unsigned");
    let n = nonce();
    let a = call_raw(
        &w,
        &consumer_key(),
        "card-company",
        &police(&id1),
        &n,
        false,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call_raw(
        &w,
        &consumer_key(),
        "card-company",
        &police(&id1),
        &n,
        false,
    )
    .await;
    refused(&a, 401, "replay");
    // The same nonce is refused from storage after the process forgets it (a restart).
    w.app.tp.platform.exchange_forget_replay_cache();
    let a = call_raw(
        &w,
        &consumer_key(),
        "card-company",
        &police(&id1),
        &n,
        false,
    )
    .await;
    refused(&a, 401, "replay");

    // The provider misbehaves: a forged answer, an answer for another request, too slow, too
    // large. None of it reaches the consumer.
    let sim = w.provider(Kind::Police);
    for (mode, status, code) in [
        (Mode::Forge, 502, "provider_signature"),
        (Mode::WrongReply, 502, "provider_signature"),
        (Mode::Hang, 504, "provider_timeout"),
        (Mode::Huge, 502, "provider_too_large"),
    ] {
        sim.set_mode(mode);
        let a = call(&w, "police.traffic-violations", &id1, &[], "credit-score").await;
        refused(&a, status, code);
        assert!(a.body.get("data").is_none());
    }
    sim.set_mode(Mode::Normal);

    // Every attempt is on the access log with its reason, and on the audit log.
    let log = w
        .app
        .get(
            "/api/v1/exchange/access?outcome=refused&limit=100",
            Some(&w.admin),
        )
        .await
        .json();
    let mut reasons: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    let mut expected = vec![
        "no_grant",
        "fields_beyond_grant",
        "purpose_not_granted",
        "no_consent",
        "consent_revoked",
        "grant_withdrawn",
        "grant_expired",
        "signature",
        "signature",
        "unsigned",
        "replay",
        "replay",
    ];
    expected.sort();
    assert_eq!(reasons, expected);
    let failed = w
        .app
        .get("/api/v1/exchange/access?outcome=failed", Some(&w.admin))
        .await
        .json();
    let mut reasons: Vec<String> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "provider_signature",
            "provider_signature",
            "provider_timeout",
            "provider_too_large"
        ]
    );
    let refusals = w
        .app
        .tp
        .platform
        .store
        .audit_recent(Some("exchange.call.refused"), 100)
        .await
        .unwrap();
    assert_eq!(refusals.len(), expected.len());
    let failures = w
        .app
        .tp
        .platform
        .store
        .audit_recent(Some("exchange.call.failed"), 100)
        .await
        .unwrap();
    assert_eq!(failures.len(), 4);

    // The citizen sees the attempts about them too, with their outcome.
    let t = tracker(&w, &id1).await;
    let delivered = t.iter().filter(|a| a["outcome"] == "delivered").count();
    assert_eq!(delivered, 2, "the fund call and the first police call");
    assert!(t.iter().any(|a| a["reason"] == "consent_revoked"));
    assert!(t.iter().any(|a| a["reason"] == "provider_signature"));
}

async fn an_altered_audit_row_is_detected(backend: Backend) {
    let w = world(backend).await;
    let id1 = common::seeded_id(1);
    let a = call(&w, "police.traffic-violations", &id1, &[], "credit-score").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = w
        .app
        .post_json("/api/v1/exchange/stamps", Some(&w.admin), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stamped = r.json()["seq"].as_i64().unwrap();
    // Stamping the same head again adds nothing.
    let r = w
        .app
        .post_json("/api/v1/exchange/stamps", Some(&w.admin), json!({}))
        .await;
    assert_eq!(r.json(), Value::Null);
    let check = w
        .app
        .get("/api/v1/exchange/stamps/check", Some(&w.admin))
        .await
        .json();
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["stamps_checked"], 1);

    // Someone with the database alters the call's audit row (its request digest).
    let seq = tracker(&w, &id1).await[0]["audit_seq"].as_i64().unwrap();
    alter(&w.app.tp, &format!(
        "UPDATE audit_log SET detail = 'service=police.traffic-violations altered' WHERE seq = {seq}"
    ))
    .await;
    let check = w
        .app
        .get("/api/v1/exchange/stamps/check", Some(&w.admin))
        .await
        .json();
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["chain_error"]
            .as_str()
            .unwrap()
            .contains(&seq.to_string()),
        "{check}"
    );
    // And one who rewrites the stamped entry's hash too no longer matches the stamp.
    alter(
        &w.app.tp,
        &format!("UPDATE audit_log SET hash = prev_hash WHERE seq = {stamped}"),
    )
    .await;
    let check = w
        .app
        .get("/api/v1/exchange/stamps/check", Some(&w.admin))
        .await
        .json();
    assert_eq!(check["bad_stamps"][0]["seq"], stamped, "{check}");
    // Each check is itself on the log: intact first, then the detections with what broke.
    let checks = w
        .app
        .tp
        .platform
        .store
        .audit_recent(Some("exchange.stamps.check"), 10)
        .await
        .unwrap();
    let mut details: Vec<&str> = checks.iter().map(|e| e.draft.detail.as_str()).collect();
    details.sort();
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(details[0].starts_with("intact"), "{details:?}");
    assert!(
        details[1..]
            .iter()
            .all(|d| d.starts_with("tampered") && d.contains(&seq.to_string())),
        "{details:?}"
    );
    assert!(
        details[1..]
            .iter()
            .any(|d| d.contains(&format!("bad_stamps=[{stamped}:"))),
        "{details:?}"
    );
}

/// A consent past its expiry is refused like a revoked one, logged and shown to the citizen;
/// a call from a member the exchange does not know is refused and logged.
async fn expired_consent_and_unknown_member_are_refused_and_logged(backend: Backend) {
    let mut w = world(backend).await;
    let id1 = common::seeded_id(1);
    // Resident 1's consent to fund.balance ends after 30 days (operators sign in afresh).
    w.app.tp.clock.advance_ms(31 * DAY_MS);
    w.admin = w.app.token(Role::Administrator).await;
    w.clerk = w.app.token(Role::CounterClerk).await;
    let now_s = w.app.tp.clock.now_ms() / 1000;
    let body = json!({"service": "fund.balance", "id_number": id1, "fields": [],
        "purpose": "loan-check"});
    let signed = |member: &str, key: &Sm2SigningKey, nonce: &str| {
        let bytes = body.to_string().into_bytes();
        let sig = Envelope {
            kind: MessageKind::Request,
            member,
            time_s: now_s,
            nonce,
            service: "fund.balance",
            reply_to: "",
            body: &bytes,
        }
        .sign(key);
        (
            vec![
                ("x-exchange-member", member.to_string()),
                ("x-exchange-time", now_s.to_string()),
                ("x-exchange-nonce", nonce.to_string()),
                ("x-exchange-signature", sig),
            ],
            bytes,
        )
    };
    let (h, b) = signed("card-company", &consumer_key(), &nonce());
    let a = send(&w, &h, b).await;
    refused(&a, 403, "consent_expired");
    // A member the exchange does not know.
    let (h, b) = signed("ghost", &bank_key(), &nonce());
    let a = send(&w, &h, b).await;
    refused(&a, 401, "unknown_member");
    let log = w
        .app
        .get("/api/v1/exchange/access?outcome=refused", Some(&w.admin))
        .await
        .json();
    let mut reasons: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(reasons, vec!["consent_expired", "unknown_member"]);
    let t = tracker(&w, &id1).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0]["outcome"].as_str(), t[0]["reason"].as_str()),
        (Some("refused"), Some("consent_expired"))
    );
    let refusals = w
        .app
        .tp
        .platform
        .store
        .audit_recent(Some("exchange.call.refused"), 10)
        .await
        .unwrap();
    assert_eq!(refusals.len(), 2);
}

/// A grant that served a call is withdrawn: the very next call is refused (the platform's
/// cache of grants is dropped by the withdrawal), and a new grant is honoured at once.
async fn a_grant_withdrawn_between_two_calls_refuses_the_next(backend: Backend) {
    let w = world(backend).await;
    let id1 = common::seeded_id(1);
    let a = call(&w, "police.traffic-violations", &id1, &[], "credit-score").await;
    assert_eq!(a.status, 200, "{}", a.body);
    withdraw_grant(&w, "card-company", "police.traffic-violations").await;
    let a = call(&w, "police.traffic-violations", &id1, &[], "credit-score").await;
    refused(&a, 403, "grant_withdrawn");
    // A fresh grant serves the next call.
    let r = w
        .app
        .post_json(
            "/api/v1/exchange/grants",
            Some(&w.admin),
            json!({"consumer": "card-company", "service": "police.traffic-violations",
                "fields": ["violations"], "purpose": "credit-score", "legal_basis": "renewed",
                "valid_from_ms": T0_MS - DAY_MS, "valid_until_ms": T0_MS + DAY_MS}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = call(&w, "police.traffic-violations", &id1, &[], "credit-score").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["data"]["violations"].is_number(), "{}", a.body);
    // Its validity is judged by the clock at each call, not when the grant was cached.
    w.app.tp.clock.advance_ms(DAY_MS + 1);
    let later_s = w.app.tp.clock.now_ms() / 1000;
    let body = json!({"service": "police.traffic-violations", "id_number": id1, "fields": [],
        "purpose": "credit-score"})
    .to_string()
    .into_bytes();
    let n = nonce();
    let sig = Envelope {
        kind: MessageKind::Request,
        member: "card-company",
        time_s: later_s,
        nonce: &n,
        service: "police.traffic-violations",
        reply_to: "",
        body: &body,
    }
    .sign(&consumer_key());
    let a = send(
        &w,
        &[
            ("x-exchange-member", "card-company".to_string()),
            ("x-exchange-time", later_s.to_string()),
            ("x-exchange-nonce", n),
            ("x-exchange-signature", sig),
        ],
        body,
    )
    .await;
    // No grant is active any more: the new one lapsed (which a cache judging validity when it
    // read the grant would miss), and the most telling reason is still the withdrawal.
    refused(&a, 403, "grant_withdrawn");
}

/// Consumer calls signed in a batch (one SM2 signature over the hash tree of their digests,
/// each call with its path): each is served; its signature and path are on the access row and
/// prove the request from its digest alone; a forged or malformed proof, another key's batch
/// signature, and a replay of a batch-signed call are refused and logged.
async fn batch_signed_calls_are_served_and_forged_proofs_refused(backend: Backend) {
    let w = world(backend).await;
    let id1 = common::seeded_id(1);
    let body = json!({"service": "police.traffic-violations", "id_number": id1, "fields": [],
        "purpose": "credit-score"})
    .to_string()
    .into_bytes();
    let nonces: Vec<String> = (0..5).map(|_| nonce()).collect();
    let envs: Vec<Envelope<'_>> = nonces
        .iter()
        .map(|n| Envelope {
            kind: MessageKind::Request,
            member: "card-company",
            time_s: NOW_S,
            nonce: n,
            service: "police.traffic-violations",
            reply_to: "",
            body: &body,
        })
        .collect();
    let inputs: Vec<Vec<u8>> = envs.iter().map(Envelope::signing_input).collect();
    let signed = sign_group(&inputs, |m| consumer_key().sign(m));
    let headers = |i: usize, sig: &str, batch: &str| {
        vec![
            ("x-exchange-member", "card-company".to_string()),
            ("x-exchange-time", NOW_S.to_string()),
            ("x-exchange-nonce", nonces[i].clone()),
            ("x-exchange-signature", sig.to_string()),
            (HEADER_BATCH, batch.to_string()),
        ]
    };
    let batch = |i: usize| signed[i].batch.clone().unwrap();

    // Three of the batch, all at once: each served and signed by the exchange.
    let (h0, h1, h2) = (
        headers(0, &signed[0].signature, &batch(0)),
        headers(1, &signed[1].signature, &batch(1)),
        headers(2, &signed[2].signature, &batch(2)),
    );
    let (a0, a1, a2) = tokio::join!(
        send(&w, &h0, body.clone()),
        send(&w, &h1, body.clone()),
        send(&w, &h2, body.clone())
    );
    for a in [&a0, &a1, &a2] {
        assert_eq!(a.status, 200, "{}", a.body);
        delivered_by_exchange(&w, a, "police.traffic-violations");
    }
    // The access rows keep the consumer's signature and path: with the request's digest
    // alone, anyone holding the consumer's key checks what it asked.
    let rows = w
        .app
        .tp
        .platform
        .store
        .accesses_recent(Some("card-company"), Some("delivered"), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let digest: [u8; 32] = hex::decode(r.request_digest.as_ref().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sig = hex::decode(r.request_signature.as_ref().unwrap()).unwrap();
        let path = BatchProof::parse(r.request_batch.as_ref().unwrap()).unwrap();
        verify_recorded(&consumer_key().public_key(), &digest, &sig, &path).unwrap();
        assert!(envs.iter().any(|e| e.digest() == digest));
        // The provider's answer is recorded with its signature too.
        assert!(r.response_signature.is_some());
        if let Some(b) = &r.response_batch {
            let rd: [u8; 32] = hex::decode(r.response_digest.as_ref().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let rs = hex::decode(r.response_signature.as_ref().unwrap()).unwrap();
            verify_recorded(
                &dev_key(Kind::Police).public_key(),
                &rd,
                &rs,
                &BatchProof::parse(b).unwrap(),
            )
            .unwrap();
        }
    }

    // A replay of a batch-signed call: refused from memory, and from storage after a restart.
    let a = send(
        &w,
        &headers(0, &signed[0].signature, &batch(0)),
        body.clone(),
    )
    .await;
    refused(&a, 401, "replay");
    w.app.tp.platform.exchange_forget_replay_cache();
    let a = send(
        &w,
        &headers(1, &signed[1].signature, &batch(1)),
        body.clone(),
    )
    .await;
    refused(&a, 401, "replay");

    // Forged proofs for message 3: a sibling changed, another message's path, a path that
    // skips a level, a single-message signature presented with a path, another key's batch
    // signature over the same tree, a malformed header; and message 4 signed but its body
    // changed.
    let mut p = BatchProof::parse(&batch(3)).unwrap();
    p.steps[0].sibling[0] ^= 0x80;
    let a = send(
        &w,
        &headers(3, &signed[3].signature, &p.to_header()),
        body.clone(),
    )
    .await;
    refused(&a, 401, "signature");
    let a = send(
        &w,
        &headers(3, &signed[3].signature, &batch(2)),
        body.clone(),
    )
    .await;
    refused(&a, 401, "signature");
    let mut p = BatchProof::parse(&batch(3)).unwrap();
    p.steps.remove(0);
    let a = send(
        &w,
        &headers(3, &signed[3].signature, &p.to_header()),
        body.clone(),
    )
    .await;
    refused(&a, 401, "signature");
    let single = envs[3].sign(&consumer_key());
    let a = send(&w, &headers(3, &single, &batch(3)), body.clone()).await;
    refused(&a, 401, "signature");
    let other = sign_group(&inputs, |m| bank_key().sign(m));
    let a = send(
        &w,
        &headers(3, &other[3].signature, &batch(3)),
        body.clone(),
    )
    .await;
    refused(&a, 401, "signature");
    let a = send(&w, &headers(3, &signed[3].signature, "l00"), body.clone()).await;
    refused(&a, 401, "batch");
    let changed = json!({"service": "police.traffic-violations", "id_number": common::seeded_id(2),
        "fields": [], "purpose": "credit-score"})
    .to_string()
    .into_bytes();
    let a = send(&w, &headers(4, &signed[4].signature, &batch(4)), changed).await;
    refused(&a, 401, "signature");
    // Message 3, genuine, is still served (the forgeries above used nothing up).
    let a = send(
        &w,
        &headers(3, &signed[3].signature, &batch(3)),
        body.clone(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Every refusal is on the access log with its reason.
    let log = w
        .app
        .get(
            "/api/v1/exchange/access?outcome=refused&limit=100",
            Some(&w.admin),
        )
        .await
        .json();
    let mut reasons: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "batch",
            "replay",
            "replay",
            "signature",
            "signature",
            "signature",
            "signature",
            "signature",
            "signature"
        ]
    );
}

/// Calls at the same time get deliveries batch-signed by the exchange (what it forwards, the
/// providers' answers, likewise): every one verifies.
async fn concurrent_calls_are_delivered_with_verifiable_batch_signatures(backend: Backend) {
    let w = world(backend).await;
    let id1 = common::seeded_id(1);
    let one = || call(&w, "police.traffic-violations", &id1, &[], "credit-score");
    let (a, b, c, d, e, f) = tokio::join!(one(), one(), one(), one(), one(), one());
    for a in [a, b, c, d, e, f] {
        assert_eq!(a.status, 200, "{}", a.body);
        delivered_by_exchange(&w, &a, "police.traffic-violations");
    }
    assert_eq!(w.provider(Kind::Police).counts(), (6, 0));
}

/// Runs `sql` on the test's database with the audit log's append-only trigger removed.
async fn alter(tp: &platform::testing::TestPlatform, sql: &str) {
    match tp.backend {
        Backend::Sqlite => {
            let db = tp.dir.path().join("citycard.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query("DROP TRIGGER IF EXISTS audit_log_no_update")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let url = platform::testing::postgres_test_url();
            let sep = if url.contains('?') { '&' } else { '?' };
            let schema = tp.schema.as_deref().unwrap();
            let pool =
                sqlx::PgPool::connect(&format!("{url}{sep}options=-c%20search_path%3D{schema}"))
                    .await
                    .unwrap();
            sqlx::query("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

both_backends!(
    providers_serve_real_calls_and_the_tracker_shows_exactly_them,
    every_security_case_is_refused_and_logged,
    an_altered_audit_row_is_detected,
    expired_consent_and_unknown_member_are_refused_and_logged,
    a_grant_withdrawn_between_two_calls_refuses_the_next,
    batch_signed_calls_are_served_and_forged_proofs_refused,
    concurrent_calls_are_delivered_with_verifiable_batch_signatures,
);
