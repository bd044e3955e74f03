//! Fee schedules (手续费率): what the card company keeps of a merchant's takings.
//!
//! A rule is a percentage in basis points (1/100 of a percent) plus a fixed fee per
//! transaction, scoped to a merchant category (MCC-like code: `transit`, `canteen`, …) or to
//! one merchant, and in force from a date until a later rule of the same scope replaces it.
//! The fee of a transaction uses the most specific rule in force on its business day: the
//! merchant's own, else its category's, else none (no fee). Fees are rounded half up to the
//! fen and never exceed the amount.

use thiserror::Error;
use time::Date;

/// Basis points in one whole (100 %).
pub const BP_WHOLE: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Category(String),
    Merchant(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRule {
    pub scope: Scope,
    /// Percentage in basis points: 60 = 0.60 %.
    pub rate_bp: i64,
    /// Fixed fee per transaction, in fen.
    pub fixed_fen: i64,
    pub effective_from: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FeeError {
    #[error("rate {0} bp is outside 0..=10000")]
    Rate(i64),
    #[error("fixed fee {0} fen is negative")]
    Fixed(i64),
    #[error("two rules for {scope:?} take effect on {date}")]
    SameDay { scope: Scope, date: Date },
}

/// Where a rule stands on a day: the one that applies to its scope, one that will, or one a
/// later rule of the same scope has replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    InForce,
    Future,
    Superseded,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::InForce => "in_force",
            Standing::Future => "future",
            Standing::Superseded => "superseded",
        }
    }
}

/// A set of rules, checked once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeSchedule {
    rules: Vec<FeeRule>,
}

impl FeeSchedule {
    pub fn new(mut rules: Vec<FeeRule>) -> Result<Self, FeeError> {
        for r in &rules {
            if !(0..=BP_WHOLE).contains(&r.rate_bp) {
                return Err(FeeError::Rate(r.rate_bp));
            }
            if r.fixed_fen < 0 {
                return Err(FeeError::Fixed(r.fixed_fen));
            }
        }
        rules.sort_by(|a, b| (&a.scope, a.effective_from).cmp(&(&b.scope, b.effective_from)));
        for w in rules.windows(2) {
            if w[0].scope == w[1].scope && w[0].effective_from == w[1].effective_from {
                return Err(FeeError::SameDay {
                    scope: w[0].scope.clone(),
                    date: w[0].effective_from,
                });
            }
        }
        Ok(FeeSchedule { rules })
    }

    fn in_force(&self, scope: &Scope, day: Date) -> Option<&FeeRule> {
        self.rules
            .iter()
            .filter(|r| &r.scope == scope && r.effective_from <= day)
            .max_by_key(|r| r.effective_from)
    }

    /// The rules, by scope and then by the day they take effect.
    pub fn rules(&self) -> &[FeeRule] {
        &self.rules
    }

    /// Where `rule` (one of this schedule's) stands on `day`.
    pub fn standing(&self, rule: &FeeRule, day: Date) -> Standing {
        if rule.effective_from > day {
            Standing::Future
        } else if self.in_force(&rule.scope, day) == Some(rule) {
            Standing::InForce
        } else {
            Standing::Superseded
        }
    }

    /// The rule that applies to `merchant` of `category` on `day`, if any.
    pub fn rule(&self, merchant: &str, category: &str, day: Date) -> Option<&FeeRule> {
        self.in_force(&Scope::Merchant(merchant.into()), day)
            .or_else(|| self.in_force(&Scope::Category(category.into()), day))
    }

    /// The fee of one transaction of `amount_fen`.
    pub fn fee(&self, merchant: &str, category: &str, day: Date, amount_fen: i64) -> i64 {
        match self.rule(merchant, category, day) {
            None => 0,
            Some(r) => fee_of(r, amount_fen),
        }
    }
}

