//! The storage layer's one interface: a trait of domain-level operations (`residents_apply`,
//! `audit_append`, `session_lookup`), the row types they exchange, and the conformance suite
//! that every backend must pass.
//!
//! Backends live in their own crates (`store-sqlite`, `store-postgres`), each with its own
//! migrations. Personal data arrives here already sealed by the vault: a backend never sees a
//! name or ID number in clear.

mod applications;
mod apps;
mod bills;
pub mod carry;
pub mod citizens;
mod clearing;
pub mod credit;
mod disbursements;
mod ecode;
mod error;
mod exchange;
mod exchange_oversight;
mod feed_reviews;
pub mod ledger;
pub mod money;
pub mod notifications;
pub mod points;
mod production;
pub mod purchases;
mod terminal_fleet;
mod terminals;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "conformance")]
pub mod conformance_production;

pub use applications::*;
pub use apps::{
    AppRow, AppsStore, CardFunctionEventRow, CardFunctionRow, ChipUpdateEventRow, ChipUpdateRow,
    FunctionRow,
};
pub use bills::*;
pub use citizens::*;
pub use clearing::*;
pub use credit::CreditStore;
pub use disbursements::*;
pub use ecode::*;
pub use error::StoreError;
pub use exchange::*;
pub use exchange_oversight::*;
pub use feed_reviews::*;
pub use ledger::LedgerStore;
pub use money::MoneyStore;
pub use notifications::*;
pub use points::PointsStore;
pub use production::*;
pub use purchases::PurchaseStore;
pub use terminal_fleet::*;
pub use terminals::*;
pub use types::*;

use async_trait::async_trait;
use keys::BlindIndex;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Bounds on what one call may carry.
pub const APPLY_BATCH_MAX: usize = 10_000;
pub const PAGE_MAX: u32 = 500;
/// At most this many ids per `residents_by_ids` (a bill run's chunk reads its payers' phones).
pub const RESIDENTS_BY_IDS_MAX: usize = 10_000;

