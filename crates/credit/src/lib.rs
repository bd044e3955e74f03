//! The transparent credit score (信用分), pure. A score is built only from signals the citizen
//! can see ([`SignalKind`]): bills paid on time or late, fare evasion records, library returns
//! on time or late, and volunteer hours. Each kind is one [`Factor`] with a fixed number of
//! points per signal and a cap; the score is [`BASE`] plus the factors, kept within
//! [`MIN`]..=[`MAX`], and each factor says in plain words (Chinese and English) what it
//! counted and what it added. There are no other inputs: the function below is the whole
//! rule, and a signal an officer struck out after a dispute is simply not passed in.
//!
//! Incentives ([`INCENTIVES`]) are thresholds on the score: deposit-free library membership,
//! deposit-free bike hire.

/// Every score starts here.
pub const BASE: i64 = 600;
pub const MIN: i64 = 350;
pub const MAX: i64 = 950;
/// Signals older than this many days do not count.
pub const WINDOW_DAYS: i64 = 365;
/// A signal reports at most this quantity (hours; otherwise 1).
pub const QUANTITY_MAX: i64 = 24;
/// A dispute's reason and an officer's note are at most this many characters.
pub const TEXT_CHARS_MAX: usize = 500;

/// What the score is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignalKind {
    BillOnTime,
    BillLate,
    FareEvasion,
    LibraryReturnOnTime,
    LibraryReturnLate,
    VolunteerHour,
}

impl SignalKind {
    pub const ALL: [SignalKind; 6] = [
        SignalKind::BillOnTime,
        SignalKind::BillLate,
        SignalKind::FareEvasion,
        SignalKind::LibraryReturnOnTime,
        SignalKind::LibraryReturnLate,
        SignalKind::VolunteerHour,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::BillOnTime => "bill_on_time",
            SignalKind::BillLate => "bill_late",
            SignalKind::FareEvasion => "fare_evasion",
            SignalKind::LibraryReturnOnTime => "library_return_on_time",
            SignalKind::LibraryReturnLate => "library_return_late",
            SignalKind::VolunteerHour => "volunteer_hour",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Points per unit and the cap of the factor's total (signed: a cap of −150 means the
    /// factor takes at most 150 points off).
    pub fn weight(self) -> (i64, i64) {
        match self {
            SignalKind::BillOnTime => (2, 60),
            SignalKind::BillLate => (-5, -50),
            SignalKind::FareEvasion => (-30, -150),
            SignalKind::LibraryReturnOnTime => (1, 30),
            SignalKind::LibraryReturnLate => (-3, -30),
            SignalKind::VolunteerHour => (1, 60),
        }
    }
    pub fn name_zh(self) -> &'static str {
        match self {
            SignalKind::BillOnTime => "按时缴费",
            SignalKind::BillLate => "逾期缴费",
            SignalKind::FareEvasion => "逃票记录",
            SignalKind::LibraryReturnOnTime => "图书按时归还",
            SignalKind::LibraryReturnLate => "图书逾期归还",
            SignalKind::VolunteerHour => "志愿服务时长",
        }
    }
    pub fn name_en(self) -> &'static str {
        match self {
            SignalKind::BillOnTime => "bills paid on time",
            SignalKind::BillLate => "bills paid late",
            SignalKind::FareEvasion => "fare evasion records",
            SignalKind::LibraryReturnOnTime => "library books returned on time",
            SignalKind::LibraryReturnLate => "library books returned late",
            SignalKind::VolunteerHour => "volunteer hours",
        }
    }
    fn unit_zh(self) -> &'static str {
        match self {
            SignalKind::VolunteerHour => "小时",
            _ => "次",
        }
    }
}

/// One signal as the score counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub kind: SignalKind,
    /// Hours for volunteer work, 1 otherwise.
    pub quantity: i64,
    /// The day number it happened on.
    pub day: i64,
}

/// One kind's contribution, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub kind: SignalKind,
    /// Signals (or hours) counted in the window.
    pub count: i64,
    pub points_each: i64,
    pub cap: i64,
    /// What it adds to (or takes from) the score.
    pub contribution: i64,
    pub text_zh: String,
    pub text_en: String,
}

