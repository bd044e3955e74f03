//! The credit service (信用服务, issue 9 item 7): who opted in, the signals their score is
//! built from (recorded only while they are opted in, once per key), the scores computed over
//! time, and disputes an officer resolves. Opting out deletes the resident's signals, scores
//! and disputes: a citizen who is not opted in has nothing to be scored from.

use crate::Result;
use async_trait::async_trait;

/// At most this many signals per call.
pub const SIGNAL_BATCH_MAX: usize = 10_000;

pub const DISPUTE_OPEN: &str = "open";
pub const DISPUTE_UPHELD: &str = "upheld";
pub const DISPUTE_REJECTED: &str = "rejected";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSignal {
    pub resident_id: i64,
    /// `credit::SignalKind` as text.
    pub kind: String,
    /// One event is one signal: `bill:17`, `fare:metro:…`.
    pub key: String,
    pub quantity: i64,
    pub day: i64,
    /// Who reported it: `bills`, `points`, an operator's department.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRow {
    pub id: i64,
    pub resident_id: i64,
    pub kind: String,
    pub key: String,
    pub quantity: i64,
    pub day: i64,
    pub source: String,
    /// Struck out by an upheld dispute: not counted.
    pub struck: bool,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRow {
    pub resident_id: i64,
    pub day: i64,
    pub score: i64,
    /// The factors as the platform explained them (JSON).
    pub factors: String,
    pub computed_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRow {
    pub id: i64,
    pub resident_id: i64,
    pub signal_id: i64,
    pub reason: String,
    /// `open`, `upheld` or `rejected`.
    pub status: String,
    pub officer: Option<String>,
    pub note: Option<String>,
    pub created_ms: i64,
    pub resolved_ms: Option<i64>,
}

#[async_trait]
pub trait CreditStore: Send + Sync {
    /// Opts a resident in; `false` when already in. Unknown residents are `NotFound`.
    async fn credit_opt_in(
        &self,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool>;

    /// Opts a resident out and deletes their signals, scores and disputes, in one transaction
    /// with `audit`; `false` when they were not in.
    async fn credit_opt_out(
        &self,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool>;

    /// When the resident opted in, if they are in.
    async fn credit_enrolled(&self, resident_id: i64) -> Result<Option<i64>>;

    /// Records signals of opted-in residents, once per key; others are dropped. Returns how
    /// many were recorded now.
    async fn credit_signals_record(&self, signals: &[NewSignal], now_ms: i64) -> Result<u64>;

    /// A resident's signals on or after `since_day`, oldest first, struck ones included.
    async fn credit_signals(&self, resident_id: i64, since_day: i64) -> Result<Vec<SignalRow>>;

    /// Stores the day's score (replacing an earlier one of the same day), with `audit`.
    async fn credit_score_save(&self, s: &ScoreRow, audit: audit::Draft) -> Result<()>;

    /// A resident's scores, newest first.
    async fn credit_scores(&self, resident_id: i64, limit: u32) -> Result<Vec<ScoreRow>>;

    /// Opens a dispute about one of the resident's signals; `NotFound` when the signal is not
    /// theirs, `Conflict` when one is already open about it.
    async fn credit_dispute_open(
        &self,
        resident_id: i64,
        signal_id: i64,
        reason: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DisputeRow>;

    /// Resolves an open dispute (upheld strikes its signal out), with `audit`; `None` when it
    /// is not open.
    #[allow(clippy::too_many_arguments)]
    async fn credit_dispute_resolve(
        &self,
        id: i64,
        uphold: bool,
        officer: &str,
        note: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Option<DisputeRow>>;

    async fn credit_dispute(&self, id: i64) -> Result<Option<DisputeRow>>;

    /// Disputes by status (all when `None`), newest first.
    async fn credit_disputes(&self, status: Option<&str>, limit: u32) -> Result<Vec<DisputeRow>>;

    async fn credit_disputes_of(&self, resident_id: i64) -> Result<Vec<DisputeRow>>;
}
