//! Offline purchases uploaded by terminals (脱机消费上传), pure: for each record of an upload
//! batch whose TAC has verified, whether it is new or repeats one already ingested (the same
//! card and offline counter, `epurse.md` §5), which flags it carries, and the transfers that
//! post the batch's money.
//!
//! Flags never refuse a record — the chip has already paid:
//! - **deny-listed**: the card was on the deny-list when the record arrived (review);
//! - **counter gap**: offline counters between the highest one known for the card and this
//!   one are missing (taps not yet uploaded, not money lost); the flag names them;
//! - **late**: the transaction happened before the start of the window it is posted into;
//! - **shortfall**: the card's e-purse shadow could not cover the amount (a load the platform
//!   has not seen, or a shadow out of step). The uncovered part is taken from suspense so that
//!   the shadow never goes below zero and the merchant is still owed the whole amount; an
//!   operator works the suspense off.
//!
//! Money is posted in aggregated transfers: one per group of up to [`GROUP_CARDS_MAX`] cards of
//! the batch, debiting each card's shadow by the sum of its purchases in the group (and
//! suspense by the group's shortfalls) and crediting the merchant with the group's total. Each
//! purchase row remembers its transfer, so every purchase is traceable to the postings that
//! carry it, and balances still derive from postings alone.

use crate::book::{Balance, BookError, Effect, apply};
use crate::transfer::{IdempotencyKey, Mode, POSTINGS_MAX, Posting, Transfer, TransferKind};
use crate::{Amount, Unit};
use std::collections::{BTreeMap, HashMap};

/// Cards per transfer: the rest of [`POSTINGS_MAX`] is the suspense debit and the merchant
/// credit.
pub const GROUP_CARDS_MAX: usize = POSTINGS_MAX - 2;

/// A record whose TAC verified, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// 16-digit card number.
    pub card: String,
    pub counter: u16,
    /// Fen; 0 for a metro entry tap (a complex purchase of nothing).
    pub amount: Amount,
    /// When the card says it happened (unix ms).
    pub tx_ms: i64,
    /// On the deny-list when the record arrived.
    pub deny_listed: bool,
    /// The terminal (PSAM) id and its transaction serial: what the TAC binds. The offline
    /// counter is *not* under the TAC (`epurse.md` §5), so a genuine record re-sent with another
    /// counter is recognised by card, terminal and serial.
    pub terminal: String,
    pub serial: u32,
}

/// A purchase already stored with the same card and counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    pub id: i64,
    /// Its clearing window.
    pub window: String,
}

/// Flags of a posted purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub deny_listed: bool,
    /// Offline counters missing before this one, first..=last.
    pub gap: Option<(u16, u16)>,
    pub late: bool,
    /// The part of the amount the e-purse shadow could not cover, taken from suspense.
    pub shortfall: Amount,
}

impl Flags {
    pub const DENY_LISTED: i64 = 1;
    pub const GAP: i64 = 2;
    pub const LATE: i64 = 4;
    pub const SHORTFALL: i64 = 8;

    /// The flags as stored: a bit set.
    pub fn bits(&self) -> i64 {
        let mut b = 0;
        if self.deny_listed {
            b |= Self::DENY_LISTED;
        }
        if self.gap.is_some() {
            b |= Self::GAP;
        }
        if self.late {
            b |= Self::LATE;
        }
        if self.shortfall.is_positive() {
            b |= Self::SHORTFALL;
        }
        b
    }

    pub fn any(&self) -> bool {
        self.bits() != 0
    }
}

/// What happens to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New: stored and posted. `transfer` indexes [`Plan::transfers`] (`None` for 0 fen).
    New {
        flags: Flags,
        transfer: Option<usize>,
    },
    /// Ingested before: answered with the first one.
    Stored(Prior),
    /// Repeats the record at this index of the same batch.
    SameAs(usize),
}

/// What the store knows about the batch's cards before it.
#[derive(Debug, Default)]
pub struct Known {
    /// The highest offline counter stored per card (cards without any are absent).
    pub counters_max: HashMap<String, u16>,
    /// Stored purchases that have the card and counter of a record of the batch.
    pub stored: HashMap<(String, u16), Prior>,
    /// Stored purchases that have the card, terminal and terminal serial of a record.
    pub stored_by_terminal: HashMap<(String, String, u32), Prior>,
}

