//! Closed clearing windows (清分) and their reports: written once, never changed. The fee
//! schedule's rules (手续费率), added and never changed: a change is a new rule with a later
//! effective date.

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

/// A closed window with its report's totals, for the list of recent windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingWindowTotalsRow {
    pub window: ClearingWindowRow,
    /// Report lines (merchant and category).
    pub lines: i64,
    /// Purchases, payments, refunds and reversals the report sums.
    pub count: i64,
    pub gross_fen: i64,
    pub fee_fen: i64,
    pub net_fen: i64,
}

/// What has been posted into a window so far (read before it closes): offline purchases and
/// online payments to merchants, refunds and reversals counted against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowRunningRow {
    pub purchases: i64,
    pub purchases_fen: i64,
    /// Payments, refunds and reversals posted into the window.
    pub movements: i64,
    /// Payments less refunds and reversals, as the close counts them.
    pub movements_fen: i64,
}

/// One credit transfer of a settlement file, kept so the bank's statement can be matched
/// against it (对账).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementInstructionRow {
    /// The instruction's end-to-end id: the bank returns it on the statement.
    pub end_to_end_id: String,
    pub window_id: String,
    pub merchant: String,
    pub amount_fen: i64,
    /// `YYYY-MM-DD`: the day the bank is asked to execute it.
    pub execution_date: String,
    /// sent, matched, exception
    pub state: String,
}

/// An imported bank statement (camt.053).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankStatementRow {
    /// The statement's own id (`Stmt/Id`): a statement is imported once.
    pub id: String,
    pub account: String,
    /// SM3 of the file, hex: the same id with other content is refused.
    pub digest: String,
    pub entries: i64,
    pub matched: i64,
    pub imported_ms: i64,
    pub imported_by: String,
}

/// A difference between what was sent and what the bank booked, for the operators' queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationExceptionRow {
    pub id: i64,
    pub statement_id: String,
    /// amount_mismatch, missing, unexpected
    pub kind: String,
    pub end_to_end_id: Option<String>,
    /// The bank's reference of the entry, when there is one.
    pub reference: Option<String>,
    pub sent_fen: Option<i64>,
    pub booked_fen: Option<i64>,
    /// open, resolved
    pub state: String,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_ms: Option<i64>,
    pub created_ms: i64,
}

/// The most groups [`ClearingStore::clearing_window_sums`] returns: distinct (kind, merchant,
/// amount) triples of one window. A city's day has far fewer (fares repeat); more is refused
/// with an error naming this bound rather than read into memory.
pub const CLEARING_SUMS_MAX: usize = 1_000_000;

/// A group of a window's cleared transactions: `count` of `amount_fen` each, to `merchant`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WindowSumRow {
    /// `purchase` (an offline purchase), or the money movement's kind (`payment`, `refund`,
    /// `reversal`; any other kind in a window is an error the close reports).
    pub kind: String,
    pub merchant: String,
    pub amount_fen: i64,
    pub count: i64,
}

/// One rule of the fee schedule, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRuleRow {
    /// Given by the storage (0 in a rule to add).
    pub id: i64,
    /// category, merchant
    pub scope_kind: String,
    /// The category or the merchant's code.
    pub scope_value: String,
    /// Percentage in basis points: 60 = 0.60 %.
    pub rate_bp: i64,
    /// Fixed fee per transaction, in fen.
    pub fixed_fen: i64,
    /// `YYYY-MM-DD`: the first clearing window (by its closing date) the rule applies to.
    pub effective_from: String,
    pub created_ms: i64,
    pub created_by: String,
}

#[async_trait]
pub trait ClearingStore: Send + Sync {
    /// What a window's close clears, summed in the database: the window's offline purchases
    /// per merchant and amount, and its money movements per kind, counterparty and amount
    /// (the window's purchases are read once, by the `(window_id, merchant, amount_fen)`
    /// index, however many millions there are). Sorted; at most [`CLEARING_SUMS_MAX`] groups,
    /// more is [`crate::StoreError::TooMany`].
    async fn clearing_window_sums(&self, window_id: &str) -> Result<Vec<WindowSumRow>>;

