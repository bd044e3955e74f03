//! Points (积分, issue 9 item 6) through the platform: the rules, the catalogue and charity
//! projects an operator keeps; earning from events (a bill paid on time, from `bills`;
//! volunteer hours from civil affairs, library loans and rides through the event API), each
//! event once by its id and within the day's cap; redemption and donation after due points
//! expired; the expiry run; and a resident's points with their entries.
//!
//! Every movement is a ledger transfer in `POINTS` between the resident's points account and
//! the company's issuance, redeemed and expired accounts or a charity project's account,
//! written in one transaction with its entry (`store::points`): points are never created or
//! lost, and `ledger check` covers them like money.

use crate::{Caller, Platform, PlatformError, Result};
use ::ledger::{AccountKey, AccountKind};
use ::points::{CatalogueItem, CharityProject, EarnKind, EarnRule, PointsError, RewardKind};
use store::Role;
use store::points::{
    CharityProjectRow, EarnOutcome, NewEarning, NewSpend, OP_DONATE, OP_REDEEM, PointsEntryRow,
    PointsItemRow, PointsRuleRow, SpendOutcome,
};

const KEEPERS: &[Role] = &[Role::Administrator];
const READERS: &[Role] = &[
    Role::Administrator,
    Role::CounterClerk,
    Role::ClearingOfficer,
    Role::Auditor,
];
/// Redemption and donation are done for the citizen at a counter until the portal.
const FOR_CITIZEN: &[Role] = &[Role::Administrator, Role::CounterClerk];
const RUNNERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];
/// Rides and library loans are reported by the operators of transit and libraries through the
/// clearing officer (as purchases are); volunteer hours by civil affairs.
const USE_REPORTERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];

/// Julian day number of 1970-01-01: city day numbers count from it.
const EPOCH_JULIAN: i64 = 2_440_588;

pub(crate) fn may(caller: &Caller, roles: &[Role], what: &str) -> Result<()> {
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(format!(
            "the role {} may not {what}",
            caller.role.as_str()
        )))
    }
}

/// A city date as a day number (days since 1970-01-01).
pub fn day_number(d: time::Date) -> i64 {
    i64::from(d.to_julian_day()) - EPOCH_JULIAN
}

/// A day number as `YYYY-MM-DD`.
pub fn day_text(day: i64) -> String {
    i32::try_from(day + EPOCH_JULIAN)
        .ok()
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_else(|| day.to_string())
}

pub(crate) fn refusal(e: PointsError) -> PlatformError {
    match e {
        PointsError::UnknownItem(_) | PointsError::UnknownProject(_) => {
            PlatformError::NotFound(e.to_string())
        }
        PointsError::CapReached { .. }
        | PointsError::RuleInactive(_)
        | PointsError::Insufficient { .. }
        | PointsError::Expired { .. }
        | PointsError::ItemWithdrawn(_)
        | PointsError::ProjectClosed(_) => PlatformError::Conflict(e.to_string()),
        PointsError::BadUnits(_) => PlatformError::invalid("units", e.to_string()),
        PointsError::BadEventId(_) => PlatformError::invalid("event_id", e.to_string()),
        PointsError::BadDonation(_) => PlatformError::invalid("points", e.to_string()),
        PointsError::BadCode(_) => PlatformError::invalid("code", e.to_string()),
        PointsError::BadName => PlatformError::invalid("name", e.to_string()),
        PointsError::BadCost => PlatformError::invalid("cost_points", e.to_string()),
        PointsError::BadRule(_) => PlatformError::invalid("rule", e.to_string()),
    }
}

fn rule_of(r: &PointsRuleRow) -> Result<EarnRule> {
    Ok(EarnRule {
        kind: EarnKind::parse(&r.kind)
            .ok_or_else(|| PlatformError::Unexpected(format!("stored rule kind {}", r.kind)))?,
        points_per_unit: r.points_per_unit,
        daily_cap: r.daily_cap,
        validity_days: r.validity_days,
        active: r.active,
    })
}

