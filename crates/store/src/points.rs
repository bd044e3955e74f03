//! Points (积分, issue 9 item 6): earning rules, the redemption catalogue, charity projects, and
//! the points entries — one row per earning, redemption, donation or expiry, written in the
//! same transaction as its ledger transfer (unit `POINTS`) and its audit entry, once per key.
//!
//! Backends serialise a resident's points work (SQLite: the one writer; PostgreSQL: the audit
//! head's lock taken first, as every audited transaction does), so the daily cap and the
//! expiry arithmetic read what the transaction writes against.

use crate::Result;
use ::ledger::{Amount, BookError, IdempotencyKey, Mode, Posting, Transfer, TransferKind, Unit};
use async_trait::async_trait;

/// At most this many earnings per call.
pub const EARN_BATCH_MAX: usize = 10_000;

pub const OP_EARN: &str = "earn";
pub const OP_REDEEM: &str = "redeem";
pub const OP_DONATE: &str = "donate";
pub const OP_EXPIRE: &str = "expire";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsRuleRow {
    /// `ride`, `library_loan`, `bill_on_time`, `volunteer_hour`.
    pub kind: String,
    pub points_per_unit: i64,
    pub daily_cap: i64,
    pub validity_days: i64,
    pub active: bool,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsItemRow {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// `ride_voucher` or `museum_ticket`.
    pub kind: String,
    pub cost_points: i64,
    pub active: bool,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharityProjectRow {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub active: bool,
    pub updated_ms: i64,
}

/// One movement of a resident's points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsEntryRow {
    pub id: i64,
    pub resident_id: i64,
    /// `earn`, `redeem`, `donate` or `expire`.
    pub op: String,
    /// The ledger transfer's idempotency key.
    pub key: String,
    /// The earning's kind (earnings only).
    pub kind: Option<String>,
    /// The catalogue item or charity project.
    pub target: Option<String>,
    pub points: i64,
    /// The city day number it happened on.
    pub day: i64,
    /// When an earning's points expire (earnings only).
    pub expires_day: Option<i64>,
    pub created_ms: i64,
}

/// An earning to record, with the rule's daily cap: the store grants what the cap leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEarning {
    pub resident_id: i64,
    pub kind: String,
    /// `points::earn_key`: one event earns once.
    pub key: String,
    /// Points the rule gives before the cap.
    pub asked: i64,
    pub daily_cap: i64,
    pub day: i64,
    pub expires_day: i64,
    /// The resident's points account and the issuance account (ledger ids).
    pub account: i64,
    pub issuance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarnOutcome {
    Earned(PointsEntryRow),
    /// This key earned before: the first entry.
    Duplicate(PointsEntryRow),
    /// Nothing recorded: the day's cap of this kind is reached.
    CapReached {
        earned_today: i64,
    },
}

/// A redemption or donation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSpend {
    pub resident_id: i64,
    /// `redeem` or `donate`.
    pub op: String,
    pub key: String,
    pub target: String,
    pub points: i64,
    pub day: i64,
    /// The resident's points account and where the points go (redeemed or a charity's).
    pub account: i64,
    pub sink: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendOutcome {
    Spent(PointsEntryRow),
    /// This key was spent before: the first entry (a different request under it is an error).
    Duplicate(PointsEntryRow),
    /// Refused by the ledger (not enough points); nothing recorded.
    Refused(BookError),
}

/// What has come into and gone out of a resident's points, as the entries say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointsTotals {
    pub earned: i64,
    pub redeemed: i64,
    pub donated: i64,
    pub expired: i64,
    /// Earned points whose lots are due by the day asked.
    pub due: i64,
}

impl PointsTotals {
    pub fn outflow(&self) -> i64 {
        self.redeemed + self.donated + self.expired
    }
    pub fn balance(&self) -> i64 {
        self.earned - self.outflow()
    }
}

