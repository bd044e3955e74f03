//! Production and counter work over HTTP on SQLite and PostgreSQL: outlets and clerks, a batch
//! from creation to the counter (personalization file download, the bureau's results uploaded
//! as text, distribution, hand-over by the outlet's clerk), the refusals a clerk meets at
//! another outlet, the journal and its closing, and the console pages.

mod common;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use issuance::production::{BureauConfig, emulate_bureau};
use keys::master::{FileMasterKeyStore, KeyComponent, KeyRef, MasterKeyStore, MasterPurpose};
use platform::cards::{CardRequest, parse_reason};
use platform::operators::OperatorRequest;
use platform::testing::Backend;
use platform::{Caller, Platform};
use serde_json::json;
use std::sync::Arc;
use store::Role;

const COMPONENT_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const COMPONENT_B: &str = "00112233445566778899AABBCCDDEEFF";

fn transport_key() -> crypto::Key16 {
    let a = crypto::Key16::from_hex(COMPONENT_A).unwrap();
    let b = crypto::Key16::from_hex(COMPONENT_B).unwrap();
    let mut k = [0u8; 16];
    for (i, o) in k.iter_mut().enumerate() {
        *o = a.expose()[i] ^ b.expose()[i];
    }
    crypto::Key16::from_bytes(k)
}