/// One use to earn points for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarnEvent {
    pub resident_id: i64,
    pub kind: EarnKind,
    /// The reporter's id of the event: the same id earns once.
    pub event_id: String,
    pub units: i64,
}

/// What an event earned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EarnResult {
    pub key: String,
    pub points: i64,
    /// The rule gave more than the day's cap left.
    pub capped: bool,
    /// Earned before under this event id: the first earning.
    pub duplicate: bool,
    pub expires_on: String,
}

/// A resident's points.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PointsView {
    pub balance: i64,
    pub earned: i64,
    pub redeemed: i64,
    pub donated: i64,
    pub expired: i64,
    /// Points that expire within the next 30 days unless spent.
    pub expiring_30_days: i64,
    pub entries: Vec<EntryView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntryView {
    pub id: i64,
    pub op: String,
    pub kind: Option<String>,
    pub target: Option<String>,
    pub points: i64,
    pub day: String,
    pub expires_on: Option<String>,
    pub created_ms: i64,
}

pub fn entry_view(e: PointsEntryRow) -> EntryView {
    EntryView {
        id: e.id,
        op: e.op,
        kind: e.kind,
        target: e.target,
        points: e.points,
        day: day_text(e.day),
        expires_on: e.expires_day.map(day_text),
        created_ms: e.created_ms,
    }
}

/// What one expiry run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryReport {
    pub residents: u64,
    pub points: i64,
}

impl Platform {
    fn points_today(&self) -> i64 {
        day_number(self.clock.today())
    }

    pub async fn points_rules(&self, caller: &Caller) -> Result<Vec<PointsRuleRow>> {
        may(caller, READERS, "read points rules")?;
        Ok(self.store.points_rules().await?)
    }

    /// Replaces one kind's earning rule.
    pub async fn points_rule_set(&self, caller: &Caller, rule: EarnRule) -> Result<PointsRuleRow> {
        may(caller, KEEPERS, "change points rules")?;
        rule.validate().map_err(refusal)?;
        let row = PointsRuleRow {
            kind: rule.kind.as_str().into(),
            points_per_unit: rule.points_per_unit,
            daily_cap: rule.daily_cap,
            validity_days: rule.validity_days,
            active: rule.active,
            updated_ms: self.clock.now_ms(),
        };
        self.store
            .points_rule_set(
                &row,
                caller.draft(
                    "points.rule.set",
                    format!("points_rule:{}", rule.kind),
                    format!(
                        "{} per unit, cap {} a day, valid {} days, {}",
                        rule.points_per_unit,
                        rule.daily_cap,
                        rule.validity_days,
                        if rule.active { "active" } else { "off" }
                    ),
                ),
            )
            .await?;
        Ok(row)
    }

    pub async fn points_items(&self, caller: &Caller) -> Result<Vec<PointsItemRow>> {
        may(caller, READERS, "read the points catalogue")?;
        Ok(self.store.points_items().await?)
    }

    /// Adds or replaces a catalogue item (withdraw it with `active: false`).
    pub async fn points_item_set(
        &self,
        caller: &Caller,
        item: CatalogueItem,
    ) -> Result<PointsItemRow> {
        may(caller, KEEPERS, "change the points catalogue")?;
        item.validate().map_err(refusal)?;
        let row = PointsItemRow {
            code: item.code.clone(),
            name_zh: item.name_zh,
            name_en: item.name_en,
            kind: item.kind.as_str().into(),
            cost_points: item.cost_points,
            active: item.active,
            updated_ms: self.clock.now_ms(),
        };
        self.store
            .points_item_set(
                &row,
                caller.draft(
                    "points.item.set",
                    format!("points_item:{}", item.code),
                    format!("{} points, {}", row.cost_points, row.kind),
                ),
            )
            .await?;
        Ok(row)
    }

    pub async fn points_projects(&self, caller: &Caller) -> Result<Vec<CharityProjectRow>> {
        may(caller, READERS, "read charity projects")?;
        Ok(self.store.points_projects().await?)
    }

