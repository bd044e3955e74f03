//! Clearing (清分) and settlement (结算) rules, pure: no clock, no database, no network.
//!
//! - [`fees`]: fee schedules — a percentage (in basis points) and a fixed part per
//!   transaction, per merchant category or per merchant, each with the date it takes effect;
//!   the most specific rule in force on the day applies, rounded half up to the fen.
//! - [`positions`]: a window's net position per participant: gross takings, fees, net due.
//! - [`pain001`]: the settlement instructions to a partner bank as an ISO 20022
//!   `pain.001.001.09` customer credit transfer initiation.
//! - [`camt053`]: a bank's ISO 20022 `camt.053.001.08` statement, read (and written, for the
//!   simulated bank and tests).
//! - [`reconcile`]: instructions against statement entries: matched, missing, unexpected and
//!   amount mismatches, the exceptions an operator works through.

pub mod camt053;
pub mod fees;
pub mod pain001;
pub mod positions;
pub mod reconcile;

/// Yuan with two decimals, as ISO 20022 amounts are written (`1234.50`).
pub fn decimal(fen: i64) -> String {
    ledger::Amount(fen).yuan()
}

/// Fen from an ISO 20022 decimal amount (at most two decimals, not negative).
pub fn parse_decimal(text: &str) -> Option<i64> {
    let a = ledger::Amount::parse_yuan(text.trim()).ok()?;
    (a.0 >= 0).then_some(a.0)
}