/// A score and everything it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub score: i64,
    pub base: i64,
    /// Every kind, also those with nothing counted: the citizen sees the whole rule.
    pub factors: Vec<Factor>,
}

fn signed(n: i64) -> String {
    if n >= 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// The score on day `today` from `signals` (signals outside the window are ignored).
pub fn score(signals: &[Signal], today: i64) -> Score {
    let mut factors = Vec::with_capacity(SignalKind::ALL.len());
    let mut total = BASE;
    for kind in SignalKind::ALL {
        let count: i64 = signals
            .iter()
            .filter(|s| s.kind == kind && s.day <= today && s.day > today - WINDOW_DAYS)
            .map(|s| s.quantity.clamp(0, QUANTITY_MAX))
            .sum();
        let (each, cap) = kind.weight();
        let raw = count.saturating_mul(each);
        let contribution = if cap >= 0 { raw.min(cap) } else { raw.max(cap) };
        total += contribution;
        let capped = contribution != raw;
        let text_zh = format!(
            "近一年{}{}{}，每{}{}分，{}分{}",
            kind.name_zh(),
            count,
            kind.unit_zh(),
            kind.unit_zh(),
            signed(each),
            signed(contribution),
            if capped {
                format!("（已达上限 {}）", signed(cap))
            } else {
                format!("（上限 {}）", signed(cap))
            }
        );
        let text_en = format!(
            "{count} {} in the last year, {} each: {}{}",
            kind.name_en(),
            signed(each),
            signed(contribution),
            if capped {
                format!(" (limit {} reached)", signed(cap))
            } else {
                format!(" (limit {})", signed(cap))
            }
        );
        factors.push(Factor {
            kind,
            count,
            points_each: each,
            cap,
            contribution,
            text_zh,
            text_en,
        });
    }
    Score {
        score: total.clamp(MIN, MAX),
        base: BASE,
        factors,
    }
}

/// A benefit that a score at or above its threshold opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incentive {
    pub code: &'static str,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    pub threshold: i64,
}

pub const INCENTIVES: [Incentive; 2] = [
    Incentive {
        code: "library_deposit_free",
        name_zh: "免押金办理图书馆借阅证",
        name_en: "Library membership without a deposit",
        threshold: 650,
    },
    Incentive {
        code: "bike_deposit_free",
        name_zh: "免押金租用公共自行车",
        name_en: "Bike hire without a deposit",
        threshold: 700,
    },
];

/// Each incentive with whether `score` opens it.
pub fn incentives(score: i64) -> Vec<(Incentive, bool)> {
    INCENTIVES
        .iter()
        .map(|i| (*i, score >= i.threshold))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("unknown signal kind {0:?}")]
    UnknownKind(String),
    #[error("a signal's quantity is 1 to {QUANTITY_MAX}, not {0}")]
    BadQuantity(i64),
    #[error("a text is 1 to {TEXT_CHARS_MAX} characters")]
    BadText,
}

/// A signal's quantity: hours 1..=24 for volunteer work, exactly 1 for the others.
pub fn check_quantity(kind: SignalKind, quantity: i64) -> Result<(), CreditError> {
    let ok = match kind {
        SignalKind::VolunteerHour => (1..=QUANTITY_MAX).contains(&quantity),
        _ => quantity == 1,
    };
    if ok {
        Ok(())
    } else {
        Err(CreditError::BadQuantity(quantity))
    }
}

