//! Money movements (issue 5): top-ups through a payment channel, e-purse loads, online
//! payments and fees, refunds and reversals. One row per movement, named by the caller's
//! request key, written in the same database transaction as the ledger transfers that carry
//! its money and its audit entry, so a movement and its money never disagree.
//!
//! The store knows states only as text and kind-specific details only as an opaque JSON text:
//! the rules (which state follows which, what a detail holds) live in `platform::money`. What
//! the store does enforce, under concurrency: one request key is one movement; a movement
//! changes state only from the state the caller saw (compare and set); what is returned from
//! a payment (refunds, a reversal) never exceeds what was paid; a card has at most one load
//! awaiting its confirmation.
//!
//! Online payments to merchants enter clearing (清分) like offline purchases: a movement of kind
//! `payment`, and a refund or reversal of a payment that has a window, is assigned when it is
//! written the clearing window its `now_ms` falls in (by the store's [`WindowCalendar`], the
//! platform's), never changed afterwards; a window's close reads them with
//! [`MoneyStore::money_of_window`]. Top-ups, loads, fees (paid to departments, not merchants)
//! and their refunds carry no window.

use crate::Result;
use crate::ledger::Resolve;
use ::ledger::{BookError, Transfer, WindowCalendar};
use async_trait::async_trait;

/// Listing pages are at most this long.
pub const MOVEMENTS_PAGE_MAX: u32 = 500;
/// At most this many movements are recorded in one group commit.
pub const MONEY_BATCH_MAX: usize = 1_000;
/// A movement's detail text is at most this many bytes.
pub const MOVEMENT_DETAIL_MAX: usize = 4096;

/// What kind of movement a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementKind {
    /// 充值: bank → online account, two-phase while the bank answers.
    TopUp,
    /// 圈存: online account → e-purse, held until the card's TAC (or evidence) comes back.
    Load,
    /// An online payment from the account to a merchant (the e-code).
    Payment,
    /// A fee or tax paid from the account to a department's collection account.
    Fee,
    /// Part of a payment or fee given back.
    Refund,
    /// The whole of what remains of a payment or fee given back.
    Reversal,
}

impl MovementKind {
    pub const ALL: [MovementKind; 6] = [
        MovementKind::TopUp,
        MovementKind::Load,
        MovementKind::Payment,
        MovementKind::Fee,
        MovementKind::Refund,
        MovementKind::Reversal,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::TopUp => "top_up",
            MovementKind::Load => "load",
            MovementKind::Payment => "payment",
            MovementKind::Fee => "fee",
            MovementKind::Refund => "refund",
            MovementKind::Reversal => "reversal",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        MovementKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A movement as the platform asks to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMovement {
    pub kind: MovementKind,
    /// The caller's idempotency key, prefixed with the kind (`payment:<key>`): unique.
    pub request_key: String,
    /// SM3 of the request's content: the same key with another digest is another request.
    pub digest: [u8; 32],
    pub resident_id: i64,
    pub card_number: Option<String>,
    /// The bank, merchant or department on the other side.
    pub counterparty: String,
    /// Fen, positive.
    pub amount: i64,
    /// The payment a refund or reversal gives back from.
    pub parent_id: Option<i64>,
    pub state: String,
    /// The channel's order id of a top-up.
    pub external_ref: Option<String>,
    /// Kind-specific details as JSON text (no personal data).
    pub detail: String,
}

/// A stored movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementRow {
    pub id: i64,
    pub kind: MovementKind,
    pub request_key: String,
    pub digest: [u8; 32],
    pub resident_id: i64,
    pub card_number: Option<String>,
    pub counterparty: String,
    pub amount: i64,
    /// Given back so far by refunds and reversals (payments and fees).
    pub returned: i64,
    pub parent_id: Option<i64>,
    pub state: String,
    pub external_ref: Option<String>,
    pub detail: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The clearing window (`YYYY-MM-DD`, the city date it closes on) a merchant payment, or
    /// a refund or reversal of one, was posted into; `None` for every other movement and for
    /// movements recorded before online payments entered clearing (migration 0032).
    pub window_id: Option<String>,
}

/// Whether a movement enters a clearing window: payments (always to a merchant's payable
/// account) and what is given back from a payment that entered one (`parent_cleared`: its
/// parent carries a window). A fee's refund goes back from a department, which clearing does
/// not settle; a refund of a payment recorded before online clearing (no window) takes back
/// nothing clearing paid.
pub fn clears(kind: MovementKind, parent_cleared: bool) -> bool {
    match kind {
        MovementKind::Payment => true,
        MovementKind::Refund | MovementKind::Reversal => parent_cleared,
        MovementKind::TopUp | MovementKind::Load | MovementKind::Fee => false,
    }
}

/// What a backend keeps to assign windows: the calendar, shared by the store's handles.
#[derive(Debug, Default)]
pub struct Windows(std::sync::RwLock<WindowCalendar>);

impl Windows {
    pub fn set(&self, calendar: WindowCalendar) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = calendar;
    }

