//! The ledger's storage: accounts by natural key, transfers posted in batches (one database
//! transaction per batch), two-phase resolution, queries, the recomputation check, and the
//! release of card balance moves after cooling-off.
//!
//! The arithmetic is `ledger::apply`, the same in both backends: a backend loads (and on
//! PostgreSQL locks, in id order) the accounts a batch touches, plans the batch here with
//! [`plan_post_batch`], and writes the planned rows and balances in the same transaction as
//! the batch's audit entry. A rejected transfer writes nothing; the others of its batch do.

use crate::Result;
use ::ledger::{
    AccountKey, Amount, Balance, BookError, Effect, IdempotencyKey, Mode, Posting, Transfer,
    TransferKind, TransferState, Unit,
};
use async_trait::async_trait;
use std::collections::HashMap;

/// At most this many transfers (or resolutions) per batch.
pub const LEDGER_BATCH_MAX: usize = 20_000;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: i64,
    pub key: AccountKey,
    /// Posted balance on the account's normal side, in fen (or points).
    pub balance: i64,
    /// Held back by pending transfers.
    pub reserved: i64,
    pub created_ms: i64,
}

impl AccountRow {
    pub fn to_balance(&self) -> Balance {
        Balance {
            balance: self.balance,
            reserved: self.reserved,
            ..Balance::new(self.id, self.key.kind(), self.key.unit())
        }
    }
    pub fn available(&self) -> i64 {
        self.balance.saturating_sub(self.reserved)
    }
}

/// A stored transfer with its postings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    pub id: i64,
    pub key: String,
    pub kind: TransferKind,
    pub memo: String,
    pub mode: Mode,
    pub state: TransferState,
    pub created_ms: i64,
    /// When it took effect on balances: at creation (immediate) or when a pending one was
    /// posted; `None` while pending or once voided. Clearing windows are cut on this.
    pub posted_ms: Option<i64>,
    pub postings: Vec<Posting>,
}

/// One posting of an account's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub transfer_id: i64,
    pub key: String,
    pub kind: TransferKind,
    pub state: TransferState,
    pub posting: Posting,
    pub created_ms: i64,
}

/// The answer to one transfer or resolution of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// Applied now; the transfer is in `state`.
    Applied { id: i64, state: TransferState },
    /// The same request was applied before (same key, same content): its original result.
    Duplicate { id: i64, state: TransferState },
    /// The key was used for a different request (or, for a resolution, the transfer was
    /// already resolved the other way or is not pending); nothing written.
    KeyConflict { id: i64, state: TransferState },
    /// No transfer has this key (resolutions only).
    NotFound,
    /// Refused: nothing written. Not remembered, so a corrected retry with the same key
    /// is judged afresh.
    Rejected(BookError),
}

impl PostOutcome {
    /// The transfer's id when it exists with this content.
    pub fn accepted(&self) -> Option<(i64, TransferState)> {
        match self {
            PostOutcome::Applied { id, state } | PostOutcome::Duplicate { id, state } => {
                Some((*id, *state))
            }
            _ => None,
        }
    }
}

/// Post (`post: true`) or void a pending transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub key: IdempotencyKey,
    pub post: bool,
}

/// What the check found first, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A stored balance or reservation differs from the sum of the account's postings.
    Balance {
        account: i64,
        key: String,
        stored: i64,
        computed: i64,
        stored_reserved: i64,
        computed_reserved: i64,
    },
    /// A transfer's debits and credits differ in one unit.
    Unbalanced { transfer: String, unit: String },
    /// A posting's unit is not its account's.
    UnitMismatch { transfer: String, account: i64 },
    /// A posting names a transfer or an account that does not exist (PostgreSQL keeps no
    /// per-row foreign key on postings: the check is here instead).
    Dangling {
        transfer_id: i64,
        account: i64,
        /// `"transfer"` or `"account"`.
        missing: &'static str,
    },
}

