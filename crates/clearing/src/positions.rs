//! Net positions of a clearing window (清分结果): per participant and category the number of
//! transactions, the gross amount, the fees of the schedule and the net the company owes.

use std::collections::BTreeMap;

use time::Date;

use crate::fees::FeeSchedule;

/// One cleared transaction (a purchase, a payment, or a refund as a negative amount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    pub merchant: String,
    pub category: String,
    pub day: Date,
    pub amount_fen: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub count: u64,
    pub gross_fen: i64,
    pub fee_fen: i64,
    /// `gross − fee`: what the company pays the participant (negative: the participant owes).
    pub net_fen: i64,
}

/// Positions per (merchant, category), and their totals. Fees are taken per transaction
/// (a refund takes no fee and returns none).
pub fn net_positions(
    items: &[Cleared],
    schedule: &FeeSchedule,
) -> (BTreeMap<(String, String), Position>, Position) {
    let mut p = Positions::default();
    for it in items {
        p.add(
            schedule,
            &it.merchant,
            &it.category,
            it.day,
            it.amount_fen,
            1,
        );
    }
    p.finish()
}

/// Positions built from transactions grouped by merchant and amount (`count` transactions of
/// `amount_fen` each), as a window close reads them from storage: the fee of each
/// transaction depends only on its merchant, category, day and amount, so a group's fee is
/// `count ×` the fee of one, and the positions equal those of the transactions one by one.
#[derive(Debug, Default)]
pub struct Positions {
    per: BTreeMap<(String, String), Position>,
    total: Position,
}

impl Positions {
    /// Adds `count` transactions of `amount_fen` (negative: a refund or reversal).
    pub fn add(
        &mut self,
        schedule: &FeeSchedule,
        merchant: &str,
        category: &str,
        day: Date,
        amount_fen: i64,
        count: u64,
    ) {
        let fee = schedule.fee(merchant, category, day, amount_fen);
        let n = count as i64;
        let key = (merchant.to_string(), category.to_string());
        let p = match self.per.get_mut(&key) {
            Some(p) => p,
            None => self.per.entry(key).or_default(),
        };
        for q in [p, &mut self.total] {
            q.count += count;
            q.gross_fen += amount_fen * n;
            q.fee_fen += fee * n;
            q.net_fen += (amount_fen - fee) * n;
        }
    }

    pub fn finish(self) -> (BTreeMap<(String, String), Position>, Position) {
        (self.per, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fees::{FeeRule, Scope};
    use time::macros::date;

    #[test]
    fn positions_sum_to_their_total_and_balance() {
        let s = FeeSchedule::new(vec![FeeRule {
            scope: Scope::Category("transit".into()),
            rate_bp: 50,
            fixed_fen: 0,
            effective_from: date!(2026 - 01 - 01),
        }])
        .unwrap();
        let d = date!(2026 - 11 - 30);
        let item = |m: &str, c: &str, a: i64| Cleared {
            merchant: m.into(),
            category: c.into(),
            day: d,
            amount_fen: a,
        };
        let (per, total) = net_positions(
            &[
                item("metro", "transit", 400),
                item("metro", "transit", 200),
                item("bus", "transit", 100_000),
                item("shop", "shop", 999),
                item("bus", "transit", -300),
            ],
            &s,
        );
        let metro = &per[&("metro".to_string(), "transit".to_string())];
        assert_eq!(
            (metro.count, metro.gross_fen, metro.fee_fen, metro.net_fen),
            (2, 600, 3, 597)
        );
        let bus = &per[&("bus".to_string(), "transit".to_string())];
        assert_eq!(
            (bus.gross_fen, bus.fee_fen, bus.net_fen),
            (99_700, 500, 99_200)
        );
        assert_eq!(per[&("shop".to_string(), "shop".to_string())].fee_fen, 0);
        assert_eq!(total.gross_fen, total.fee_fen + total.net_fen);
        assert_eq!(total.count, 5);
        assert_eq!(total.net_fen, per.values().map(|p| p.net_fen).sum::<i64>());
    }

    #[test]
    fn grouped_positions_equal_the_transactions_one_by_one() {
        let s = FeeSchedule::new(vec![
            FeeRule {
                scope: Scope::Category("shop".into()),
                rate_bp: 60,
                fixed_fen: 1,
                effective_from: date!(2026 - 01 - 01),
            },
            FeeRule {
                scope: Scope::Merchant("metro".into()),
                rate_bp: 25,
                fixed_fen: 0,
                effective_from: date!(2026 - 01 - 01),
            },
        ])
        .unwrap();
        let d = date!(2026 - 11 - 30);
        let mut items = Vec::new();
        let mut grouped: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
        for k in 0..5_000i64 {
            let (m, c) =
                [("metro", "transit"), ("bus", "transit"), ("shop", "shop")][(k % 3) as usize];
            // Amounts where rounding matters, and refunds.
            let a = if k % 17 == 0 {
                -(k % 250) - 1
            } else {
                1 + k * 37 % 301
            };
            items.push(Cleared {
                merchant: m.into(),
                category: c.into(),
                day: d,
                amount_fen: a,
            });
            *grouped.entry((m.into(), c.into(), a)).or_default() += 1;
        }
        let mut p = Positions::default();
        for ((m, c, a), n) in &grouped {
            p.add(&s, m, c, d, *a, *n);
        }
        assert!(grouped.len() < items.len() / 4, "the groups are fewer");
        assert_eq!(p.finish(), net_positions(&items, &s));
    }
}