/// The ledger transfer of an entry: earnings from issuance to the resident, everything else
/// from the resident to `other`.
pub fn entry_transfer(
    op: &str,
    key: &str,
    account: i64,
    other: i64,
    points: i64,
) -> Result<Transfer> {
    let (kind, memo, from, to) = match op {
        OP_EARN => (TransferKind::PointsEarn, "points earned", other, account),
        OP_REDEEM => (
            TransferKind::PointsRedeem,
            "points redeemed",
            account,
            other,
        ),
        OP_DONATE => (TransferKind::PointsDonate, "points donated", account, other),
        OP_EXPIRE => (TransferKind::PointsExpire, "points expired", account, other),
        o => return Err(crate::StoreError::Corrupt(format!("points op {o:?}"))),
    };
    Ok(Transfer {
        key: IdempotencyKey::parse(key).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?,
        kind,
        memo: memo.into(),
        mode: Mode::Immediate,
        postings: vec![
            Posting::debit(from, Unit::Points, Amount(points)),
            Posting::credit(to, Unit::Points, Amount(points)),
        ],
    })
}

/// The key of a resident's expiry on a day: one expiry per resident and day (lots fall due
/// by day, so a second run the same day has nothing more to expire).
pub fn expire_key(resident_id: i64, day: i64) -> String {
    format!("points-expire:{resident_id}:{day}")
}

/// What one earning of a batch does, planned by [`plan_earnings`] from what the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarnStep {
    /// Its key earned before this batch: answered with the stored entry.
    Stored,
    /// The day's cap is reached: nothing is recorded.
    Cap { earned_today: i64 },
    /// A new entry of this many points.
    Insert { granted: i64 },
    /// Its key was planned earlier in the batch (that earning's step answers for it).
    SameAs(usize),
}

/// Plans a batch of earnings in order, as if each were recorded before the next: `stored` are
/// the keys already recorded, `earned` each (resident, kind, day)'s earnings so far. Earlier
/// items of the batch count against the cap of later ones.
pub fn plan_earnings(
    earnings: &[NewEarning],
    stored: &std::collections::HashSet<String>,
    earned: &std::collections::HashMap<(i64, String, i64), i64>,
) -> Vec<EarnStep> {
    let mut earned = earned.clone();
    let mut first: std::collections::HashMap<&str, usize> = Default::default();
    let mut steps = Vec::with_capacity(earnings.len());
    for (i, e) in earnings.iter().enumerate() {
        if stored.contains(&e.key) {
            steps.push(EarnStep::Stored);
            continue;
        }
        if let Some(&j) = first.get(e.key.as_str()) {
            steps.push(EarnStep::SameAs(j));
            continue;
        }
        let today = earned
            .entry((e.resident_id, e.kind.clone(), e.day))
            .or_insert(0);
        let granted = e.asked.min(e.daily_cap - *today);
        if granted <= 0 {
            steps.push(EarnStep::Cap {
                earned_today: *today,
            });
            continue;
        }
        *today += granted;
        first.insert(&e.key, i);
        steps.push(EarnStep::Insert { granted });
    }
    steps
}

/// The outcomes of a planned batch: `stored` and `inserted` are the entries by key.
pub fn earn_outcomes(
    earnings: &[NewEarning],
    steps: &[EarnStep],
    stored: &std::collections::HashMap<String, PointsEntryRow>,
    inserted: &std::collections::HashMap<String, PointsEntryRow>,
) -> Result<Vec<EarnOutcome>> {
    let missing = |k: &str| crate::StoreError::Corrupt(format!("points entry {k} vanished"));
    earnings
        .iter()
        .zip(steps)
        .map(|(e, step)| {
            Ok(match *step {
                EarnStep::Stored => EarnOutcome::Duplicate(
                    stored.get(&e.key).cloned().ok_or_else(|| missing(&e.key))?,
                ),
                EarnStep::Cap { earned_today } => EarnOutcome::CapReached { earned_today },
                EarnStep::Insert { .. } => EarnOutcome::Earned(
                    inserted
                        .get(&e.key)
                        .cloned()
                        .ok_or_else(|| missing(&e.key))?,
                ),
                EarnStep::SameAs(_) => EarnOutcome::Duplicate(
                    inserted
                        .get(&e.key)
                        .cloned()
                        .ok_or_else(|| missing(&e.key))?,
                ),
            })
        })
        .collect()
}

