//! Transfers: the one way money moves. A transfer is validated here, before any store sees
//! it: a well-formed idempotency key, a memo without personal data, 2..=[`POSTINGS_MAX`]
//! postings of positive amounts, balanced per unit with overflow-checked sums.

use crate::Unit;
use crate::amount::Amount;
use serde::{Deserialize, Serialize};
use sm3::{Digest, Sm3};
use std::collections::BTreeMap;

/// At most this many postings in one transfer.
pub const POSTINGS_MAX: usize = 64;
/// Idempotency keys are at most this long.
pub const KEY_LEN_MAX: usize = 128;
/// Memos are at most this many characters.
pub const MEMO_CHARS_MAX: usize = 120;
/// A memo may not hold this many digits in a row (ID numbers, phone and bank account numbers
/// are personal data; the accounts already say whose money it is).
pub const MEMO_DIGIT_RUN_MAX: usize = 10;

/// The caller's name for one movement: the same key twice posts once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1..=128 printable ASCII characters without spaces (`balance-move:17`, `load:4101…:23`).
    pub fn parse(s: &str) -> Result<Self, TransferError> {
        if s.is_empty() || s.len() > KEY_LEN_MAX || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TransferError::BadKey(s.chars().take(KEY_LEN_MAX).collect()));
        }
        Ok(IdempotencyKey(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a transfer is, for reports and clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// Money arrives from a bank channel into an online account (充值).
    TopUp,
    /// Online account → e-purse (圈存).
    Load,
    /// A chip purchase, online or offline (消费).
    Purchase,
    /// A payment from the online account (e-code, bills, fees).
    Payment,
    Refund,
    Reversal,
    /// A department's benefit or subsidy (待遇发放).
    Disbursement,
    Fee,
    /// Money moved at a bank (结算).
    Settlement,
    /// A card's balances moved to its successor or refunded after cooling-off.
    BalanceMove,
    /// An operator's correction, always through suspense.
    Adjustment,
    /// Points earned by a use (issuance → the resident's points).
    PointsEarn,
    /// Points spent on the redemption catalogue.
    PointsRedeem,
    /// Points donated to a charity project.
    PointsDonate,
    /// Points that expired.
    PointsExpire,
}

impl TransferKind {
    pub const ALL: [TransferKind; 15] = [
        TransferKind::TopUp,
        TransferKind::Load,
        TransferKind::Purchase,
        TransferKind::Payment,
        TransferKind::Refund,
        TransferKind::Reversal,
        TransferKind::Disbursement,
        TransferKind::Fee,
        TransferKind::Settlement,
        TransferKind::BalanceMove,
        TransferKind::Adjustment,
        TransferKind::PointsEarn,
        TransferKind::PointsRedeem,
        TransferKind::PointsDonate,
        TransferKind::PointsExpire,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::TopUp => "top_up",
            TransferKind::Load => "load",
            TransferKind::Purchase => "purchase",
            TransferKind::Payment => "payment",
            TransferKind::Refund => "refund",
            TransferKind::Reversal => "reversal",
            TransferKind::Disbursement => "disbursement",
            TransferKind::Fee => "fee",
            TransferKind::Settlement => "settlement",
            TransferKind::BalanceMove => "balance_move",
            TransferKind::Adjustment => "adjustment",
            TransferKind::PointsEarn => "points_earn",
            TransferKind::PointsRedeem => "points_redeem",
            TransferKind::PointsDonate => "points_donate",
            TransferKind::PointsExpire => "points_expire",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        TransferKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "debit" => Some(Side::Debit),
            "credit" => Some(Side::Credit),
            _ => None,
        }
    }
}

/// One line of a transfer: a debit or a credit of a positive amount on one account (by its
/// store id), in the account's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Posting {
    pub account: i64,
    pub unit: Unit,
    pub side: Side,
    pub amount: Amount,
}

impl Posting {
    pub fn debit(account: i64, unit: Unit, amount: Amount) -> Self {
        Posting {
            account,
            unit,
            side: Side::Debit,
            amount,
        }
    }
    pub fn credit(account: i64, unit: Unit, amount: Amount) -> Self {
        Posting {
            account,
            unit,
            side: Side::Credit,
            amount,
        }
    }
}

/// Immediate transfers post at once. Pending ones reserve the money they take (decreases are
/// held against the floor) until posted or voided: movements that wait on an outside party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Immediate,
    Pending,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Immediate => "immediate",
            Mode::Pending => "pending",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("idempotency key {0:?} must be 1 to 128 printable ASCII characters without spaces")]
    BadKey(String),
    #[error("memo is longer than {MEMO_CHARS_MAX} characters")]
    MemoTooLong,
    #[error(
        "memo holds {MEMO_DIGIT_RUN_MAX} or more digits in a row or control characters; personal data stays out of memos"
    )]
    MemoPersonal,
    #[error("a transfer has 2 to {POSTINGS_MAX} postings, not {0}")]
    PostingCount(usize),
    #[error("posting {index}: amount {amount} must be positive")]
    NotPositive { index: usize, amount: i64 },
    #[error("debits and credits in {unit} differ: {debits} against {credits}")]
    Unbalanced {
        unit: &'static str,
        debits: i64,
        credits: i64,
    },
    #[error("the sum of postings in {0} overflows")]
    Overflow(&'static str),
}

/// A movement of money, as a caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub key: IdempotencyKey,
    pub kind: TransferKind,
    pub memo: String,
    pub mode: Mode,
    pub postings: Vec<Posting>,
}

