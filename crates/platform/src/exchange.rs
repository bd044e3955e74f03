//! The data-sharing exchange (数据共享, issue 8): members and their SM2 keys, the service
//! catalog, grants, citizens' consents, and the call consumer → platform → provider and back.
//!
//! A call is checked here in this order, and every refusal is written to the audit log and the
//! access log before it is answered: the consumer's signature and clock (`exchange` crate's
//! canonical form), its nonce (in memory, then in storage, so a restart does not forget), the
//! service, the subject, the grant (fields, purpose, validity) and, when the service needs it,
//! the citizen's consent. The platform then forwards a request it signs itself to the
//! provider's endpoint over a [`ProviderTransport`] (bounded answer, time limit), checks the
//! provider's signature on the answer, keeps only the granted fields (masked unless the grant
//! allows them in full), signs what it delivers, and records the SM3 digests of all four
//! messages in the hash-chained audit log and an access row the citizen's data tracker lists.
//! The audit log's head is stamped with the exchange's key once a minute
//! ([`Platform::exchange_stamp_head`]), so a rewritten chain no longer matches its stamps.
//!
//! The exchange signs what it forwards and delivers through a [`GroupSigner`]: whatever waits
//! while the previous signature is computed is signed together, with one SM2 signature over
//! an SM3 hash tree (`exchange::message`'s batch signatures), a lone message alone. It accepts
//! batch-signed requests and responses, verifying each batch's root once ([`BatchCache`]), and
//! records the consumer's and the provider's signatures with their paths on the access row.
//! Members, services and grants are kept in memory ([`CatalogCache`]), dropped on every change
//! made through the platform and at most [`CATALOG_CACHE_TTL_MS`] old.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::audit_writer::{Reply, group_writer, send};
use crate::{Caller, Platform, PlatformError, Result};
use exchange::message::{
    BATCH_SIGN_MAX, HEADER_BATCH, HEADER_MEMBER, HEADER_NONCE, HEADER_REPLY_TO, HEADER_SIGNATURE,
    HEADER_TIME, HeadStamp,
};
use exchange::{
    BatchCache, Envelope, FieldSpec, MessageError, MessageKind, ReplayCache, Service, Signed,
};
use store::{
    AccessRow, ConsentRow, GrantRow, HeadStampRow, MemberRow, NonceClaim, Role, ServiceRow,
    StoreError,
};

/// The exchange's own member code: the sender of what it forwards and delivers.
pub const PLATFORM_MEMBER: &str = "exchange";
/// A consumer's call body is at most this large.
pub const CALL_BODY_MAX: usize = 16 * 1024;
/// A provider's answer is at most this large.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// How long a provider may take, unless configured otherwise.
pub const PROVIDER_TIMEOUT_MS_DEFAULT: u64 = 3_000;
/// How often the audit head is stamped.
pub const STAMP_INTERVAL_MS: u64 = 60_000;
/// A consent lasts at most this long.
pub const CONSENT_DURATION_MAX_MS: i64 = 3 * 366 * 86_400_000;

/// What a provider answered, as received.
#[derive(Debug, Clone)]
pub struct ProviderReply {
    pub status: u16,
    /// The `x-exchange-*` headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ProviderReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the provider did not answer within {0} ms")]
    Timeout(u64),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the provider's answer is larger than {0} bytes")]
    TooLarge(usize),
}

impl TransportError {
    fn code(&self) -> &'static str {
        match self {
            TransportError::Timeout(_) => "provider_timeout",
            TransportError::Unreachable(_) => "provider_unreachable",
            TransportError::TooLarge(_) => "provider_too_large",
        }
    }
}

/// How the platform reaches providers: `exchange_link::HttpProviderTransport` over HTTP.
#[async_trait::async_trait]
pub trait ProviderTransport: Send + Sync {
    /// POSTs `body` as JSON with `headers` to `endpoint`; the whole exchange, answer included,
    /// within `timeout_ms`, the answer at most `answer_max` bytes.
    async fn post(
        &self,
        endpoint: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout_ms: u64,
        answer_max: usize,
    ) -> std::result::Result<ProviderReply, TransportError>;
}

/// Members' keys kept parsed, with their multiplication tables, at most this many.
pub const MEMBER_KEYS_CACHED_MAX: usize = 512;
/// Writes that may wait for the exchange's group commit; beyond this callers wait for room.
pub const WRITE_QUEUE_MAX: usize = 4_096;
/// Writes in one transaction of the group commit.
pub const WRITE_BATCH_MAX: usize = 512;

/// Messages that may wait for a [`GroupSigner`]; beyond this senders wait for room.
pub const SIGN_QUEUE_MAX: usize = 4_096;
/// A [`GroupSigner`] under load (its previous group had more than one message) looks again
/// for more messages after this long, before it signs what it has…
pub const SIGN_LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(100);
/// …as long as each look finds more, and for this long at most.
pub const SIGN_LINGER_MAX: std::time::Duration = std::time::Duration::from_micros(400);
/// How long a cached member, service or grant list is used without being read again: the
/// bound on how late this process sees a change made by another process on the same database
/// (changes made through this process drop the cache at once).
pub const CATALOG_CACHE_TTL_MS: u64 = 2_000;
/// Entries of each of the catalog cache's maps at most (the map is emptied when full).
pub const CATALOG_CACHE_MAX: usize = 4_096;

/// Group signing (batch signatures, as X-Road signs): messages are queued to one signing
/// thread, which signs everything that queued while it signed the previous group together —
/// one SM2 signature over the SM3 hash tree of their digests, each message with its path
/// (`exchange::message::sign_group`). A message that finds the signer idle is signed alone at
/// once, so a lone call waits for nothing. Under load — the previous group was not alone — the
/// signer lingers: it looks again for more messages every [`SIGN_LINGER_STEP`] while each look
/// finds more, up to [`SIGN_LINGER_MAX`], so that one signature covers more messages (every
/// signature saved is also a verification saved at the receiver). The thread ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct GroupSigner {
    tx: mpsc::Sender<(Vec<u8>, oneshot::Sender<Signed>)>,
    /// SM2 signatures made, and messages signed by them.
    counts: Arc<(AtomicU64, AtomicU64)>,
}