/// A dispute's reason or an officer's note.
pub fn check_text(s: &str) -> Result<(), CreditError> {
    let n = s.trim().chars().count();
    if n == 0 || s.chars().count() > TEXT_CHARS_MAX {
        Err(CreditError::BadText)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(kind: SignalKind, n: usize, quantity: i64, day: i64) -> Vec<Signal> {
        vec![
            Signal {
                kind,
                quantity,
                day
            };
            n
        ]
    }

    #[test]
    fn nothing_counted_is_the_base() {
        let s = score(&[], 1000);
        assert_eq!(s.score, BASE);
        assert_eq!(s.factors.len(), SignalKind::ALL.len());
        assert!(s.factors.iter().all(|f| f.contribution == 0));
        assert_eq!(
            s.factors[0].text_en,
            "0 bills paid on time in the last year, +2 each: +0 (limit +60)"
        );
    }

    #[test]
    fn factors_add_up_with_caps_and_explain_themselves() {
        let mut v = sig(SignalKind::BillOnTime, 12, 1, 990); // +24
        v.extend(sig(SignalKind::BillLate, 2, 1, 995)); // −10
        v.extend(sig(SignalKind::FareEvasion, 7, 1, 999)); // −210, capped at −150
        v.extend(sig(SignalKind::LibraryReturnOnTime, 5, 1, 998)); // +5
        v.extend(sig(SignalKind::VolunteerHour, 3, 8, 997)); // 24 hours, +24
        let s = score(&v, 1000);
        assert_eq!(s.score, 600 + 24 - 10 - 150 + 5 + 24);
        let sum: i64 = s.factors.iter().map(|f| f.contribution).sum();
        assert_eq!(s.score, BASE + sum);
        let fare = &s.factors[2];
        assert_eq!((fare.count, fare.contribution), (7, -150));
        assert_eq!(
            fare.text_zh,
            "近一年逃票记录7次，每次-30分，-150分（已达上限 -150）"
        );
        assert_eq!(
            fare.text_en,
            "7 fare evasion records in the last year, -30 each: -150 (limit -150 reached)"
        );
        let hours = &s.factors[5];
        assert_eq!((hours.count, hours.contribution), (24, 24));
        assert!(hours.text_zh.contains("24小时"));
    }

    #[test]
    fn the_window_and_the_bounds_hold() {
        // A signal a year and a day old no longer counts; today's does.
        let old = sig(SignalKind::FareEvasion, 1, 1, 1000 - WINDOW_DAYS);
        assert_eq!(score(&old, 1000).score, BASE);
        let today = sig(SignalKind::FareEvasion, 1, 1, 1000);
        assert_eq!(score(&today, 1000).score, BASE - 30);
        // A future signal (a clock skew) does not count either.
        assert_eq!(
            score(&sig(SignalKind::BillOnTime, 1, 1, 1001), 1000).score,
            BASE
        );
        // Everything good: 600 + 60 + 30 + 60 = 750 (under MAX); everything bad is floored by
        // the caps at 600 − 230 = 370 (above MIN).
        let mut good = sig(SignalKind::BillOnTime, 100, 1, 1000);
        good.extend(sig(SignalKind::LibraryReturnOnTime, 100, 1, 1000));
        good.extend(sig(SignalKind::VolunteerHour, 10, 24, 1000));
        assert_eq!(score(&good, 1000).score, 750);
        let mut bad = sig(SignalKind::BillLate, 100, 1, 1000);
        bad.extend(sig(SignalKind::FareEvasion, 100, 1, 1000));
        bad.extend(sig(SignalKind::LibraryReturnLate, 100, 1, 1000));
        assert_eq!(score(&bad, 1000).score, 370);
    }

    #[test]
    fn incentives_open_at_their_thresholds() {
        let got = incentives(650);
        assert_eq!(got.len(), 2);
        assert!(got[0].1 && !got[1].1);
        assert!(incentives(700).iter().all(|(_, ok)| *ok));
        assert!(incentives(649).iter().all(|(_, ok)| !*ok));
    }

    #[test]
    fn quantities_and_texts() {
        assert!(check_quantity(SignalKind::VolunteerHour, 8).is_ok());
        assert!(check_quantity(SignalKind::VolunteerHour, 25).is_err());
        assert!(check_quantity(SignalKind::FareEvasion, 2).is_err());
        assert!(check_text("   ").is_err());
        assert!(check_text(&"字".repeat(501)).is_err());
        assert!(check_text("我没有逃票，那天刷的是e码").is_ok());
        for k in SignalKind::ALL {
            assert_eq!(SignalKind::parse(k.as_str()), Some(k));
        }
    }
}