/// The accounts a batch posts to, by store id.
#[derive(Debug)]
pub struct Accounts {
    /// Every card's e-purse shadow.
    pub shadows: HashMap<String, i64>,
    pub merchant: i64,
    pub suspense: i64,
}

/// The outcome of planning a batch.
#[derive(Debug)]
pub struct Plan {
    /// One per record, in order.
    pub verdicts: Vec<Verdict>,
    pub transfers: Vec<Transfer>,
    /// Every account the transfers change, with its new balance, by id.
    pub balances: Vec<Balance>,
}

/// Plans a batch. `balances` holds every account of `accounts` (it is updated in place);
/// `window_start_ms` is the start of the window the batch is posted into; transfers are keyed
/// `{key_prefix}:{n}` (the caller makes the prefix unique, e.g. from the first purchase id).
pub fn plan(
    purchases: &[Purchase],
    known: &Known,
    accounts: &Accounts,
    balances: &mut HashMap<i64, Balance>,
    window_start_ms: i64,
    key_prefix: &str,
    memo: &str,
) -> Result<Plan, BookError> {
    // 1. New or repeated.
    let mut verdicts = Vec::with_capacity(purchases.len());
    let mut first_of: HashMap<(&str, u16), usize> = HashMap::with_capacity(purchases.len());
    let mut first_at: HashMap<(&str, &str, u32), usize> = HashMap::with_capacity(purchases.len());
    for (i, p) in purchases.iter().enumerate() {
        let at = (p.card.as_str(), p.terminal.as_str(), p.serial);
        if let Some(prior) = known.stored.get(&(p.card.clone(), p.counter)).or_else(|| {
            known
                .stored_by_terminal
                .get(&(p.card.clone(), p.terminal.clone(), p.serial))
        }) {
            verdicts.push(Verdict::Stored(prior.clone()));
        } else if let Some(first) = first_of
            .get(&(p.card.as_str(), p.counter))
            .or_else(|| first_at.get(&at))
        {
            verdicts.push(Verdict::SameAs(*first));
        } else {
            first_of.insert((p.card.as_str(), p.counter), i);
            first_at.insert(at, i);
            verdicts.push(Verdict::New {
                flags: Flags {
                    deny_listed: p.deny_listed,
                    late: p.tx_ms < window_start_ms,
                    ..Flags::default()
                },
                transfer: None,
            });
        }
    }

    // 2. New records per card in counter order: gaps, then what the shadow covers.
    let mut new: Vec<usize> = first_of.values().copied().collect();
    new.sort_unstable_by(|a, b| {
        (&purchases[*a].card, purchases[*a].counter)
            .cmp(&(&purchases[*b].card, purchases[*b].counter))
    });
    let mut running: Option<(&str, Option<u16>)> = None;
    let mut room: HashMap<i64, i64> = HashMap::new();
    let mut covered: Vec<Amount> = vec![Amount::ZERO; purchases.len()];
    for &i in &new {
        let p = &purchases[i];
        let highest = match running {
            Some((card, h)) if card == p.card => h,
            _ => known.counters_max.get(&p.card).copied(),
        };
        let gap = match highest {
            None if p.counter > 0 => Some((0, p.counter - 1)),
            Some(h) if p.counter > h.saturating_add(1) => Some((h + 1, p.counter - 1)),
            _ => None,
        };
        running = Some((
            p.card.as_str(),
            Some(highest.map_or(p.counter, |h| h.max(p.counter))),
        ));
        let shadow = *accounts
            .shadows
            .get(&p.card)
            .ok_or(BookError::UnknownAccount(-1))?;
        let b = balances
            .get(&shadow)
            .ok_or(BookError::UnknownAccount(shadow))?;
        let left = room.entry(shadow).or_insert_with(|| match b.floor {
            Some(floor) => b
                .balance
                .saturating_sub(b.reserved)
                .saturating_sub(floor)
                .max(0),
            None => i64::MAX,
        });
        let take = p.amount.get().min(*left).max(0);
        *left -= take;
        covered[i] = Amount(take);
        if let Verdict::New { flags, .. } = &mut verdicts[i] {
            flags.gap = gap;
            flags.shortfall = Amount(p.amount.get() - take);
        }
    }

    // 3. Transfers: groups of up to GROUP_CARDS_MAX cards, in card order.
    let mut transfers = Vec::new();
    let mut touched: Vec<i64> = Vec::new();
    let paying: Vec<usize> = new
        .into_iter()
        .filter(|i| purchases[*i].amount.is_positive())
        .collect();
    let mut start = 0;
    while start < paying.len() {
        let mut end = start;
        let mut cards = 0;
        while end < paying.len() {
            let starts_card =
                end == start || purchases[paying[end]].card != purchases[paying[end - 1]].card;
            if starts_card {
                if cards == GROUP_CARDS_MAX {
                    break;
                }
                cards += 1;
            }
            end += 1;
        }
        let group = &paying[start..end];
        let mut debits: BTreeMap<i64, i64> = BTreeMap::new();
        let (mut short, mut total) = (0i64, 0i64);
        for &i in group {
            let p = &purchases[i];
            let take = covered[i].get();
            if take > 0 {
                *debits.entry(accounts.shadows[&p.card]).or_default() += take;
            }
            short += p.amount.get() - take;
            total += p.amount.get();
        }
        let mut postings: Vec<Posting> = debits
            .into_iter()
            .map(|(id, fen)| Posting::debit(id, Unit::Cny, Amount(fen)))
            .collect();
        if short > 0 {
            postings.push(Posting::debit(accounts.suspense, Unit::Cny, Amount(short)));
        }
        postings.push(Posting::credit(accounts.merchant, Unit::Cny, Amount(total)));
        let t = Transfer {
            key: IdempotencyKey::parse(&format!("{key_prefix}:{}", transfers.len()))?,
            kind: TransferKind::Purchase,
            memo: memo.to_string(),
            mode: Mode::Immediate,
            postings,
        };
        t.validate()?;
        // The transfer's accounts are taken out of the map by key and put back after (going
        // through the whole map for each transfer made a batch quadratic in its cards).
        let mut taken: HashMap<i64, Balance> = t
            .postings
            .iter()
            .filter_map(|p| balances.remove_entry(&p.account))
            .collect();
        let applied = {
            let mut refs: HashMap<i64, &mut Balance> =
                taken.iter_mut().map(|(id, b)| (*id, b)).collect();
            apply(|id| refs.remove(&id), &t.postings, Effect::Post)
        };
        balances.extend(taken);
        applied?;
        touched.extend(t.postings.iter().map(|p| p.account));
        for &i in group {
            if let Verdict::New { transfer, .. } = &mut verdicts[i] {
                *transfer = Some(transfers.len());
            }
        }
        transfers.push(t);
        start = end;
    }
    touched.sort_unstable();
    touched.dedup();
    Ok(Plan {
        verdicts,
        transfers,
        balances: touched.iter().map(|id| balances[id]).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountKind;

    fn p(card: &str, counter: u16, fen: i64) -> Purchase {
        Purchase {
            card: card.into(),
            counter,
            amount: Amount(fen),
            tx_ms: 1_000,
            deny_listed: false,
            terminal: "112233445566".into(),
            serial: 1_000 + u32::from(counter),
        }
    }

    fn setup(cards: &[(&str, i64)]) -> (Accounts, HashMap<i64, Balance>) {
        let mut balances = HashMap::new();
        let mut shadows = HashMap::new();
        for (i, (card, fen)) in cards.iter().enumerate() {
            let id = 10 + i as i64;
            let mut b = Balance::new(id, AccountKind::EpurseShadow, Unit::Cny);
            b.balance = *fen;
            balances.insert(id, b);
            shadows.insert(card.to_string(), id);
        }
        balances.insert(1, Balance::new(1, AccountKind::MerchantPayable, Unit::Cny));
        balances.insert(2, Balance::new(2, AccountKind::Suspense, Unit::Cny));
        (
            Accounts {
                shadows,
                merchant: 1,
                suspense: 2,
            },
            balances,
        )
    }

    const A: &str = "4101000000000018";
    const B: &str = "4101000000000026";

    /// The TAC does not cover the offline counter: a genuine record re-sent with another
    /// counter is the same purchase (same card, terminal and serial), stored or in the batch.
    #[test]
    fn a_record_resent_with_another_counter_is_a_duplicate() {
        let (accounts, mut balances) = setup(&[(A, 1_000)]);
        let mut known = Known::default();
        known.counters_max.insert(A.into(), 3);
        let stored = p(A, 3, 200);
        known.stored_by_terminal.insert(
            (A.into(), stored.terminal.clone(), stored.serial),
            Prior {
                id: 77,
                window: "2026-11-30".into(),
            },
        );
        let forged_stored = Purchase {
            counter: 9,
            ..stored
        };
        let genuine = p(A, 4, 100);
        let forged_in_batch = Purchase {
            counter: 12,
            ..genuine.clone()
        };
        let batch = vec![forged_stored, genuine, forged_in_batch];
        let plan = plan(&batch, &known, &accounts, &mut balances, 0, "t", "m").unwrap();
        assert!(matches!(&plan.verdicts[0], Verdict::Stored(p) if p.id == 77));
        assert!(matches!(plan.verdicts[1], Verdict::New { .. }));
        assert_eq!(plan.verdicts[2], Verdict::SameAs(1));
        // Only the genuine new one is paid.
        let moved: i64 = plan
            .transfers
            .iter()
            .flat_map(|t| t.postings.iter())
            .filter(|p| p.account == accounts.merchant)
            .map(|p| p.amount.get())
            .sum();
        assert_eq!(moved, 100);
    }

    #[test]
    fn duplicates_gaps_late_and_shortfall() {
        let (accounts, mut balances) = setup(&[(A, 500), (B, 100)]);
        let mut known = Known::default();
        known.counters_max.insert(A.into(), 3);
        known.stored.insert(
            (A.into(), 3),
            Prior {
                id: 77,
                window: "2026-11-30".into(),
            },
        );
        let mut late = p(B, 0, 150);
        late.tx_ms = 10;
        let batch = vec![
            p(A, 3, 200), // stored
            p(A, 6, 200), // 4 comes in this batch too, so only 5 is missing
            p(A, 4, 200),
            late,         // B: first purchase, late, 50 short
            p(A, 6, 200), // same as index 1
            p(A, 8, 0),   // entry tap: gap 7..=7, no money
        ];
        let plan = plan(&batch, &known, &accounts, &mut balances, 100, "t", "m").unwrap();
        assert_eq!(
            plan.verdicts[0],
            Verdict::Stored(Prior {
                id: 77,
                window: "2026-11-30".into()
            })
        );
        assert_eq!(plan.verdicts[4], Verdict::SameAs(1));
        let flags = |i: usize| match &plan.verdicts[i] {
            Verdict::New { flags, .. } => *flags,
            v => panic!("{v:?}"),
        };
        // 4 fills after 3, so 6 misses only 5.
        assert_eq!(flags(2).gap, None);
        assert_eq!(flags(1).gap, Some((5, 5)));
        assert_eq!(flags(5).gap, Some((7, 7)));
        assert!(flags(3).late && flags(3).gap.is_none());
        assert_eq!(flags(3).shortfall, Amount(50));
        assert_eq!(flags(3).bits(), Flags::LATE | Flags::SHORTFALL);
        // A: 400 of 500 spent; B: emptied; merchant owed 550; suspense 50.
        let bal = |id: i64| plan.balances.iter().find(|b| b.id == id).unwrap().balance;
        assert_eq!(bal(10), 100);
        assert_eq!(bal(11), 0);
        assert_eq!(bal(1), 550);
        assert_eq!(bal(2), 50);
        assert_eq!(plan.transfers.len(), 1);
        assert!(matches!(
            plan.verdicts[5],
            Verdict::New { transfer: None, .. }
        ));
    }

    #[test]
    fn groups_fit_in_a_transfer() {
        let cards: Vec<String> = (0..150).map(|i| format!("41010000{i:08}")).collect();
        let spec: Vec<(&str, i64)> = cards.iter().map(|c| (c.as_str(), 1_000)).collect();
        let (accounts, mut balances) = setup(&spec);
        let batch: Vec<Purchase> = cards
            .iter()
            .flat_map(|c| [p(c, 0, 10), p(c, 1, 20)])
            .collect();
        let plan = plan(
            &batch,
            &Known::default(),
            &accounts,
            &mut balances,
            0,
            "t",
            "m",
        )
        .unwrap();
        assert_eq!(plan.transfers.len(), 3);
        for t in &plan.transfers {
            assert!(t.postings.len() <= POSTINGS_MAX);
            t.validate().unwrap();
        }
        // One debit per card of 30; the merchant gets everything.
        assert_eq!(plan.transfers[0].postings[0].amount, Amount(30));
        let merchant = plan.balances.iter().find(|b| b.id == 1).unwrap();
        assert_eq!(merchant.balance, 150 * 30);
        assert!(plan.verdicts.iter().all(|v| matches!(
            v,
            Verdict::New {
                transfer: Some(_),
                flags
            } if !flags.any()
        )));
    }
}