impl GroupSigner {
    /// Starts the signing thread with `sign` (raw SM2 over a message, `r || s`).
    pub fn start(name: &str, sign: impl Fn(&[u8]) -> [u8; 64] + Send + 'static) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<Signed>)>(SIGN_QUEUE_MAX);
        let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let c = counts.clone();
        std::thread::Builder::new()
            .name(format!("sign-{name}"))
            .spawn(move || {
                let mut inputs = Vec::with_capacity(BATCH_SIGN_MAX);
                let mut replies = Vec::with_capacity(BATCH_SIGN_MAX);
                let mut loaded = false;
                while let Some((input, reply)) = rx.blocking_recv() {
                    inputs.push(input);
                    replies.push(reply);
                    let mut take_queued = |inputs: &mut Vec<_>, replies: &mut Vec<_>| {
                        while inputs.len() < BATCH_SIGN_MAX {
                            let Ok((input, reply)) = rx.try_recv() else {
                                break;
                            };
                            inputs.push(input);
                            replies.push(reply);
                        }
                    };
                    take_queued(&mut inputs, &mut replies);
                    if loaded || inputs.len() > 1 {
                        let until = std::time::Instant::now() + SIGN_LINGER_MAX;
                        while inputs.len() < BATCH_SIGN_MAX && std::time::Instant::now() < until {
                            std::thread::sleep(SIGN_LINGER_STEP);
                            let had = inputs.len();
                            take_queued(&mut inputs, &mut replies);
                            if inputs.len() == had {
                                break;
                            }
                        }
                    }
                    loaded = inputs.len() > 1;
                    let signed = exchange::message::sign_group(&inputs, &sign);
                    c.0.fetch_add(1, Ordering::Relaxed);
                    c.1.fetch_add(inputs.len() as u64, Ordering::Relaxed);
                    for (reply, s) in replies.drain(..).zip(signed) {
                        let _ = reply.send(s);
                    }
                    inputs.clear();
                }
            })
            .expect("starting a signing thread");
        GroupSigner { tx, counts }
    }

    /// SM2 signatures made so far, and the messages they signed.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.0.load(Ordering::Relaxed),
            self.counts.1.load(Ordering::Relaxed),
        )
    }

    /// Signs one message, alone or with those queued beside it.
    pub async fn sign(&self, env: &Envelope<'_>) -> Result<Signed> {
        let (reply, wait) = oneshot::channel();
        let stopped = || PlatformError::Unexpected("the group signer stopped".into());
        self.tx
            .send((env.signing_input(), reply))
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())
    }
}

/// A consumer's grants on a service, with when they were read.
type CachedGrants = (Instant, Arc<Vec<exchange::Grant>>);

/// Members, services and each consumer's grants on a service, as last read from storage, with
/// when they were read. `generation` counts changes: a read that began before a change is not
/// put in the cache after it.
#[derive(Default)]
pub(crate) struct CatalogCache {
    generation: u64,
    members: HashMap<String, (Instant, Option<MemberRow>)>,
    services: HashMap<String, (Instant, Option<Service>)>,
    grants: HashMap<(String, String), CachedGrants>,
}

/// The exchange's state in a process.
pub struct ExchangeState {
    pub(crate) signer: Arc<keys::Signer>,
    /// Signs what the exchange forwards and delivers, in groups.
    group: GroupSigner,
    /// Batch roots verified, of consumers' requests and providers' responses.
    batches: BatchCache,
    catalog: Mutex<CatalogCache>,
    pub(crate) replay: Mutex<ReplayCache>,
    pub(crate) transport: RwLock<Option<Arc<dyn ProviderTransport>>>,
    pub(crate) timeout_ms: AtomicU64,
    /// Parsed member keys by their SEC1 bytes (a key is a pure function of its bytes, so a
    /// rotated or withdrawn key cannot be served stale: the member row is still read per call).
    keys: Mutex<HashMap<Vec<u8>, crypto::Sm2PublicKey>>,
    writer: ExchangeWriter,
}

impl ExchangeState {
    pub fn new(
        signer: keys::Signer,
        store: Arc<dyn store::Store>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        let signer = Arc::new(signer);
        let s = signer.clone();
        ExchangeState {
            group: GroupSigner::start("exchange", move |m| s.sign(m)),
            signer,
            batches: BatchCache::new(),
            catalog: Mutex::new(CatalogCache::default()),
            replay: Mutex::new(ReplayCache::new()),
            transport: RwLock::new(None),
            timeout_ms: AtomicU64::new(PROVIDER_TIMEOUT_MS_DEFAULT),
            keys: Mutex::new(HashMap::new()),
            writer: ExchangeWriter::start(store, clock),
        }
    }

    /// A member's key, parsed once and with its table built, since it verifies every call of
    /// that member (about three times faster than a key parsed per call).
    fn member_key(&self, sec1: &[u8]) -> Result<crypto::Sm2PublicKey> {
        let mut keys = self.keys.lock().expect("member keys lock");
        if let Some(k) = keys.get(sec1) {
            return Ok(k.clone());
        }
        let key = crypto::Sm2PublicKey::from_sec1(sec1)
            .map_err(|e| PlatformError::Unexpected(format!("stored member key: {e}")))?;
        key.precompute();
        if keys.len() >= MEMBER_KEYS_CACHED_MAX {
            keys.clear();
        }
        keys.insert(sec1.to_vec(), key.clone());
        Ok(key)
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, CatalogCache> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every cached member, service and grant list: called after each change through
    /// the platform, once it is stored, so the next call reads it.
    fn catalog_changed(&self) {
        let mut c = self.catalog();
        c.generation += 1;
        c.members.clear();
        c.services.clear();
        c.grants.clear();
    }

    /// The value cached under `key` in the map `pick` chooses, if read less than
    /// [`CATALOG_CACHE_TTL_MS`] ago; otherwise `load`ed and cached, unless the catalog changed
    /// while it was being read.
    async fn cached<K: Hash + Eq, V: Clone>(
        &self,
        pick: fn(&mut CatalogCache) -> &mut HashMap<K, (Instant, V)>,
        key: K,
        load: impl Future<Output = Result<V>>,
    ) -> Result<V> {
        let generation = {
            let mut c = self.catalog();
            if let Some((at, v)) = pick(&mut c).get(&key)
                && at.elapsed() < Duration::from_millis(CATALOG_CACHE_TTL_MS)
            {
                return Ok(v.clone());
            }
            c.generation
        };
        let v = load.await?;
        let mut c = self.catalog();
        if c.generation == generation {
            let map = pick(&mut c);
            if map.len() >= CATALOG_CACHE_MAX {
                map.clear();
            }
            map.insert(key, (Instant::now(), v.clone()));
        }
        Ok(v)
    }
}

/// Group commit for the exchange's two writes per call, as [`crate::audit_writer`] does for
/// the audit log: the nonces claimed while the previous claim transaction ran are claimed in
/// one transaction, and the calls' audit entries with their access rows are written in one
/// more. The two are independent queues with a writer each, so a claim never waits for a log
/// write to be flushed nor the reverse (on PostgreSQL the two flush side by side). Each caller
/// is answered when its write is durable.
#[derive(Clone)]
struct ExchangeWriter {
    claims: mpsc::Sender<(NonceClaim, Reply<bool>)>,
    logs: mpsc::Sender<((audit::Draft, AccessRow), Reply<audit::Entry>)>,
}

impl ExchangeWriter {
    fn start(store: Arc<dyn store::Store>, clock: Arc<dyn crate::clock::Clock>) -> Self {
        let s = store.clone();
        let (queue, batch) = (WRITE_QUEUE_MAX, WRITE_BATCH_MAX);
        let claims = group_writer(
            "nonce store",
            queue,
            batch,
            move |claims: Vec<NonceClaim>| {
                let s = s.clone();
                async move { s.exchange_nonces_claim(&claims).await }
            },
        );
        let logs = group_writer("audit log", queue, batch, move |logs: Vec<_>| {
            let (s, now) = (store.clone(), clock.now_ms());
            async move { s.exchange_log_batch(logs, now).await }
        });
        ExchangeWriter { claims, logs }
    }

