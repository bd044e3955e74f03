//! The carry-over between offline-purchase ingests: what this process's last committed ingest
//! left in the books for the cards and accounts it touched (each card's e-purse shadow balance
//! and highest offline counter, the merchants' payables, suspense), so that the next ingest
//! reads from the database only the cards it has not seen.
//!
//! It is used only when nothing was committed in between, by anyone: the backend reads a
//! [`Stamp`] inside its writing transaction, under the lock that serializes writers (the audit
//! head on PostgreSQL, the write lock on SQLite), and [`CarryOver::take`] hands the carried
//! state over only when the stamp equals the one left by the last commit. Any other write
//! (another process, a payment, an operator) changes the stamp, and the ingest reads everything
//! as before. The backends check again where the books would show a stale carry-over (a
//! balance that moved, a counter already stored) and then plan the batch again from the
//! database. A failed or unknown commit leaves nothing behind.

use ::ledger::Balance;
use ::ledger::offline::{Accounts, Verdict};
use std::collections::HashMap;
use std::sync::Mutex;

/// Cards carried at most; past it the carry-over starts again from the next batch's cards
/// (about 100 bytes a card).
pub const CARRIED_CARDS_MAX: usize = 500_000;

/// What a backend reads, under its writers' lock, to show that nothing was committed since its
/// last ingest (PostgreSQL: the audit head's sequence number; SQLite: the audit head, the
/// write connection's `data_version` and `total_changes()`).
pub type Stamp = [i64; 3];

/// One card as the books hold it after the last ingest.
#[derive(Debug, Clone, Copy)]
struct CardState {
    shadow: Balance,
    counter_max: Option<u16>,
}

/// The state carried from one ingest to the next, taken out of [`CarryOver`] for the length of
/// one transaction.
#[derive(Debug, Default)]
pub struct Carried {
    cards: HashMap<String, CardState>,
    merchants: HashMap<String, Balance>,
    suspense: Option<Balance>,
}

impl Carried {
    /// Whether anything is carried.
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty() && self.merchants.is_empty() && self.suspense.is_none()
    }

    /// The cards of `cards` that are not carried: those the backend reads.
    pub fn missing(&self, cards: &[String]) -> Vec<String> {
        cards
            .iter()
            .filter(|c| !self.cards.contains_key(*c))
            .cloned()
            .collect()
    }

    /// Adds the carried cards of `cards` to a plan's inputs: highest counters, shadow ids and
    /// balances.
    pub fn fill(
        &self,
        cards: &[String],
        counters_max: &mut HashMap<String, u16>,
        shadows: &mut HashMap<String, i64>,
        balances: &mut HashMap<i64, Balance>,
    ) {
        for c in cards {
            if let Some(s) = self.cards.get(c) {
                if let Some(m) = s.counter_max {
                    counters_max.insert(c.clone(), m);
                }
                shadows.insert(c.clone(), s.shadow.id);
                balances.insert(s.shadow.id, s.shadow);
            }
        }
    }

    /// The carried counters of `cards` (for the backend's reads of the others).
    pub fn counters(&self, cards: &[String]) -> HashMap<String, u16> {
        cards
            .iter()
            .filter_map(|c| Some((c.clone(), self.cards.get(c)?.counter_max?)))
            .collect()
    }

    /// The merchant's payable, when carried.
    pub fn merchant(&self, merchant: &str) -> Option<Balance> {
        self.merchants.get(merchant).copied()
    }

    /// Suspense, when carried.
    pub fn suspense(&self) -> Option<Balance> {
        self.suspense
    }

    /// Takes in what one batch, once written, left in the books: `balances` as planned (every
    /// account of `accounts`, after the batch), `counters_max` as read before it, and the
    /// batch's new records (`Verdict::New`) with their counters.
    pub fn absorb(
        &mut self,
        merchant: &str,
        accounts: &Accounts,
        balances: &HashMap<i64, Balance>,
        counters_max: &HashMap<String, u16>,
        records: &[(&str, u16)],
        verdicts: &[Verdict],
    ) {
        if self.cards.len() + accounts.shadows.len() > CARRIED_CARDS_MAX {
            self.cards.clear();
            self.merchants.clear();
        }
        let mut highest: HashMap<&str, u16> = HashMap::with_capacity(accounts.shadows.len());
        for ((card, counter), v) in records.iter().zip(verdicts) {
            if matches!(v, Verdict::New { .. }) {
                let h = highest.entry(card).or_insert(*counter);
                *h = (*h).max(*counter);
            }
        }
        for (card, id) in &accounts.shadows {
            let Some(shadow) = balances.get(id) else {
                continue;
            };
            let stored = counters_max.get(card).copied();
            let counter_max = match (stored, highest.get(card.as_str()).copied()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            self.cards.insert(
                card.clone(),
                CardState {
                    shadow: *shadow,
                    counter_max,
                },
            );
        }
        if let Some(m) = balances.get(&accounts.merchant) {
            self.merchants.insert(merchant.to_string(), *m);
        }
        self.suspense = balances.get(&accounts.suspense).copied();
    }
}

