//! The carry-over between offline-purchase ingests: for the cards this process's last committed
//! ingests touched, each card's e-purse shadow account id and highest offline counter, so that
//! the next ingest looks up by card number only the cards it has not seen. Balances are not
//! carried: a load or a correction may move a shadow between two uploads, so the backend reads
//! them by account id in every ingest.
//!
//! Account ids never change (accounts are never deleted). Counters change only when purchases
//! are ingested, and every ingest writes the store's purchase head row in its transaction, so
//! the carry-over is handed on only when the [`Stamp`] read from that row, inside the writing
//! transaction and under the lock that serializes ingests, equals the one left by the last
//! commit: an ingest by another process, or one of this process that failed, means the
//! counters are read again. A counter carried wrongly all the same would meet the purchase
//! rows' unique index, and the backend then plans the batch again from the database.

use crate::purchases::NewPurchase;
use ::ledger::Balance;
use ::ledger::offline::{Accounts, Verdict};
use std::collections::HashMap;
use std::sync::Mutex;

/// Cards carried at most; past it the carry-over starts again from the next batch's cards
/// (about 60 bytes a card).
pub const CARRIED_CARDS_MAX: usize = 1_000_000;

/// What a backend reads from its purchase head row, inside the writing transaction, to show
/// that no other ingest committed since its last one (PostgreSQL: the row's sequence number
/// and the id of the transaction that last wrote it, so that the carry-over can be left before
/// the commit; SQLite: the sequence number, the carry-over being left after the commit).
pub type Stamp = [i64; 3];

/// One card as the books hold it after the last ingest.
#[derive(Debug, Clone, Copy)]
struct CardState {
    shadow: i64,
    counter_max: Option<u16>,
}

/// The state carried from one ingest to the next, taken out of [`CarryOver`] for the length of
/// one transaction.
#[derive(Debug, Default)]
pub struct Carried {
    cards: HashMap<String, CardState>,
}

impl Carried {
    /// Whether anything is carried.
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// The cards of `cards` that are not carried: those the backend looks up by number.
    pub fn missing(&self, cards: &[String]) -> Vec<String> {
        cards
            .iter()
            .filter(|c| !self.cards.contains_key(*c))
            .cloned()
            .collect()
    }

    /// The carried cards of `cards`: their highest counters (cards with a stored purchase) and
    /// shadow account ids.
    pub fn of(&self, cards: &[String]) -> (HashMap<String, u16>, HashMap<String, i64>) {
        let mut counters = HashMap::new();
        let mut shadows = HashMap::new();
        for c in cards {
            if let Some(s) = self.cards.get(c) {
                if let Some(m) = s.counter_max {
                    counters.insert(c.clone(), m);
                }
                shadows.insert(c.clone(), s.shadow);
            }
        }
        (counters, shadows)
    }

