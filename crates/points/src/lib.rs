//! Points (积分), pure: what a use earns ([`EarnKind`], [`EarnRule`], [`grant`] with its daily
//! cap), when points expire (first in, first out: [`expiring`]), what they buy
//! ([`CatalogueItem`]) or support ([`CharityProject`]), and the refusals of spending
//! ([`check_spend`]). No I/O, no clock: days are passed in as day numbers.
//!
//! Points live in the ledger as a second unit. Earning moves them from the company's
//! issuance account to the resident's points account; redemption, donation and expiry move
//! them on to the redeemed, charity and expired accounts. Nothing here creates a point that
//! the ledger does not post.
//!
//! Expiry. Each earning is a lot that expires `validity_days` after the day it was earned.
//! Spending takes the oldest points first, so at day `d` the points still to expire are the
//! lots due by `d` minus everything that has left the account (redeemed, donated, expired):
//! `max(0, due − outflow)`. This needs no per-lot bookkeeping beyond the earnings themselves.

use std::fmt;

/// Units (rides, loans, bills, hours) one event may report.
pub const UNITS_MAX: i64 = 24;
/// A rule gives at most this many points per unit.
pub const POINTS_PER_UNIT_MAX: i64 = 1_000;
/// A daily cap is at most this.
pub const DAILY_CAP_MAX: i64 = 10_000;
/// Points are valid 1 to this many days.
pub const VALIDITY_DAYS_MAX: i64 = 1_095;
/// A catalogue item costs at most this many points.
pub const COST_MAX: i64 = 1_000_000;
/// One donation is at most this many points.
pub const DONATION_MAX: i64 = 1_000_000;
/// Event ids and codes are at most this long.
pub const EVENT_ID_MAX: usize = 64;
pub const CODE_MAX: usize = 32;
/// Display names are at most this many characters.
pub const NAME_CHARS_MAX: usize = 60;

/// A kind of use that earns points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EarnKind {
    /// A ride on a bus or the metro (an uploaded purchase at a transit merchant).
    Ride,
    /// A library loan, reported by the library.
    LibraryLoan,
    /// A bill paid on or before its due date.
    BillOnTime,
    /// An hour of volunteer work, reported by civil affairs (民政).
    VolunteerHour,
}

impl EarnKind {
    pub const ALL: [EarnKind; 4] = [
        EarnKind::Ride,
        EarnKind::LibraryLoan,
        EarnKind::BillOnTime,
        EarnKind::VolunteerHour,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EarnKind::Ride => "ride",
            EarnKind::LibraryLoan => "library_loan",
            EarnKind::BillOnTime => "bill_on_time",
            EarnKind::VolunteerHour => "volunteer_hour",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        EarnKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn name_zh(self) -> &'static str {
        match self {
            EarnKind::Ride => "乘车",
            EarnKind::LibraryLoan => "图书借阅",
            EarnKind::BillOnTime => "按时缴费",
            EarnKind::VolunteerHour => "志愿服务（小时）",
        }
    }
    pub fn name_en(self) -> &'static str {
        match self {
            EarnKind::Ride => "a ride",
            EarnKind::LibraryLoan => "a library loan",
            EarnKind::BillOnTime => "a bill paid on time",
            EarnKind::VolunteerHour => "a volunteer hour",
        }
    }
}

impl fmt::Display for EarnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one kind of use earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarnRule {
    pub kind: EarnKind,
    pub points_per_unit: i64,
    /// At most this many points of this kind per resident and day.
    pub daily_cap: i64,
    /// Points earned on day `d` expire at the start of day `d + validity_days`.
    pub validity_days: i64,
    /// An inactive rule earns nothing (events are refused, not recorded).
    pub active: bool,
}

impl EarnRule {
    pub fn validate(&self) -> Result<(), PointsError> {
        let bad = |what: &str| Err(PointsError::BadRule(what.to_string()));
        if !(0..=POINTS_PER_UNIT_MAX).contains(&self.points_per_unit) {
            return bad(&format!(
                "points_per_unit must be 0 to {POINTS_PER_UNIT_MAX}"
            ));
        }
        if !(1..=DAILY_CAP_MAX).contains(&self.daily_cap) {
            return bad(&format!("daily_cap must be 1 to {DAILY_CAP_MAX}"));
        }
        if !(1..=VALIDITY_DAYS_MAX).contains(&self.validity_days) {
            return bad(&format!("validity_days must be 1 to {VALIDITY_DAYS_MAX}"));
        }
        Ok(())
    }
}

