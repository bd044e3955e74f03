//! Simulated department providers: police (traffic violations by ID number), the housing
//! provident fund (balance), HR and social security (contribution record) and civil affairs
//! (minimum-living-allowance eligibility). Each is a real HTTP service (axum) answering
//! `POST /v1/query` with synthetic data derived from the ID number, after checking that the
//! request was signed by a member it trusts (normally only the exchange) within the clock
//! window and with a fresh nonce; each answer is signed with the provider's member key
//! (`exchange` crate's canonical form, kind `response`, bound to the request's nonce).
//! Requests may come batch-signed (each batch's root verified once); answers are signed
//! through a `platform::exchange::GroupSigner`, so those computed while the previous signature
//! ran go out under one batch signature, each with its path.
//!
//! Switches make it misbehave the ways the exchange must catch: [`Mode::Forge`] signs with a
//! key that is not the member's, [`Mode::Hang`] never answers, [`Mode::Huge`] answers more
//! than any bound, [`Mode::WrongReply`] answers for another request.
//!
//! Run one with `citycard sim provider --kind police --listen 127.0.0.1:0`; tests start them in
//! process.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use exchange::catalog::{FieldSpec, MaskStyle, Sensitivity, Service};
use exchange::message::{
    HEADER_BATCH, HEADER_MEMBER, HEADER_NONCE, HEADER_REPLY_TO, HEADER_SIGNATURE, HEADER_TIME,
    ReplayCache,
};
use exchange::{BatchCache, Envelope, MessageKind};
use platform::clock::Clock;
use platform::exchange::GroupSigner;
use serde_json::{Map, Value, json};
use sm3::{Digest, Sm3};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A request body is at most this large.
pub const REQUEST_BYTES_MAX: usize = 16 * 1024;
/// What [`Mode::Huge`] sends.
pub const HUGE_BYTES: usize = 1024 * 1024;
/// The path every simulated provider serves.
pub const QUERY_PATH: &str = "/v1/query";
/// The police's second service: identity verification with check-in registration (旅馆业
/// 实名登记核验), for hotels and counters.
pub const IDENTITY_SERVICE: &str = "police.identity-checkin";
/// Check-ins the simulated police keeps in memory at most (oldest dropped).
pub const CHECKINS_MAX: usize = 10_000;