    /// True when the nonce was fresh (and is now recorded), false for a replay.
    async fn claim(&self, member: &str, nonce: &str, at_ms: i64) -> Result<bool> {
        let c = NonceClaim {
            member: member.into(),
            nonce: nonce.into(),
            at_ms,
        };
        send(&self.claims, c).await
    }

    async fn log(&self, draft: audit::Draft, row: AccessRow) -> Result<audit::Entry> {
        send(&self.logs, (draft, row)).await
    }
}

/// A consumer's signed call as received.
#[derive(Debug, Clone)]
pub struct SignedCall<'a> {
    pub member: &'a str,
    pub time_s: i64,
    pub nonce: &'a str,
    pub signature: &'a str,
    /// The `x-exchange-batch` header of a batch-signed call; `None` when signed alone.
    pub batch: Option<&'a str>,
    pub body: &'a [u8],
    pub origin: &'a str,
}

/// The call's body.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct CallBody {
    pub service: String,
    /// The citizen the call is about. Personal data: never logged.
    pub id_number: String,
    /// Fields asked for; empty for every field the grant allows.
    #[serde(default)]
    pub fields: Vec<String>,
    pub purpose: String,
}

/// What the platform forwards to the provider.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct ForwardBody {
    pub service: String,
    pub consumer: String,
    pub id_number: String,
    pub fields: Vec<String>,
    pub purpose: String,
}

/// What the consumer receives, signed by the exchange.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// JSON: `service`, `call` (the request's nonce), `data`, `masked`, `legal_basis`,
    /// `consent`.
    pub body: Vec<u8>,
    pub time_s: i64,
    pub nonce: String,
    pub reply_to: String,
    pub signature: String,
    /// The `x-exchange-batch` header when the delivery was signed in a batch.
    pub batch: Option<String>,
}

/// The audit chain and its stamps, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampReport {
    /// Entries checked, or the chain's first break.
    pub chain: std::result::Result<u64, String>,
    pub stamps_checked: usize,
    /// Stamps that no longer match the chain or their signature: (seq, why).
    pub bad_stamps: Vec<(i64, String)>,
}

fn admin_only(caller: &Caller, what: &str) -> Result<()> {
    if caller.role == Role::Administrator {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(format!(
            "only administrators {what}"
        )))
    }
}

fn name_err(e: exchange::NameError) -> PlatformError {
    PlatformError::invalid(e.what, e.rule)
}

pub(crate) fn random_nonce() -> Result<String> {
    let mut r = [0u8; 16];
    getrandom::fill(&mut r)
        .map_err(|_| PlatformError::Unexpected("no randomness for a nonce".into()))?;
    Ok(exchange::message::nonce_hex(&r))
}

pub fn service_of_row(r: &ServiceRow) -> Result<Service> {
    let fields: Vec<FieldSpec> = serde_json::from_str(&r.fields_json)
        .map_err(|e| PlatformError::Unexpected(format!("stored service fields: {e}")))?;
    Ok(Service {
        code: r.code.clone(),
        provider: r.provider.clone(),
        name: r.name.clone(),
        description: r.description.clone(),
        input: r.input.clone(),
        fields,
        endpoint: r.endpoint.clone(),
        consent_required: r.consent_required,
    })
}

pub(crate) fn grant_of_row(g: &GrantRow) -> exchange::Grant {
    exchange::Grant {
        id: g.id,
        consumer: g.consumer.clone(),
        service: g.service.clone(),
        fields: g.fields.clone(),
        full_fields: g.full_fields.clone(),
        purpose: g.purpose.clone(),
        legal_basis: g.legal_basis.clone(),
        valid_from_ms: g.valid_from_ms,
        valid_until_ms: g.valid_until_ms,
        withdrawn_ms: g.withdrawn_ms,
    }
}

fn consent_of_row(c: &ConsentRow) -> exchange::Consent {
    exchange::Consent {
        id: c.id,
        resident_id: c.resident_id,
        consumer: c.consumer.clone(),
        service: c.service.clone(),
        purpose: c.purpose.clone(),
        given_ms: c.given_ms,
        expires_ms: c.expires_ms,
        revoked_ms: c.revoked_ms,
    }
}

/// The parts of a call known so far, for its log row.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallLog {
    pub(crate) consumer: String,
    pub(crate) service: String,
    pub(crate) provider: String,
    pub(crate) resident_id: Option<i64>,
    pub(crate) fields: Vec<String>,
    pub(crate) masked: Vec<String>,
    pub(crate) purpose: String,
    pub(crate) legal_basis: Option<String>,
    pub(crate) grant_id: Option<i64>,
    pub(crate) consent_id: Option<i64>,
    pub(crate) request_digest: Option<String>,
    pub(crate) forward_digest: Option<String>,
    pub(crate) response_digest: Option<String>,
    pub(crate) delivery_digest: Option<String>,
    pub(crate) request_signature: Option<String>,
    pub(crate) request_batch: Option<String>,
    pub(crate) response_signature: Option<String>,
    pub(crate) response_batch: Option<String>,
}