    /// Records a window's close and its report in one transaction. When the window is already
    /// closed nothing is written and `false` comes back (the report stands as first written).
    /// `postings` is the number of purchases and money movements the report was made from:
    /// under the writer's lock the window's postings are counted again, and when a posting
    /// stamped before the cut-off committed meanwhile the counts differ, nothing is written and
    /// [`crate::StoreError::Conflict`] comes back (make the report again). Once the window is
    /// closed, postings that waited for the lock go to the next window still open.
    async fn clearing_close(
        &self,
        window: &ClearingWindowRow,
        lines: &[ClearingLineRow],
        postings: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool>;

    async fn clearing_window(&self, window_id: &str) -> Result<Option<ClearingWindowRow>>;

    async fn clearing_lines(&self, window_id: &str) -> Result<Vec<ClearingLineRow>>;

    /// Closed windows, the latest first, with their report's totals; at most `limit`.
    async fn clearing_windows(&self, limit: i64) -> Result<Vec<ClearingWindowTotalsRow>>;

    /// The count and sum of what has been posted into a window so far, read through the
    /// window indexes of purchases and money movements (the cost follows the window's rows,
    /// not the tables').
    async fn clearing_running(&self, window_id: &str) -> Result<WindowRunningRow>;

    /// Keeps a settlement file's instructions; an instruction already kept stays as it is
    /// (the file of a closed window is the same however often it is made).
    async fn settlement_instructions_record(&self, rows: &[SettlementInstructionRow])
    -> Result<()>;

    /// Instructions still waiting for the bank (state `sent`) due on or before `date`
    /// (`YYYY-MM-DD`).
    async fn settlement_instructions_due(
        &self,
        date: &str,
    ) -> Result<Vec<SettlementInstructionRow>>;

    async fn settlement_instruction(
        &self,
        end_to_end_id: &str,
    ) -> Result<Option<SettlementInstructionRow>>;

    /// A window's settlement instructions (however many files were made), by end-to-end id.
    async fn settlement_instructions_of_window(
        &self,
        window_id: &str,
    ) -> Result<Vec<SettlementInstructionRow>>;

    /// Records an imported statement in one transaction: the statement, the instructions it
    /// matched (state `matched`), and its exceptions (their instructions, if any, state
    /// `exception`). `Conflict` if a statement with this id is already imported.
    async fn statement_import(
        &self,
        statement: &BankStatementRow,
        matched: &[String],
        exceptions: &[ReconciliationExceptionRow],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    async fn bank_statement(&self, id: &str) -> Result<Option<BankStatementRow>>;

    /// Exceptions in id order, all or only those in `state`; at most `limit`.
    async fn reconciliation_exceptions(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReconciliationExceptionRow>>;

    /// Closes an open exception with the operator's resolution, audited in the same
    /// transaction. `NotFound` if there is no such exception, `Conflict` if it is resolved.
    async fn reconciliation_exception_resolve(
        &self,
        id: i64,
        resolution: &str,
        resolved_by: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ReconciliationExceptionRow>;

    /// Every rule of the fee schedule, by scope and effective date (the migration's seed
    /// rules included).
    async fn fee_rules(&self) -> Result<Vec<FeeRuleRow>>;

    /// Adds a rule, audited in the same transaction, and answers it with its id. `Conflict`
    /// if its scope has a rule taking effect on the same day, or if a clearing window on or
    /// after its effective date is closed already (a closed window's fees never change);
    /// `TooMany` if the schedule holds `rules_max` rules already. Nothing else changes a rule.
    async fn fee_rule_add(
        &self,
        rule: &FeeRuleRow,
        rules_max: usize,
        audit: audit::Draft,
    ) -> Result<FeeRuleRow>;
}