    pub async fn points_project_set(
        &self,
        caller: &Caller,
        p: CharityProject,
    ) -> Result<CharityProjectRow> {
        may(caller, KEEPERS, "change charity projects")?;
        p.validate().map_err(refusal)?;
        let row = CharityProjectRow {
            code: p.code.clone(),
            name_zh: p.name_zh,
            name_en: p.name_en,
            active: p.active,
            updated_ms: self.clock.now_ms(),
        };
        self.store
            .points_project_set(
                &row,
                caller.draft(
                    "points.project.set",
                    format!("points_project:{}", p.code),
                    if p.active { "open" } else { "closed" },
                ),
            )
            .await?;
        Ok(row)
    }

    /// Earns points for events, in one transaction: each event once by its id, cut to what the
    /// day's cap of its kind leaves. One answer per event: what it earned, or why not (cap
    /// reached, rule switched off, bad units or id).
    pub async fn points_earn(
        &self,
        caller: &Caller,
        events: &[EarnEvent],
    ) -> Result<Vec<Result<EarnResult>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rules = self.store.points_rules().await?;
        let today = self.points_today();
        let mut keys = vec![AccountKey::points_company(AccountKind::PointsIssuance)];
        let mut answers: Vec<Option<Result<EarnResult>>> = Vec::with_capacity(events.len());
        let mut asks = Vec::new();
        let mut slots = Vec::new();
        let mut residents: Vec<i64> = events.iter().map(|e| e.resident_id).collect();
        residents.sort_unstable();
        residents.dedup();
        keys.extend(residents.iter().map(|r| AccountKey::citizen_points(*r)));
        let ids = self.account_ids(caller, &keys).await?;
        let issuance = ids[0];
        for (i, e) in events.iter().enumerate() {
            let checked = ::points::check_event_id(&e.event_id)
                .and_then(|()| {
                    let row = rules
                        .iter()
                        .find(|r| r.kind == e.kind.as_str())
                        .ok_or(PointsError::RuleInactive(e.kind))?;
                    let rule = rule_of(row).map_err(|_| PointsError::RuleInactive(e.kind))?;
                    // The cap is applied by the store against the day's earnings; with none
                    // earned this checks the units and that the rule is on.
                    ::points::grant(&rule, e.units, 0).map(|g| (rule, g))
                })
                .map_err(refusal);
            match checked {
                Err(err) => answers.push(Some(Err(err))),
                Ok((rule, _)) => {
                    let account = ids[1 + residents.binary_search(&e.resident_id).expect("listed")];
                    asks.push(NewEarning {
                        resident_id: e.resident_id,
                        kind: e.kind.as_str().into(),
                        key: ::points::earn_key(e.kind, &e.event_id),
                        asked: rule.points_per_unit * e.units,
                        daily_cap: rule.daily_cap,
                        day: today,
                        expires_day: ::points::expires_day(today, &rule),
                        account,
                        issuance,
                    });
                    slots.push((i, rule));
                    answers.push(None);
                }
            }
        }
        if !asks.is_empty() {
            let detail = format!("{} events, first {}", asks.len(), asks[0].key);
            let record = match asks.as_slice() {
                [one] => format!("resident:{}", one.resident_id),
                _ => "points".to_string(),
            };
            let outs = self
                .store
                .points_earn(
                    &asks,
                    caller.draft("points.earn", record, detail),
                    self.clock.now_ms(),
                )
                .await?;
            for ((i, rule), (ask, out)) in slots.into_iter().zip(asks.iter().zip(outs)) {
                answers[i] = Some(match out {
                    EarnOutcome::Earned(row) => Ok(EarnResult {
                        key: row.key,
                        points: row.points,
                        capped: row.points < ask.asked,
                        duplicate: false,
                        expires_on: day_text(row.expires_day.unwrap_or(ask.expires_day)),
                    }),
                    EarnOutcome::Duplicate(row) => Ok(EarnResult {
                        key: row.key,
                        points: row.points,
                        capped: false,
                        duplicate: true,
                        expires_on: day_text(row.expires_day.unwrap_or(ask.expires_day)),
                    }),
                    EarnOutcome::CapReached { .. } => Err(refusal(PointsError::CapReached {
                        kind: rule.kind,
                        cap: rule.daily_cap,
                    })),
                });
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every event answered"))
            .collect())
    }