pub(crate) fn message_code(e: &MessageError) -> &'static str {
    match e {
        MessageError::Member => "member",
        MessageError::Nonce => "nonce",
        MessageError::Clock(_) => "clock",
        MessageError::Replay => "replay",
        MessageError::Signature => "signature",
        MessageError::ReplyTo => "reply_to",
        MessageError::Batch(_) => "batch",
    }
}

impl Platform {
    /// Attaches how providers are reached (HTTP in a server; tests use the same).
    pub fn exchange_attach_transport(&self, t: Arc<dyn ProviderTransport>) {
        *self.exchange.transport.write().expect("transport lock") = Some(t);
    }

    /// Sets how long a provider may take.
    pub fn exchange_set_timeout_ms(&self, ms: u64) {
        self.exchange
            .timeout_ms
            .store(ms.clamp(1, 60_000), Ordering::Relaxed);
    }

    /// Empties the in-memory replay cache, as a restart does (storage still knows the nonces).
    pub fn exchange_forget_replay_cache(&self) {
        *self.exchange.replay.lock().expect("replay cache lock") = ReplayCache::new();
    }

    /// The exchange's group signer's counts: SM2 signatures made and the messages (forwards and
    /// deliveries) they signed.
    pub fn exchange_signing_counts(&self) -> (u64, u64) {
        self.exchange.group.counts()
    }

    /// The exchange's SM2 public key (SEC1 compressed): providers verify forwarded requests and
    /// consumers verify deliveries with it.
    pub fn exchange_public_key(&self) -> [u8; 33] {
        self.exchange.signer.public_key()
    }

    pub async fn exchange_member_create(
        &self,
        caller: &Caller,
        code: &str,
        name: &str,
        public_key: &[u8],
    ) -> Result<MemberRow> {
        admin_only(caller, "register exchange members")?;
        exchange::check_member(code).map_err(name_err)?;
        if code == PLATFORM_MEMBER {
            return Err(PlatformError::invalid(
                "code",
                "is the exchange's own member code",
            ));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(PlatformError::invalid("name", "1 to 100 characters"));
        }
        let key = crypto::Sm2PublicKey::from_sec1(public_key)
            .map_err(|e| PlatformError::invalid("public_key", e.to_string()))?;
        let m = MemberRow {
            code: code.into(),
            name: name.into(),
            public_key: key.to_compressed().to_vec(),
            status: "active".into(),
            created_ms: self.clock.now_ms(),
        };
        self.store
            .member_insert(
                &m,
                caller.draft("exchange.member.create", format!("member:{code}"), name),
                m.created_ms,
            )
            .await?;
        self.exchange.catalog_changed();
        Ok(m)
    }

    pub async fn exchange_members(&self) -> Result<Vec<MemberRow>> {
        Ok(self.store.members().await?)
    }

    /// Publishes a service of a member in the catalog.
    pub async fn exchange_service_publish(&self, caller: &Caller, s: &Service) -> Result<Service> {
        admin_only(caller, "publish services")?;
        exchange::check_service(&s.code).map_err(name_err)?;
        exchange::check_member(&s.provider).map_err(name_err)?;
        exchange::check_text("name", &s.name).map_err(name_err)?;
        if s.description.chars().count() > 1_000 {
            return Err(PlatformError::invalid(
                "description",
                "at most 1000 characters",
            ));
        }
        if s.fields.is_empty() || s.fields.len() > exchange::catalog::FIELDS_MAX {
            return Err(PlatformError::invalid(
                "fields",
                format!("1 to {} fields", exchange::catalog::FIELDS_MAX),
            ));
        }
        for (i, f) in s.fields.iter().enumerate() {
            exchange::check_field(&f.name).map_err(name_err)?;
            if s.fields[..i].iter().any(|g| g.name == f.name) {
                return Err(PlatformError::invalid(
                    "fields",
                    format!("{} is listed twice", f.name),
                ));
            }
        }
        if s.input != "id_number" {
            return Err(PlatformError::invalid(
                "input",
                "services take the subject's id_number",
            ));
        }
        if !s.endpoint.starts_with("http://") && !s.endpoint.starts_with("https://")
            || s.endpoint.len() > 200
        {
            return Err(PlatformError::invalid(
                "endpoint",
                "an http(s) URL of at most 200 characters",
            ));
        }
        let fields_json = serde_json::to_string(&s.fields)
            .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let now = self.clock.now_ms();
        let row = ServiceRow {
            code: s.code.clone(),
            provider: s.provider.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            input: s.input.clone(),
            fields_json,
            endpoint: s.endpoint.clone(),
            consent_required: s.consent_required,
            created_ms: now,
        };
        self.store
            .service_insert(
                &row,
                caller.draft(
                    "exchange.service.publish",
                    format!("service:{}", s.code),
                    format!("provider {}, {} fields", s.provider, s.fields.len()),
                ),
                now,
            )
            .await?;
        self.exchange.catalog_changed();
        Ok(s.clone())
    }