#[async_trait]
pub trait PointsStore: Send + Sync {
    async fn points_rules(&self) -> Result<Vec<PointsRuleRow>>;
    /// Replaces one kind's rule (inserting it when new).
    async fn points_rule_set(&self, r: &PointsRuleRow, audit: audit::Draft) -> Result<()>;

    async fn points_items(&self) -> Result<Vec<PointsItemRow>>;
    async fn points_item_set(&self, i: &PointsItemRow, audit: audit::Draft) -> Result<()>;

    async fn points_projects(&self) -> Result<Vec<CharityProjectRow>>;
    async fn points_project_set(&self, p: &CharityProjectRow, audit: audit::Draft) -> Result<()>;

    /// Records earnings in one transaction, each once per key: the day's earnings of the
    /// resident and kind are summed (earlier items of the batch included), the grant is cut
    /// to what `daily_cap` leaves, and the entry and its ledger transfer are written. `audit`
    /// is appended when anything was earned. One outcome per earning, in order.
    async fn points_earn(
        &self,
        earnings: &[NewEarning],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<EarnOutcome>>;

    /// Records a redemption or donation once per key, with its transfer and `audit`.
    async fn points_spend(
        &self,
        s: &NewSpend,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<SpendOutcome>;

    /// Expires what is due for a resident on `day` (lots due, less everything that left the
    /// account; `points::expiring`), computed and written in one transaction under key
    /// [`expire_key`]; closes the due lots. `None` when nothing was due.
    async fn points_expire(
        &self,
        resident_id: i64,
        day: i64,
        account: i64,
        expired_account: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Option<PointsEntryRow>>;

    /// Residents after `after` with earnings due by `day` not yet closed by an expiry run.
    async fn points_expiry_due(&self, day: i64, after: i64, limit: u32) -> Result<Vec<i64>>;

    async fn points_totals(&self, resident_id: i64, day: i64) -> Result<PointsTotals>;

    /// A resident's entries, newest first, before entry id `before` (0: from the newest).
    async fn points_entries(
        &self,
        resident_id: i64,
        before: i64,
        limit: u32,
    ) -> Result<Vec<PointsEntryRow>>;

    async fn points_entry(&self, key: &str) -> Result<Option<PointsEntryRow>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn earning(resident_id: i64, key: &str, asked: i64) -> NewEarning {
        NewEarning {
            resident_id,
            kind: "ride".into(),
            key: key.into(),
            asked,
            daily_cap: 10,
            day: 100,
            expires_day: 465,
            account: 7,
            issuance: 1,
        }
    }

    #[test]
    fn a_batch_is_planned_as_if_recorded_one_by_one() {
        let batch = [
            earning(1, "a", 4),
            earning(1, "b", 4),
            earning(1, "c", 4),   // 8 earned before it: 2 left of the cap
            earning(1, "d", 4),   // the cap is reached
            earning(2, "e", 4),   // another resident has their own cap
            earning(1, "a", 4),   // the first item's key again
            earning(2, "old", 4), // stored before the batch
        ];
        let stored: HashSet<String> = ["old".to_string()].into();
        let mut earned = HashMap::new();
        earned.insert((2, "ride".to_string(), 100), 5);
        let steps = plan_earnings(&batch, &stored, &earned);
        assert_eq!(
            steps,
            vec![
                EarnStep::Insert { granted: 4 },
                EarnStep::Insert { granted: 4 },
                EarnStep::Insert { granted: 2 },
                EarnStep::Cap { earned_today: 10 },
                EarnStep::Insert { granted: 4 },
                EarnStep::SameAs(0),
                EarnStep::Stored,
            ]
        );
        // An entry the plan counts on but the store did not return is an error, not a guess.
        let none = HashMap::new();
        assert!(earn_outcomes(&batch, &steps, &none, &none).is_err());
    }
}
