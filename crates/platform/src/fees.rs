//! The fee schedule (手续费率), kept in storage and edited by clearing: rules of a percentage
//! (basis points) and a fixed fee per transaction, per merchant category or per merchant, each
//! in force from its effective date until a later rule of its scope. A rule is added and never
//! changed: a change is a new rule with a later date. A rule never takes effect before the
//! open clearing window, so the fees of a window that has ended (closed or not) stay what they
//! were when it ended. Closing a window clears it with [`Platform::fee_schedule`]; the pure
//! rules are `clearing::fees`.

use crate::clearing::may_clear;
use crate::{Caller, Platform, PlatformError, Result};
use clearing::fees::{FeeError, FeeRule, FeeSchedule, Scope, Standing};
use store::{FeeRuleRow, Role, StoreError};
use time::Date;

/// The schedule holds at most this many rules (past, in force and future together).
pub const FEE_RULES_MAX: usize = 10_000;
/// A fixed fee is at most 1,000.00 yuan per transaction (a fee is never more than the
/// transaction's amount in any case).
pub const FIXED_FEN_MAX: i64 = 100_000;
/// A rule takes effect at most ten years after the open window (a later date is a typo).
pub const EFFECTIVE_DAYS_AHEAD_MAX: i64 = 3_660;
/// A merchant's code, as registered: 1 to 32 characters a-z 0-9 - _.
const CODE_CHARS_MAX: usize = 32;

/// A rule to add, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRuleRequest {
    /// category, merchant
    pub scope_kind: String,
    /// A merchant category (`transit`, `shop`, …) or a registered merchant's code.
    pub scope_value: String,
    pub rate_bp: i64,
    pub fixed_fen: i64,
    /// `YYYY-MM-DD`: the first clearing window (by its closing date) it applies to.
    pub effective_from: String,
}

/// A kept rule and where it stands in the open window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRuleView {
    pub rule: FeeRuleRow,
    pub standing: Standing,
}

/// The whole schedule as of the open clearing window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRules {
    /// The open clearing window (its closing date): "today" for fees.
    pub window: String,
    /// By scope, then effective date.
    pub rules: Vec<FeeRuleView>,
}

fn day_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn scope_of(kind: &str, value: &str) -> Option<Scope> {
    match kind {
        "category" => Some(Scope::Category(value.into())),
        "merchant" => Some(Scope::Merchant(value.into())),
        _ => None,
    }
}

fn scope_text(s: &Scope) -> String {
    match s {
        Scope::Category(c) => format!("category {c}"),
        Scope::Merchant(m) => format!("merchant {m}"),
    }
}

/// A kept rule as the pure crate's rule. The storage's checks make a bad row impossible; one
/// found anyway is reported, never skipped (it would change fees silently).
fn rule_of(row: &FeeRuleRow) -> Result<FeeRule> {
    let bad = || {
        PlatformError::Store(StoreError::Corrupt(format!(
            "fee rule {} ({} {} from {})",
            row.id, row.scope_kind, row.scope_value, row.effective_from
        )))
    };
    Ok(FeeRule {
        scope: scope_of(&row.scope_kind, &row.scope_value).ok_or_else(bad)?,
        rate_bp: row.rate_bp,
        fixed_fen: row.fixed_fen,
        effective_from: parse_date(&row.effective_from).ok_or_else(bad)?,
    })
}

fn schedule_of(rows: &[FeeRuleRow]) -> Result<FeeSchedule> {
    let rules = rows.iter().map(rule_of).collect::<Result<Vec<_>>>()?;
    FeeSchedule::new(rules)
        .map_err(|e| PlatformError::Store(StoreError::Corrupt(format!("fee schedule: {e}"))))
}

fn full() -> PlatformError {
    PlatformError::TooLarge {
        what: "the fee schedule".into(),
        limit: format!("FEE_RULES_MAX = {FEE_RULES_MAX} rules"),
    }
}

impl Platform {
    /// The schedule every clearing window is closed with: the kept rules.
    pub async fn fee_schedule(&self) -> Result<FeeSchedule> {
        schedule_of(&self.store.fee_rules().await?)
    }

    /// The open clearing window's closing date.
    fn open_window_day(&self) -> Result<Date> {
        let w = self.windows.window_of(self.clock.now_ms()).to_string();
        parse_date(&w).ok_or_else(|| PlatformError::Unexpected(format!("window id {w}")))
    }

