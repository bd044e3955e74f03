//! Oversight of the exchange and the citizen's view of their consents (issue 8, items 4 and
//! 8): the access log searched by consumer, service, resident, outcome and time (what X-Road
//! administrators ask for), consent counts per consumer and service, and one citizen's consents
//! with their state, for the portal. Reads about one citizen are audited under their record.

use crate::{Caller, Platform, PlatformError, Result};
use store::{AccessQuery, AccessRow, ConsentStat, Role};

/// A search of the access log as an operator states it (an ID number, not a resident id).
#[derive(Clone, Default)]
pub struct AccessSearch {
    pub consumer: Option<String>,
    pub service: Option<String>,
    /// Personal data: never logged.
    pub id_number: Option<String>,
    pub outcome: Option<String>,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The state of a consent at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Active,
    Revoked,
    Expired,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Active => "active",
            ConsentState::Revoked => "revoked",
            ConsentState::Expired => "expired",
        }
    }
}

/// One of a citizen's consents as the citizen sees it: to whom, for which service and purpose,
/// and whether it still holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CitizenConsent {
    pub id: i64,
    pub consumer: String,
    pub consumer_name: String,
    pub service: String,
    pub service_name: String,
    pub purpose: String,
    pub channel: String,
    pub given_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
    pub state: ConsentState,
}

fn oversight(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Administrator | Role::Auditor => Ok(()),
        _ => Err(PlatformError::Forbidden(
            "the exchange's log and statistics are for administrators and auditors".into(),
        )),
    }
}

const OUTCOMES: [&str; 3] = ["delivered", "refused", "failed"];

impl Platform {
    /// The access log, newest first, filtered. A filter by citizen is audited as a read of
    /// their record.
    pub async fn exchange_access_search(
        &self,
        caller: &Caller,
        s: &AccessSearch,
    ) -> Result<Vec<AccessRow>> {
        oversight(caller)?;
        if let Some(o) = &s.outcome
            && !OUTCOMES.contains(&o.as_str())
        {
            return Err(PlatformError::invalid(
                "outcome",
                "one of delivered, refused, failed",
            ));
        }
        if let (Some(f), Some(u)) = (s.from_ms, s.until_ms)
            && u <= f
        {
            return Err(PlatformError::invalid("until", "must be after from"));
        }
        let resident_id = match s.id_number.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => Some(self.resident_id_of(id).await?),
        };
        let rows = self
            .store
            .accesses_search(&AccessQuery {
                consumer: s.consumer.clone().filter(|c| !c.is_empty()),
                service: s.service.clone().filter(|c| !c.is_empty()),
                resident_id,
                outcome: s.outcome.clone(),
                from_ms: s.from_ms,
                until_ms: s.until_ms,
                before_id: s.before_id,
                limit: s.limit.clamp(1, store::EXCHANGE_LIST_MAX),
            })
            .await?;
        if let Some(r) = resident_id {
            self.audit(caller.draft(
                "exchange.access.read",
                format!("resident:{r}"),
                format!("access log by citizen: {} row(s)", rows.len()),
            ))
            .await?;
        }
        Ok(rows)
    }

    /// Consents per consumer and service: active, revoked, expired.
    pub async fn exchange_consent_stats(&self, caller: &Caller) -> Result<Vec<ConsentStat>> {
        oversight(caller)?;
        Ok(self.store.consent_stats(self.clock.now_ms()).await?)
    }

    /// A citizen's consents, newest first, with their state and the names of the consumer
    /// and the service — what the portal will show. Read for the citizen at a counter until
    /// then (administrators, clerks; auditors too); the read is audited.
    pub async fn exchange_citizen_consents(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<Vec<CitizenConsent>> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::Auditor => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "a citizen's consents are read for the citizen at a counter".into(),
                ));
            }
        }
        let resident_id = self.resident_id_of(id_number).await?;
        let rows = self.store.consents_of(resident_id, None).await?;
        self.audit(caller.draft(
            "exchange.consents.read",
            format!("resident:{resident_id}"),
            format!("{} consent(s)", rows.len()),
        ))
        .await?;
        let members = self.store.members().await?;
        let services = self.store.services().await?;
        let now = self.clock.now_ms();
        let mut out: Vec<CitizenConsent> = rows
            .into_iter()
            .map(|c| CitizenConsent {
                state: if c.revoked_ms.is_some() {
                    ConsentState::Revoked
                } else if c.expires_ms <= now {
                    ConsentState::Expired
                } else {
                    ConsentState::Active
                },
                consumer_name: members
                    .iter()
                    .find(|m| m.code == c.consumer)
                    .map_or_else(|| c.consumer.clone(), |m| m.name.clone()),
                service_name: services
                    .iter()
                    .find(|s| s.code == c.service)
                    .map_or_else(|| c.service.clone(), |s| s.name.clone()),
                id: c.id,
                consumer: c.consumer,
                service: c.service,
                purpose: c.purpose,
                channel: c.channel,
                given_ms: c.given_ms,
                expires_ms: c.expires_ms,
                revoked_ms: c.revoked_ms,
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}

impl Platform {
    /// [`Platform::exchange_check_stamps`], with its result on the audit log (a detected
    /// alteration names the first break and the bad stamps) and in the log as a warning.
    pub async fn exchange_check_stamps_logged(
        &self,
        caller: &Caller,
    ) -> Result<crate::exchange::StampReport> {
        let r = self.exchange_check_stamps().await?;
        let detail = match (&r.chain, r.bad_stamps.is_empty()) {
            (Ok(n), true) => format!("intact entries={n} stamps={}", r.stamps_checked),
            (chain, _) => {
                let bad: Vec<String> = r
                    .bad_stamps
                    .iter()
                    .map(|(seq, why)| format!("{seq}: {why}"))
                    .collect();
                let detail = format!(
                    "tampered chain={} bad_stamps=[{}] stamps={}",
                    chain
                        .as_ref()
                        .map_or_else(|e| e.clone(), |n| format!("ok ({n})")),
                    bad.join("; "),
                    r.stamps_checked
                );
                tracing::warn!(%detail, "the audit log no longer matches its chain or stamps");
                detail
            }
        };
        self.audit(caller.draft("exchange.stamps.check", "audit", detail))
            .await?;
        Ok(r)
    }
}

/// The first millisecond of a city day (`2026-11-30`, China Standard Time): the console's
/// date filters.
pub fn city_day_start_ms(day: &str) -> Result<i64> {
    let bad = || PlatformError::invalid("date", "a day as YYYY-MM-DD");
    let mut parts = day.trim().splitn(3, '-');
    let mut next = |n: usize| -> Result<i64> {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != n || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<i64>().map_err(|_| bad())
    };
    let (y, m, d) = (next(4)?, next(2)?, next(2)?);
    let month = time::Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(
        i32::try_from(y).map_err(|_| bad())?,
        month,
        u8::try_from(d).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    Ok(date
        .midnight()
        .assume_offset(crate::clock::CST)
        .unix_timestamp()
        * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn city_days_start_at_midnight_in_china() {
        // 2026-11-30 00:00 +08:00 is 2026-11-29 16:00 UTC.
        assert_eq!(
            super::city_day_start_ms("2026-11-30").unwrap(),
            1_795_968_000_000
        );
        assert!(super::city_day_start_ms("2026-13-01").is_err());
        assert!(super::city_day_start_ms("30/11/2026").is_err());
    }
}