/// The slot the carried state waits in between ingests.
#[derive(Debug, Default)]
pub struct CarryOver {
    slot: Mutex<Option<(Stamp, Carried)>>,
}

impl CarryOver {
    /// Takes the carried state when nothing was committed since it was left (`now`: the stamp
    /// read in the taking transaction, under the writers' lock); an empty one otherwise. The
    /// slot is empty until [`CarryOver::put`].
    pub fn take(&self, now: Stamp) -> Carried {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some((stamp, carried)) if stamp == now => carried,
            _ => Carried::default(),
        }
    }

    /// Leaves the state for the next ingest, after a commit that left the books at `stamp`.
    pub fn put(&self, stamp: Stamp, carried: Carried) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((stamp, carried));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::ledger::NormalSide;
    use ::ledger::Unit;
    use ::ledger::offline::Flags;

    fn balance(id: i64, balance: i64) -> Balance {
        Balance {
            id,
            unit: Unit::Cny,
            normal: NormalSide::Credit,
            floor: Some(0),
            balance,
            reserved: 0,
        }
    }

    fn new() -> Verdict {
        Verdict::New {
            flags: Flags::default(),
            transfer: None,
        }
    }

    #[test]
    fn a_carry_over_is_handed_on_only_at_the_stamp_it_was_left_at() {
        let slot = CarryOver::default();
        let mut c = Carried::default();
        let accounts = Accounts {
            shadows: HashMap::from([("A".to_string(), 1), ("B".to_string(), 2)]),
            merchant: 10,
            suspense: 11,
        };
        let balances = HashMap::from([
            (1, balance(1, 500)),
            (2, balance(2, 70)),
            (10, balance(10, 930)),
            (11, balance(11, 0)),
        ]);
        let stored = HashMap::from([("A".to_string(), 7u16)]);
        let records = [("A", 9u16), ("A", 8), ("B", 3), ("B", 4)];
        let verdicts = [new(), new(), new(), Verdict::SameAs(2)];
        c.absorb("M1", &accounts, &balances, &stored, &records, &verdicts);
        slot.put([5, 0, 0], c);

        // Another stamp: nothing is handed on, and the slot is emptied.
        assert!(slot.take([6, 0, 0]).is_empty());
        assert!(slot.take([5, 0, 0]).is_empty());

        let mut c = Carried::default();
        c.absorb("M1", &accounts, &balances, &stored, &records, &verdicts);
        slot.put([5, 0, 0], c);
        let c = slot.take([5, 0, 0]);
        let cards = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        assert_eq!(c.missing(&cards), vec!["C".to_string()]);
        let (mut counters, mut shadows, mut bal) = (HashMap::new(), HashMap::new(), HashMap::new());
        c.fill(&cards, &mut counters, &mut shadows, &mut bal);
        // A: the highest of the stored 7 and the new 9 and 8; B: only 3 is new (4 repeats 3).
        assert_eq!(counters.get("A"), Some(&9));
        assert_eq!(counters.get("B"), Some(&3));
        assert_eq!(shadows.get("B"), Some(&2));
        assert_eq!(bal.get(&1).map(|b| b.balance), Some(500));
        assert_eq!(c.merchant("M1").map(|b| b.balance), Some(930));
        assert_eq!(c.merchant("M2"), None);
        assert_eq!(c.suspense().map(|b| b.id), Some(11));
    }
}