/// Which department.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Police,
    Fund,
    Hr,
    Civil,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Police, Kind::Fund, Kind::Hr, Kind::Civil];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "police" => Kind::Police,
            "fund" => Kind::Fund,
            "hr" => Kind::Hr,
            "civil" => Kind::Civil,
            _ => return None,
        })
    }

    /// The member code of the department.
    pub fn member(self) -> &'static str {
        match self {
            Kind::Police => "police",
            Kind::Fund => "fund",
            Kind::Hr => "hr",
            Kind::Civil => "civil",
        }
    }

    pub fn member_name(self) -> &'static str {
        match self {
            Kind::Police => "市公安局",
            Kind::Fund => "市住房公积金管理中心",
            Kind::Hr => "市人力资源和社会保障局",
            Kind::Civil => "市民政局",
        }
    }

    pub fn service_code(self) -> &'static str {
        match self {
            Kind::Police => "police.traffic-violations",
            Kind::Fund => "fund.balance",
            Kind::Hr => "hr.contributions",
            Kind::Civil => "civil.dibao-eligibility",
        }
    }

    /// The catalog entry of the department's service, at `base_url`.
    pub fn service(self, base_url: &str) -> Service {
        use MaskStyle::{IdNumber, Redact};
        use Sensitivity::{Internal, Personal, Sensitive};
        let f = FieldSpec::new;
        let id = f("id_number", Sensitive, IdNumber, "公民身份号码");
        let (name, description, fields, consent) = match self {
            Kind::Police => (
                "交通违法记录查询",
                "Traffic violations of a driver by ID number",
                vec![
                    id,
                    f("violations", Internal, Redact, "未处理违法次数"),
                    f("points", Personal, Redact, "记分"),
                    f("fines_unpaid_fen", Personal, Redact, "未缴罚款（分）"),
                    f("last_violation_date", Personal, Redact, "最近违法日期"),
                ],
                false,
            ),
            Kind::Fund => (
                "住房公积金余额查询",
                "Housing provident fund account status and balance",
                vec![
                    id,
                    f("account_status", Internal, Redact, "账户状态"),
                    f("balance_fen", Sensitive, Redact, "余额（分）"),
                    f("monthly_deposit_fen", Sensitive, Redact, "月缴存额（分）"),
                ],
                true,
            ),
            Kind::Hr => (
                "社会保险缴费记录查询",
                "Social insurance contribution record",
                vec![
                    id,
                    f("insured", Internal, Redact, "是否参保"),
                    f("months_paid", Personal, Redact, "累计缴费月数"),
                    f("last_paid_month", Personal, Redact, "最近缴费月份"),
                    f("contribution_base_fen", Sensitive, Redact, "缴费基数（分）"),
                ],
                true,
            ),
            Kind::Civil => (
                "最低生活保障资格查询",
                "Minimum living allowance (低保) eligibility",
                vec![
                    id,
                    f("eligible", Personal, Redact, "是否享受低保"),
                    f("allowance_fen", Sensitive, Redact, "月保障金（分）"),
                    f("household_size", Personal, Redact, "保障人口"),
                    f("review_due", Internal, Redact, "下次复核日期"),
                ],
                true,
            ),
        };
        Service {
            code: self.service_code().into(),
            provider: self.member().into(),
            name: name.into(),
            description: description.into(),
            input: "id_number".into(),
            fields,
            endpoint: format!("{}{QUERY_PATH}", base_url.trim_end_matches('/')),
            consent_required: consent,
        }
    }

    /// The codes of every service the department serves.
    pub fn service_codes(self) -> &'static [&'static str] {
        match self {
            Kind::Police => &["police.traffic-violations", IDENTITY_SERVICE],
            Kind::Fund => &["fund.balance"],
            Kind::Hr => &["hr.contributions"],
            Kind::Civil => &["civil.dibao-eligibility"],
        }
    }

    /// The police's identity check-in service at `base_url`: the input is the ID number and
    /// the name as read (from the card's holder file, or the resident base behind an e-code);
    /// the answer says whether they match the police's register, the registered name, and the
    /// check-in's registration number. Hotels are granted `verified`, `name` (masked) and
    /// `checkin_id`; never the ID number back.
    pub fn identity_service(base_url: &str) -> Service {
        use MaskStyle::{IdNumber, Name, Redact};
        use Sensitivity::{Internal, Personal, Sensitive};
        let f = FieldSpec::new;
        Service {
            code: IDENTITY_SERVICE.into(),
            provider: Kind::Police.member().into(),
            name: "身份核验与入住登记".into(),
            description: "Identity verification against the police register, recording the \
                          check-in (hotels, counters)"
                .into(),
            // The input is the subject's ID number; the name read travels beside it.
            input: "id_number".into(),
            fields: vec![
                f("id_number", Sensitive, IdNumber, "公民身份号码"),
                f("verified", Internal, Redact, "核验结果"),
                f("status", Internal, Redact, "核验状态"),
                f("name", Personal, Name, "姓名"),
                f("checkin_id", Internal, Redact, "登记编号"),
            ],
            endpoint: format!("{}{QUERY_PATH}", base_url.trim_end_matches('/')),
            consent_required: false,
        }
    }

    /// Synthetic data for an ID number: the same number always gives the same answer.
    pub fn answer(self, id_number: &str) -> Map<String, Value> {
        let h: [u8; 32] = Sm3::new()
            .chain_update(self.member())
            .chain_update(id_number)
            .finalize()
            .into();
        let n = |i: usize, m: u64| ((u64::from(h[i]) << 8) | u64::from(h[i + 1])) % m;
        let month = |i: usize| format!("2026-{:02}", 1 + n(i, 11));
        let v = match self {
            Kind::Police => {
                let count = n(0, 4);
                json!({
                    "id_number": id_number,
                    "violations": count,
                    "points": count * 3,
                    "fines_unpaid_fen": count * 20_000,
                    "last_violation_date": if count > 0 {
                        Value::String(format!("{}-{:02}", month(2), 1 + n(4, 28)))
                    } else {
                        Value::Null
                    },
                })
            }
            Kind::Fund => json!({
                "id_number": id_number,
                "account_status": if h[0].is_multiple_of(10) { "sealed" } else { "normal" },
                "balance_fen": n(2, 10_000) * 1_000 + n(4, 1_000),
                "monthly_deposit_fen": 50_000 + n(6, 300) * 1_000,
            }),
            Kind::Hr => json!({
                "id_number": id_number,
                "insured": !h[0].is_multiple_of(8),
                "months_paid": n(2, 360),
                "last_paid_month": month(4),
                "contribution_base_fen": 350_000 + n(6, 1_000) * 1_000,
            }),
            Kind::Civil => {
                let eligible = h[0].is_multiple_of(5);
                json!({
                    "id_number": id_number,
                    "eligible": eligible,
                    "allowance_fen": if eligible { 62_000 } else { 0 },
                    "household_size": 1 + n(2, 5),
                    "review_due": month(4),
                })
            }
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// The development key of a simulated provider (derived from its member code): what
/// `citycard sim provider` uses unless given another, and what tests register.
pub fn dev_key(kind: Kind) -> Sm2SigningKey {
    let mut seed: [u8; 32] = Sm3::digest(format!("citycard sim provider {}", kind.member())).into();
    loop {
        if let Ok(k) = Sm2SigningKey::from_secret(&Key32::from_bytes(seed)) {
            return k;
        }
        seed = Sm3::digest(seed).into();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Answers signed with a key that is not the member's.
    Forge,
    /// Never answers.
    Hang,
    /// Answers more than [`HUGE_BYTES`].
    Huge,
    /// Answers with a `reply-to` of another request.
    WrongReply,
}

/// A check-in the simulated police recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkin {
    pub checkin_id: String,
    /// The consumer the exchange forwarded for (the hotel).
    pub hotel: String,
    pub id_number: String,
    pub room: String,
    /// `card` or `ecode`: how the hotel read the guest.
    pub via: String,
    pub verified: bool,
    pub at_s: i64,
}

struct Inner {
    kind: Kind,
    /// The police register: ID number → name.
    register: Mutex<std::collections::HashMap<String, String>>,
    checkins: Mutex<std::collections::VecDeque<Checkin>>,
    key: Sm2SigningKey,
    /// Signs the answers, in groups.
    signer: GroupSigner,
    /// Batch roots of requests verified.
    batches: BatchCache,
    clock: Arc<dyn Clock>,
    trusted: Mutex<Vec<(String, Sm2PublicKey)>>,
    mode: Mutex<Mode>,
    replay: Mutex<ReplayCache>,
    answered: AtomicU64,
    refused: AtomicU64,
}

/// A simulated provider; clones share it.
#[derive(Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
}

impl SimProvider {
    /// A provider of `kind` signing with `key`, reading time from `clock`.
    pub fn new(kind: Kind, key: Sm2SigningKey, clock: Arc<dyn Clock>) -> Self {
        SimProvider {
            inner: Arc::new(Inner {
                kind,
                register: Mutex::new(std::collections::HashMap::new()),
                checkins: Mutex::new(std::collections::VecDeque::new()),
                signer: {
                    let k = key.clone();
                    GroupSigner::start(kind.member(), move |m| k.sign(m))
                },
                batches: BatchCache::new(),
                key,
                clock,
                trusted: Mutex::new(Vec::new()),
                mode: Mutex::new(Mode::Normal),
                replay: Mutex::new(ReplayCache::new()),
                answered: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    pub fn public_key(&self) -> Sm2PublicKey {
        self.inner.key.public_key()
    }

    /// Accepts requests signed by `member` with `key` (the exchange; a benchmark's direct
    /// caller).
    pub fn trust(&self, member: &str, key: Sm2PublicKey) {
        // A trusted key verifies every request from that member: build its table once.
        key.precompute();
        let mut t = self.inner.trusted.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|(m, _)| m != member);
        t.push((member.to_string(), key));
    }

    /// Puts a person on the police's register (identity check-ins compare names with it).
    pub fn register(&self, id_number: &str, name: &str) {
        self.inner
            .register
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id_number.to_string(), name.to_string());
    }

    /// The check-ins recorded so far, oldest first.
    pub fn checkins(&self) -> Vec<Checkin> {
        let c = self
            .inner
            .checkins
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.iter().cloned().collect()
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// The answers' SM2 signatures so far, and the answers they signed.
    pub fn signing_counts(&self) -> (u64, u64) {
        self.inner.signer.counts()
    }

    /// Queries answered and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.answered.load(Ordering::Relaxed),
            self.inner.refused.load(Ordering::Relaxed),
        )
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(QUERY_PATH, post(query))
            .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the returned handle is dropped.
    pub fn spawn(&self, listener: tokio::net::TcpListener) -> SimServer {
        let addr = listener.local_addr().expect("a bound listener");
        let app = self.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "simulated provider stopped");
            }
        });
        SimServer { addr, task }
    }
}