    /// Takes in what one batch, once written, left in the books: its cards' shadows
    /// (`accounts`), their highest counters as read before it (`counters_max`), and the batch's
    /// new records (`Verdict::New`) with their counters.
    pub fn absorb(
        &mut self,
        accounts: &Accounts,
        counters_max: &HashMap<String, u16>,
        purchases: &[NewPurchase],
        verdicts: &[Verdict],
    ) {
        if self.cards.len() + accounts.shadows.len() > CARRIED_CARDS_MAX {
            self.cards.clear();
        }
        let mut highest: HashMap<&str, u16> = HashMap::with_capacity(accounts.shadows.len());
        for (p, v) in purchases.iter().zip(verdicts) {
            if matches!(v, Verdict::New { .. }) {
                let h = highest
                    .entry(p.card_number.as_str())
                    .or_insert(p.offline_counter);
                *h = (*h).max(p.offline_counter);
            }
        }
        for (card, id) in &accounts.shadows {
            let stored = counters_max.get(card).copied();
            let counter_max = match (stored, highest.get(card.as_str()).copied()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            self.cards.insert(
                card.clone(),
                CardState {
                    shadow: *id,
                    counter_max,
                },
            );
        }
    }
}

/// Adds the carried cards' shadows (`carried`, from [`Carried::of`]) with their balances read
/// by id (`found`) to a plan's accounts and balances; a carried account that is gone is a
/// corrupt store (accounts are never deleted).
pub fn add_carried(
    carried: HashMap<String, i64>,
    found: HashMap<i64, Balance>,
    accounts: &mut Accounts,
    balances: &mut HashMap<i64, Balance>,
) -> crate::Result<()> {
    if found.len() != carried.len() {
        return Err(crate::StoreError::Corrupt(format!(
            "{} of {} carried e-purse shadow accounts are missing",
            carried.len().saturating_sub(found.len()),
            carried.len()
        )));
    }
    balances.extend(found);
    accounts.shadows.extend(carried);
    Ok(())
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

    /// Leaves the state for the next ingest, at the stamp its own transaction leaves.
    pub fn put(&self, stamp: Stamp, carried: Carried) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((stamp, carried));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::ledger::offline::Flags;

    fn new() -> Verdict {
        Verdict::New {
            flags: Flags::default(),
            transfer: None,
        }
    }

    fn carried() -> Carried {
        let mut c = Carried::default();
        let accounts = Accounts {
            shadows: HashMap::from([("A".to_string(), 1), ("B".to_string(), 2)]),
            merchant: 10,
            suspense: 11,
        };
        let stored = HashMap::from([("A".to_string(), 7u16)]);
        let purchase = |card: &str, counter: u16| NewPurchase {
            card_number: card.into(),
            offline_counter: counter,
            amount_fen: 100,
            tx_type: 6,
            algorithm_id: 4,
            terminal_id: "112233445566".into(),
            terminal_serial: u32::from(counter),
            tx_ms: 0,
            balance_before_fen: 1_000,
            tac: [0; 4],
            deny_listed: false,
        };
        let records = [
            purchase("A", 9),
            purchase("A", 8),
            purchase("B", 3),
            purchase("B", 4),
        ];
        let verdicts = [new(), new(), new(), Verdict::SameAs(2)];
        c.absorb(&accounts, &stored, &records, &verdicts);
        c
    }

    #[test]
    fn a_carry_over_is_handed_on_only_at_the_stamp_it_was_left_at() {
        let slot = CarryOver::default();
        slot.put([5, 9, 0], carried());
        // Another stamp: nothing is handed on, and the slot is emptied.
        assert!(slot.take([5, 10, 0]).is_empty());
        assert!(slot.take([5, 9, 0]).is_empty());

        slot.put([5, 9, 0], carried());
        let c = slot.take([5, 9, 0]);
        let cards = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        assert_eq!(c.missing(&cards), vec!["C".to_string()]);
        let (counters, shadows) = c.of(&cards);
        // A: the highest of the stored 7 and the new 9 and 8; B: only 3 is new (4 repeats 3).
        assert_eq!(counters.get("A"), Some(&9));
        assert_eq!(counters.get("B"), Some(&3));
        assert_eq!(counters.get("C"), None);
        assert_eq!(shadows.get("B"), Some(&2));
        assert_eq!(shadows.len(), 2);
    }

    #[test]
    fn a_batch_is_planned_again_at_most_once_for_each_reason() {
        use crate::purchases::{Replan, replan};
        let mut c = carried();
        let mut by_terminal = false;
        replan(Replan::Stale, &mut c, &mut by_terminal).unwrap();
        assert!(c.is_empty(), "planned again from the database");
        assert!(replan(Replan::Stale, &mut c, &mut by_terminal).is_err());
        replan(Replan::RepeatsByTerminal, &mut c, &mut by_terminal).unwrap();
        assert!(by_terminal);
        assert!(replan(Replan::RepeatsByTerminal, &mut c, &mut by_terminal).is_err());
    }
}