    /// The window open at `now_ms`, as text.
    pub fn window_of(&self, now_ms: i64) -> String {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .window_of(now_ms)
            .to_string()
    }

    /// The window after `window` and its first instant (unix ms); `None` when `window` is not
    /// a window's id.
    pub fn after(&self, window: &str) -> Option<(String, i64)> {
        let next = ::ledger::WindowId::parse(window).ok()?.next();
        let start = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .start_ms(next);
        Some((next.to_string(), start))
    }
}

/// Windows a posting may step over when the one it was stamped with closed while it waited
/// for the writer: more than a few in a row means something else is wrong.
pub const WINDOWS_SKIPPED_MAX: usize = 8;

/// What a refund or reversal does to its payment, in the same transaction: `returned` grows by
/// `add` only while the payment is in `require_state`, `returned + add <= amount`, and (when
/// given) `returned` still equals `returned_before`; then the payment moves to `set_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentChange {
    pub id: i64,
    pub add: i64,
    pub require_state: String,
    pub returned_before: Option<i64>,
    pub set_state: Option<String>,
}

/// The answer to [`MoneyStore::money_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now, with its transfers.
    Created(MovementRow),
    /// A movement with this request key exists: nothing written. The caller compares digests.
    Existing(MovementRow),
    /// A transfer was refused (a floor, an unknown account): nothing written.
    Rejected(BookError),
    /// The parent refused the change (state, amount or `returned_before`): nothing written.
    /// Carries the parent as it is now.
    ParentRefused(MovementRow),
}

/// The answer to [`MoneyStore::money_transition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transitioned {
    /// Moved to the new state now, with its resolutions and transfers.
    Changed(MovementRow),
    /// The movement was no longer in the expected state: nothing written.
    Stale(MovementRow),
}

/// A state change of a movement, compare-and-set on `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: i64,
    pub from: String,
    pub to: String,
    /// Replaces the detail text when given.
    pub detail: Option<String>,
    /// Pending transfers to post or void.
    pub resolves: Vec<Resolve>,
    /// Transfers to post.
    pub transfers: Vec<Transfer>,
}

