//! Closed clearing windows (清分) and their reports: written once, never changed.

use crate::Result;
use async_trait::async_trait;

/// One line of a window's report: a merchant and category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingLineRow {
    pub window_id: String,
    pub merchant: String,
    pub category: String,
    pub count: i64,
    pub gross_fen: i64,
    pub fee_fen: i64,
    pub net_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingWindowRow {
    pub window_id: String,
    pub closed_ms: i64,
    pub closed_by: String,
    /// SM3 of the report's canonical lines, hex: the report is the same however often read.
    pub digest: String,
}

#[async_trait]
pub trait ClearingStore: Send + Sync {
    /// Records a window's close and its report in one transaction. When the window is already
    /// closed nothing is written and `false` comes back (the report stands as first written).
    async fn clearing_close(
        &self,
        window: &ClearingWindowRow,
        lines: &[ClearingLineRow],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool>;

    async fn clearing_window(&self, window_id: &str) -> Result<Option<ClearingWindowRow>>;

    async fn clearing_lines(&self, window_id: &str) -> Result<Vec<ClearingLineRow>>;
}
