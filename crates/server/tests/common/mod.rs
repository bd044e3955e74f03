//! A running server on a free loopback port over a fresh platform, and a small HTTP client.

#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::testing::{Backend, TestPlatform};
use platform::{Caller, operators::OperatorRequest};
use resident::Source;
use std::sync::Arc;
use store::Role;

pub struct App {
    pub base: String,
    pub tp: TestPlatform,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
    /// The body as received (binary responses: the deny-list).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The ID numbers the fixture's residents have (from the demo generator, seed 1).
pub fn seeded_id(i: u64) -> String {
    platform::demo::id_number(i, 1, time::macros::date!(2026 - 11 - 26))
        .as_str()
        .to_string()
}

pub const PASSWORD: &str = "test-password-1";

pub async fn start(backend: Backend) -> App {
    let tp = platform::testing::fresh(backend).await;
    let p = &tp.platform;
    // Ten residents, so lookups have something to find.
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..10, 1, p.clock.today(), 0).unwrap();
    p.import_residents(
        &Caller::cli("test"),
        Source::Police,
        "test",
        "0".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    for role in Role::ALL {
        p.create_operator(
            &Caller::cli("test"),
            OperatorRequest {
                username: role.as_str().replace('_', "-"),
                display_name: role.name_zh().into(),
                password: PASSWORD.into(),
                role,
                department: (role == Role::DepartmentOfficer).then_some(Source::Police),
            },
        )
        .await
        .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, tp.platform.clone(), async {
        let _ = rx.await;
    }));
    App {
        base,
        tp,
        stop: Some(tx),
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl App {
    pub fn username(role: Role) -> String {
        role.as_str().replace('_', "-")
    }

    /// A fresh API token for the fixture's operator of `role`.
    pub async fn token(&self, role: Role) -> String {
        self.tp
            .platform
            .create_api_token(&Caller::cli("test"), &Self::username(role), "test", 1)
            .await
            .unwrap()
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some((ctype, bytes)) => {
                b = b.header("content-type", ctype);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(b.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: bytes.to_vec(),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send("GET", path, token, None).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        json: serde_json::Value,
    ) -> Resp {
        self.send(
            "POST",
            path,
            token,
            Some(("application/json", json.to_string().into_bytes())),
        )
        .await
    }
}

/// Expands each listed async test function `name(backend)` into one test per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(platform::testing::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(platform::testing::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Moves `fen` from the bank float (ICBC) into `to` as a ledger transfer of `kind` under
/// idempotency key `key`: money on a card's shadow or a citizen's account for a test.
pub async fn fund(
    p: &platform::Platform,
    to: ledger::AccountKey,
    kind: ledger::TransferKind,
    fen: i64,
    key: &str,
) {
    let sys = Caller::cli("test");
    let rows = p
        .ledger_accounts(
            &sys,
            &[
                ledger::AccountKey::new(
                    ledger::AccountKind::BankFloat,
                    ledger::Owner::Bank("ICBC".into()),
                    ledger::Unit::Cny,
                )
                .unwrap(),
                to,
            ],
        )
        .await
        .unwrap();
    p.transfer(
        &sys,
        ledger::Transfer::simple(
            ledger::IdempotencyKey::parse(key).unwrap(),
            kind,
            "",
            rows[0].id,
            rows[1].id,
            ledger::Unit::Cny,
            ledger::Amount(fen),
        ),
    )
    .await
    .unwrap();
}

/// The counter clerk of the fixture (operator 1), as the platform sees it.
pub fn clerk() -> Caller {
    Caller {
        operator_id: Some(1),
        username: "clerk".into(),
        role: Role::CounterClerk,
        department: None,
        origin: "test".into(),
    }
}

/// An active card for the seeded resident `holder_seed`, a root key generated, and a phone
/// (`device`, secret bytes `secret`) enrolled on the card and certified at `certified_at`
/// (unix seconds). Returns the card number, the holder's ID number and the phone.
pub async fn card_with_phone(
    p: &platform::Platform,
    holder_seed: u64,
    device: &str,
    secret: u8,
    certified_at: u32,
) -> (String, String, ecode::Phone) {
    use platform::cards::{CardRequest as R, parse_reason};
    let sys = Caller::cli("test");
    let clerk = clerk();
    let holder = seeded_id(holder_seed);
    let card = p
        .apply_for_card(&clerk, &holder, "ordinary", None)
        .await
        .unwrap()
        .number;
    for (who, req, reason) in [
        (&clerk, R::Approve, "routine"),
        (&sys, R::SendToProduction, "routine"),
        (&sys, R::ProductionDone, "routine"),
        (&clerk, R::Post, "routine"),
        (&clerk, R::Activate, "holder_request"),
    ] {
        p.card_action(who, &card, req, parse_reason(reason).unwrap())
            .await
            .unwrap();
    }
    p.ecode_root_generate(&sys).await.unwrap();
    let mut phone = ecode::Phone::new(
        ecode::DeviceId::parse(device).unwrap(),
        &crypto::Key32::from_bytes([secret; 32]),
    )
    .unwrap();
    p.ecode_device_bind(&clerk, &card, device, &phone.public_key().to_compressed())
        .await
        .unwrap();
    let number = ecode::CardNumber::parse(&card).unwrap();
    let issued = p
        .ecode_certify(&clerk, &phone.certificate_request(number, certified_at))
        .await
        .unwrap();
    phone.install_certificate(issued.certificate).unwrap();
    (card, holder, phone)
}

/// An operator signed in to the console: the session cookie a browser would hold.
pub struct Console<'a> {
    app: &'a App,
    cookie: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

pub fn form_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

impl<'a> Console<'a> {
    pub async fn sign_in(app: &'a App, role: Role) -> Self {
        let mut c = Console {
            app,
            cookie: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let r = c
            .send(
                "POST",
                "/console/login",
                Some(form_body(&[
                    ("username", &App::username(role)),
                    ("password", PASSWORD),
                ])),
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let set = r.headers["set-cookie"].to_str().unwrap();
        c.cookie = set.split(';').next().unwrap().to_string();
        c
    }

    pub async fn send(&self, method: &str, path: &str, form: Option<Vec<u8>>) -> Resp {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.app.base));
        if !self.cookie.is_empty() {
            b = b.header("cookie", &self.cookie);
        }
        let body = match form {
            Some(bytes) => {
                b = b.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(b.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: bytes.to_vec(),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        let r = self.send("GET", path, None).await;
        assert_ne!(r.status, 303, "GET {path}: sent to sign in");
        assert!(
            !r.body.contains("<script"),
            "no scripts on console pages: {path}"
        );
        r
    }

    /// The form token the page hands this session.
    pub async fn token(&self, page: &str) -> String {
        let html = self.get(page).await.body;
        let at = html
            .find("name=\"token\" value=\"")
            .unwrap_or_else(|| panic!("no form token on {page}: {html}"));
        html[at + 20..].split('"').next().unwrap().to_string()
    }

    /// The form token of this session, computed as the server does (SM3 over the session's
    /// credential): for roles whose pages offer no form.
    pub fn computed_token(&self) -> String {
        use sm3::Digest;
        let credential = self.cookie.trim_start_matches("citycard_session=");
        let mut h = sm3::Sm3::new();
        h.update(b"citycard console form token\0");
        h.update(credential.as_bytes());
        hex::encode(h.finalize())
    }

    /// Posts a form; a redirect is followed: the location and the page it names.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (String, Resp) {
        let r = self.send("POST", path, Some(form_body(fields))).await;
        assert_eq!(r.status, 303, "POST {path}: {} {}", r.status, r.body);
        let to = r.headers["location"].to_str().unwrap().to_string();
        let page = self.get(&to).await;
        assert_eq!(page.status, 200, "{}", page.body);
        (to, page)
    }
}
