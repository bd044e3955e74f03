//! Citizens' own credentials (issue 9, item 1): a password per resident (an argon2id hash),
//! one-time codes sent by SMS (stored only as SM3 hashes, short-lived, used once), and
//! citizen sessions (portal cookie or app bearer token, stored only as SM3 hashes). Kept apart
//! from operators' credentials: a citizen's token never opens an operator's route.

use crate::Result;
use async_trait::async_trait;

/// A one-time code is refused after this many wrong tries.
pub const CHALLENGE_ATTEMPTS_MAX: i32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChallenge {
    /// SM3 of the challenge id handed to the client.
    pub id_hash: [u8; 32],
    pub resident_id: i64,
    /// `sign_in` or `set_password`.
    pub purpose: String,
    /// SM3 of the challenge id and the code.
    pub code_hash: [u8; 32],
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRow {
    pub resident_id: i64,
    pub purpose: String,
    pub code_hash: [u8; 32],
    pub expires_ms: i64,
    pub attempts: i32,
    pub used_ms: Option<i64>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenSessionRow {
    pub resident_id: i64,
    /// `portal` (cookie) or `app` (bearer token).
    pub kind: String,
    pub expires_ms: i64,
}

#[async_trait]
pub trait CitizenStore: Send + Sync {
    /// Sets (or replaces) a resident's password hash, with its audit entry.
    async fn citizen_password_set(
        &self,
        resident_id: i64,
        password_hash: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// The resident's password hash, when one was set.
    async fn citizen_password(&self, resident_id: i64) -> Result<Option<String>>;

    /// Stores a new one-time code challenge.
    async fn citizen_challenge_create(&self, c: &NewChallenge, now_ms: i64) -> Result<()>;

    /// How many challenges the resident was sent since `since_ms` (a send limit).
    async fn citizen_challenges_since(&self, resident_id: i64, since_ms: i64) -> Result<i64>;

    async fn citizen_challenge(&self, id_hash: &[u8; 32]) -> Result<Option<ChallengeRow>>;

    /// Counts one wrong try; returns the tries so far.
    async fn citizen_challenge_fail(&self, id_hash: &[u8; 32]) -> Result<i32>;

    /// Marks the challenge used; false when it was already used (a race or a replay).
    async fn citizen_challenge_use(&self, id_hash: &[u8; 32], now_ms: i64) -> Result<bool>;

    /// Creates a citizen session with its audit entry.
    async fn citizen_session_create(
        &self,
        token_hash: &[u8; 32],
        s: &CitizenSessionRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// The live session of a token hash.
    async fn citizen_session(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<CitizenSessionRow>>;

    async fn citizen_session_revoke(&self, token_hash: &[u8; 32], now_ms: i64) -> Result<()>;
}
