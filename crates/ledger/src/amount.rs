//! Money and points as integers: fen for CNY (1 yuan = 100 fen), whole points for points.
//! Arithmetic is checked; floats never appear.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount in the smallest unit (fen for CNY, one point for points). Signed so that
/// balances of asset accounts may be shown below zero; postings carry positive amounts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount overflows 64 bits")]
    Overflow,
    #[error("amount {0:?} is not a decimal amount in yuan with at most two decimals")]
    Syntax(String),
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn fen(fen: i64) -> Self {
        Amount(fen)
    }
    pub const fn get(self) -> i64 {
        self.0
    }
    pub fn checked_add(self, o: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_add(o.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }
    pub fn checked_sub(self, o: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_sub(o.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }
    pub fn checked_neg(self) -> Result<Amount, AmountError> {
        self.0
            .checked_neg()
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Parses `12.34`, `-0.05`, `7` (yuan) into fen.
    pub fn parse_yuan(s: &str) -> Result<Amount, AmountError> {
        let bad = || AmountError::Syntax(s.to_string());
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (digits.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let w: i64 = whole.parse().map_err(|_| AmountError::Overflow)?;
        let f: i64 = if frac.is_empty() {
            0
        } else {
            let v: i64 = frac.parse().map_err(|_| bad())?;
            if frac.len() == 1 { v * 10 } else { v }
        };
        let fen = w
            .checked_mul(100)
            .and_then(|x| x.checked_add(f))
            .ok_or(AmountError::Overflow)?;
        Ok(Amount(if neg { -fen } else { fen }))
    }

    /// Decimal yuan with two places: `-12.05`. Exact for every `i64`.
    pub fn yuan(self) -> String {
        let v = i128::from(self.0);
        let sign = if v < 0 { "-" } else { "" };
        let a = v.abs();
        format!("{sign}{}.{:02}", a / 100, a % 100)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_round_trips() {
        for (s, fen) in [("0.00", 0), ("12.34", 1234), ("-0.05", -5), ("7.00", 700)] {
            assert_eq!(Amount::parse_yuan(s).unwrap(), Amount(fen));
            assert_eq!(Amount(fen).yuan(), s);
        }
        assert_eq!(Amount::parse_yuan("7").unwrap(), Amount(700));
        assert_eq!(Amount::parse_yuan("7.5").unwrap(), Amount(750));
        assert_eq!(Amount(i64::MIN).yuan(), "-92233720368547758.08");
        for bad in ["", "1.234", "1.", ".5", "a", "1,00", "--1"] {
            assert!(Amount::parse_yuan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(
            Amount(i64::MAX).checked_add(Amount(1)),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            Amount(i64::MIN).checked_sub(Amount(1)),
            Err(AmountError::Overflow)
        );
        assert_eq!(Amount(i64::MIN).checked_neg(), Err(AmountError::Overflow));
        assert_eq!(Amount(5).checked_sub(Amount(7)), Ok(Amount(-2)));
    }
}