/// The rules a new platform starts with (an operator changes them).
pub fn default_rules() -> [EarnRule; 4] {
    let r = |kind, points_per_unit, daily_cap| EarnRule {
        kind,
        points_per_unit,
        daily_cap,
        validity_days: 365,
        active: true,
    };
    [
        r(EarnKind::Ride, 1, 10),
        r(EarnKind::LibraryLoan, 5, 20),
        r(EarnKind::BillOnTime, 10, 50),
        r(EarnKind::VolunteerHour, 20, 160),
    ]
}

/// What an event earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub points: i64,
    /// Less than the rule gives, because the daily cap was reached with it.
    pub capped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    #[error("the daily cap of {cap} points for {kind} is reached")]
    CapReached { kind: EarnKind, cap: i64 },
    #[error("earning for {0} is switched off")]
    RuleInactive(EarnKind),
    #[error("an event reports 1 to {UNITS_MAX} units, not {0}")]
    BadUnits(i64),
    #[error("event id {0:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'")]
    BadEventId(String),
    #[error("code {0:?} must be 1 to 32 characters of a-z, 0-9, '_' or '-'")]
    BadCode(String),
    #[error("names must be 1 to {NAME_CHARS_MAX} characters")]
    BadName,
    #[error("{0}")]
    BadRule(String),
    #[error("a cost is 1 to {COST_MAX} points")]
    BadCost,
    #[error("a donation is 1 to {DONATION_MAX} points, not {0}")]
    BadDonation(i64),
    #[error("{cost} points are needed and {available} are available")]
    Insufficient { available: i64, cost: i64 },
    #[error(
        "{cost} points are needed and {available} are available: {expired} points have expired"
    )]
    Expired {
        available: i64,
        expired: i64,
        cost: i64,
    },
    #[error("there is no catalogue item {0:?}")]
    UnknownItem(String),
    #[error("catalogue item {0:?} is withdrawn")]
    ItemWithdrawn(String),
    #[error("there is no charity project {0:?}")]
    UnknownProject(String),
    #[error("charity project {0:?} is closed")]
    ProjectClosed(String),
}

/// Points an event of `units` earns under `rule`, with `earned_today` points of this kind
/// already earned by the resident today: the rule's points, cut to what the cap leaves.
/// Refused when the cap is already reached (nothing is recorded for such an event).
pub fn grant(rule: &EarnRule, units: i64, earned_today: i64) -> Result<Grant, PointsError> {
    if !(1..=UNITS_MAX).contains(&units) {
        return Err(PointsError::BadUnits(units));
    }
    if !rule.active {
        return Err(PointsError::RuleInactive(rule.kind));
    }
    // Both factors are bounded, so the product fits easily.
    let asked = rule.points_per_unit * units;
    let room = rule.daily_cap - earned_today.max(0);
    if room <= 0 || asked == 0 {
        return Err(PointsError::CapReached {
            kind: rule.kind,
            cap: rule.daily_cap,
        });
    }
    Ok(Grant {
        points: asked.min(room),
        capped: asked > room,
    })
}

/// The day number a lot earned on `day` expires on.
pub fn expires_day(day: i64, rule: &EarnRule) -> i64 {
    day + rule.validity_days
}

/// Points to expire now: the lots due by now (`due`), less what has already left the account
/// (`outflow`: redeemed, donated and expired). Oldest points are spent first.
pub fn expiring(due: i64, outflow: i64) -> i64 {
    (due - outflow).max(0)
}

/// Whether `cost` points may be spent from `available` (after due points expired). When they
/// may not and points expired (`expired_total`, ever) that would have covered it, the refusal
/// says so.
pub fn check_spend(available: i64, cost: i64, expired_total: i64) -> Result<(), PointsError> {
    if cost <= available {
        return Ok(());
    }
    if expired_total > 0 && cost <= available + expired_total {
        return Err(PointsError::Expired {
            available,
            expired: expired_total,
            cost,
        });
    }
    Err(PointsError::Insufficient { available, cost })
}