fn memo_check(memo: &str) -> Result<(), TransferError> {
    if memo.chars().count() > MEMO_CHARS_MAX {
        return Err(TransferError::MemoTooLong);
    }
    let mut run = 0;
    for c in memo.chars() {
        if c.is_control() {
            return Err(TransferError::MemoPersonal);
        }
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= MEMO_DIGIT_RUN_MAX {
            return Err(TransferError::MemoPersonal);
        }
    }
    Ok(())
}

impl Transfer {
    /// A two-posting transfer: `amount` from `debit` to `credit`, both in `unit`.
    pub fn simple(
        key: IdempotencyKey,
        kind: TransferKind,
        memo: impl Into<String>,
        debit: i64,
        credit: i64,
        unit: Unit,
        amount: Amount,
    ) -> Self {
        Transfer {
            key,
            kind,
            memo: memo.into(),
            mode: Mode::Immediate,
            postings: vec![
                Posting::debit(debit, unit, amount),
                Posting::credit(credit, unit, amount),
            ],
        }
    }

    pub fn pending(mut self) -> Self {
        self.mode = Mode::Pending;
        self
    }

    /// Every rule that needs no account: the store checks the accounts' units and floors.
    pub fn validate(&self) -> Result<(), TransferError> {
        memo_check(&self.memo)?;
        let n = self.postings.len();
        if !(2..=POSTINGS_MAX).contains(&n) {
            return Err(TransferError::PostingCount(n));
        }
        let mut sums: BTreeMap<Unit, (Amount, Amount)> = BTreeMap::new();
        for (index, p) in self.postings.iter().enumerate() {
            if !p.amount.is_positive() {
                return Err(TransferError::NotPositive {
                    index,
                    amount: p.amount.get(),
                });
            }
            let e = sums.entry(p.unit).or_default();
            let slot = match p.side {
                Side::Debit => &mut e.0,
                Side::Credit => &mut e.1,
            };
            *slot = slot
                .checked_add(p.amount)
                .map_err(|_| TransferError::Overflow(p.unit.as_str()))?;
        }
        for (unit, (d, c)) in sums {
            if d != c {
                return Err(TransferError::Unbalanced {
                    unit: unit.as_str(),
                    debits: d.get(),
                    credits: c.get(),
                });
            }
        }
        Ok(())
    }

    /// SM3 over a canonical, length-prefixed encoding of everything but nothing more: two
    /// requests with the same key are the same request exactly when their digests are equal.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sm3::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        field(self.key.as_str().as_bytes());
        field(self.kind.as_str().as_bytes());
        field(self.memo.as_bytes());
        field(self.mode.as_str().as_bytes());
        for p in &self.postings {
            field(&p.account.to_be_bytes());
            field(p.unit.as_str().as_bytes());
            field(p.side.as_str().as_bytes());
            field(&p.amount.get().to_be_bytes());
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(postings: Vec<Posting>) -> Transfer {
        Transfer {
            key: IdempotencyKey::parse("k1").unwrap(),
            kind: TransferKind::Load,
            memo: "load at outlet 7".into(),
            mode: Mode::Immediate,
            postings,
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let a = Amount(100);
        assert_eq!(
            t(vec![
                Posting::debit(1, Unit::Cny, a),
                Posting::credit(2, Unit::Cny, a)
            ])
            .validate(),
            Ok(())
        );
        assert_eq!(
            t(vec![Posting::debit(1, Unit::Cny, a)]).validate(),
            Err(TransferError::PostingCount(1))
        );
        assert_eq!(
            t(vec![
                Posting::debit(1, Unit::Cny, a),
                Posting::credit(2, Unit::Cny, Amount(99))
            ])
            .validate(),
            Err(TransferError::Unbalanced {
                unit: "CNY",
                debits: 100,
                credits: 99
            })
        );
        // Balanced in total but not per unit.
        assert!(matches!(
            t(vec![
                Posting::debit(1, Unit::Cny, a),
                Posting::credit(2, Unit::Points, a)
            ])
            .validate(),
            Err(TransferError::Unbalanced { .. })
        ));
        assert_eq!(
            t(vec![
                Posting::debit(1, Unit::Cny, Amount(0)),
                Posting::credit(2, Unit::Cny, Amount(0))
            ])
            .validate(),
            Err(TransferError::NotPositive {
                index: 0,
                amount: 0
            })
        );
        assert_eq!(
            t(vec![
                Posting::debit(1, Unit::Cny, Amount(i64::MAX)),
                Posting::debit(1, Unit::Cny, Amount(1)),
                Posting::credit(2, Unit::Cny, Amount(1)),
            ])
            .validate(),
            Err(TransferError::Overflow("CNY"))
        );
        let mut m = t(vec![
            Posting::debit(1, Unit::Cny, a),
            Posting::credit(2, Unit::Cny, a),
        ]);
        m.memo = "refund to 410105198506150012".into();
        assert_eq!(m.validate(), Err(TransferError::MemoPersonal));
        m.memo = "x".repeat(121);
        assert_eq!(m.validate(), Err(TransferError::MemoTooLong));
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }

    #[test]
    fn digest_covers_content() {
        let a = t(vec![
            Posting::debit(1, Unit::Cny, Amount(5)),
            Posting::credit(2, Unit::Cny, Amount(5)),
        ]);
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.postings[0].amount = Amount(6);
        b.postings[1].amount = Amount(6);
        assert_ne!(a.digest(), b.digest());
        let c = a.clone().pending();
        assert_ne!(a.digest(), c.digest());
    }
}