    pub async fn exchange_services(&self) -> Result<Vec<Service>> {
        self.store
            .services()
            .await?
            .iter()
            .map(service_of_row)
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn exchange_grant_create(
        &self,
        caller: &Caller,
        consumer: &str,
        service: &str,
        fields: &[String],
        full_fields: &[String],
        purpose: &str,
        legal_basis: &str,
        valid_from_ms: i64,
        valid_until_ms: i64,
    ) -> Result<GrantRow> {
        admin_only(caller, "grant access to services")?;
        exchange::check_member(consumer).map_err(name_err)?;
        exchange::check_service(service).map_err(name_err)?;
        exchange::check_text("purpose", purpose).map_err(name_err)?;
        exchange::check_text("legal_basis", legal_basis).map_err(name_err)?;
        let svc = self
            .store
            .service(service)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("service {service}")))?;
        let svc = service_of_row(&svc)?;
        if fields.is_empty() || fields.len() > exchange::catalog::FIELDS_MAX {
            return Err(PlatformError::invalid("fields", "at least one field"));
        }
        if let Some(f) = fields.iter().find(|f| svc.field(f).is_none()) {
            return Err(PlatformError::invalid(
                "fields",
                format!("the service has no field {f}"),
            ));
        }
        if let Some(f) = full_fields.iter().find(|f| !fields.contains(f)) {
            return Err(PlatformError::invalid(
                "full_fields",
                format!("{f} is not among the granted fields"),
            ));
        }
        if valid_until_ms <= valid_from_ms {
            return Err(PlatformError::invalid(
                "valid_until_ms",
                "must be after valid_from_ms",
            ));
        }
        let now = self.clock.now_ms();
        let mut g = GrantRow {
            id: 0,
            consumer: consumer.into(),
            service: service.into(),
            fields: fields.to_vec(),
            full_fields: full_fields.to_vec(),
            purpose: purpose.trim().into(),
            legal_basis: legal_basis.trim().into(),
            valid_from_ms,
            valid_until_ms,
            withdrawn_ms: None,
            created_ms: now,
        };
        g.id = self
            .store
            .grant_insert(
                &g,
                caller.draft(
                    "exchange.grant.create",
                    format!("member:{consumer}"),
                    format!(
                        "service {service}, fields {}, full {}, purpose {}",
                        fields.join(","),
                        full_fields.join(","),
                        g.purpose
                    ),
                ),
                now,
            )
            .await?;
        self.exchange.catalog_changed();
        Ok(g)
    }

    pub async fn exchange_grant_withdraw(&self, caller: &Caller, id: i64) -> Result<GrantRow> {
        admin_only(caller, "withdraw grants")?;
        let g = self
            .store
            .grant_withdraw(
                id,
                caller.draft("exchange.grant.withdraw", format!("grant:{id}"), ""),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => PlatformError::Conflict(m),
                e => e.into(),
            })?;
        // Withdrawn means refused from the very next call on.
        self.exchange.catalog_changed();
        Ok(g)
    }

    /// A member as stored, through the catalog cache.
    pub(crate) async fn exchange_member_cached(&self, code: &str) -> Result<Option<MemberRow>> {
        self.exchange
            .cached(|c| &mut c.members, code.to_string(), async {
                Ok(self.store.member(code).await?)
            })
            .await
    }

    /// A service of the catalog, through the catalog cache.
    pub(crate) async fn exchange_service_cached(&self, code: &str) -> Result<Option<Service>> {
        self.exchange
            .cached(|c| &mut c.services, code.to_string(), async {
                self.store
                    .service(code)
                    .await?
                    .as_ref()
                    .map(service_of_row)
                    .transpose()
            })
            .await
    }

    /// A consumer's grants on a service, withdrawn and expired ones included (the decision
    /// checks them against the clock at each call), through the catalog cache.
    pub(crate) async fn exchange_grants_cached(
        &self,
        consumer: &str,
        service: &str,
    ) -> Result<Arc<Vec<exchange::Grant>>> {
        let key = (consumer.to_string(), service.to_string());
        self.exchange
            .cached(|c| &mut c.grants, key, async {
                Ok(Arc::new(
                    self.store
                        .grants_of(Some(consumer), Some(service))
                        .await?
                        .iter()
                        .map(grant_of_row)
                        .collect(),
                ))
            })
            .await
    }

    pub async fn exchange_grants(&self, consumer: Option<&str>) -> Result<Vec<GrantRow>> {
        Ok(self.store.grants_of(consumer, None).await?)
    }

    fn may_act_for_citizen(caller: &Caller) -> Result<()> {
        match caller.role {
            Role::Administrator | Role::CounterClerk => Ok(()),
            _ => Err(PlatformError::Forbidden(
                "consents are recorded for the citizen at a counter (or in the portal)".into(),
            )),
        }
    }

    /// Records a citizen's consent to one consumer calling one service for one purpose.
    pub async fn exchange_consent_give(
        &self,
        caller: &Caller,
        id_number: &str,
        consumer: &str,
        service: &str,
        purpose: &str,
        expires_ms: i64,
    ) -> Result<ConsentRow> {
        Self::may_act_for_citizen(caller)?;
        exchange::check_member(consumer).map_err(name_err)?;
        exchange::check_service(service).map_err(name_err)?;
        exchange::check_text("purpose", purpose).map_err(name_err)?;
        let now = self.clock.now_ms();
        if expires_ms <= now || expires_ms - now > CONSENT_DURATION_MAX_MS {
            return Err(PlatformError::invalid(
                "expires_ms",
                "in the future, at most three years ahead",
            ));
        }
        let resident_id = self.resident_id_of(id_number).await?;
        let mut c = ConsentRow {
            id: 0,
            resident_id,
            consumer: consumer.into(),
            service: service.into(),
            purpose: purpose.trim().into(),
            channel: if caller.role == Role::CounterClerk {
                "counter".into()
            } else {
                "operator".into()
            },
            given_ms: now,
            expires_ms,
            revoked_ms: None,
        };
        c.id = self
            .store
            .consent_insert(
                &c,
                caller.draft(
                    "exchange.consent.give",
                    format!("resident:{resident_id}"),
                    format!(
                        "consumer {consumer}, service {service}, purpose {}",
                        c.purpose
                    ),
                ),
                now,
            )
            .await?;
        Ok(c)
    }

    pub async fn exchange_consent_revoke(
        &self,
        caller: &Caller,
        id_number: &str,
        consent_id: i64,
    ) -> Result<ConsentRow> {
        Self::may_act_for_citizen(caller)?;
        let resident_id = self.resident_id_of(id_number).await?;
        self.store
            .consent_revoke(
                consent_id,
                resident_id,
                caller.draft(
                    "exchange.consent.revoke",
                    format!("resident:{resident_id}"),
                    format!("consent {consent_id}"),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => PlatformError::Conflict(m),
                e => e.into(),
            })
    }

    pub async fn exchange_consents(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<Vec<ConsentRow>> {
        Self::may_act_for_citizen(caller)?;
        let resident_id = self.resident_id_of(id_number).await?;
        Ok(self.store.consents_of(resident_id, None).await?)
    }

    /// The citizen's data tracker: every call about them through the exchange (delivered,
    /// refused or failed), newest first. The read is audited.
    pub async fn exchange_data_access(
        &self,
        caller: &Caller,
        id_number: &str,
        limit: u32,
    ) -> Result<Vec<AccessRow>> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::Auditor => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "a citizen's data accesses are read for the citizen at a counter".into(),
                ));
            }
        }
        let resident_id = self.resident_id_of(id_number).await?;
        let rows = self
            .store
            .accesses_of_resident(resident_id, limit.min(store::EXCHANGE_LIST_MAX))
            .await?;
        self.audit(caller.draft(
            "exchange.data-access.read",
            format!("resident:{resident_id}"),
            format!("{} access(es)", rows.len()),
        ))
        .await?;
        Ok(rows)
    }

    /// The access log for oversight, newest first.
    pub async fn exchange_accesses(
        &self,
        consumer: Option<&str>,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccessRow>> {
        Ok(self.store.accesses_recent(consumer, outcome, limit).await?)
    }

    /// Writes a call's audit entry and access row.
    pub(crate) async fn exchange_log(
        &self,
        log: &CallLog,
        outcome: &str,
        reason: Option<&str>,
        origin: &str,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let action = match outcome {
            "delivered" => "exchange.call",
            "refused" => "exchange.call.refused",
            _ => "exchange.call.failed",
        };
        let record = match log.resident_id {
            Some(id) => format!("resident:{id}"),
            None => format!("service:{}", log.service),
        };
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        let detail = format!(
            "service={} fields={} masked={} purpose={} grant={} consent={} reason={} \
             request_sm3={} forward_sm3={} response_sm3={} delivery_sm3={}",
            log.service,
            log.fields.join(","),
            log.masked.join(","),
            log.purpose,
            log.grant_id.map_or("-".into(), |g| g.to_string()),
            log.consent_id.map_or("-".into(), |c| c.to_string()),
            reason.unwrap_or("-"),
            opt(&log.request_digest),
            opt(&log.forward_digest),
            opt(&log.response_digest),
            opt(&log.delivery_digest),
        );
        let draft = audit::Draft::new(
            format!("member:{}", log.consumer),
            action,
            record,
            origin,
            detail,
        );
        self.exchange
            .writer
            .log(
                draft,
                AccessRow {
                    id: 0,
                    at_ms: now,
                    consumer: log.consumer.clone(),
                    service: log.service.clone(),
                    provider: log.provider.clone(),
                    resident_id: log.resident_id,
                    fields: log.fields.clone(),
                    masked: log.masked.clone(),
                    purpose: log.purpose.clone(),
                    legal_basis: log.legal_basis.clone(),
                    grant_id: log.grant_id,
                    consent_id: log.consent_id,
                    outcome: outcome.into(),
                    reason: reason.map(str::to_string),
                    request_digest: log.request_digest.clone(),
                    response_digest: log.response_digest.clone(),
                    request_signature: log.request_signature.clone(),
                    request_batch: log.request_batch.clone(),
                    response_signature: log.response_signature.clone(),
                    response_batch: log.response_batch.clone(),
                    audit_seq: None,
                },
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn refuse(
        &self,
        log: &CallLog,
        code: &str,
        message: String,
        origin: &str,
    ) -> PlatformError {
        if let Err(e) = self.exchange_log(log, "refused", Some(code), origin).await {
            return e;
        }
        PlatformError::ExchangeRefused {
            code: code.into(),
            message,
        }
    }

    pub(crate) async fn fail(
        &self,
        log: &CallLog,
        code: &str,
        message: String,
        origin: &str,
    ) -> PlatformError {
        if let Err(e) = self.exchange_log(log, "failed", Some(code), origin).await {
            return e;
        }
        PlatformError::ProviderFailed {
            code: code.into(),
            message,
        }
    }

    /// A call that came without the signature headers: logged and refused.
    pub async fn exchange_refuse_unsigned(&self, member: &str, origin: &str) -> PlatformError {
        let log = CallLog {
            consumer: if exchange::check_member(member).is_ok() {
                member.into()
            } else {
                "?".into()
            },
            service: "?".into(),
            ..CallLog::default()
        };
        let msg = "the x-exchange-member, -time, -nonce and -signature headers are required";
        self.refuse(&log, "unsigned", msg.into(), origin).await
    }

    /// One call through the exchange. Every outcome is logged; see the module's description.
    pub async fn exchange_call(&self, call: &SignedCall<'_>) -> Result<Delivered> {
        let origin = call.origin;
        let mut log = CallLog {
            consumer: if exchange::check_member(call.member).is_ok() {
                call.member.into()
            } else {
                "?".into()
            },
            ..CallLog::default()
        };
        if call.body.len() > CALL_BODY_MAX {
            return Err(PlatformError::TooLarge {
                what: "an exchange call".into(),
                limit: format!("{CALL_BODY_MAX} bytes"),
            });
        }
        let body: CallBody = match serde_json::from_slice(call.body) {
            Ok(b) => b,
            Err(e) => {
                return Err(PlatformError::invalid(
                    "body",
                    format!("not an exchange call: {e}"),
                ));
            }
        };
        log.service = if exchange::check_service(&body.service).is_ok() {
            body.service.clone()
        } else {
            "?".into()
        };
        log.fields = body.fields.clone();
        log.fields.truncate(exchange::catalog::FIELDS_MAX);
        log.purpose = body.purpose.chars().take(200).collect();
        let env = Envelope {
            kind: MessageKind::Request,
            member: call.member,
            time_s: call.time_s,
            nonce: call.nonce,
            service: &body.service,
            reply_to: "",
            body: call.body,
        };
        log.request_digest = Some(hex::encode_upper(env.digest()));

        // The consumer: a member, its signature, its clock, its nonce in memory; then, at the
        // same time, its nonce in storage and the subject's record, both read before anything
        // leaves the platform.
        let (member, now_s) = self.exchange_verify_consumer(call, &env, &mut log).await?;
        let (claimed, subject) = tokio::join!(
            self.exchange
                .writer
                .claim(call.member, call.nonce, call.time_s * 1000),
            self.resident_id_of(&body.id_number)
        );
        if !claimed? {
            let e = MessageError::Replay;
            return Err(self
                .refuse(&log, message_code(&e), e.to_string(), origin)
                .await);
        }

        // The service, the subject, the grant and the consent.
        let service = match self.exchange_service_cached(&body.service).await? {
            Some(s) => s,
            None => {
                let msg = format!("no service {}", log.service);
                return Err(self.refuse(&log, "unknown_service", msg, origin).await);
            }
        };
        log.provider = service.provider.clone();
        let resident_id = match subject {
            Ok(id) => Some(id),
            Err(PlatformError::NotFound(_)) => None,
            Err(PlatformError::Invalid { message, .. }) => {
                return Err(self.refuse(&log, "bad_subject", message, origin).await);
            }
            Err(e) => return Err(e),
        };
        log.resident_id = resident_id;
        let grants = self
            .exchange_grants_cached(&member.code, &service.code)
            .await?;
        let consents: Vec<exchange::Consent> = match (service.consent_required, resident_id) {
            (true, Some(r)) => self
                .store
                .consents_of(r, Some((&member.code, &service.code)))
                .await?
                .iter()
                .map(consent_of_row)
                .collect(),
            _ => vec![],
        };
        let ask = exchange::CallAsk {
            consumer: &member.code,
            service: &service,
            fields: &body.fields,
            purpose: &body.purpose,
            resident_id,
        };
        let allowed = match exchange::check(&ask, &grants, &consents, self.clock.now_ms()) {
            Ok(a) => a,
            Err(r) => return Err(self.refuse(&log, r.code(), r.to_string(), origin).await),
        };
        log.fields = allowed.fields.clone();
        log.grant_id = Some(allowed.grant_id);
        log.consent_id = allowed.consent_id;
        log.legal_basis = Some(allowed.legal_basis.clone());

        // Forward, signed by the exchange.
        let forward = serde_json::to_vec(&ForwardBody {
            service: service.code.clone(),
            consumer: member.code.clone(),
            id_number: body.id_number.clone(),
            fields: allowed.fields.clone(),
            purpose: body.purpose.clone(),
        })
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let answer = self
            .exchange_forward(&mut log, &service, forward, now_s, origin)
            .await?;

        // Minimise, mask, sign what is delivered.
        self.exchange_deliver(&mut log, &service, call, &answer, &allowed, None, now_s)
            .await
    }

    /// The consumer of a signed call: an active member whose signature verifies, within the
    /// clock window, with a nonce never used (memory, then storage through the group-committed
    /// writer). Every refusal is logged. Returns the member and the platform's time (seconds).
    pub(crate) async fn exchange_admit(
        &self,
        call: &SignedCall<'_>,
        env: &Envelope<'_>,
        log: &mut CallLog,
    ) -> Result<(MemberRow, i64)> {
        let admitted = self.exchange_verify_consumer(call, env, log).await?;
        if !self
            .exchange
            .writer
            .claim(call.member, call.nonce, call.time_s * 1000)
            .await?
        {
            let e = MessageError::Replay;
            return Err(self
                .refuse(log, message_code(&e), e.to_string(), call.origin)
                .await);
        }
        Ok(admitted)
    }

    /// [`exchange_admit`](Self::exchange_admit) but for the nonce's claim in storage, which
    /// the caller makes next: an active member, its signature (alone or batch-signed, the
    /// batch's root verified once), its clock, its nonce unseen in memory. The signature and
    /// batch path go on the call's log once they verify.
    pub(crate) async fn exchange_verify_consumer(
        &self,
        call: &SignedCall<'_>,
        env: &Envelope<'_>,
        log: &mut CallLog,
    ) -> Result<(MemberRow, i64)> {
        let origin = call.origin;
        let member = match self.exchange_member_cached(&log.consumer).await? {
            Some(m) if m.status == "active" => m,
            _ => {
                let msg = format!("{} is not an active exchange member", log.consumer);
                return Err(self.refuse(log, "unknown_member", msg, origin).await);
            }
        };
        let key = self.exchange.member_key(&member.public_key)?;
        let now_s = self.clock.now_ms().div_euclid(1000);
        if let Err(e) = env.verify_batched(
            &key,
            call.signature,
            call.batch,
            now_s,
            &self.exchange.batches,
        ) {
            return Err(self
                .refuse(log, message_code(&e), e.to_string(), origin)
                .await);
        }
        log.request_signature = Some(call.signature.to_ascii_uppercase());
        log.request_batch = call.batch.map(str::to_string);
        let fresh = self
            .exchange
            .replay
            .lock()
            .expect("replay cache lock")
            .check_and_insert(call.member, call.nonce, call.time_s, now_s);
        if let Err(e) = fresh {
            return Err(self
                .refuse(log, message_code(&e), e.to_string(), origin)
                .await);
        }
        Ok((member, now_s))
    }

    /// Forwards `forward` to the service's provider signed by the exchange, and checks the
    /// answer: HTTP 200, signed by the provider for this forward, a JSON object. Failures are
    /// logged as the provider's.
    pub(crate) async fn exchange_forward(
        &self,
        log: &mut CallLog,
        service: &Service,
        forward: Vec<u8>,
        now_s: i64,
        origin: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let fwd_nonce = random_nonce()?;
        let fwd = Envelope {
            kind: MessageKind::Forward,
            member: PLATFORM_MEMBER,
            time_s: now_s,
            nonce: &fwd_nonce,
            service: &service.code,
            reply_to: "",
            body: &forward,
        };
        log.forward_digest = Some(hex::encode_upper(fwd.digest()));
        let fwd_signed = self.exchange.group.sign(&fwd).await?;
        let transport = self
            .exchange
            .transport
            .read()
            .expect("transport lock")
            .clone();
        let Some(transport) = transport else {
            let msg = "no provider transport is attached to this process".to_string();
            return Err(self.fail(log, "provider_unreachable", msg, origin).await);
        };
        let mut headers = vec![
            (HEADER_MEMBER, PLATFORM_MEMBER.to_string()),
            (HEADER_TIME, now_s.to_string()),
            (HEADER_NONCE, fwd_nonce.clone()),
            (HEADER_SIGNATURE, fwd_signed.signature),
        ];
        if let Some(batch) = fwd_signed.batch {
            headers.push((HEADER_BATCH, batch));
        }
        let timeout_ms = self.exchange.timeout_ms.load(Ordering::Relaxed);
        let reply = match transport
            .post(
                &service.endpoint,
                headers,
                forward,
                timeout_ms,
                ANSWER_BYTES_MAX,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.fail(log, e.code(), e.to_string(), origin).await),
        };
        if reply.status != 200 {
            let msg = format!("the provider answered HTTP {}", reply.status);
            return Err(self.fail(log, "provider_status", msg, origin).await);
        }

        // The provider's answer: signed by the provider, for this forward.
        let provider = self
            .exchange_member_cached(&service.provider)
            .await?
            .ok_or_else(|| PlatformError::Unexpected("a service without its provider".into()))?;
        let pkey = self.exchange.member_key(&provider.public_key)?;
        let h = |n: &str| reply.header(n).unwrap_or("");
        let r_time: i64 = h(HEADER_TIME).parse().unwrap_or(i64::MIN / 2);
        let renv = Envelope {
            kind: MessageKind::Response,
            member: h(HEADER_MEMBER),
            time_s: r_time,
            nonce: h(HEADER_NONCE),
            service: &service.code,
            reply_to: h(HEADER_REPLY_TO),
            body: &reply.body,
        };
        log.response_digest = Some(hex::encode_upper(renv.digest()));
        let checked = if renv.member != provider.code {
            Err(MessageError::Member)
        } else if !renv.reply_to.eq_ignore_ascii_case(&fwd_nonce) {
            Err(MessageError::ReplyTo)
        } else {
            renv.verify_batched(
                &pkey,
                h(HEADER_SIGNATURE),
                reply.header(HEADER_BATCH),
                now_s,
                &self.exchange.batches,
            )
        };
        if let Err(e) = checked {
            let msg = format!("the provider's answer was refused: {e}");
            return Err(self.fail(log, "provider_signature", msg, origin).await);
        }
        log.response_signature = Some(h(HEADER_SIGNATURE).to_ascii_uppercase());
        log.response_batch = reply.header(HEADER_BATCH).map(str::to_string);
        match serde_json::from_slice(&reply.body) {
            Ok(a) => Ok(a),
            Err(e) => {
                let msg = format!("the provider's answer is not a JSON object: {e}");
                Err(self.fail(log, "provider_malformed", msg, origin).await)
            }
        }
    }

    /// What the consumer receives: the answer minimised to the allowed fields and masked by
    /// sensitivity, signed by the exchange as a reply to the call, the delivery logged.
    /// `via` (a check-in's channel) is added to the delivery when given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn exchange_deliver(
        &self,
        log: &mut CallLog,
        service: &Service,
        call: &SignedCall<'_>,
        answer: &serde_json::Map<String, serde_json::Value>,
        allowed: &exchange::Allowed,
        via: Option<&str>,
        now_s: i64,
    ) -> Result<Delivered> {
        let (data, masked) =
            exchange::minimise(service, answer, &allowed.fields, &allowed.full_fields);
        log.masked = masked.clone();
        let mut delivery = serde_json::json!({
            "service": service.code,
            "call": call.nonce.to_ascii_lowercase(),
            "data": data,
            "masked": masked,
            "legal_basis": allowed.legal_basis,
            "consent": allowed.consent_id,
        });
        if let Some(via) = via {
            delivery["via"] = via.into();
        }
        let delivery =
            serde_json::to_vec(&delivery).map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let d_nonce = random_nonce()?;
        let denv = Envelope {
            kind: MessageKind::Delivery,
            member: PLATFORM_MEMBER,
            time_s: now_s,
            nonce: &d_nonce,
            service: &service.code,
            reply_to: call.nonce,
            body: &delivery,
        };
        log.delivery_digest = Some(hex::encode_upper(denv.digest()));
        // Signed while the log is written: both are awaited before anything is delivered.
        let (signed, logged) = tokio::join!(
            self.exchange.group.sign(&denv),
            self.exchange_log(log, "delivered", None, call.origin)
        );
        logged?;
        let signed = signed?;
        Ok(Delivered {
            body: delivery,
            time_s: now_s,
            nonce: d_nonce,
            reply_to: call.nonce.to_ascii_lowercase(),
            signature: signed.signature,
            batch: signed.batch,
        })
    }

    /// Stamps the audit log's head with the exchange's key, unless it was stamped at this head
    /// already. Returns the new stamp.
    pub async fn exchange_stamp_head(&self) -> Result<Option<HeadStampRow>> {
        let Some((seq, hash)) = self.store.audit_head().await? else {
            return Ok(None);
        };
        if self
            .store
            .head_stamps(1)
            .await?
            .first()
            .is_some_and(|s| s.seq == seq)
        {
            return Ok(None);
        }
        let stamp = HeadStamp {
            seq,
            hash,
            stamped_ms: self.clock.now_ms(),
        };
        let row = HeadStampRow {
            seq,
            hash,
            stamped_ms: stamp.stamped_ms,
            signature: self.exchange.signer.sign(&stamp.signing_input()).to_vec(),
        };
        match self.store.head_stamp_insert(&row).await {
            Ok(()) => Ok(Some(row)),
            // Another process stamped the same head first.
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stamps the head every `every_ms` until the process ends.
    pub fn exchange_spawn_stamper(&self, every_ms: u64) -> tokio::task::JoinHandle<()> {
        let p = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(every_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = p.exchange_stamp_head().await {
                    tracing::error!(error = %e, "stamping the audit head failed");
                }
            }
        })
    }

    /// Checks the audit chain and that every recent stamp still matches the entry it stamped
    /// and carries the exchange's signature.
    pub async fn exchange_check_stamps(&self) -> Result<StampReport> {
        let chain = self.audit_verify().await?.map_err(|e| e.to_string());
        let key = crypto::Sm2PublicKey::from_sec1(&self.exchange.signer.public_key())
            .map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let stamps = self.store.head_stamps(store::EXCHANGE_LIST_MAX).await?;
        let mut bad = Vec::new();
        for s in &stamps {
            let stamp = HeadStamp {
                seq: s.seq,
                hash: s.hash,
                stamped_ms: s.stamped_ms,
            };
            if stamp.verify(&key, &s.signature).is_err() {
                bad.push((s.seq, "the stamp's signature does not verify".to_string()));
                continue;
            }
            let entry = self.store.audit_range(s.seq - 1, 1).await?;
            match entry.first() {
                Some(e) if e.seq == s.seq && e.hash == s.hash => {}
                Some(e) if e.seq == s.seq => bad.push((
                    s.seq,
                    "the entry's hash differs from the stamped one".to_string(),
                )),
                _ => bad.push((s.seq, "the stamped entry is missing".to_string())),
            }
        }
        Ok(StampReport {
            chain,
            stamps_checked: stamps.len(),
            bad_stamps: bad,
        })
    }
}