    /// A use reported through the event API (a ride, a library loan, volunteer hours from
    /// civil affairs), for the resident with this ID number. Volunteer hours are also a credit
    /// signal (`credit`), recorded when the resident opted in.
    pub async fn points_report(
        &self,
        caller: &Caller,
        kind: EarnKind,
        event_id: &str,
        id_number: &str,
        units: i64,
    ) -> Result<EarnResult> {
        match kind {
            EarnKind::VolunteerHour => {
                let civil = caller.role == Role::DepartmentOfficer
                    && caller.department == Some(resident::Source::CivilAffairs);
                if !(civil || caller.role == Role::Administrator) {
                    return Err(PlatformError::Forbidden(
                        "volunteer hours are reported by civil affairs".into(),
                    ));
                }
            }
            EarnKind::BillOnTime => {
                return Err(PlatformError::invalid(
                    "kind",
                    "bills paid on time earn when the bill is paid",
                ));
            }
            _ => may(caller, USE_REPORTERS, "report uses for points")?,
        }
        let resident_id = self.resident_id_of(id_number).await?;
        let out = self
            .points_earn(
                caller,
                &[EarnEvent {
                    resident_id,
                    kind,
                    event_id: event_id.into(),
                    units,
                }],
            )
            .await?
            .pop()
            .expect("one answer")?;
        if kind == EarnKind::VolunteerHour {
            self.credit_signals_add(&[store::credit::NewSignal {
                resident_id,
                kind: ::credit::SignalKind::VolunteerHour.as_str().into(),
                key: format!("volunteer:{event_id}"),
                quantity: units,
                day: self.points_today(),
                source: "civil_affairs".into(),
            }])
            .await?;
        }
        Ok(out)
    }

    /// Expires what is due for one resident today; the points expired.
    async fn points_expire_resident(&self, caller: &Caller, resident_id: i64) -> Result<i64> {
        let ids = self
            .account_ids(
                caller,
                &[
                    AccountKey::citizen_points(resident_id),
                    AccountKey::points_company(AccountKind::PointsExpired),
                ],
            )
            .await?;
        let today = self.points_today();
        Ok(self
            .store
            .points_expire(
                resident_id,
                today,
                ids[0],
                ids[1],
                caller.draft(
                    "points.expire",
                    format!("resident:{resident_id}"),
                    day_text(today),
                ),
                self.clock.now_ms(),
            )
            .await?
            .map_or(0, |e| e.points))
    }

    /// The daily expiry run: every resident with lots due today. Safe to repeat.
    pub async fn points_expire_run(&self, caller: &Caller) -> Result<ExpiryReport> {
        may(caller, RUNNERS, "run points expiry")?;
        let today = self.points_today();
        let mut report = ExpiryReport::default();
        let mut after = 0;
        loop {
            let page = self
                .store
                .points_expiry_due(today, after, store::PAGE_MAX)
                .await?;
            for r in &page {
                let n = self.points_expire_resident(caller, *r).await?;
                if n > 0 {
                    report.residents += 1;
                    report.points += n;
                }
                after = *r;
            }
            if page.len() < store::PAGE_MAX as usize {
                break;
            }
        }
        Ok(report)
    }

