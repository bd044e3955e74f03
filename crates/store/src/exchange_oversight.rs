//! Oversight reads of the exchange (issue 8, item 8): the access log searched by consumer,
//! service, resident, outcome and time, and consent counts per consumer and service.

use crate::{AccessRow, Result};
use async_trait::async_trait;

/// A search of the access log; `None` filters nothing. Newest first, before `before_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessQuery {
    pub consumer: Option<String>,
    pub service: Option<String>,
    pub resident_id: Option<i64>,
    pub outcome: Option<String>,
    pub from_ms: Option<i64>,
    /// Exclusive.
    pub until_ms: Option<i64>,
    /// Paging: rows with a smaller id only.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Consents of one consumer and service at a moment, by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentStat {
    pub consumer: String,
    pub service: String,
    pub active: u64,
    pub revoked: u64,
    pub expired: u64,
}

#[async_trait]
pub trait ExchangeOversightStore: Send + Sync {
    /// At most `EXCHANGE_LIST_MAX` rows.
    async fn accesses_search(&self, q: &AccessQuery) -> Result<Vec<AccessRow>>;

    /// Per consumer and service: consents active at `now_ms`, revoked, and expired unrevoked.
    async fn consent_stats(&self, now_ms: i64) -> Result<Vec<ConsentStat>>;
}