/// A running simulated provider; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn refuse(p: &SimProvider, status: StatusCode, why: &str) -> Response {
    p.inner.refused.fetch_add(1, Ordering::Relaxed);
    (status, axum::Json(json!({ "error": why }))).into_response()
}

#[derive(serde::Deserialize)]
struct Query {
    service: String,
    id_number: String,
    #[serde(default)]
    consumer: String,
    /// Identity check-in only: the name as read, the room, how the guest was read.
    #[serde(default)]
    name: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    via: String,
}

/// The police's identity check: compares the name with the register and records the
/// check-in (verified or not: the police want to know of mismatches too).
fn identity_answer(p: &SimProvider, q: &Query, now_s: i64) -> Map<String, Value> {
    let registered = p
        .inner
        .register
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&q.id_number)
        .cloned();
    let (verified, status) = match &registered {
        None => (false, "not_found"),
        Some(n) if n == q.name.trim() => (true, "verified"),
        Some(_) => (false, "mismatch"),
    };
    let mut c = p.inner.checkins.lock().unwrap_or_else(|e| e.into_inner());
    let seq = p.inner.answered.load(Ordering::Relaxed) + c.len() as u64 + 1;
    let checkin_id = format!("CK{now_s}{seq:06}");
    if c.len() == CHECKINS_MAX {
        c.pop_front();
    }
    c.push_back(Checkin {
        checkin_id: checkin_id.clone(),
        hotel: q.consumer.clone(),
        id_number: q.id_number.clone(),
        room: q.room.chars().take(32).collect(),
        via: q.via.chars().take(16).collect(),
        verified,
        at_s: now_s,
    });
    let v = json!({
        "id_number": q.id_number,
        "verified": verified,
        "status": status,
        "name": registered,
        "checkin_id": checkin_id,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

async fn query(State(p): State<SimProvider>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (member, nonce, sig) = (h(HEADER_MEMBER), h(HEADER_NONCE), h(HEADER_SIGNATURE));
    let batch = headers
        .get(HEADER_BATCH)
        .map(|v| v.to_str().unwrap_or("-").to_string());
    let Ok(time_s) = h(HEADER_TIME).parse::<i64>() else {
        return refuse(&p, StatusCode::UNAUTHORIZED, "x-exchange-time missing");
    };
    let key = {
        let t = p.inner.trusted.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().find(|(m, _)| *m == member).map(|(_, k)| k.clone())
    };
    let Some(key) = key else {
        return refuse(&p, StatusCode::UNAUTHORIZED, "the sender is not trusted");
    };
    let kind = p.inner.kind;
    // The service named in the body must be one of ours, and is what the signature covers.
    let service = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("service").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let Some(service) = kind.service_codes().iter().find(|c| **c == service) else {
        return refuse(&p, StatusCode::NOT_FOUND, "another provider's service");
    };
    let env = Envelope {
        kind: MessageKind::Forward,
        member: &member,
        time_s,
        nonce: &nonce,
        service,
        reply_to: "",
        body: &body,
    };
    let now_s = p.inner.clock.now_ms().div_euclid(1000);
    if let Err(e) = env.verify_batched(&key, &sig, batch.as_deref(), now_s, &p.inner.batches) {
        return refuse(&p, StatusCode::UNAUTHORIZED, &e.to_string());
    }
    if let Err(e) = p
        .inner
        .replay
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check_and_insert(&member, &nonce, time_s, now_s)
    {
        return refuse(&p, StatusCode::UNAUTHORIZED, &e.to_string());
    }
    let Ok(q) = serde_json::from_slice::<Query>(&body) else {
        return refuse(&p, StatusCode::BAD_REQUEST, "not a query");
    };
    if q.service != *service {
        return refuse(&p, StatusCode::NOT_FOUND, "another provider's service");
    }
    let mode = *p.inner.mode.lock().unwrap_or_else(|e| e.into_inner());
    if mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
    let answer = if *service == IDENTITY_SERVICE {
        identity_answer(&p, &q, now_s)
    } else if mode == Mode::Huge {
        let mut m = kind.answer(&q.id_number);
        m.insert("padding".into(), Value::String("x".repeat(HUGE_BYTES)));
        m
    } else {
        kind.answer(&q.id_number)
    };
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        return refuse(&p, StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    }
    let r_nonce = exchange::message::nonce_hex(&random);
    let other = "0".repeat(32);
    let reply_to = if mode == Mode::WrongReply {
        other.as_str()
    } else {
        nonce.as_str()
    };
    let renv = Envelope {
        kind: MessageKind::Response,
        member: kind.member(),
        time_s: now_s,
        nonce: &r_nonce,
        service,
        reply_to,
        body: &out,
    };
    let (signature, batch) = if mode == Mode::Forge {
        let mut k = [0x5a; 32];
        k[0] = 0x01;
        let forger = Sm2SigningKey::from_secret(&Key32::from_bytes(k)).expect("a valid scalar");
        (renv.sign(&forger), None)
    } else {
        match p.inner.signer.sign(&renv).await {
            Ok(s) => (s.signature, s.batch),
            Err(_) => return refuse(&p, StatusCode::INTERNAL_SERVER_ERROR, "signer stopped"),
        }
    };
    p.inner.answered.fetch_add(1, Ordering::Relaxed);
    let mut r = (
        StatusCode::OK,
        [
            ("content-type", "application/json".to_string()),
            (HEADER_MEMBER, kind.member().to_string()),
            (HEADER_TIME, now_s.to_string()),
            (HEADER_NONCE, r_nonce.clone()),
            (HEADER_REPLY_TO, reply_to.to_string()),
            (HEADER_SIGNATURE, signature),
        ],
        out,
    )
        .into_response();
    if let Some(b) = batch.and_then(|b| axum::http::HeaderValue::from_str(&b).ok()) {
        r.headers_mut().insert(HEADER_BATCH, b);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpProviderTransport;
    use exchange::message::{BatchProof, sign_group};
    use platform::clock::ManualClock;
    use platform::exchange::{ProviderReply, ProviderTransport};

    const NOW_S: i64 = 1_795_665_600;

    fn exchange_key() -> Sm2SigningKey {
        Sm2SigningKey::from_secret(&Key32::from_bytes([0x51; 32])).unwrap()
    }

    /// Forwards `n` queries signed as one batch by the exchange's key.
    fn batch(n: usize, first: u64) -> (Vec<Vec<u8>>, Vec<String>, Vec<exchange::Signed>) {
        let bodies: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                json!({"service": "police.traffic-violations", "consumer": "card-company",
                    "id_number": format!("41010519900101{:04}", i), "fields": [],
                    "purpose": "test"})
                .to_string()
                .into_bytes()
            })
            .collect();
        let nonces: Vec<String> = (0..n)
            .map(|i| format!("{:032x}", first + i as u64))
            .collect();
        let inputs: Vec<Vec<u8>> = bodies
            .iter()
            .zip(&nonces)
            .map(|(b, n)| {
                Envelope {
                    kind: MessageKind::Forward,
                    member: "exchange",
                    time_s: NOW_S,
                    nonce: n,
                    service: "police.traffic-violations",
                    reply_to: "",
                    body: b,
                }
                .signing_input()
            })
            .collect();
        let signed = sign_group(&inputs, |m| exchange_key().sign(m));
        (bodies, nonces, signed)
    }

    async fn post(
        url: &str,
        nonce: &str,
        signature: &str,
        batch: Option<&str>,
        body: &[u8],
    ) -> ProviderReply {
        let mut headers = vec![
            (HEADER_MEMBER, "exchange".to_string()),
            (HEADER_TIME, NOW_S.to_string()),
            (HEADER_NONCE, nonce.to_string()),
            (HEADER_SIGNATURE, signature.to_string()),
        ];
        if let Some(b) = batch {
            headers.push((HEADER_BATCH, b.to_string()));
        }
        HttpProviderTransport::new()
            .post(url, headers, body.to_vec(), 5_000, 64 * 1024)
            .await
            .unwrap()
    }

    /// The provider's answer verifies with its key, as a reply to `nonce`.
    fn check_answer(r: &ProviderReply, nonce: &str, cache: &BatchCache) {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let h = |n: &str| r.header(n).unwrap_or("");
        assert_eq!(h(HEADER_REPLY_TO), nonce);
        Envelope {
            kind: MessageKind::Response,
            member: h(HEADER_MEMBER),
            time_s: h(HEADER_TIME).parse().unwrap(),
            nonce: h(HEADER_NONCE),
            service: "police.traffic-violations",
            reply_to: h(HEADER_REPLY_TO),
            body: &r.body,
        }
        .verify_batched(
            &dev_key(Kind::Police).public_key(),
            h(HEADER_SIGNATURE),
            r.header(HEADER_BATCH),
            NOW_S,
            cache,
        )
        .unwrap();
    }

    #[tokio::test]
    async fn batch_signed_forwards_are_answered_and_forged_or_replayed_ones_refused() {
        let clock = Arc::new(ManualClock::new(NOW_S * 1000));
        let sim = SimProvider::new(Kind::Police, dev_key(Kind::Police), clock);
        sim.trust("exchange", exchange_key().public_key());
        let server = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let url = format!("{}{QUERY_PATH}", server.url());
        let (bodies, nonces, signed) = batch(4, 1);
        let cache = BatchCache::new();
        // Two of the batch at once: answered, each answer signed by the police (alone or in a
        // batch of answers) and verifying.
        let (a, b) = tokio::join!(
            post(
                &url,
                &nonces[0],
                &signed[0].signature,
                signed[0].batch.as_deref(),
                &bodies[0]
            ),
            post(
                &url,
                &nonces[1],
                &signed[1].signature,
                signed[1].batch.as_deref(),
                &bodies[1]
            )
        );
        check_answer(&a, &nonces[0], &cache);
        check_answer(&b, &nonces[1], &cache);
        // A replayed batch-signed forward.
        let r = post(
            &url,
            &nonces[0],
            &signed[0].signature,
            signed[0].batch.as_deref(),
            &bodies[0],
        )
        .await;
        assert_eq!(r.status, 401);
        // A forged path, another message's path, a malformed one, another body.
        let mut p = BatchProof::parse(signed[2].batch.as_deref().unwrap()).unwrap();
        p.steps[0].sibling[1] ^= 4;
        for (batch, body) in [
            (p.to_header(), &bodies[2]),
            (signed[3].batch.clone().unwrap(), &bodies[2]),
            ("r12".to_string(), &bodies[2]),
            (signed[2].batch.clone().unwrap(), &bodies[3]),
        ] {
            let r = post(&url, &nonces[2], &signed[2].signature, Some(&batch), body).await;
            assert_eq!(r.status, 401, "{batch}");
        }
        // The genuine one is still answered; so is a forward signed alone.
        let r = post(
            &url,
            &nonces[2],
            &signed[2].signature,
            signed[2].batch.as_deref(),
            &bodies[2],
        )
        .await;
        check_answer(&r, &nonces[2], &cache);
        let (bodies, nonces, signed) = batch(1, 100);
        assert_eq!(signed[0].batch, None);
        let r = post(&url, &nonces[0], &signed[0].signature, None, &bodies[0]).await;
        check_answer(&r, &nonces[0], &cache);
        assert_eq!(sim.counts(), (4, 5));
        // Many at once: every answer verifies, whatever batches the provider made.
        let (bodies, nonces, signed) = batch(16, 200);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (url, n, s, b) = (
                url.clone(),
                nonces[i].clone(),
                signed[i].clone(),
                bodies[i].clone(),
            );
            tasks.spawn(async move {
                (
                    n.clone(),
                    post(&url, &n, &s.signature, s.batch.as_deref(), &b).await,
                )
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (n, r) = r.unwrap();
            check_answer(&r, &n, &cache);
        }
    }

    #[test]
    fn synthetic_answers_are_stable_and_fit_their_catalog_entry() {
        for kind in Kind::ALL {
            let a = kind.answer("410105199001011234");
            assert_eq!(a, kind.answer("410105199001011234"));
            let s = kind.service("http://127.0.0.1:1");
            for k in a.keys() {
                assert!(
                    s.field(k).is_some(),
                    "{kind:?} answers {k} outside its catalog"
                );
            }
            assert_eq!(Kind::parse(kind.member()), Some(kind));
        }
        // Each department has its own key.
        let keys: Vec<_> = Kind::ALL.iter().map(|k| dev_key(*k).public_key()).collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(k));
        }
    }
}
