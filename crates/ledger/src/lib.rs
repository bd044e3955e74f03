//! The double-entry ledger's rules, pure: integer amounts with checked arithmetic
//! ([`Amount`]), units ([`Unit`]), account kinds with their normal side and floor
//! ([`AccountKind`], [`AccountKey`]), transfers validated before anything is written
//! ([`Transfer`]), and the arithmetic of applying them to balances with two-phase
//! reservations ([`Balance`], [`Book`]).
//!
//! Storage backends apply the same arithmetic inside their transactions; [`Book`] is the
//! in-memory model that property tests drive and that conformance tests compare against.
//!
//! Conventions. A posting is a debit or a credit of a positive amount on one account. Every
//! account keeps its balance on its *normal side*: a liability (a citizen's money the company
//! holds, a merchant payable) grows with credits, an asset (the company's money at a bank)
//! grows with debits. A transfer balances when, for each unit, its debits equal its credits.

mod account;
mod amount;
mod book;
pub mod clearing;
pub mod disbursement;
pub mod offline;
mod transfer;

pub use account::{AccountKey, AccountKind, KeyError, NormalSide, Owner, Unit};
pub use amount::{Amount, AmountError};
pub use book::{Balance, Book, BookError, BookOutcome, Effect, TransferState, apply, delta};
pub use clearing::{WindowCalendar, WindowError, WindowId};
pub use transfer::{
    IdempotencyKey, Mode, POSTINGS_MAX, Posting, Side, Transfer, TransferError, TransferKind,
};
