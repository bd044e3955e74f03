//! Storage of card production and counter work (issue 4, items 3 and 8): service outlets and
//! the clerks assigned to them, production batches with their cards, chip serials, the outlet
//! each card is delivered to, the counter journal and the daily closings.
//!
//! Every write that changes a card goes through [`CardChange`]s, applied in the same
//! transaction as the batch, journal or stock rows and the audit entries.

use crate::{CardChange, CardRow, Result};
use async_trait::async_trait;
use keys::BlindIndex;

/// Cards one batch may hold, at most (bounded so one transaction stays reasonable).
pub const BATCH_CREATE_MAX: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutlet {
    /// 2 to 16 characters `A-Z 0-9 -`, unique.
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub address: String,
}

/// A service outlet (服务网点).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutletRow {
    pub id: i64,
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub address: String,
    pub active: bool,
    pub created_ms: i64,
}

/// What a new production batch is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// `3DES` or `SM4`.
    pub algorithm: String,
    pub key_version: i64,
    /// Label of the transport key (`transit/transport/v1`).
    pub transport_key: String,
    /// `YYYYMMDD`, printed in EF15.
    pub start_date: String,
    pub expiry_date: String,
    pub created_by: String,
}

/// A production batch. `state` is `created`, `exported` or `imported`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub id: i64,
    pub state: String,
    pub algorithm: String,
    pub key_version: i64,
    pub transport_key: String,
    pub start_date: String,
    pub expiry_date: String,
    pub card_count: i64,
    pub created_ms: i64,
    pub created_by: String,
    pub exports: i64,
    pub export_digest: Option<String>,
    pub exported_ms: Option<i64>,
    pub import_digest: Option<String>,
    pub imported_ms: Option<i64>,
    pub produced: i64,
    pub failed: i64,
    pub distributed: i64,
}

/// An approved card that can go into a batch, with its holder's sealed name (the bureau prints
/// it; the platform unseals it, the store never sees it in clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductionCandidate {
    pub card: CardRow,
    pub id_blind: BlindIndex,
    pub name_sealed: Option<Vec<u8>>,
}

/// One card of a batch, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCardRow {
    /// 1-based line index in the personalization file.
    pub idx: i64,
    /// The card as it is now.
    pub card: CardRow,
    /// `produced` or `failed` once the bureau's results are imported.
    pub outcome: Option<String>,
    pub chip_serial: Option<String>,
    pub failure: Option<String>,
    pub id_blind: BlindIndex,
    /// The holder's ID number, sealed (for the personalization file, which carries it sealed
    /// under the transport key).
    pub id_sealed: Vec<u8>,
    pub name_sealed: Option<Vec<u8>>,
}

/// The bureau's verdict on one card of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub number: String,
    /// 16 hex digits for a produced card; `None` when it failed.
    pub chip_serial: Option<String>,
    pub failure: Option<String>,
}

/// A chip serial recorded for a card (by a batch import or an instant issuance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipRow {
    pub number: String,
    pub chip_serial: String,
    pub batch_id: Option<i64>,
    pub outlet_id: Option<i64>,
    pub recorded_ms: i64,
}

/// The kinds of counter act the journal records.
pub const COUNTER_ACTS: [&str; 4] = [
    "card_issued",
    "instant_issued",
    "lost_report",
    "replacement",
];

/// One counter act (柜面业务) as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub outlet_id: i64,
    pub clerk_id: i64,
    pub clerk: String,
    /// The city's business day, `YYYY-MM-DD`.
    pub business_day: String,
    /// One of [`COUNTER_ACTS`].
    pub act: String,
    pub card_number: Option<String>,
    /// Fee taken in cash, in fen (0 when none).
    pub fee_fen: i64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub id: i64,
    pub entry: JournalEntry,
}

/// Everything one counter act writes, in one transaction: card transitions (in order, on one
/// or two cards), the journal row, a chip serial and the card's outlet (instant issuance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterAct {
    pub changes: Vec<CardChange>,
    pub journal: JournalEntry,
    pub chip: Option<ChipRow>,
    /// The outlet that now holds the card (instant issuance).
    pub stock: Option<(String, i64)>,
}

/// What a clerk asks when closing a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClosing {
    pub outlet_id: i64,
    pub business_day: String,
    pub declared_fen: i64,
    pub closed_by: String,
}

/// A closed day of one outlet: the cash declared, what the journal says, the difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingRow {
    pub outlet_id: i64,
    pub business_day: String,
    pub acts: i64,
    pub expected_fen: i64,
    pub declared_fen: i64,
    /// Declared minus expected: positive over, negative short.
    pub difference_fen: i64,
    pub closed_by: String,
    pub closed_ms: i64,
}

