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
    let mut out: BTreeMap<(String, String), Position> = BTreeMap::new();
    let mut total = Position::default();
    for it in items {
        let fee = schedule.fee(&it.merchant, &it.category, it.day, it.amount_fen);
        let p = out
            .entry((it.merchant.clone(), it.category.clone()))
            .or_default();
        for q in [&mut *p, &mut total] {
            q.count += 1;
            q.gross_fen += it.amount_fen;
            q.fee_fen += fee;
            q.net_fen += it.amount_fen - fee;
        }
    }
    (out, total)
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
}