struct Server {
    base: String,
    p: Platform,
    _tp: platform::testing::TestPlatform,
    _keys: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Server {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some((ctype, bytes)) => {
                b = b.header("content-type", ctype);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(b.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn post(&self, path: &str, token: &str, v: serde_json::Value) -> Resp {
        self.send(
            "POST",
            path,
            token,
            Some(("application/json", v.to_string().into_bytes())),
        )
        .await
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.send("GET", path, token, None).await
    }

    async fn token(&self, username: &str) -> String {
        self.p
            .create_api_token(&Caller::cli("test"), username, "test", 1)
            .await
            .unwrap()
    }
}

/// A server whose platform holds the development master keys and a transport key, with
/// three approved cards, an administrator, an auditor and two clerks.
async fn start(backend: Backend) -> (Server, Vec<String>) {
    let tp = platform::testing::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = FileMasterKeyStore::create(&dir.path().join("m.json"), b"t").unwrap();
    keys.load_test_key_set("transit").unwrap();
    let components: Vec<KeyComponent> = [COMPONENT_A, COMPONENT_B]
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            let kcv = crypto::Key16::from_hex(hex)
                .unwrap()
                .kcv(crypto::Algorithm::Tdes);
            KeyComponent::parse(i + 1, hex, &hex::encode_upper(kcv), crypto::Algorithm::Tdes)
                .unwrap()
        })
        .collect();
    keys.import_components(
        &KeyRef::transit(MasterPurpose::Transport, 1),
        &components,
        crypto::Algorithm::Tdes,
        None,
    )
    .unwrap();
    let p = tp.platform.clone().with_master_keys(Arc::new(keys));
    let cli = Caller::cli("test");
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..40, 1, p.clock.today(), 0).unwrap();
    p.import_residents(
        &cli,
        resident::Source::Police,
        "test",
        "0".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    for (name, role) in [
        ("admin", Role::Administrator),
        ("auditor", Role::Auditor),
        ("clerk-a", Role::CounterClerk),
        ("clerk-b", Role::CounterClerk),
    ] {
        p.create_operator(
            &cli,
            OperatorRequest {
                username: name.into(),
                display_name: name.into(),
                password: common::PASSWORD.into(),
                role,
                department: None,
            },
        )
        .await
        .unwrap();
    }
    // Three approved cards for adult residents of the city.
    let desk = p.clerk_caller("clerk-a", "test").await.unwrap();
    let mut cards = Vec::new();
    let mut i = 0;
    while cards.len() < 3 {
        let id = common::seeded_id(i);
        i += 1;
        if let Ok(c) = p.apply_for_card(&desk, &id, "ordinary", None).await {
            p.card_action(
                &desk,
                &c.number,
                CardRequest::Approve,
                parse_reason("routine").unwrap(),
            )
            .await
            .unwrap();
            cards.push(c.number);
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, p.clone(), async {
        let _ = rx.await;
    }));
    (
        Server {
            base,
            p,
            _tp: tp,
            _keys: dir,
            stop: Some(tx),
            client: Client::builder(TokioExecutor::new()).build_http(),
        },
        cards,
    )
}

async fn production_over_http(backend: Backend) {
    let (s, cards) = start(backend).await;
    let admin = s.token("admin").await;
    let auditor = s.token("auditor").await;
    let clerk_a = s.token("clerk-a").await;
    let clerk_b = s.token("clerk-b").await;
    let today = s.p.clock.today().to_string();

    // Outlets and clerks: administrators only.
    for code in ["ZZ-A", "ZZ-B"] {
        let r = s
            .post("/api/v1/outlets", &admin, json!({"code": code, "name_zh": "金水服务网点", "name_en": "Jinshui", "address": "金水路 1 号"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s
        .post(
            "/api/v1/outlets",
            &admin,
            json!({"code": "ZZ-A", "name_zh": "x", "name_en": "x", "address": "x"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = s
        .post(
            "/api/v1/outlets",
            &admin,
            json!({"code": "bad code!", "name_zh": "x", "name_en": "x", "address": "x"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/clerks",
            &admin,
            json!({"username": "clerk-a"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["clerks"], json!(["clerk-a"]));
    s.post(
        "/api/v1/outlets/ZZ-B/clerks",
        &admin,
        json!({"username": "clerk-b"}),
    )
    .await;
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/clerks",
            &admin,
            json!({"username": "auditor"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s
        .post(
            "/api/v1/outlets",
            &clerk_a,
            json!({"code": "ZZ-C", "name_zh": "x", "name_en": "x", "address": "x"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        s.get("/api/v1/outlets", &auditor)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A batch, its personalization file, the bureau's results.
    let r = s
        .post(
            "/api/v1/batches",
            &admin,
            json!({"max": 10, "algorithm": "SM4"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let batch = r.json()["batch"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["batch"]["card_count"], 3);
    let r = s.post("/api/v1/batches", &admin, json!({"max": 10})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let perso = s
        .get(&format!("/api/v1/batches/{batch}/personalization"), &admin)
        .await;
    assert_eq!(perso.status, 200, "{}", perso.body);
    assert!(perso.body.starts_with(&format!("CCPERSO|2|{batch}|3|")));
    let r = s
        .get(
            &format!("/api/v1/batches/{batch}/personalization"),
            &auditor,
        )
        .await;
    assert_eq!(r.status, 403);
    let mut results = Vec::new();
    emulate_bureau(
        perso.body.as_bytes(),
        &BureauConfig {
            transport_key: transport_key(),
            serial_first: 0x10,
            initial_pin: "123456".into(),
            fail: vec![(
                chip::CardNumber::parse(&cards[2]).unwrap(),
                "bad chip".into(),
            )],
        },
        &mut results,
    )
    .unwrap();
    let path = format!("/api/v1/batches/{batch}/results");
    let mut bad = results.clone();
    bad.truncate(bad.len() - 5);
    let r = s
        .send("POST", &path, &admin, Some(("text/plain", bad)))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("nothing imported")
    );
    let r = s
        .send("POST", &path, &admin, Some(("text/plain", results.clone())))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["produced"], 2);
    assert_eq!(r.json()["failed"][0]["card_number"], cards[2].as_str());
    let r = s
        .send("POST", &path, &admin, Some(("text/plain", results)))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = s
        .post(
            &format!("/api/v1/batches/{batch}/distribution"),
            &admin,
            json!({"outlet": "ZZ-A"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["delivered"], 2);
    let r = s.get(&format!("/api/v1/batches/{batch}"), &auditor).await;
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["distributed"].as_i64()),
        (Some("imported"), Some(2))
    );

    // Stock and the counter: a clerk only at its own outlet.
    let r = s.get("/api/v1/outlets/ZZ-A/stock", &clerk_a).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["by_state"]["at_outlet"], 2);
    assert_eq!(
        s.get("/api/v1/outlets/ZZ-A/stock", &clerk_b).await.status,
        403
    );
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/hand-over",
            &clerk_b,
            json!({"card_number": cards[0]}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/hand-over",
            &admin,
            json!({"card_number": cards[0]}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/hand-over",
            &clerk_a,
            json!({"card_number": cards[0]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "active");
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/lost-reports",
            &clerk_a,
            json!({"card_number": cards[0]}),
        )
        .await;
    assert_eq!(r.json()["state"], "reported_lost");
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/replacements",
            &clerk_a,
            json!({"card_number": cards[0], "reason": "lost"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fee_fen"], 2000);

    // The journal and the closing with a difference.
    let r = s
        .get(
            &format!("/api/v1/outlets/ZZ-A/journal?date={today}"),
            &auditor,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fees_fen"], 2000);
    assert_eq!(r.json()["lines"].as_array().unwrap().len(), 3);
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/closing",
            &clerk_a,
            json!({"date": today, "declared_fen": 2100}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["difference_fen"].as_i64(),
            r.json()["balanced"].as_bool()
        ),
        (Some(100), Some(false))
    );
    let r = s
        .post(
            "/api/v1/outlets/ZZ-A/closing",
            &clerk_a,
            json!({"date": today, "declared_fen": 2000}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // The console pages, Chinese first and English.
    let r = s.get("/console/cards/batches", &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("制卡批次") && r.body.contains(&batch));
    let r = s.get("/console/cards/outlets?lang=en", &clerk_a).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Service outlets") && r.body.contains("ZZ-A"));
    assert!(r.body.contains("replacement") && r.body.contains("20.00") && r.body.contains("1.00"));
    let r = s.get("/console/cards/outlets?outlet=ZZ-A", &clerk_b).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s.get("/console/cards/batches", &clerk_a).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

both_backends!(production_over_http);
