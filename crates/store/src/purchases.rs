//! Offline purchases uploaded by terminals (脱机消费): a batch is ingested in one database
//! transaction — purchase rows (one per card and offline counter, so a repeated upload is
//! answered with the first), the e-purse shadows debited and the merchant credited through
//! aggregated ledger transfers, flags for review, the clearing window, and one audit entry.
//!
//! The rules are `ledger::offline::plan`; a backend reads what it needs (the highest counter
//! of each card, stored purchases the batch repeats, the accounts), plans, and writes.

use crate::Result;
use ::ledger::offline::{Flags, Prior, Verdict};
use async_trait::async_trait;

/// At most this many records per upload batch.
pub const PURCHASE_BATCH_MAX: usize = 10_000;

/// A record whose TAC verified, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPurchase {
    pub card_number: String,
    pub offline_counter: u16,
    pub amount_fen: u32,
    /// `6` purchase, `9` complex purchase.
    pub tx_type: u8,
    pub algorithm_id: u8,
    /// 12 hex digits.
    pub terminal_id: String,
    pub terminal_serial: u32,
    /// The card's transaction time (unix ms).
    pub tx_ms: i64,
    pub balance_before_fen: u32,
    pub tac: [u8; 4],
    /// On the deny-list when the batch arrived.
    pub deny_listed: bool,
}

/// One upload: the merchant credited, its records, and the window it is posted into.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseBatch<'a> {
    /// Merchant code (owner of the merchant payable account).
    pub merchant: &'a str,
    pub purchases: &'a [NewPurchase],
    /// The clearing window open now, e.g. `2026-11-30`, and its first instant.
    pub window: &'a str,
    pub window_start_ms: i64,
}

/// The answer for one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored and posted now. `transfer_id` carries its money (`None` for 0 fen).
    Posted {
        id: i64,
        window: String,
        transfer_id: Option<i64>,
        flags: Flags,
    },
    /// The same card and counter was ingested before (or earlier in this batch): the first.
    Duplicate { id: i64, window: String },
}

/// A stored purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    pub id: i64,
    pub card_number: String,
    pub offline_counter: u16,
    pub merchant: String,
    pub terminal_id: String,
    pub terminal_serial: u32,
    pub amount_fen: u32,
    pub tx_type: u8,
    pub tx_ms: i64,
    pub window: String,
    pub transfer_id: Option<i64>,
    pub flags: Flags,
    pub ingested_ms: i64,
}

/// A terminal's upload batch whose answer is kept in the same transaction as its postings, so a
/// crash leaves either both or neither (a resend then gets the same answer, or is ingested anew).
pub struct KeptBatch<'a> {
    pub terminal: &'a str,
    pub batch_id: &'a str,
    /// `card` (the only kind that posts here).
    pub kind: &'a str,
    /// SM3 of the request body, hex.
    pub digest: &'a str,
    /// Records in the upload (the batch's, including those refused before the store).
    pub records: i64,
    /// Builds the answer from the outcomes of `PurchaseBatch::purchases`, in order; called
    /// inside the transaction.
    pub answer: &'a (dyn Fn(&[IngestOutcome]) -> Vec<u8> + Send + Sync),
}

/// The batch row a kept batch is stored as.
pub fn kept_row(k: &KeptBatch<'_>, answer: Vec<u8>, now_ms: i64) -> crate::TerminalBatchRow {
    crate::TerminalBatchRow {
        terminal: k.terminal.to_string(),
        batch_id: k.batch_id.to_string(),
        kind: k.kind.to_string(),
        digest: k.digest.to_string(),
        records: k.records,
        answer,
        received_ms: now_ms,
    }
}

/// What [`PurchaseStore::purchases_ingest_kept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptIngest {
    /// Ingested now; the answer was stored with the postings.
    Ingested {
        outcomes: Vec<IngestOutcome>,
        answer: Vec<u8>,
    },
    /// The batch id was stored already (a resend racing the first send): nothing was ingested;
    /// the stored row, whose answer stands.
    Stored(crate::TerminalBatchRow),
}