/// The first posting whose transfer or account does not exist, with `missing` naming which:
/// the same statement on both backends (`transfer_id`, `account_id`, `missing`).
pub const DANGLING_POSTING_SQL: &str = "SELECT p.transfer_id, p.account_id, \
     CASE WHEN NOT EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.id = p.transfer_id) \
     THEN 'transfer' ELSE 'account' END AS missing \
     FROM ledger_postings p \
     WHERE NOT EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.id = p.transfer_id) \
     OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = p.account_id) \
     ORDER BY p.transfer_id, p.idx LIMIT 1";

impl Mismatch {
    /// A row of [`DANGLING_POSTING_SQL`] as a mismatch.
    pub fn dangling(transfer_id: i64, account: i64, missing: &str) -> Self {
        Mismatch::Dangling {
            transfer_id,
            account,
            missing: if missing == "transfer" {
                "transfer"
            } else {
                "account"
            },
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Balance {
                account,
                key,
                stored,
                computed,
                stored_reserved,
                computed_reserved,
            } => write!(
                f,
                "account {account} ({key}): stored balance {stored}, postings sum to {computed}; \
                 stored reserved {stored_reserved}, pending postings hold {computed_reserved}"
            ),
            Mismatch::Unbalanced { transfer, unit } => {
                write!(f, "transfer {transfer} does not balance in {unit}")
            }
            Mismatch::UnitMismatch { transfer, account } => {
                write!(
                    f,
                    "transfer {transfer} posts to account {account} in another unit"
                )
            }
            Mismatch::Dangling {
                transfer_id,
                account,
                missing,
            } => write!(
                f,
                "a posting of transfer id {transfer_id} to account {account} names a {missing} \
                 that does not exist"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCheck {
    pub accounts: u64,
    pub transfers: u64,
    pub postings: u64,
    /// The first problem found (accounts by id, then transfers by id), or `None`.
    pub mismatch: Option<Mismatch>,
}

/// A balance move whose cooling-off has passed and which is not yet released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMove {
    pub id: i64,
    pub from_number: String,
    /// The successor (replacement, renewal); `None`: refund to the holder.
    pub to_number: Option<String>,
    pub not_before_s: i64,
}

/// How to release one balance move: empty every `(from, to)` pair's `from` account into its
/// `to` account (same unit; `from` credit-normal, i.e. money the company owes), in one
/// transfer with key `balance-move:<id>`, and mark the move released in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRelease {
    pub move_id: i64,
    pub memo: String,
    pub sweeps: Vec<(i64, i64)>,
}

impl MoveRelease {
    pub fn key(&self) -> IdempotencyKey {
        IdempotencyKey::parse(&format!("balance-move:{}", self.move_id)).expect("a well-formed key")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Released now: `moved` fen in transfer `transfer_id` (`None` when there was nothing).
    Released {
        transfer_id: Option<i64>,
        moved: i64,
    },
    /// Released before; nothing done.
    AlreadyReleased,
    /// A pending transfer still holds money on `account`: released once it is resolved.
    Deferred { account: i64, reserved: i64 },
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Opens accounts by natural key (kind + owner + unit), returning each in the order
    /// asked, existing or new. Appends `audit` when at least one was created.
    async fn ledger_open_accounts(
        &self,
        keys: &[AccountKey],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<AccountRow>>;

    async fn ledger_account(&self, key: &AccountKey) -> Result<Option<AccountRow>>;

    /// Accounts in id order after `after_id`.
    async fn ledger_accounts_page(&self, after_id: i64, limit: u32) -> Result<Vec<AccountRow>>;

    /// Posts a batch in one database transaction; one outcome per transfer, in order.
    /// `audit` is appended in that transaction when anything was applied.
    async fn ledger_post_batch(
        &self,
        transfers: &[Transfer],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<PostOutcome>>;

    /// Posts or voids pending transfers, in one database transaction.
    async fn ledger_resolve_batch(
        &self,
        resolves: &[Resolve],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<PostOutcome>>;

    async fn ledger_transfer(&self, key: &str) -> Result<Option<TransferRow>>;

    /// Transfers in id order after `after_id`, with their postings.
    async fn ledger_transfers_page(&self, after_id: i64, limit: u32) -> Result<Vec<TransferRow>>;

    /// An account's postings in transfer order after `after_transfer_id`.
    async fn ledger_statement(
        &self,
        account: i64,
        after_transfer_id: i64,
        limit: u32,
    ) -> Result<Vec<StatementLine>>;

    /// Recomputes every balance and reservation from the postings and checks that every
    /// transfer balances per unit.
    async fn ledger_check(&self) -> Result<LedgerCheck>;

    /// Balance moves not yet released whose cooling-off ended at or before `now_s`.
    async fn balance_moves_due(&self, now_s: i64, limit: u32) -> Result<Vec<DueMove>>;

    /// Releases one balance move: reads the `from` balances at this moment, posts the
    /// transfer and marks the move released, with `audit`, all in one transaction.
    async fn balance_move_release(
        &self,
        release: &MoveRelease,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ReleaseOutcome>;
}

// -- the plan both backends share ---------------------------------------------------------

/// A transfer with this key already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub id: i64,
    pub digest: [u8; 32],
    pub state: TransferState,
}

/// What a batch writes. The backend inserts `inserts` (indexes into the batch, in order),
/// gets their ids, writes `balances`, and calls [`BatchPlan::finish`].
#[derive(Debug)]
pub struct BatchPlan {
    planned: Vec<Planned>,
    pub inserts: Vec<usize>,
    /// Every account the batch changed, with its new balance and reservation.
    pub balances: Vec<Balance>,
}

#[derive(Debug)]
enum Planned {
    Inserted { slot: usize, state: TransferState },
    Done(PostOutcome),
    SameAs { slot: usize, conflict: bool },
}

impl BatchPlan {
    pub fn finish(self, ids: &[i64]) -> Vec<PostOutcome> {
        assert_eq!(
            ids.len(),
            self.inserts.len(),
            "one id per inserted transfer"
        );
        let states: Vec<TransferState> = self
            .planned
            .iter()
            .filter_map(|p| match p {
                Planned::Inserted { state, .. } => Some(*state),
                _ => None,
            })
            .collect();
        self.planned
            .into_iter()
            .map(|p| match p {
                Planned::Inserted { slot, state } => PostOutcome::Applied {
                    id: ids[slot],
                    state,
                },
                Planned::SameAs { slot, conflict } => {
                    let (id, state) = (ids[slot], states[slot]);
                    if conflict {
                        PostOutcome::KeyConflict { id, state }
                    } else {
                        PostOutcome::Duplicate { id, state }
                    }
                }
                Planned::Done(o) => o,
            })
            .collect()
    }

    pub fn applied(&self) -> usize {
        self.inserts.len()
    }
}

/// Plans a batch: validates each transfer, answers repeats from `existing` (and from earlier
/// transfers of the same batch), and applies the rest in order to `balances` (every account
/// the batch names that exists), all-or-nothing per transfer.
pub fn plan_post_batch(
    transfers: &[Transfer],
    existing: &HashMap<String, Existing>,
    balances: &mut HashMap<i64, Balance>,
) -> BatchPlan {
    let mut planned = Vec::with_capacity(transfers.len());
    let mut inserts = Vec::new();
    let mut in_batch: HashMap<&str, (usize, [u8; 32])> = HashMap::new();
    let mut touched: Vec<i64> = Vec::new();
    for (i, t) in transfers.iter().enumerate() {
        let digest = t.digest();
        if let Some(e) = existing.get(t.key.as_str()) {
            planned.push(Planned::Done(if e.digest == digest {
                PostOutcome::Duplicate {
                    id: e.id,
                    state: e.state,
                }
            } else {
                PostOutcome::KeyConflict {
                    id: e.id,
                    state: e.state,
                }
            }));
            continue;
        }
        if let Some((slot, d)) = in_batch.get(t.key.as_str()) {
            planned.push(Planned::SameAs {
                slot: *slot,
                conflict: *d != digest,
            });
            continue;
        }
        if let Err(e) = t.validate() {
            planned.push(Planned::Done(PostOutcome::Rejected(e.into())));
            continue;
        }
        let (effect, state) = match t.mode {
            Mode::Immediate => (Effect::Post, TransferState::Posted),
            Mode::Pending => (Effect::Reserve, TransferState::Pending),
        };
        match apply_to(balances, &t.postings, effect) {
            Ok(()) => {
                for p in &t.postings {
                    touched.push(p.account);
                }
                let slot = inserts.len();
                in_batch.insert(t.key.as_str(), (slot, digest));
                inserts.push(i);
                planned.push(Planned::Inserted { slot, state });
            }
            Err(e) => planned.push(Planned::Done(PostOutcome::Rejected(e))),
        }
    }
    BatchPlan {
        planned,
        inserts,
        balances: changed(balances, touched),
    }
}

fn changed(balances: &HashMap<i64, Balance>, mut touched: Vec<i64>) -> Vec<Balance> {
    touched.sort_unstable();
    touched.dedup();
    touched.iter().map(|id| balances[id]).collect()
}

fn apply_to(
    balances: &mut HashMap<i64, Balance>,
    postings: &[Posting],
    effect: Effect,
) -> std::result::Result<(), BookError> {
    let mut refs: HashMap<i64, &mut Balance> = balances
        .iter_mut()
        .filter(|(id, _)| postings.iter().any(|p| p.account == **id))
        .map(|(id, b)| (*id, b))
        .collect();
    ::ledger::apply(|id| refs.remove(&id), postings, effect)
}

/// A pending transfer found for a resolution.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: i64,
    pub state: TransferState,
    pub mode: Mode,
    pub postings: Vec<Posting>,
}

/// Plans resolutions: the outcome of each and the state changes `(id, new state)` to write,
/// applying posted/voided reservations to `balances`.
pub fn plan_resolve_batch(
    resolves: &[Resolve],
    found: &HashMap<String, Found>,
    balances: &mut HashMap<i64, Balance>,
) -> (Vec<PostOutcome>, Vec<(i64, TransferState)>, Vec<Balance>) {
    let mut outcomes = Vec::with_capacity(resolves.len());
    let mut changes: Vec<(i64, TransferState)> = Vec::new();
    let mut now_state: HashMap<i64, TransferState> = HashMap::new();
    let mut touched = Vec::new();
    for r in resolves {
        let Some(f) = found.get(r.key.as_str()) else {
            outcomes.push(PostOutcome::NotFound);
            continue;
        };
        let state = now_state.get(&f.id).copied().unwrap_or(f.state);
        let target = if r.post {
            TransferState::Posted
        } else {
            TransferState::Voided
        };
        if state != TransferState::Pending {
            outcomes.push(if state == target {
                PostOutcome::Duplicate { id: f.id, state }
            } else {
                PostOutcome::KeyConflict { id: f.id, state }
            });
            continue;
        }
        let effect = if r.post {
            Effect::PostReserved
        } else {
            Effect::VoidReserved
        };
        match apply_to(balances, &f.postings, effect) {
            Ok(()) => {
                touched.extend(f.postings.iter().map(|p| p.account));
                now_state.insert(f.id, target);
                changes.push((f.id, target));
                outcomes.push(PostOutcome::Applied {
                    id: f.id,
                    state: target,
                });
            }
            Err(e) => outcomes.push(PostOutcome::Rejected(e)),
        }
    }
    let changed = changed(balances, touched);
    (outcomes, changes, changed)
}

/// The transfer that empties each `from` into its `to`, given their balances now; `Ok(None)`
/// when there is nothing to move, `Err` with the first account on which a pending transfer
/// still holds money.
pub fn release_transfer(
    release: &MoveRelease,
    balances: &HashMap<i64, Balance>,
) -> Result<std::result::Result<Option<Transfer>, (i64, i64)>> {
    let mut postings = Vec::new();
    for (from, to) in &release.sweeps {
        let (Some(f), Some(t)) = (balances.get(from), balances.get(to)) else {
            return Err(crate::StoreError::NotFound(format!(
                "ledger account {from} or {to}"
            )));
        };
        if f.unit != t.unit || f.normal != ::ledger::NormalSide::Credit {
            return Err(crate::StoreError::Corrupt(format!(
                "balance move {} from account {from} to {to}: units or sides do not fit",
                release.move_id
            )));
        }
        if f.reserved != 0 {
            return Ok(Err((*from, f.reserved)));
        }
        if f.balance > 0 {
            postings.push(Posting::debit(*from, f.unit, Amount(f.balance)));
            postings.push(Posting::credit(*to, t.unit, Amount(f.balance)));
        }
    }
    if postings.is_empty() {
        return Ok(Ok(None));
    }
    Ok(Ok(Some(Transfer {
        key: release.key(),
        kind: TransferKind::BalanceMove,
        memo: release.memo.clone(),
        mode: Mode::Immediate,
        postings,
    })))
}

/// The moved amount of a release transfer (per unit summed; cards hold CNY only).
pub fn moved(t: &Transfer) -> i64 {
    t.postings
        .iter()
        .filter(|p| p.side == ::ledger::Side::Debit && p.unit == Unit::Cny)
        .map(|p| p.amount.get())
        .sum()
}

// -- decoding stored columns, shared by the backends --------------------------------------

fn corrupt(what: &str, v: &str) -> crate::StoreError {
    crate::StoreError::Corrupt(format!("ledger {what} {v:?}"))
}

pub fn decode_account(
    id: i64,
    kind: &str,
    owner: &str,
    unit: &str,
    balance: i64,
    reserved: i64,
    created_ms: i64,
) -> Result<AccountRow> {
    let key = AccountKey::parse(kind, owner, unit)
        .map_err(|e| crate::StoreError::Corrupt(format!("ledger account {id}: {e}")))?;
    Ok(AccountRow {
        id,
        key,
        balance,
        reserved,
        created_ms,
    })
}

pub fn decode_balance(
    id: i64,
    unit: &str,
    normal: &str,
    floor: Option<i64>,
    balance: i64,
    reserved: i64,
) -> Result<Balance> {
    Ok(Balance {
        id,
        unit: Unit::parse(unit).ok_or_else(|| corrupt("unit", unit))?,
        normal: ::ledger::NormalSide::parse(normal)
            .ok_or_else(|| corrupt("normal side", normal))?,
        floor,
        balance,
        reserved,
    })
}

pub fn decode_posting(account: i64, unit: &str, side: &str, amount: i64) -> Result<Posting> {
    Ok(Posting {
        account,
        unit: Unit::parse(unit).ok_or_else(|| corrupt("unit", unit))?,
        side: ::ledger::Side::parse(side).ok_or_else(|| corrupt("side", side))?,
        amount: Amount(amount),
    })
}

pub fn decode_state(state: &str) -> Result<TransferState> {
    TransferState::parse(state).ok_or_else(|| corrupt("state", state))
}

pub fn decode_kind(kind: &str) -> Result<TransferKind> {
    TransferKind::parse(kind).ok_or_else(|| corrupt("transfer kind", kind))
}

pub fn decode_mode(mode: &str) -> Result<Mode> {
    match mode {
        "immediate" => Ok(Mode::Immediate),
        "pending" => Ok(Mode::Pending),
        m => Err(corrupt("mode", m)),
    }
}

pub fn decode_digest(b: Vec<u8>) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| crate::StoreError::Corrupt("ledger digest is not 32 bytes".into()))
}

/// The state a new transfer is stored in, and when it took effect.
pub fn initial_state(t: &Transfer, now_ms: i64) -> (TransferState, Option<i64>) {
    match t.mode {
        Mode::Immediate => (TransferState::Posted, Some(now_ms)),
        Mode::Pending => (TransferState::Pending, None),
    }
}

/// Every account id a batch names, sorted (the order PostgreSQL locks them in).
pub fn account_ids(transfers: &[Transfer]) -> Vec<i64> {
    let mut ids: Vec<i64> = transfers
        .iter()
        .flat_map(|t| t.postings.iter().map(|p| p.account))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
