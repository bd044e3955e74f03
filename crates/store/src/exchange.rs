//! The data-sharing exchange's records (issue 8): members with their SM2 public keys, the
//! services they publish, grants, citizens' consents, the access log the citizen's data tracker
//! reads, the nonces already used (replay), and the signed stamps of the audit log's head.

use crate::Result;
use async_trait::async_trait;

/// Access rows, grants and consents one call returns at most.
pub const EXCHANGE_LIST_MAX: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// `police`, `fund`, `hr`, `civil`, `card-company`.
    pub code: String,
    pub name: String,
    /// SEC1 compressed SM2 public key: what the member's messages are verified with.
    pub public_key: Vec<u8>,
    /// active, suspended
    pub status: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    pub code: String,
    pub provider: String,
    pub name: String,
    pub description: String,
    pub input: String,
    /// The output fields with their sensitivity, as the `exchange` crate's JSON.
    pub fields_json: String,
    pub endpoint: String,
    pub consent_required: bool,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// Set by the store.
    pub id: i64,
    pub consumer: String,
    pub service: String,
    pub fields: Vec<String>,
    pub full_fields: Vec<String>,
    pub purpose: String,
    pub legal_basis: String,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub withdrawn_ms: Option<i64>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// Set by the store.
    pub id: i64,
    pub resident_id: i64,
    pub consumer: String,
    pub service: String,
    pub purpose: String,
    /// portal, app, counter, operator
    pub channel: String,
    pub given_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// One call through the exchange, allowed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRow {
    /// Set by the store.
    pub id: i64,
    pub at_ms: i64,
    pub consumer: String,
    pub service: String,
    pub provider: String,
    pub resident_id: Option<i64>,
    /// Fields delivered (allowed) or asked for (refused).
    pub fields: Vec<String>,
    /// Of those, the ones delivered masked.
    pub masked: Vec<String>,
    pub purpose: String,
    pub legal_basis: Option<String>,
    pub grant_id: Option<i64>,
    pub consent_id: Option<i64>,
    /// delivered, refused, failed
    pub outcome: String,
    /// The refusal's or failure's code (`no_grant`, `replay`, `provider_signature`, …).
    pub reason: Option<String>,
    /// SM3 of the canonical forms (hex): the consumer's request, the provider's response.
    pub request_digest: Option<String>,
    pub response_digest: Option<String>,
    /// The consumer's signature on the request (hex) and, when it was batch-signed, its path
    /// in the batch (`x-exchange-batch`): with the request's digest, a proof anyone holding the
    /// consumer's key can check. Recorded once the signature verified.
    pub request_signature: Option<String>,
    pub request_batch: Option<String>,
    /// The same of the provider's response.
    pub response_signature: Option<String>,
    pub response_batch: Option<String>,
    /// The audit entry that records the call.
    pub audit_seq: Option<i64>,
}

/// A signed stamp of the audit chain's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadStampRow {
    pub seq: i64,
    pub hash: [u8; 32],
    pub stamped_ms: i64,
    pub signature: Vec<u8>,
}

/// A member's nonce, claimed at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceClaim {
    pub member: String,
    pub nonce: String,
    pub at_ms: i64,
}

#[async_trait]
pub trait ExchangeStore: Send + Sync {
    /// `Conflict` when the code exists.
    async fn member_insert(&self, m: &MemberRow, audit: audit::Draft, now_ms: i64) -> Result<()>;
    async fn member(&self, code: &str) -> Result<Option<MemberRow>>;
    async fn members(&self) -> Result<Vec<MemberRow>>;

    /// `Conflict` when the code exists; `NotFound` for an unknown provider.
    async fn service_insert(&self, s: &ServiceRow, audit: audit::Draft, now_ms: i64) -> Result<()>;
    async fn service(&self, code: &str) -> Result<Option<ServiceRow>>;
    async fn services(&self) -> Result<Vec<ServiceRow>>;

    /// Stores a grant and returns its id; `NotFound` for an unknown consumer or service.
    async fn grant_insert(&self, g: &GrantRow, audit: audit::Draft, now_ms: i64) -> Result<i64>;
    /// Withdraws a grant once: `NotFound`, or `Conflict` when already withdrawn.
    async fn grant_withdraw(&self, id: i64, audit: audit::Draft, now_ms: i64) -> Result<GrantRow>;
    async fn grant(&self, id: i64) -> Result<Option<GrantRow>>;
    /// A consumer's grants, optionally for one service, oldest first.
    async fn grants_of(
        &self,
        consumer: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<GrantRow>>;

    /// Stores a consent and returns its id; `NotFound` for an unknown consumer or service.
    async fn consent_insert(&self, c: &ConsentRow, audit: audit::Draft, now_ms: i64)
    -> Result<i64>;
    /// Revokes a consent of this resident once: `NotFound` (also for another resident's),
    /// `Conflict` when already revoked.
    async fn consent_revoke(
        &self,
        id: i64,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ConsentRow>;
    /// A resident's consents, optionally for one consumer and service, oldest first.
    async fn consents_of(
        &self,
        resident_id: i64,
        consumer_service: Option<(&str, &str)>,
    ) -> Result<Vec<ConsentRow>>;

    /// Records a member's nonce as used; `Conflict` when it was used before (a replay).
    async fn exchange_nonce_use(&self, member: &str, nonce: &str, at_ms: i64) -> Result<()>;
    /// Claims many nonces in one transaction (the exchange's group commit): for each claim, in
    /// order, true when it was fresh and is now recorded, false when it was used before (a
    /// replay, also of an earlier claim in the same batch).
    async fn exchange_nonces_claim(&self, claims: &[NonceClaim]) -> Result<Vec<bool>>;
    /// Writes calls' records in one transaction: each draft appended to the audit chain in
    /// order, then its access row pointing at that entry (`audit_seq`). Returns the entries.
    async fn exchange_log_batch(
        &self,
        items: Vec<(audit::Draft, AccessRow)>,
        now_ms: i64,
    ) -> Result<Vec<audit::Entry>>;
    /// Forgets nonces used before `before_ms` (older than the clock window); returns how many.
    async fn exchange_nonces_purge(&self, before_ms: i64) -> Result<u64>;

    /// Appends an access row; returns its id.
    async fn access_insert(&self, a: &AccessRow) -> Result<i64>;
    /// A resident's accesses, newest first.
    async fn accesses_of_resident(&self, resident_id: i64, limit: u32) -> Result<Vec<AccessRow>>;
    /// The newest accesses, optionally of one consumer and one outcome.
    async fn accesses_recent(
        &self,
        consumer: Option<&str>,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccessRow>>;

    /// Stores a head stamp; `Conflict` when that sequence number was stamped already.
    async fn head_stamp_insert(&self, h: &HeadStampRow) -> Result<()>;
    /// Stamps, newest first.
    async fn head_stamps(&self, limit: u32) -> Result<Vec<HeadStampRow>>;
}
