//! Disbursement batches (待遇发放): a department's file of benefits, its lines with their
//! outcome, and the four-eyes decision. The money itself moves through the ledger, keyed per
//! line, so paying again after a crash posts nothing twice.

use crate::Result;
use async_trait::async_trait;

/// A batch as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDisbursement {
    /// The department's code (`civil_affairs`).
    pub department: String,
    pub label: String,
    /// SM3 of the uploaded file, hex: the same file twice is the same batch.
    pub digest: String,
    pub submitted_by: i64,
}

/// One line as submitted: valid (`resident_id` set, outcome `pending`) or rejected with its
/// reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDisbursementLine {
    pub line: i64,
    pub resident_id: Option<i64>,
    pub benefit: Option<String>,
    pub earmark: Option<String>,
    pub amount_fen: i64,
    /// `pending` or `rejected`.
    pub outcome: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisbursementRow {
    pub id: i64,
    pub department: String,
    pub label: String,
    pub digest: String,
    /// submitted, approved, rejected, paid
    pub state: String,
    pub submitted_by: i64,
    pub submitted_ms: i64,
    pub decided_by: Option<i64>,
    pub decided_ms: Option<i64>,
    pub lines: i64,
    pub pending_lines: i64,
    pub paid_lines: i64,
    pub paid_fen: i64,
    pub rejected_lines: i64,
    /// Sum of the lines that were valid at submission, in fen.
    pub total_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisbursementLineRow {
    pub batch_id: i64,
    pub line: i64,
    pub resident_id: Option<i64>,
    pub benefit: Option<String>,
    pub earmark: Option<String>,
    pub amount_fen: i64,
    /// pending, paid, rejected
    pub outcome: String,
    pub reason: Option<String>,
    pub transfer_id: Option<i64>,
}

/// The outcome of paying one pending line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOutcome {
    pub line: i64,
    /// `paid` (with the ledger transfer) or `rejected` (with the reason).
    pub paid: bool,
    pub transfer_id: Option<i64>,
    pub reason: Option<String>,
}

/// What a resident received: the batch's department and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRow {
    pub batch_id: i64,
    pub department: String,
    pub label: String,
    pub paid_ms: Option<i64>,
    pub line: DisbursementLineRow,
}

/// Lines returned per page, at most.
pub const DISBURSEMENT_PAGE_MAX: u32 = 5_000;

#[async_trait]
pub trait DisbursementStore: Send + Sync {
    /// Stores a submitted batch with all its lines in one transaction. The same department and
    /// digest again returns the existing batch and `false` (nothing is stored twice).
    async fn disbursement_submit(
        &self,
        batch: &NewDisbursement,
        lines: &[NewDisbursementLine],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<(DisbursementRow, bool)>;

    async fn disbursement(&self, id: i64) -> Result<Option<DisbursementRow>>;

    /// Batches, newest first, optionally of one department.
    async fn disbursements(
        &self,
        department: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DisbursementRow>>;

    /// Lines after `after_line` in line order.
    async fn disbursement_lines(
        &self,
        id: i64,
        after_line: i64,
        limit: u32,
    ) -> Result<Vec<DisbursementLineRow>>;

    /// The four-eyes decision: `submitted` → `approved` or `rejected`, once. `Conflict` when
    /// the batch is no longer `submitted`.
    async fn disbursement_decide(
        &self,
        id: i64,
        approver: i64,
        approve: bool,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DisbursementRow>;

    /// Records the outcome of pending lines (lines already decided are left as they are) and,
    /// when no line is pending any more, marks an approved batch `paid`. One transaction.
    async fn disbursement_record(
        &self,
        id: i64,
        outcomes: &[LineOutcome],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DisbursementRow>;

    /// Every line paid or pending for a resident, newest batch first.
    async fn disbursements_of_resident(
        &self,
        resident_id: i64,
        limit: u32,
    ) -> Result<Vec<ReceivedRow>>;
}
