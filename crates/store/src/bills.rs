//! Bills and auto-debit (issue 9, item 4): billers (merchants of a utility kind), their bills
//! uploaded all or nothing, citizens' auto-debit agreements, the bills a run debits, each
//! bill's settlement recorded once, and the record of bill runs.

use crate::Result;
use async_trait::async_trait;

/// At most this many bills per upload or settlement call.
pub const BILL_BATCH_MAX: usize = 100_000;

pub const BILL_OPEN: &str = "open";
pub const BILL_PAID: &str = "paid";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillerRow {
    /// The merchant's code: payments go to its merchant payable.
    pub code: String,
    /// `water`, `electricity`, `gas`, `heating`, `telephone`, `broadband`, `cable_tv`.
    pub kind: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBill {
    pub bill_number: String,
    pub customer_no: String,
    pub period: String,
    pub amount_fen: i64,
    pub due_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    pub id: i64,
    pub biller: String,
    pub bill_number: String,
    pub customer_no: String,
    pub period: String,
    pub amount_fen: i64,
    pub due_date: String,
    /// `open` or `paid`.
    pub status: String,
    pub payment_id: Option<i64>,
    /// `auto` or `citizen`.
    pub paid_by: Option<String>,
    pub paid_ms: Option<i64>,
    pub debit_attempts: i32,
    /// When the auto-debit may try next; `None` once it stopped (over limit, gave up).
    pub next_debit_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementRow {
    pub id: i64,
    pub resident_id: i64,
    pub biller: String,
    pub customer_no: String,
    pub limit_fen: i64,
    /// `active` or `cancelled`.
    pub status: String,
    pub created_ms: i64,
}

/// A bill the auto-debit may take now, with its agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDue {
    pub bill: BillRow,
    pub agreement: AgreementRow,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BillUpload {
    pub inserted: u64,
    /// Bills already stored with the same content.
    pub unchanged: u64,
}

/// One bill's payment, recorded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillPaid {
    pub bill_id: i64,
    pub payment_id: i64,
    pub paid_by: String,
    pub paid_ms: i64,
}

/// One failed auto-debit attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDebitFailed {
    pub bill_id: i64,
    pub error: String,
    /// `None`: no more auto-debit for this bill.
    pub next_debit_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillRunRow {
    pub id: i64,
    /// The date the run debited bills due on or before.
    pub due_on: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub considered: i64,
    pub debited: i64,
    pub debited_fen: i64,
    pub short_of_funds: i64,
    pub over_limit: i64,
    pub notices: i64,
}

#[async_trait]
pub trait BillStore: Send + Sync {
    /// `NotFound` for an unknown merchant; `Conflict` when already a biller.
    async fn biller_insert(&self, b: &BillerRow, audit: audit::Draft, now_ms: i64) -> Result<()>;
    async fn biller(&self, code: &str) -> Result<Option<BillerRow>>;
    async fn billers(&self) -> Result<Vec<BillerRow>>;

    /// Stores a biller's bills in one transaction. A bill number already stored with the same
    /// content counts as unchanged; with other content the whole upload is refused
    /// (`Conflict` naming it) and nothing is written. `NotFound` for an unknown biller.
    async fn bills_upload(
        &self,
        biller: &str,
        bills: &[NewBill],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<BillUpload>;
    async fn bill(&self, biller: &str, bill_number: &str) -> Result<Option<BillRow>>;
    /// A household's bills at a biller, newest due first.
    async fn bills_of_customer(
        &self,
        biller: &str,
        customer_no: &str,
        limit: u32,
    ) -> Result<Vec<BillRow>>;

    /// `Conflict` while the household has an active agreement; `NotFound` for an unknown
    /// biller.
    async fn agreement_insert(
        &self,
        a: &AgreementRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<AgreementRow>;
    /// Cancels an active agreement of the resident. False when there was none.
    async fn agreement_cancel(
        &self,
        id: i64,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool>;
    async fn agreements_of(&self, resident_id: i64) -> Result<Vec<AgreementRow>>;

    /// Open bills due on or before `due_on` whose auto-debit may try at `now_ms`, with an
    /// active agreement, in id order after `after_id`.
    async fn bills_due(
        &self,
        due_on: &str,
        now_ms: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<BillDue>>;

    /// Records payments (only of open bills) and failed attempts in one transaction; returns
    /// how many bills became paid.
    async fn bills_settle(
        &self,
        paid: &[BillPaid],
        failed: &[BillDebitFailed],
        now_ms: i64,
    ) -> Result<u64>;

    /// A biller's bills paid in `[from_ms, to_ms)`, in payment order.
    async fn bills_paid(
        &self,
        biller: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<BillRow>>;

    /// Starts a bill run's record; returns its id.
    async fn bill_run_start(&self, due_on: &str, now_ms: i64) -> Result<i64>;
    /// Writes a run's counts and end, with its audit entry.
    async fn bill_run_finish(&self, run: &BillRunRow, audit: audit::Draft) -> Result<()>;
    async fn bill_runs(&self, limit: u32) -> Result<Vec<BillRunRow>>;
}