/// A donation's size.
pub fn check_donation(points: i64) -> Result<(), PointsError> {
    if (1..=DONATION_MAX).contains(&points) {
        Ok(())
    } else {
        Err(PointsError::BadDonation(points))
    }
}

/// A caller's event id: `A-Za-z0-9._:-`, 1..=64.
pub fn check_event_id(id: &str) -> Result<(), PointsError> {
    if (1..=EVENT_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        Ok(())
    } else {
        Err(PointsError::BadEventId(
            id.chars().take(EVENT_ID_MAX).collect(),
        ))
    }
}

/// Catalogue and project codes: `a-z0-9_-`, 1..=32 (they name ledger accounts).
pub fn check_code(code: &str) -> Result<(), PointsError> {
    if (1..=CODE_MAX).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(PointsError::BadCode(code.chars().take(CODE_MAX).collect()))
    }
}

fn check_names(zh: &str, en: &str) -> Result<(), PointsError> {
    for n in [zh, en] {
        let c = n.chars().count();
        if c == 0 || c > NAME_CHARS_MAX || n.chars().any(char::is_control) {
            return Err(PointsError::BadName);
        }
    }
    Ok(())
}

/// The idempotency key of an event's earning: one event earns once.
pub fn earn_key(kind: EarnKind, event_id: &str) -> String {
    format!("points-earn:{}:{event_id}", kind.as_str())
}

/// What a catalogue item gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardKind {
    /// A ride voucher (乘车券).
    RideVoucher,
    /// A museum ticket (博物馆门票).
    MuseumTicket,
}