    /// Every rule, with where it stands in the open clearing window. For clearing and audit.
    pub async fn fee_rules(&self, caller: &Caller) -> Result<FeeRules> {
        match caller.role {
            Role::Administrator | Role::ClearingOfficer | Role::Auditor => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "the fee schedule is for clearing and audit".into(),
                ));
            }
        }
        let rows = self.store.fee_rules().await?;
        let schedule = schedule_of(&rows)?;
        let day = self.open_window_day()?;
        let rules = rows
            .into_iter()
            .map(|row| {
                let standing = schedule.standing(&rule_of(&row)?, day);
                Ok(FeeRuleView {
                    rule: row,
                    standing,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FeeRules {
            window: day_text(day),
            rules,
        })
    }

    /// Adds a rule to the schedule (clearing officers and the administrator), audited. Refused
    /// with the field named: an unknown scope, a category that is not one of the network's, a
    /// merchant not registered, a rate outside 0–10,000 bp, a negative or too large fixed fee,
    /// a date that is not a date, is before the open clearing window or is more than ten
    /// years after it; a scope that already has a rule on that day is a conflict; a full
    /// schedule is too large.
    pub async fn fee_rule_add(&self, caller: &Caller, req: &FeeRuleRequest) -> Result<FeeRuleView> {
        may_clear(caller)?;
        let value = req.scope_value.trim();
        let scope = match req.scope_kind.trim() {
            "category" => {
                if !crate::terminals::CATEGORIES.contains(&value) {
                    return Err(PlatformError::invalid(
                        "scope_value",
                        format!(
                            "{value:?} is not a merchant category; one of {}",
                            crate::terminals::CATEGORIES.join(", ")
                        ),
                    ));
                }
                Scope::Category(value.into())
            }
            "merchant" => {
                let code_ok = !value.is_empty()
                    && value.len() <= CODE_CHARS_MAX
                    && value.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !code_ok || self.store.merchant(value).await?.is_none() {
                    return Err(PlatformError::invalid(
                        "scope_value",
                        format!("{value:?} is not a registered merchant's code"),
                    ));
                }
                Scope::Merchant(value.into())
            }
            _ => {
                return Err(PlatformError::invalid("scope_kind", "category or merchant"));
            }
        };
        let Some(effective_from) = parse_date(req.effective_from.trim()) else {
            return Err(PlatformError::invalid(
                "effective_from",
                format!("{:?} is not a date (YYYY-MM-DD)", req.effective_from),
            ));
        };
        let open = self.open_window_day()?;
        if effective_from < open {
            return Err(PlatformError::invalid(
                "effective_from",
                format!(
                    "{} is before the open clearing window {}: the fees of a window that has \
                     ended never change",
                    day_text(effective_from),
                    day_text(open)
                ),
            ));
        }
        if (effective_from - open).whole_days() > EFFECTIVE_DAYS_AHEAD_MAX {
            return Err(PlatformError::invalid(
                "effective_from",
                format!(
                    "{} is more than {EFFECTIVE_DAYS_AHEAD_MAX} days after the open clearing \
                     window {}",
                    day_text(effective_from),
                    day_text(open)
                ),
            ));
        }
        let rule = FeeRule {
            scope,
            rate_bp: req.rate_bp,
            fixed_fen: req.fixed_fen,
            effective_from,
        };
        match FeeSchedule::new(vec![rule.clone()]) {
            Err(FeeError::Rate(bp)) => {
                return Err(PlatformError::invalid(
                    "rate_bp",
                    format!("{bp} bp is outside 0 to 10000 (100 %)"),
                ));
            }
            Err(FeeError::Fixed(fen)) => {
                return Err(PlatformError::invalid(
                    "fixed_fen",
                    format!("{fen} fen is negative"),
                ));
            }
            Err(e) => return Err(PlatformError::Unexpected(e.to_string())),
            Ok(_) => {}
        }
        if rule.fixed_fen > FIXED_FEN_MAX {
            return Err(PlatformError::invalid(
                "fixed_fen",
                format!("{} fen is more than {FIXED_FEN_MAX} fen", rule.fixed_fen),
            ));
        }
        let rows = self.store.fee_rules().await?;
        if rows.len() >= FEE_RULES_MAX {
            return Err(full());
        }
        let mut rules = rows.iter().map(rule_of).collect::<Result<Vec<_>>>()?;
        rules.push(rule.clone());
        if let Err(e) = FeeSchedule::new(rules) {
            return Err(match e {
                FeeError::SameDay { scope, date } => PlatformError::Conflict(format!(
                    "{} already has a rule taking effect on {}: a rule is never changed; add \
                     one with a later date",
                    scope_text(&scope),
                    day_text(date)
                )),
                e => PlatformError::Store(StoreError::Corrupt(format!("fee schedule: {e}"))),
            });
        }
        let kind = match &rule.scope {
            Scope::Category(_) => "category",
            Scope::Merchant(_) => "merchant",
        };
        let date = day_text(effective_from);
        let row = FeeRuleRow {
            id: 0,
            scope_kind: kind.into(),
            scope_value: value.into(),
            rate_bp: rule.rate_bp,
            fixed_fen: rule.fixed_fen,
            effective_from: date.clone(),
            created_ms: self.clock.now_ms(),
            created_by: caller.actor(),
        };
        let audit = caller.draft(
            "clearing.fee_rule.add",
            format!("fee_rule:{kind}:{value}:{date}"),
            format!(
                "{} bp + {} fen per transaction from window {date}",
                row.rate_bp, row.fixed_fen
            ),
        );
        match self.store.fee_rule_add(&row, FEE_RULES_MAX, audit).await {
            // No rule of its scope takes effect on its day, and it is not before the open
            // window: it applies there from its day on, until a later rule of its scope.
            Ok(rule) => Ok(FeeRuleView {
                standing: if effective_from == open {
                    Standing::InForce
                } else {
                    Standing::Future
                },
                rule,
            }),
            Err(StoreError::TooMany { .. }) => Err(full()),
            Err(e) => Err(e.into()),
        }
    }
}