/// `amount × rate + fixed`, the percentage rounded half up to the fen, capped at the amount.
pub fn fee_of(rule: &FeeRule, amount_fen: i64) -> i64 {
    if amount_fen <= 0 {
        return 0;
    }
    let pct = (i128::from(amount_fen) * i128::from(rule.rate_bp) + i128::from(BP_WHOLE / 2))
        / i128::from(BP_WHOLE);
    let total = pct + i128::from(rule.fixed_fen);
    total.min(i128::from(amount_fen)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn rule(scope: Scope, bp: i64, fixed: i64, from: Date) -> FeeRule {
        FeeRule {
            scope,
            rate_bp: bp,
            fixed_fen: fixed,
            effective_from: from,
        }
    }

    #[test]
    fn the_most_specific_rule_in_force_applies() {
        let s = FeeSchedule::new(vec![
            rule(
                Scope::Category("transit".into()),
                30,
                0,
                date!(2026 - 01 - 01),
            ),
            rule(
                Scope::Category("transit".into()),
                20,
                0,
                date!(2026 - 12 - 01),
            ),
            rule(
                Scope::Merchant("metro".into()),
                10,
                1,
                date!(2026 - 06 - 01),
            ),
            rule(Scope::Category("shop".into()), 60, 0, date!(2026 - 01 - 01)),
        ])
        .unwrap();
        // Bus company: the category's rate, the new one from December.
        assert_eq!(s.fee("bus", "transit", date!(2026 - 11 - 30), 10_000), 30);
        assert_eq!(s.fee("bus", "transit", date!(2026 - 12 - 01), 10_000), 20);
        // Metro: its own rule from June, the category's before.
        assert_eq!(s.fee("metro", "transit", date!(2026 - 05 - 31), 10_000), 30);
        assert_eq!(s.fee("metro", "transit", date!(2026 - 06 - 01), 10_000), 11);
        // Before any rule, or an unknown category: no fee.
        assert_eq!(s.fee("bus", "transit", date!(2025 - 12 - 31), 10_000), 0);
        assert_eq!(s.fee("x", "library", date!(2026 - 11 - 30), 10_000), 0);
        // Half up: 0.60 % of 125 fen is 0.75 → 1; of 83 fen 0.498 → 0.
        assert_eq!(s.fee("s", "shop", date!(2026 - 11 - 30), 125), 1);
        assert_eq!(s.fee("s", "shop", date!(2026 - 11 - 30), 83), 0);
    }

    #[test]
    fn each_rule_stands_in_force_future_or_superseded() {
        let old = rule(
            Scope::Category("transit".into()),
            30,
            0,
            date!(2026 - 01 - 01),
        );
        let new = rule(
            Scope::Category("transit".into()),
            20,
            0,
            date!(2026 - 12 - 01),
        );
        let shop = rule(Scope::Category("shop".into()), 60, 0, date!(2026 - 12 - 01));
        let s = FeeSchedule::new(vec![new.clone(), shop.clone(), old.clone()]).unwrap();
        assert_eq!(s.rules().len(), 3);
        let day = date!(2026 - 11 - 30);
        assert_eq!(s.standing(&old, day), Standing::InForce);
        assert_eq!(s.standing(&new, day), Standing::Future);
        assert_eq!(s.standing(&shop, day), Standing::Future);
        let day = date!(2026 - 12 - 01);
        assert_eq!(s.standing(&old, day), Standing::Superseded);
        assert_eq!(s.standing(&new, day), Standing::InForce);
        assert_eq!(s.standing(&shop, day), Standing::InForce);
        assert_eq!(Standing::Superseded.as_str(), "superseded");
    }

    #[test]
    fn fees_never_exceed_the_amount_and_bad_rules_are_refused() {
        let r = rule(Scope::Merchant("m".into()), 100, 50, date!(2026 - 01 - 01));
        assert_eq!(fee_of(&r, 30), 30);
        assert_eq!(fee_of(&r, 0), 0);
        assert_eq!(fee_of(&r, i64::MAX), i64::MAX / 100 + 50);
        assert_eq!(
            FeeSchedule::new(vec![rule(
                Scope::Merchant("m".into()),
                10_001,
                0,
                date!(2026 - 01 - 01)
            )]),
            Err(FeeError::Rate(10_001))
        );
        assert!(matches!(
            FeeSchedule::new(vec![r.clone(), r.clone()]),
            Err(FeeError::SameDay { .. })
        ));
    }
}
