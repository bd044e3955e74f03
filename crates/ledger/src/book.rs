//! The arithmetic of applying transfers to balances, shared by every store, and [`Book`],
//! an in-memory ledger for property tests and reference models.
//!
//! A balance is kept on the account's normal side (`balance`), next to the money that
//! pending transfers hold back from it (`reserved`, never negative). What an account can
//! still give is `balance - reserved`; the floor applies to that. Postings of one transfer
//! on one account are netted first, and the floor is checked on the result.

use crate::account::{AccountKind, NormalSide, Unit};
use crate::transfer::{IdempotencyKey, Mode, Posting, Side, Transfer, TransferError};
use std::collections::{BTreeMap, HashMap};

/// One account's balance as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub id: i64,
    pub unit: Unit,
    pub normal: NormalSide,
    /// Lowest allowed `balance - reserved`; `None`: no floor.
    pub floor: Option<i64>,
    /// Posted balance on the normal side.
    pub balance: i64,
    /// Held back by pending transfers that take money from this account.
    pub reserved: i64,
}

impl Balance {
    pub fn new(id: i64, kind: AccountKind, unit: Unit) -> Self {
        Balance {
            id,
            unit,
            normal: kind.normal_side(),
            floor: kind.floor(),
            balance: 0,
            reserved: 0,
        }
    }

    /// What the account can still give.
    pub fn available(&self) -> Option<i64> {
        self.balance.checked_sub(self.reserved)
    }
}

/// What applying a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// An immediate transfer: balances change at once.
    Post,
    /// A pending transfer is created: decreases are reserved.
    Reserve,
    /// A pending transfer is posted: its reservations become postings.
    PostReserved,
    /// A pending transfer is voided: its reservations are released.
    VoidReserved,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Invalid(#[from] TransferError),
    #[error("account {0} does not exist")]
    UnknownAccount(i64),
    #[error("posting in {posting} on account {account}, which counts in {account_unit}")]
    UnitMismatch {
        account: i64,
        account_unit: &'static str,
        posting: &'static str,
    },
    #[error(
        "account {account} would fall below its floor of {floor}: {available} available, change {change}"
    )]
    BelowFloor {
        account: i64,
        floor: i64,
        available: i64,
        change: i64,
    },
    #[error("a balance overflows 64 bits")]
    Overflow,
}

/// The signed change of a posting on an account's normal side.
pub fn delta(normal: NormalSide, p: &Posting) -> Result<i64, BookError> {
    let grows = matches!(
        (normal, p.side),
        (NormalSide::Debit, Side::Debit) | (NormalSide::Credit, Side::Credit)
    );
    if grows {
        Ok(p.amount.get())
    } else {
        p.amount.get().checked_neg().ok_or(BookError::Overflow)
    }
}

/// Applies `effect` of `postings` to the accounts `get` finds, all or nothing: on error no
/// account is changed. The transfer must already be validated.
pub fn apply<'a>(
    mut get: impl FnMut(i64) -> Option<&'a mut Balance>,
    postings: &[Posting],
    effect: Effect,
) -> Result<(), BookError> {
    // Net per account first: (balance change, reservation change).
    let mut net: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut found: BTreeMap<i64, &'a mut Balance> = BTreeMap::new();
    for p in postings {
        let b: &Balance = match found.entry(p.account) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(get(p.account).ok_or(BookError::UnknownAccount(p.account))?)
            }
        };
        if b.unit != p.unit {
            return Err(BookError::UnitMismatch {
                account: p.account,
                account_unit: b.unit.as_str(),
                posting: p.unit.as_str(),
            });
        }
        let d = delta(b.normal, p)?;
        let e = net.entry(p.account).or_default();
        let (db, dr) = match effect {
            Effect::Post => (d, 0),
            Effect::Reserve => (0, if d < 0 { -d } else { 0 }),
            Effect::PostReserved => (d, if d < 0 { d } else { 0 }),
            Effect::VoidReserved => (0, if d < 0 { d } else { 0 }),
        };
        e.0 = e.0.checked_add(db).ok_or(BookError::Overflow)?;
        e.1 = e.1.checked_add(dr).ok_or(BookError::Overflow)?;
    }
    let mut next = Vec::with_capacity(net.len());
    for (id, (db, dr)) in &net {
        let b = &found[id];
        let balance = b.balance.checked_add(*db).ok_or(BookError::Overflow)?;
        let reserved = b.reserved.checked_add(*dr).ok_or(BookError::Overflow)?;
        let available = balance.checked_sub(reserved).ok_or(BookError::Overflow)?;
        // Posting or voiding a reservation never lowers what is available, so only new
        // money taken is held to the floor (an account whose floor was lowered keeps working).
        let takes = matches!(effect, Effect::Post | Effect::Reserve)
            && available < b.available().ok_or(BookError::Overflow)?;
        if let Some(floor) = b.floor
            && takes
            && available < floor
        {
            return Err(BookError::BelowFloor {
                account: *id,
                floor,
                available: b.available().unwrap_or(i64::MIN),
                change: available - b.available().unwrap_or(0),
            });
        }
        assert!(reserved >= 0, "reservation of account {id} went negative");
        next.push((*id, balance, reserved));
    }
    for (id, balance, reserved) in next {
        let b = found.get_mut(&id).expect("found above");
        b.balance = balance;
        b.reserved = reserved;
    }
    Ok(())
}