impl RewardKind {
    pub const ALL: [RewardKind; 2] = [RewardKind::RideVoucher, RewardKind::MuseumTicket];
    pub fn as_str(self) -> &'static str {
        match self {
            RewardKind::RideVoucher => "ride_voucher",
            RewardKind::MuseumTicket => "museum_ticket",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        RewardKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One thing points buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueItem {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub kind: RewardKind,
    pub cost_points: i64,
    pub active: bool,
}

impl CatalogueItem {
    pub fn validate(&self) -> Result<(), PointsError> {
        check_code(&self.code)?;
        check_names(&self.name_zh, &self.name_en)?;
        if !(1..=COST_MAX).contains(&self.cost_points) {
            return Err(PointsError::BadCost);
        }
        Ok(())
    }
}

/// A charity project that receives donated points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharityProject {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub active: bool,
}

impl CharityProject {
    pub fn validate(&self) -> Result<(), PointsError> {
        check_code(&self.code)?;
        check_names(&self.name_zh, &self.name_en)
    }
}

/// The catalogue item to redeem: unknown and withdrawn items are refused.
pub fn pick_item<'a>(
    items: &'a [CatalogueItem],
    code: &str,
) -> Result<&'a CatalogueItem, PointsError> {
    let item = items
        .iter()
        .find(|i| i.code == code)
        .ok_or_else(|| PointsError::UnknownItem(code.to_string()))?;
    if !item.active {
        return Err(PointsError::ItemWithdrawn(code.to_string()));
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: EarnKind) -> EarnRule {
        default_rules()
            .into_iter()
            .find(|r| r.kind == kind)
            .unwrap()
    }

    #[test]
    fn grants_stop_at_the_daily_cap() {
        let ride = rule(EarnKind::Ride);
        assert_eq!(
            grant(&ride, 1, 0),
            Ok(Grant {
                points: 1,
                capped: false
            })
        );
        // Nine earned: one more fits, the tenth ride fills the cap.
        assert_eq!(
            grant(&ride, 3, 9).unwrap(),
            Grant {
                points: 1,
                capped: true
            }
        );
        assert_eq!(
            grant(&ride, 1, 10),
            Err(PointsError::CapReached {
                kind: EarnKind::Ride,
                cap: 10
            })
        );
        let hours = rule(EarnKind::VolunteerHour);
        assert_eq!(grant(&hours, 8, 0).unwrap().points, 160);
        assert_eq!(grant(&hours, 8, 150).unwrap().points, 10);
        assert_eq!(grant(&hours, 0, 0), Err(PointsError::BadUnits(0)));
        assert_eq!(grant(&hours, 25, 0), Err(PointsError::BadUnits(25)));
        let off = EarnRule {
            active: false,
            ..hours
        };
        assert_eq!(
            grant(&off, 1, 0),
            Err(PointsError::RuleInactive(EarnKind::VolunteerHour))
        );
        let zero = EarnRule {
            points_per_unit: 0,
            ..hours
        };
        assert!(matches!(
            grant(&zero, 1, 0),
            Err(PointsError::CapReached { .. })
        ));
    }

    #[test]
    fn expiry_takes_the_oldest_points_first() {
        // Earned 100 (day 0) and 50 (day 200); 365-day validity; spent 30 on day 100.
        let r = rule(EarnKind::BillOnTime);
        assert_eq!(expires_day(0, &r), 365);
        // Day 364: nothing due.
        assert_eq!(expiring(0, 30), 0);
        // Day 365: the first lot is due; 30 of it were spent, 70 expire.
        assert_eq!(expiring(100, 30), 70);
        // Run again the same day: outflow now counts the 70, nothing more.
        assert_eq!(expiring(100, 100), 0);
        // Day 565: the second lot is due too; all 50 of it expire.
        assert_eq!(expiring(150, 100), 50);
        // Spending more than the due lots means nothing due is left.
        assert_eq!(expiring(100, 140), 0);
    }

    #[test]
    fn spending_refusals_name_the_reason() {
        assert_eq!(check_spend(500, 500, 0), Ok(()));
        assert_eq!(
            check_spend(499, 500, 0),
            Err(PointsError::Insufficient {
                available: 499,
                cost: 500
            })
        );
        assert_eq!(
            check_spend(100, 500, 400),
            Err(PointsError::Expired {
                available: 100,
                expired: 400,
                cost: 500
            })
        );
        // Expired points that would not have covered it: plainly insufficient.
        assert!(matches!(
            check_spend(100, 500, 10),
            Err(PointsError::Insufficient { .. })
        ));
        assert_eq!(check_donation(0), Err(PointsError::BadDonation(0)));
        assert!(check_donation(DONATION_MAX).is_ok());
        assert!(check_donation(DONATION_MAX + 1).is_err());
    }

    #[test]
    fn catalogue_and_codes() {
        let items = vec![
            CatalogueItem {
                code: "bus-2".into(),
                name_zh: "公交乘车券 2 元".into(),
                name_en: "Bus ride voucher, 2 yuan".into(),
                kind: RewardKind::RideVoucher,
                cost_points: 200,
                active: true,
            },
            CatalogueItem {
                code: "museum".into(),
                name_zh: "河南博物院门票".into(),
                name_en: "Henan Museum ticket".into(),
                kind: RewardKind::MuseumTicket,
                cost_points: 500,
                active: false,
            },
        ];
        for i in &items {
            i.validate().unwrap();
        }
        assert_eq!(pick_item(&items, "bus-2").unwrap().cost_points, 200);
        assert_eq!(
            pick_item(&items, "nope"),
            Err(PointsError::UnknownItem("nope".into()))
        );
        assert_eq!(
            pick_item(&items, "museum"),
            Err(PointsError::ItemWithdrawn("museum".into()))
        );
        let mut bad = items[0].clone();
        bad.cost_points = 0;
        assert_eq!(bad.validate(), Err(PointsError::BadCost));
        bad.code = "Bus 2".into();
        assert!(matches!(bad.validate(), Err(PointsError::BadCode(_))));
        assert!(check_event_id("civil:2026-11-26:A17").is_ok());
        assert!(check_event_id("").is_err());
        assert!(check_event_id("a b").is_err());
        assert!(check_event_id(&"x".repeat(65)).is_err());
        assert_eq!(earn_key(EarnKind::Ride, "p:1"), "points-earn:ride:p:1");
        for r in default_rules() {
            r.validate().unwrap();
        }
        let mut r = rule(EarnKind::Ride);
        r.daily_cap = 0;
        assert!(r.validate().is_err());
    }
}
