//! Reconciliation (对账) of the settlement instructions sent with the bank's statement: each
//! instruction's end-to-end id is looked for among the statement's debit entries.
//!
//! - **matched**: found, same amount;
//! - **amount mismatch**: found, another amount;
//! - **missing**: sent, not on the statement (not executed yet, or lost);
//! - **unexpected**: a debit on the statement that answers no instruction (or answers one
//!   twice). Credits are not settlement and are left to other work.
//!
//! Every item that is not matched is an exception for the operators' queue.

use std::collections::HashMap;

use crate::camt053::{Direction, Entry};
use crate::pain001::Instruction;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Matched {
        end_to_end_id: String,
        amount_fen: i64,
    },
    AmountMismatch {
        end_to_end_id: String,
        sent_fen: i64,
        booked_fen: i64,
        reference: String,
    },
    Missing {
        end_to_end_id: String,
        sent_fen: i64,
    },
    Unexpected {
        reference: String,
        end_to_end_id: Option<String>,
        booked_fen: i64,
    },
}

impl Item {
    pub fn is_exception(&self) -> bool {
        !matches!(self, Item::Matched { .. })
    }

    /// The exception's kind as the queue names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Matched { .. } => "matched",
            Item::AmountMismatch { .. } => "amount_mismatch",
            Item::Missing { .. } => "missing",
            Item::Unexpected { .. } => "unexpected",
        }
    }
}

/// Every instruction and every debit entry lands in exactly one item; instructions first, in
/// their order, then the unexpected entries in statement order.
pub fn reconcile(instructions: &[Instruction], entries: &[Entry]) -> Vec<Item> {
    let mut by_id: HashMap<&str, Vec<&Entry>> = HashMap::new();
    let mut unexpected: Vec<&Entry> = Vec::new();
    for e in entries.iter().filter(|e| e.direction == Direction::Debit) {
        match &e.end_to_end_id {
            Some(id) => by_id.entry(id.as_str()).or_default().push(e),
            None => unexpected.push(e),
        }
    }
    let mut out = Vec::with_capacity(instructions.len() + unexpected.len());
    for i in instructions {
        match by_id.get_mut(i.end_to_end_id.as_str()) {
            Some(found) if !found.is_empty() => {
                let e = found.remove(0);
                out.push(if e.amount_fen == i.amount_fen {
                    Item::Matched {
                        end_to_end_id: i.end_to_end_id.clone(),
                        amount_fen: i.amount_fen,
                    }
                } else {
                    Item::AmountMismatch {
                        end_to_end_id: i.end_to_end_id.clone(),
                        sent_fen: i.amount_fen,
                        booked_fen: e.amount_fen,
                        reference: e.reference.clone(),
                    }
                });
            }
            _ => out.push(Item::Missing {
                end_to_end_id: i.end_to_end_id.clone(),
                sent_fen: i.amount_fen,
            }),
        }
    }
    // Entries naming an unknown instruction, or a second entry for one: unexpected.
    let mut left: Vec<&Entry> = by_id.into_values().flatten().collect();
    left.extend(unexpected);
    let order: HashMap<*const Entry, usize> = entries
        .iter()
        .enumerate()
        .map(|(k, e)| (e as *const Entry, k))
        .collect();
    left.sort_by_key(|e| order[&(*e as *const Entry)]);
    out.extend(left.into_iter().map(|e| Item::Unexpected {
        reference: e.reference.clone(),
        end_to_end_id: e.end_to_end_id.clone(),
        booked_fen: e.amount_fen,
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn ins(id: &str, fen: i64) -> Instruction {
        Instruction {
            end_to_end_id: id.into(),
            creditor_name: "x".into(),
            creditor_account: "1".into(),
            amount_fen: fen,
            remittance: "r".into(),
        }
    }

    fn entry(r: &str, id: Option<&str>, fen: i64, d: Direction) -> Entry {
        Entry {
            reference: r.into(),
            amount_fen: fen,
            direction: d,
            booked: date!(2026 - 12 - 01),
            end_to_end_id: id.map(str::to_string),
        }
    }

    #[test]
    fn every_difference_is_named_once() {
        let sent = [ins("a", 100), ins("b", 200), ins("c", 300), ins("d", 400)];
        let booked = [
            entry("B1", Some("a"), 100, Direction::Debit),
            entry("B2", Some("b"), 250, Direction::Debit),
            entry("B3", Some("a"), 100, Direction::Debit),
            entry("B4", None, 7, Direction::Debit),
            entry("B5", Some("zz"), 9, Direction::Debit),
            entry("B6", None, 1_000, Direction::Credit),
            entry("B7", Some("d"), 400, Direction::Debit),
        ];
        let items = reconcile(&sent, &booked);
        let kinds: Vec<&str> = items.iter().map(Item::kind).collect();
        assert_eq!(
            kinds,
            [
                "matched",
                "amount_mismatch",
                "missing",
                "matched",
                "unexpected",
                "unexpected",
                "unexpected"
            ]
        );
        // The unexpected ones in statement order: the second "a", the one without id, "zz".
        let refs: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                Item::Unexpected { reference, .. } => Some(reference.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(refs, ["B3", "B4", "B5"]);
        assert_eq!(items.iter().filter(|i| i.is_exception()).count(), 5);
        assert_eq!(
            items[1],
            Item::AmountMismatch {
                end_to_end_id: "b".into(),
                sent_fen: 200,
                booked_fen: 250,
                reference: "B2".into()
            }
        );
        assert!(reconcile(&[], &[]).is_empty());
    }
}