    /// A resident's points: balance, totals, what expires within 30 days, recent entries;
    /// audited.
    pub async fn points_of(&self, caller: &Caller, id_number: &str) -> Result<PointsView> {
        may(caller, READERS, "read a citizen's points")?;
        let resident_id = self.resident_id_of(id_number).await?;
        self.audit(caller.draft("points.read", format!("resident:{resident_id}"), ""))
            .await?;
        let today = self.points_today();
        let t = self.store.points_totals(resident_id, today).await?;
        let soon = self.store.points_totals(resident_id, today + 30).await?;
        let entries = self.store.points_entries(resident_id, 0, 100).await?;
        Ok(PointsView {
            balance: t.balance(),
            earned: t.earned,
            redeemed: t.redeemed,
            donated: t.donated,
            expired: t.expired,
            expiring_30_days: ::points::expiring(soon.due, t.outflow()),
            entries: entries.into_iter().map(entry_view).collect(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn points_spend(
        &self,
        caller: &Caller,
        resident_id: i64,
        op: &str,
        request_id: &str,
        target: &str,
        cost: i64,
        sink: AccountKey,
    ) -> Result<EntryView> {
        ::points::check_event_id(request_id).map_err(|e| match e {
            PointsError::BadEventId(_) => PlatformError::invalid("request_id", e.to_string()),
            e => refusal(e),
        })?;
        let key = format!("points-{op}:{resident_id}:{request_id}");
        // A repeat answers the first, whatever the balance is now.
        if let Some(first) = self.store.points_entry(&key).await? {
            if first.target.as_deref() != Some(target) || first.points != cost {
                return Err(PlatformError::Conflict(format!(
                    "request {request_id} was used for a different {op}"
                )));
            }
            return Ok(entry_view(first));
        }
        self.points_expire_resident(caller, resident_id).await?;
        let today = self.points_today();
        let t = self.store.points_totals(resident_id, today).await?;
        ::points::check_spend(t.balance(), cost, t.expired).map_err(refusal)?;
        let ids = self
            .account_ids(caller, &[AccountKey::citizen_points(resident_id), sink])
            .await?;
        let s = NewSpend {
            resident_id,
            op: op.into(),
            key,
            target: target.into(),
            points: cost,
            day: today,
            account: ids[0],
            sink: ids[1],
        };
        match self
            .store
            .points_spend(
                &s,
                caller.draft(
                    &format!("points.{op}"),
                    format!("resident:{resident_id}"),
                    format!("{target}: {cost} points"),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(m) => PlatformError::Conflict(m),
                e => e.into(),
            })? {
            SpendOutcome::Spent(e) | SpendOutcome::Duplicate(e) => Ok(entry_view(e)),
            SpendOutcome::Refused(_) => {
                // Spent concurrently since the check.
                let t = self.store.points_totals(resident_id, today).await?;
                Err(refusal(PointsError::Insufficient {
                    available: t.balance(),
                    cost,
                }))
            }
        }
    }

    /// Redeems a catalogue item for the citizen, once per `request_id`: due points expire
    /// first; unknown or withdrawn items, too few points and expired points are refused.
    pub async fn points_redeem(
        &self,
        caller: &Caller,
        id_number: &str,
        item: &str,
        request_id: &str,
    ) -> Result<EntryView> {
        may(caller, FOR_CITIZEN, "redeem points")?;
        let resident_id = self.resident_id_of(id_number).await?;
        let items: Vec<CatalogueItem> = self
            .store
            .points_items()
            .await?
            .into_iter()
            .filter_map(|r| {
                Some(CatalogueItem {
                    kind: RewardKind::parse(&r.kind)?,
                    code: r.code,
                    name_zh: r.name_zh,
                    name_en: r.name_en,
                    cost_points: r.cost_points,
                    active: r.active,
                })
            })
            .collect();
        let it = ::points::pick_item(&items, item).map_err(refusal)?;
        self.points_spend(
            caller,
            resident_id,
            OP_REDEEM,
            request_id,
            &it.code,
            it.cost_points,
            AccountKey::points_company(AccountKind::PointsRedeemed),
        )
        .await
    }

    /// Donates points to an open charity project, once per `request_id`.
    pub async fn points_donate(
        &self,
        caller: &Caller,
        id_number: &str,
        project: &str,
        points_n: i64,
        request_id: &str,
    ) -> Result<EntryView> {
        may(caller, FOR_CITIZEN, "donate points")?;
        ::points::check_donation(points_n).map_err(refusal)?;
        let resident_id = self.resident_id_of(id_number).await?;
        let p = self
            .store
            .points_projects()
            .await?
            .into_iter()
            .find(|p| p.code == project)
            .ok_or_else(|| refusal(PointsError::UnknownProject(project.into())))?;
        if !p.active {
            return Err(refusal(PointsError::ProjectClosed(project.into())));
        }
        let sink = AccountKey::points_charity(&p.code)
            .map_err(|e| PlatformError::invalid("project", e.to_string()))?;
        self.points_spend(
            caller,
            resident_id,
            OP_DONATE,
            request_id,
            &p.code,
            points_n,
            sink,
        )
        .await
    }

    /// Points and credit signals for bills just paid: on time (paid on or before the due
    /// date) earns `bill_on_time` points and is a credit signal; late is a credit signal only.
    /// A failure here is logged and does not undo the payment.
    pub(crate) async fn bills_paid_signals(&self, caller: &Caller, paid: &[(i64, i64, String)]) {
        if paid.is_empty() {
            return;
        }
        let today = self.points_today();
        let today_text = day_text(today);
        let mut events = Vec::new();
        let mut signals = Vec::new();
        for (resident_id, bill_id, due_date) in paid {
            // `YYYY-MM-DD` compares as text.
            let on_time = today_text.as_str() <= due_date.as_str();
            if on_time {
                events.push(EarnEvent {
                    resident_id: *resident_id,
                    kind: EarnKind::BillOnTime,
                    event_id: format!("bill-{bill_id}"),
                    units: 1,
                });
            }
            signals.push(store::credit::NewSignal {
                resident_id: *resident_id,
                kind: if on_time {
                    ::credit::SignalKind::BillOnTime
                } else {
                    ::credit::SignalKind::BillLate
                }
                .as_str()
                .into(),
                key: format!("bill:{bill_id}"),
                quantity: 1,
                day: today,
                source: "bills".into(),
            });
        }
        if let Err(e) = self.points_earn(caller, &events).await {
            tracing::warn!(error = %e, "points for bills paid on time");
        }
        if let Err(e) = self.credit_signals_add(&signals).await {
            tracing::warn!(error = %e, "credit signals for bills paid");
        }
    }

    /// Points for rides: purchases just posted at a transit merchant earn `ride` points for
    /// the card's holder, one event per card and offline counter. A failure here is logged and
    /// does not touch the purchases.
    pub(crate) async fn rides_earned(
        &self,
        caller: &Caller,
        merchant: &str,
        posted: &[(String, impl std::fmt::Display)],
    ) {
        if posted.is_empty() {
            return;
        }
        let result = self.rides_earned_checked(caller, merchant, posted).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "points for rides");
        }
    }

    async fn rides_earned_checked(
        &self,
        caller: &Caller,
        merchant: &str,
        posted: &[(String, impl std::fmt::Display)],
    ) -> Result<()> {
        let transit = self
            .store
            .merchant(merchant)
            .await?
            .is_some_and(|m| m.category == "transit");
        let ride_on = self
            .store
            .points_rules()
            .await?
            .iter()
            .any(|r| r.kind == EarnKind::Ride.as_str() && r.active);
        if !transit || !ride_on {
            return Ok(());
        }
        let mut holders: std::collections::HashMap<String, Option<i64>> =
            std::collections::HashMap::new();
        let mut events = Vec::with_capacity(posted.len());
        for (number, counter) in posted {
            if !holders.contains_key(number) {
                let holder = self
                    .store
                    .card_by_number(number)
                    .await?
                    .map(|c| c.resident_id);
                holders.insert(number.clone(), holder);
            }
            if let Some(Some(resident_id)) = holders.get(number) {
                events.push(EarnEvent {
                    resident_id: *resident_id,
                    kind: EarnKind::Ride,
                    event_id: format!("card-{number}-{counter}"),
                    units: 1,
                });
            }
        }
        self.points_earn(caller, &events).await?;
        Ok(())
    }
}