/// The state of a stored transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferState {
    Posted,
    Pending,
    Voided,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Posted => "posted",
            TransferState::Pending => "pending",
            TransferState::Voided => "voided",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "posted" => Some(TransferState::Posted),
            "pending" => Some(TransferState::Pending),
            "voided" => Some(TransferState::Voided),
            _ => None,
        }
    }
}

/// An in-memory ledger with the stores' semantics: idempotency by key and digest, floors,
/// two phases. For property tests and reference models; not for production money.
#[derive(Debug, Default, Clone)]
pub struct Book {
    accounts: BTreeMap<i64, (AccountKind, Balance)>,
    transfers: HashMap<IdempotencyKey, ([u8; 32], TransferState, Vec<Posting>)>,
}

/// The answer to one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookOutcome {
    /// Newly applied, now in this state.
    Applied(TransferState),
    /// The same request was applied before; this is its state.
    Duplicate(TransferState),
    /// The key was used for a different request.
    KeyConflict,
    Rejected(BookError),
}

impl Book {
    pub fn open(&mut self, kind: AccountKind, unit: Unit) -> i64 {
        let id = self.accounts.len() as i64 + 1;
        self.accounts
            .insert(id, (kind, Balance::new(id, kind, unit)));
        id
    }

    pub fn balance(&self, id: i64) -> Option<Balance> {
        self.accounts.get(&id).map(|(_, b)| *b)
    }

    pub fn accounts(&self) -> impl Iterator<Item = (AccountKind, Balance)> + '_ {
        self.accounts.values().copied()
    }

    pub fn transfer(&mut self, t: &Transfer) -> BookOutcome {
        let digest = t.digest();
        if let Some((d, state, _)) = self.transfers.get(&t.key) {
            return if *d == digest {
                BookOutcome::Duplicate(*state)
            } else {
                BookOutcome::KeyConflict
            };
        }
        if let Err(e) = t.validate() {
            return BookOutcome::Rejected(e.into());
        }
        let (effect, state) = match t.mode {
            Mode::Immediate => (Effect::Post, TransferState::Posted),
            Mode::Pending => (Effect::Reserve, TransferState::Pending),
        };
        let accounts = &mut self.accounts;
        // Safe to hand out several `&mut` to distinct accounts through a raw iterator:
        // collect them first.
        let mut refs: HashMap<i64, &mut Balance> =
            accounts.iter_mut().map(|(id, (_, b))| (*id, b)).collect();
        let mut get = |id: i64| refs.remove(&id);
        match apply(&mut get, &t.postings, effect) {
            Ok(()) => {
                self.transfers
                    .insert(t.key.clone(), (digest, state, t.postings.clone()));
                BookOutcome::Applied(state)
            }
            Err(e) => BookOutcome::Rejected(e),
        }
    }

    /// Posts (`post`) or voids a pending transfer. Repeating the same resolution answers
    /// `Duplicate`; the other one after it, `KeyConflict`.
    pub fn resolve(&mut self, key: &IdempotencyKey, post: bool) -> Option<BookOutcome> {
        let (_, state, postings) = self.transfers.get(key)?.clone();
        let target = if post {
            TransferState::Posted
        } else {
            TransferState::Voided
        };
        match state {
            TransferState::Pending => {}
            s if s == target => return Some(BookOutcome::Duplicate(s)),
            _ => return Some(BookOutcome::KeyConflict),
        }
        let effect = if post {
            Effect::PostReserved
        } else {
            Effect::VoidReserved
        };
        let mut refs: HashMap<i64, &mut Balance> = self
            .accounts
            .iter_mut()
            .map(|(id, (_, b))| (*id, b))
            .collect();
        let mut get = |id: i64| refs.remove(&id);
        if let Err(e) = apply(&mut get, &postings, effect) {
            return Some(BookOutcome::Rejected(e));
        }
        if let Some(entry) = self.transfers.get_mut(key) {
            entry.1 = target;
        }
        Some(BookOutcome::Applied(target))
    }

    /// Sum of balances per unit with debit-normal accounts counted positive and
    /// credit-normal ones negative: zero for every unit in a balanced book.
    pub fn trial_balance(&self, unit: Unit) -> i128 {
        self.accounts
            .values()
            .filter(|(_, b)| b.unit == unit)
            .map(|(_, b)| match b.normal {
                NormalSide::Debit => i128::from(b.balance),
                NormalSide::Credit => -i128::from(b.balance),
            })
            .sum()
    }
}
