//! The terminal fleet's running state: the PSAM each terminal is bound to, the upload batches
//! it sent (so a batch id resent gets the answer it got the first time), and what each terminal
//! last reported (seen, uploaded, pending, versions) for fleet monitoring.

use crate::Result;
use async_trait::async_trait;

/// An upload batch as answered: the answer is kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalBatchRow {
    pub terminal: String,
    pub batch_id: String,
    /// `card` or `ecode`.
    pub kind: String,
    /// SM3 of the request body, hex: the same batch id with another body is refused.
    pub digest: String,
    pub records: i64,
    /// The answer sent, as bytes (JSON).
    pub answer: Vec<u8>,
    pub received_ms: i64,
}

/// What a terminal reports with its parameter download.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TerminalReport {
    pub records_pending: Option<i64>,
    pub parameters_version: Option<String>,
    pub deny_list_version: Option<i64>,
}

/// A terminal's last known state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalStatusRow {
    pub terminal: String,
    pub last_seen_ms: i64,
    pub last_upload_ms: Option<i64>,
    pub uploaded_records: i64,
    pub records_pending: Option<i64>,
    pub parameters_version: Option<String>,
    pub deny_list_version: Option<i64>,
}

/// Each terminal once, with its latest time, sorted by terminal.
pub fn latest_seen(seen: &[(String, i64)]) -> Vec<(&str, i64)> {
    let mut out: Vec<(&str, i64)> = seen.iter().map(|(t, ms)| (t.as_str(), *ms)).collect();
    out.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    out.dedup_by(|later, first| later.0 == first.0);
    out
}

#[async_trait]
pub trait TerminalFleetStore: Send + Sync {
    /// Binds `terminal` to the PSAM with terminal id `psam_terminal_id` (12 hex digits). Binding
    /// the same pair again is a no-op; `Conflict` when the terminal is bound to another PSAM or
    /// the PSAM to another terminal; `NotFound` for an unknown terminal.
    async fn terminal_psam_bind(
        &self,
        terminal: &str,
        psam_terminal_id: &str,
        now_ms: i64,
    ) -> Result<()>;
    async fn terminal_psam(&self, terminal: &str) -> Result<Option<String>>;

    async fn terminal_batch(
        &self,
        terminal: &str,
        batch_id: &str,
    ) -> Result<Option<TerminalBatchRow>>;
    /// Stores an answered batch, and counts its records as uploaded now. When the batch id is
    /// stored already (two sends raced), nothing changes and the stored row is returned.
    async fn terminal_batch_insert(&self, row: &TerminalBatchRow) -> Result<TerminalBatchRow>;

    /// The terminal made an authenticated request now; `report` when it said how it stands.
    async fn terminal_seen(
        &self,
        terminal: &str,
        now_ms: i64,
        report: Option<&TerminalReport>,
    ) -> Result<()>;
    /// As [`TerminalFleetStore::terminal_seen`] without a report, for several terminals in one
    /// statement (the group commit of authenticated requests). A terminal named twice keeps the
    /// latest time.
    async fn terminals_seen(&self, seen: &[(String, i64)]) -> Result<()>;
    /// Every terminal seen at least once, by id (at most 100,000).
    async fn terminal_statuses(&self) -> Result<Vec<TerminalStatusRow>>;
}