#[async_trait]
pub trait MoneyStore: Send + Sync {
    /// Records a movement, applies `parent` and posts `transfers`, with `audit`, in one
    /// transaction; all or nothing.
    async fn money_record(
        &self,
        movement: &NewMovement,
        parent: Option<&ParentChange>,
        transfers: &[Transfer],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Recorded>;

    /// Records many movements without a parent, each with its one transfer and its audit
    /// entry (`audits[i]`, appended for the items recorded), in one transaction: the group
    /// commit of payment authorizations. One answer per item, in order, as
    /// [`MoneyStore::money_record`] would give it; an item whose request key repeats an
    /// earlier item of the batch answers `Existing` with that one (or its refusal).
    async fn money_record_many(
        &self,
        items: &[(NewMovement, Transfer)],
        audits: &[audit::Draft],
        now_ms: i64,
    ) -> Result<Vec<Recorded>>;

    /// Moves a movement from `from` to `to`, posting or voiding `resolves` and posting
    /// `transfers`, with `audit`, in one transaction; all or nothing.
    async fn money_transition(
        &self,
        transition: &Transition,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Transitioned>;

    async fn money_by_id(&self, id: i64) -> Result<Option<MovementRow>>;

    async fn money_by_key(&self, request_key: &str) -> Result<Option<MovementRow>>;

    /// A movement of `kind` by its external reference (a top-up's order id).
    async fn money_by_ref(
        &self,
        kind: MovementKind,
        external_ref: &str,
    ) -> Result<Option<MovementRow>>;

    /// Movements of `kind` in `state` created at or before `created_before_ms`, of one card
    /// when given, in id order after `after_id`.
    async fn money_list(
        &self,
        kind: MovementKind,
        state: &str,
        card_number: Option<&str>,
        created_before_ms: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<MovementRow>>;

    /// The refunds and reversals of a payment, in id order.
    async fn money_children(&self, parent_id: i64) -> Result<Vec<MovementRow>>;

    /// Where clearing windows are cut when this store assigns a posting its window (default
    /// 23:00 at UTC+8, as `WindowCalendar::default()`). The platform sets its own calendar.
    fn money_windows_set(&self, calendar: WindowCalendar);

    /// The movements posted into clearing window `window_id` (payments to merchants and the
    /// refunds and reversals of them), in id order after `after_id`; at most
    /// `limit.min(PAGE_MAX)`.
    async fn money_of_window(
        &self,
        window_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<MovementRow>>;
}

pub(crate) fn corrupt(what: &str, v: &str) -> crate::StoreError {
    crate::StoreError::Corrupt(format!("money movement {what} {v:?}"))
}

pub fn decode_movement_kind(s: &str) -> Result<MovementKind> {
    MovementKind::parse(s).ok_or_else(|| corrupt("kind", s))
}

/// Checks what a backend is asked to write before it opens a transaction.
pub fn check_new(m: &NewMovement, transfers: &[Transfer]) -> Result<()> {
    if m.amount <= 0 {
        return Err(crate::StoreError::Corrupt(format!(
            "money movement {} with amount {}",
            m.request_key, m.amount
        )));
    }
    if m.detail.len() > MOVEMENT_DETAIL_MAX {
        return Err(crate::StoreError::TooMany {
            got: m.detail.len(),
            max: MOVEMENT_DETAIL_MAX,
        });
    }
    if transfers.len() > crate::ledger::LEDGER_BATCH_MAX {
        return Err(crate::StoreError::TooMany {
            got: transfers.len(),
            max: crate::ledger::LEDGER_BATCH_MAX,
        });
    }
    Ok(())
}

/// Which items of a batch are new (first occurrence of a key not stored): their indexes.
pub fn fresh_items(
    items: &[(NewMovement, Transfer)],
    existing: &std::collections::HashMap<String, MovementRow>,
) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .enumerate()
        .filter(|(_, (m, _))| {
            !existing.contains_key(&m.request_key) && seen.insert(m.request_key.as_str())
        })
        .map(|(i, _)| i)
        .collect()
}

/// The answers of a batch, given what was stored before and what each fresh item got.
pub fn batch_answers(
    items: &[(NewMovement, Transfer)],
    existing: &std::collections::HashMap<String, MovementRow>,
    done: &std::collections::HashMap<String, Recorded>,
    fresh: &[usize],
) -> Vec<Recorded> {
    let fresh: std::collections::HashSet<usize> = fresh.iter().copied().collect();
    items
        .iter()
        .enumerate()
        .map(|(i, (m, _))| {
            if let Some(r) = existing.get(&m.request_key) {
                return Recorded::Existing(r.clone());
            }
            match done.get(&m.request_key) {
                Some(Recorded::Created(r)) if !fresh.contains(&i) => Recorded::Existing(r.clone()),
                Some(r) => r.clone(),
                None => unreachable!("every fresh key has an answer"),
            }
        })
        .collect()
}

/// Checks a batch before a backend opens a transaction.
pub fn check_many(items: &[(NewMovement, Transfer)], audits: &[audit::Draft]) -> Result<()> {
    assert_eq!(items.len(), audits.len(), "one audit draft per movement");
    if items.len() > MONEY_BATCH_MAX {
        return Err(crate::StoreError::TooMany {
            got: items.len(),
            max: MONEY_BATCH_MAX,
        });
    }
    for (m, t) in items {
        if m.parent_id.is_some() {
            return Err(crate::StoreError::Corrupt(format!(
                "money movement {} with a parent in a group commit",
                m.request_key
            )));
        }
        check_new(m, std::slice::from_ref(t))?;
    }
    Ok(())
}