/// Builds the audit entry of a closing once the store has counted the day (inside the same
/// transaction, so the entry names the figures that were recorded).
pub type ClosingAudit = dyn Fn(&ClosingRow) -> audit::Draft + Send + Sync;

#[async_trait]
pub trait ProductionStore: Send + Sync {
    // -- outlets and clerks ------------------------------------------------------------------

    /// Refused with `Conflict` when the code exists.
    async fn outlet_create(
        &self,
        outlet: &NewOutlet,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<OutletRow>;

    async fn outlet_set_active(
        &self,
        outlet_id: i64,
        active: bool,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Every outlet, by code.
    async fn outlets_list(&self) -> Result<Vec<OutletRow>>;

    async fn outlet_by_code(&self, code: &str) -> Result<Option<OutletRow>>;

    async fn outlet_by_id(&self, id: i64) -> Result<Option<OutletRow>>;

    /// Assigns a clerk (an operator) to an outlet, moving them if assigned elsewhere.
    async fn clerk_assign(
        &self,
        operator_id: i64,
        outlet_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// The outlet a clerk is assigned to.
    async fn clerk_outlet(&self, operator_id: i64) -> Result<Option<OutletRow>>;

    /// Usernames of the clerks assigned to an outlet.
    async fn outlet_clerks(&self, outlet_id: i64) -> Result<Vec<String>>;

    // -- batches -----------------------------------------------------------------------------

    /// Approved cards in number order after `after_number`, with their holders' sealed names.
    async fn production_candidates(
        &self,
        after_number: &str,
        limit: u32,
    ) -> Result<Vec<ProductionCandidate>>;

    /// Creates a batch holding the cards of `changes` (in that order) and applies the
    /// changes (each card to `in_production`), all or nothing.
    async fn batch_create(
        &self,
        batch: &NewBatch,
        changes: &[CardChange],
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<BatchRow>;

    async fn batch_by_id(&self, id: i64) -> Result<Option<BatchRow>>;

    /// The newest batches first.
    async fn batches_recent(&self, limit: u32) -> Result<Vec<BatchRow>>;

    /// A batch's cards in file order after `after_idx`, at most `limit`.
    async fn batch_cards(&self, id: i64, after_idx: i64, limit: u32) -> Result<Vec<BatchCardRow>>;

    /// Records an export (a batch in `created` or `exported` becomes `exported`).
    async fn batch_exported(
        &self,
        id: i64,
        digest: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Imports the bureau's results: the batch must be `exported` (else `Conflict`, nothing
    /// written); outcomes and chip serials recorded, the card changes applied, the batch
    /// becomes `imported`. A chip serial already known is a `Conflict`.
    async fn batch_import(
        &self,
        id: i64,
        digest: &str,
        outcomes: &[BatchOutcome],
        changes: &[CardChange],
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()>;

    /// Delivers produced cards of a batch to an outlet: stock rows and card changes.
    async fn batch_distribute(
        &self,
        id: i64,
        outlet_id: i64,
        changes: &[CardChange],
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()>;

    async fn card_chip(&self, number: &str) -> Result<Option<ChipRow>>;

    // -- stock and counter -------------------------------------------------------------------

    /// Cards delivered to (or issued at) an outlet, counted by their current state.
    async fn outlet_stock(&self, outlet_id: i64) -> Result<Vec<(String, i64)>>;

    /// Cards at an outlet waiting for collection (`at_outlet`), by number after `after_number`.
    async fn outlet_waiting(
        &self,
        outlet_id: i64,
        after_number: &str,
        limit: u32,
    ) -> Result<Vec<CardRow>>;

    /// Applies one counter act. Refused with `Conflict` when the outlet's business day is
    /// already closed; nothing is written then.
    async fn counter_apply(
        &self,
        act: &CounterAct,
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()>;

    /// An outlet's journal for one business day, in order.
    async fn journal_day(&self, outlet_id: i64, business_day: &str) -> Result<Vec<JournalRow>>;

    /// Closes a day: counts the journal and records the declaration in one transaction.
    /// `Conflict` when the day is already closed.
    async fn day_close(
        &self,
        closing: &NewClosing,
        audit: &ClosingAudit,
        now_ms: i64,
    ) -> Result<ClosingRow>;

    async fn day_closing(&self, outlet_id: i64, business_day: &str) -> Result<Option<ClosingRow>>;
}