#[async_trait]
pub trait PurchaseStore: Send + Sync {
    /// Ingests a batch in one transaction (with `audit`): one outcome per record, in order.
    async fn purchases_ingest(
        &self,
        batch: &PurchaseBatch<'_>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<IngestOutcome>>;

    /// As [`PurchaseStore::purchases_ingest`] for a terminal's named batch: in the same
    /// transaction the batch row (with the answer `kept.answer` builds from the outcomes) is
    /// stored and the terminal's uploaded count raised — or, when the batch id is stored
    /// already, nothing is written and the stored row is returned.
    async fn purchases_ingest_kept(
        &self,
        batch: &PurchaseBatch<'_>,
        kept: &KeptBatch<'_>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<KeptIngest>;

    /// The purchase of a card with this offline counter.
    async fn purchase_by_counter(&self, card: &str, counter: u16) -> Result<Option<PurchaseRow>>;

    /// Purchases of a clearing window in id order after `after_id`.
    async fn purchases_of_window(
        &self,
        window: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<PurchaseRow>>;
}

/// The ledger's view of a batch's records.
pub fn ledger_purchases(batch: &PurchaseBatch<'_>) -> Vec<::ledger::offline::Purchase> {
    batch
        .purchases
        .iter()
        .map(|p| ::ledger::offline::Purchase {
            card: p.card_number.clone(),
            counter: p.offline_counter,
            amount: ::ledger::Amount(i64::from(p.amount_fen)),
            tx_ms: p.tx_ms,
            deny_listed: p.deny_listed,
            terminal: p.terminal_id.clone(),
            serial: p.terminal_serial,
        })
        .collect()
}

/// The distinct card numbers of a batch, sorted.
pub fn batch_cards(batch: &PurchaseBatch<'_>) -> Vec<String> {
    let mut cards: Vec<String> = batch
        .purchases
        .iter()
        .map(|p| p.card_number.clone())
        .collect();
    cards.sort_unstable();
    cards.dedup();
    cards
}

/// Key prefix of a batch's transfers: unique because purchase ids are.
pub fn transfer_key_prefix(first_purchase_id: i64) -> String {
    format!("purchases:{first_purchase_id}")
}

/// The memo of a batch's transfers.
pub fn transfer_memo(batch: &PurchaseBatch<'_>) -> String {
    format!(
        "offline purchases at {}, window {}",
        batch.merchant, batch.window
    )
}

/// The rows a plan inserts: `(index into the batch, purchase id, transfer index, flags)`, the
/// k-th new record taking `ids[k]` (`ids` holds at least one id per record of the batch).
pub fn new_rows(verdicts: &[Verdict], ids: &[i64]) -> Vec<(usize, i64, Option<usize>, Flags)> {
    let mut out = Vec::new();
    for (i, v) in verdicts.iter().enumerate() {
        if let Verdict::New { flags, transfer } = v {
            out.push((i, ids[out.len()], *transfer, *flags));
        }
    }
    out
}

/// The answers, once rows and transfers have ids.
pub fn outcomes(
    verdicts: &[Verdict],
    rows: &[(usize, i64, Option<usize>, Flags)],
    transfer_ids: &[i64],
    window: &str,
) -> Vec<IngestOutcome> {
    let mut id_of = vec![0i64; verdicts.len()];
    for (i, id, _, _) in rows {
        id_of[*i] = *id;
    }
    let mut row_at = rows.iter();
    verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Verdict::New { .. } => {
                let (_, id, t, flags) = row_at.next().expect("one row per new record");
                debug_assert_eq!(id_of[i], *id);
                IngestOutcome::Posted {
                    id: *id,
                    window: window.to_string(),
                    transfer_id: t.map(|t| transfer_ids[t]),
                    flags: *flags,
                }
            }
            Verdict::Stored(Prior { id, window }) => IngestOutcome::Duplicate {
                id: *id,
                window: window.clone(),
            },
            Verdict::SameAs(first) => IngestOutcome::Duplicate {
                id: id_of[*first],
                window: window.to_string(),
            },
        })
        .collect()
}

/// Decodes stored flag columns.
pub fn decode_flags(
    bits: i64,
    gap_first: Option<i64>,
    gap_last: Option<i64>,
    shortfall_fen: i64,
) -> Flags {
    Flags {
        deny_listed: bits & Flags::DENY_LISTED != 0,
        gap: match (gap_first, gap_last) {
            (Some(a), Some(b)) => Some((a as u16, b as u16)),
            _ => None,
        },
        late: bits & Flags::LATE != 0,
        shortfall: ::ledger::Amount(shortfall_fen),
    }
}
