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
#[derive(Clone, Copy)]
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

/// One terminal's named upload in a group committed together
/// ([`PurchaseStore::purchases_ingest_uploads`]).
pub struct KeptUpload<'a> {
    pub batch: PurchaseBatch<'a>,
    pub kept: KeptBatch<'a>,
    pub audit: audit::Draft,
}

/// At most this many uploads in one group.
pub const UPLOADS_PER_GROUP_MAX: usize = 1_024;

/// How a backend writes a group of uploads, once it knows which batch ids are stored already:
/// `posts` are the uploads planned and written together (one merchant and window each, in
/// order of first appearance), `repeats` the uploads naming a batch id an earlier upload of the
/// same group names (`(later, earlier)`: the later is answered with the earlier's stored row).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupPlan {
    pub posts: Vec<Vec<usize>>,
    pub repeats: Vec<(usize, usize)>,
}

/// Plans a group: `stored[i]` tells whether upload `i`'s batch id is stored already (those are
/// answered with the stored row and take no part).
pub fn group_plan(uploads: &[KeptUpload<'_>], stored: &[bool]) -> GroupPlan {
    let mut plan = GroupPlan::default();
    let mut first_of: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    let mut post_of: std::collections::HashMap<(&str, &str, i64), usize> =
        std::collections::HashMap::new();
    for (i, u) in uploads.iter().enumerate() {
        if stored[i] {
            continue;
        }
        if let Some(&earlier) = first_of.get(&(u.kept.terminal, u.kept.batch_id)) {
            plan.repeats.push((i, earlier));
            continue;
        }
        first_of.insert((u.kept.terminal, u.kept.batch_id), i);
        let key = (u.batch.merchant, u.batch.window, u.batch.window_start_ms);
        match post_of.get(&key) {
            Some(&g) => plan.posts[g].push(i),
            None => {
                post_of.insert(key, plan.posts.len());
                plan.posts.push(vec![i]);
            }
        }
    }
    plan
}

/// The answers of a group once its posts are written: every repeat gets the row its earlier
/// upload stored (or was answered with), and every upload must have an answer.
pub fn finish_group(
    uploads: &[KeptUpload<'_>],
    group: &GroupPlan,
    mut answers: Vec<Option<KeptIngest>>,
    now_ms: i64,
) -> Result<Vec<KeptIngest>> {
    for &(later, earlier) in &group.repeats {
        let row = match &answers[earlier] {
            Some(KeptIngest::Ingested { answer, .. }) => {
                kept_row(&uploads[earlier].kept, answer.clone(), now_ms)
            }
            Some(KeptIngest::Stored(row)) => row.clone(),
            None => {
                return Err(crate::StoreError::Corrupt(
                    "a repeat of an unanswered upload".into(),
                ));
            }
        };
        answers[later] = Some(KeptIngest::Stored(row));
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| crate::StoreError::Corrupt("an upload without an answer".into())))
        .collect()
}

/// Refuses a group beyond [`UPLOADS_PER_GROUP_MAX`] uploads or [`PURCHASE_BATCH_MAX`] records.
pub fn check_group(uploads: &[KeptUpload<'_>]) -> Result<()> {
    let records: usize = uploads.iter().map(|u| u.batch.purchases.len()).sum();
    if uploads.len() > UPLOADS_PER_GROUP_MAX {
        return Err(crate::StoreError::TooMany {
            got: uploads.len(),
            max: UPLOADS_PER_GROUP_MAX,
        });
    }
    if records > PURCHASE_BATCH_MAX {
        return Err(crate::StoreError::TooMany {
            got: records,
            max: PURCHASE_BATCH_MAX,
        });
    }
    Ok(())
}

/// The records of a post's uploads, one after the other, and where each upload's start.
pub fn joined(uploads: &[KeptUpload<'_>], post: &[usize]) -> (Vec<NewPurchase>, Vec<usize>) {
    let mut all = Vec::new();
    let mut starts = Vec::with_capacity(post.len());
    for &i in post {
        starts.push(all.len());
        all.extend_from_slice(uploads[i].batch.purchases);
    }
    (all, starts)
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

    /// As [`PurchaseStore::purchases_ingest_kept`] for several terminals' uploads in one
    /// transaction (the group commit of concurrent uploads): the uploads of one merchant and
    /// window are planned and written together — as if ingested one after the other, in order
    /// — and each keeps its own batch row, answer and audit entry. One answer per upload, in
    /// order; an upload whose batch id is stored already (or named by an earlier upload of the
    /// group) gets the stored row. At most [`UPLOADS_PER_GROUP_MAX`] uploads and
    /// [`PURCHASE_BATCH_MAX`] records in all; an error writes nothing for any of them.
    async fn purchases_ingest_uploads(
        &self,
        uploads: &[KeptUpload<'_>],
        now_ms: i64,
    ) -> Result<Vec<KeptIngest>>;

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

/// Why a planned batch must be planned again, after its savepoint is rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replan {
    /// The unique index on card, terminal and serial refused a record: plan again with the
    /// stored purchases read by card, terminal and serial.
    RepeatsByTerminal,
    /// A record meets a stored purchase that the carried counters did not show: plan again
    /// from the database.
    Stale,
}

/// What to change before planning a batch again (at most three plans: with the carry-over,
/// from the database, with the repeats read); an error when nothing is left to change.
pub fn replan(
    why: Replan,
    carried: &mut crate::carry::Carried,
    by_terminal: &mut bool,
) -> Result<()> {
    match why {
        Replan::Stale if !carried.is_empty() => *carried = Default::default(),
        Replan::RepeatsByTerminal if !*by_terminal => *by_terminal = true,
        _ => {
            return Err(crate::StoreError::Corrupt(format!(
                "a purchase repeats a stored one after they were read ({why:?})"
            )));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase(card: &str, counter: u16) -> NewPurchase {
        NewPurchase {
            card_number: card.into(),
            offline_counter: counter,
            amount_fen: 100,
            tx_type: 6,
            algorithm_id: 4,
            terminal_id: "000000000001".into(),
            terminal_serial: u32::from(counter),
            tx_ms: 0,
            balance_before_fen: 1_000,
            tac: [0; 4],
            deny_listed: false,
        }
    }

    type Answer = dyn Fn(&[IngestOutcome]) -> Vec<u8> + Send + Sync;

    fn upload<'a>(
        merchant: &'a str,
        terminal: &'a str,
        batch_id: &'a str,
        purchases: &'a [NewPurchase],
        window: &'a str,
        answer: &'a Answer,
    ) -> KeptUpload<'a> {
        KeptUpload {
            batch: PurchaseBatch {
                merchant,
                purchases,
                window,
                window_start_ms: if window == "w1" { 1 } else { 2 },
            },
            kept: KeptBatch {
                terminal,
                batch_id,
                kind: "card",
                digest: "d",
                records: purchases.len() as i64,
                answer,
            },
            audit: audit::Draft {
                actor: "t".into(),
                action: "purchase.ingest".into(),
                record: "m".into(),
                origin: "t".into(),
                detail: String::new(),
            },
        }
    }

    #[test]
    fn groups_by_merchant_and_window_and_answers_repeats_with_the_first() {
        let answer = |_: &[IngestOutcome]| Vec::new();
        let a = vec![purchase("1", 1)];
        let b = vec![purchase("2", 1), purchase("2", 2)];
        let c = vec![purchase("3", 1)];
        let uploads = vec![
            upload("bus", "T1", "x", &a, "w1", &answer),
            upload("shop", "T2", "x", &b, "w1", &answer),
            upload("bus", "T3", "y", &c, "w1", &answer),
            upload("bus", "T1", "x", &a, "w1", &answer),
            upload("bus", "T4", "z", &c, "w2", &answer),
            upload("bus", "T5", "s", &c, "w1", &answer),
        ];
        let plan = group_plan(&uploads, &[false, false, false, false, false, true]);
        assert_eq!(plan.posts, vec![vec![0, 2], vec![1], vec![4]]);
        assert_eq!(plan.repeats, vec![(3, 0)]);
        let (all, starts) = joined(&uploads, &plan.posts[0]);
        assert_eq!(starts, vec![0, 1]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].card_number, "3");
        assert!(check_group(&uploads).is_ok());
    }
}