#[async_trait]
pub trait Store:
    ApplicationStore
    + AppsStore
    + DisbursementStore
    + EcodeStore
    + LedgerStore
    + ProductionStore
    + TerminalStore
    + TerminalFleetStore
    + ClearingStore
    + ExchangeStore
    + FeedReviewStore
    + ExchangeOversightStore
    + MoneyStore
    + PurchaseStore
    + NotificationStore
    + BillStore
    + CitizenStore
    + PointsStore
    + CreditStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;

    /// A trivial round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;

    // -- data keys -----------------------------------------------------------------------

    /// The wrapped data keys for `purpose`, if stored.
    async fn data_keys(&self, purpose: &str) -> Result<Option<StoredDataKeys>>;

    /// Stores wrapped data keys unless some are already stored for `purpose`; returns whichever
    /// is stored afterwards, so two processes starting at once agree on one set.
    async fn data_keys_insert(&self, keys: &StoredDataKeys) -> Result<StoredDataKeys>;

    // -- resident base database ----------------------------------------------------------

    /// Records the start of a department feed (an import file or a pushed batch).
    async fn feed_begin(&self, feed: &NewFeed, audit: audit::Draft, now_ms: i64) -> Result<i64>;

    /// Applies one batch of a feed in one transaction: new residents are inserted, changed
    /// fields updated with a history row each, unchanged rows left alone, and one audit entry
    /// appended. Either all of it is written or none.
    async fn residents_apply(
        &self,
        feed_id: i64,
        rows: &[SealedFacts],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ApplyCounts>;

    /// Marks a feed finished with its totals.
    async fn feed_finish(&self, feed_id: i64, totals: &FeedTotals, now_ms: i64) -> Result<()>;

    async fn feeds_recent(&self, limit: u32) -> Result<Vec<FeedRow>>;

    async fn resident_by_blind(&self, id_blind: &BlindIndex) -> Result<Option<ResidentRow>>;

    async fn resident_by_id(&self, id: i64) -> Result<Option<ResidentRow>>;

    /// The residents of these ids that exist (at most [`RESIDENTS_BY_IDS_MAX`] ids), in no set
    /// order.
    async fn residents_by_ids(&self, ids: &[i64]) -> Result<Vec<ResidentRow>>;

    async fn residents_by_name(
        &self,
        name_mac: &BlindIndex,
        limit: u32,
    ) -> Result<Vec<ResidentRow>>;

    /// Residents in insertion order after `after_id`, for paging.
    async fn residents_page(&self, after_id: i64, limit: u32) -> Result<Vec<ResidentRow>>;

    async fn resident_count(&self) -> Result<u64>;

    /// Every change of a resident, oldest first, with the feed it came from.
    async fn resident_history(&self, resident_id: i64) -> Result<Vec<ChangeRow>>;

    // -- operators and credentials -------------------------------------------------------

    async fn operator_create(
        &self,
        op: &NewOperator,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<OperatorRow>;

    async fn operator_by_username(&self, username: &str) -> Result<Option<OperatorRow>>;

    async fn operators_list(&self) -> Result<Vec<OperatorRow>>;

    /// Stores a credential (console session or API token) by the hash of its secret.
    async fn credential_create(
        &self,
        c: &NewCredential,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// The operator behind a live credential, its kind and when it expires; expired or
    /// revoked ones give `None`.
    async fn credential_lookup(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<(OperatorRow, CredentialKind, i64)>>;

    async fn credential_revoke(&self, token_hash: &[u8; 32], now_ms: i64) -> Result<()>;

    // -- cards (issuance) ----------------------------------------------------------------

    /// The next card sequence number, never handed out twice (also across restarts).
    async fn card_sequence_next(&self) -> Result<u32>;

    /// Stores a new card (an application) with its first event and, when given, what the
    /// application asked for, in one transaction. Refused with `Conflict` when the resident
    /// already has a live card or the number exists.
    async fn card_insert(
        &self,
        card: &CardRow,
        event: &CardEventRow,
        application: Option<&ApplicationRow>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()>;

    /// Applies one transition: updates the card if it is still at `change.card.version - 1`
    /// (else `Conflict`: someone else changed it), inserts a successor, events, deny-list
    /// changes and balance moves, and appends the audit entries — all or nothing.
    async fn card_apply(
        &self,
        change: &CardChange,
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()>;

    async fn card_by_number(&self, number: &str) -> Result<Option<CardRow>>;

    /// Every card of a resident, oldest first.
    async fn cards_of_resident(&self, resident_id: i64) -> Result<Vec<CardRow>>;

    /// Cards in number order after `after_number`, optionally in one state.
    async fn cards_page(
        &self,
        state: Option<&str>,
        after_number: &str,
        limit: u32,
    ) -> Result<Vec<CardRow>>;

    async fn card_events(&self, number: &str) -> Result<Vec<CardEventRow>>;

    /// The deny-list's current version (0 when it never changed).
    async fn deny_list_version(&self) -> Result<i64>;

    /// Changes after `after_version`, ascending, at most `limit`.
    async fn deny_list_changes(&self, after_version: i64, limit: u32)
    -> Result<Vec<DenyChangeRow>>;

    /// Balance moves waiting for release, oldest first.
    async fn balance_moves_pending(&self, limit: u32) -> Result<Vec<BalanceMoveRow>>;

    // -- audit ---------------------------------------------------------------------------

    /// Appends one entry at the head of the chain.
    async fn audit_append(&self, draft: audit::Draft, now_ms: i64) -> Result<audit::Entry>;

    /// Appends several entries in one transaction (group commit), in the order given.
    async fn audit_append_batch(
        &self,
        drafts: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<Vec<audit::Entry>>;

    /// The last sequence number and hash, as recorded alongside the chain.
    async fn audit_head(&self) -> Result<Option<(i64, audit::Hash)>>;

    /// Entries with `seq > after_seq`, ascending, at most `limit`.
    async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<audit::Entry>>;

    /// The newest entries first, optionally only one action.
    async fn audit_recent(&self, action: Option<&str>, limit: u32) -> Result<Vec<audit::Entry>>;

    /// The newest entries about one record (`resident:42`), optionally only one action: what a
    /// citizen is shown of who used their data.
    async fn audit_of_record(
        &self,
        record: &str,
        action: Option<&str>,
        limit: u32,
    ) -> Result<Vec<audit::Entry>>;
}

/// Walks the whole audit chain in pages and checks it against the stored head. The outer
/// error is a storage failure; the inner one names the first bad entry.
pub async fn audit_verify(
    store: &dyn Store,
) -> Result<std::result::Result<u64, audit::ChainError>> {
    const PAGE: u32 = 5_000;
    let head = store.audit_head().await?;
    let mut v = audit::Verifier::new();
    let mut after = 0;
    loop {
        let page = store.audit_range(after, PAGE).await?;
        for e in &page {
            if let Err(err) = v.push(e) {
                return Ok(Err(err));
            }
            after = e.seq;
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    Ok(v.finish(head))
}
