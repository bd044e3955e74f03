//! The credit service (信用服务, issue 9 item 7) through the platform. Opt-in only: signals are
//! recorded while a citizen is opted in, a score is computed only for them, and opting out
//! deletes signals, scores and disputes. The score is `credit::score` over the signals the
//! citizen can list (bills paid on time or late from `bills`, fare evasion records and library
//! returns reported through the event API, volunteer hours from civil affairs), minus those an
//! officer struck out after a dispute; each factor explains itself in Chinese and English, and
//! the incentives say what the score opens. Every read and change is audited.

use crate::points::{day_number, day_text, may};
use crate::{Caller, Platform, PlatformError, Result};
use ::credit::{CreditError, Signal, SignalKind};
use store::Role;
use store::credit::{DISPUTE_OPEN, DisputeRow, NewSignal, ScoreRow, SignalRow};

/// Opting in and out, disputes and reading are done for the citizen at a counter until the
/// portal (as consents are).
const FOR_CITIZEN: &[Role] = &[Role::Administrator, Role::CounterClerk];
const READERS: &[Role] = &[Role::Administrator, Role::CounterClerk, Role::Auditor];
/// Officers who resolve disputes.
const RESOLVERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];
const DISPUTE_READERS: &[Role] = &[
    Role::Administrator,
    Role::ClearingOfficer,
    Role::CounterClerk,
    Role::Auditor,
];
/// Fare evasion and library returns come from transit operators and libraries, through the
/// clearing officer.
const REPORTERS: &[Role] = &[Role::Administrator, Role::ClearingOfficer];

fn credit_error(field: &str, e: CreditError) -> PlatformError {
    PlatformError::invalid(field, e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FactorView {
    pub kind: String,
    pub count: i64,
    pub points_each: i64,
    pub cap: i64,
    pub contribution: i64,
    pub text_zh: String,
    pub text_en: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncentiveView {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub threshold: i64,
    pub eligible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignalView {
    pub id: i64,
    pub kind: String,
    pub quantity: i64,
    pub day: String,
    pub source: String,
    /// Struck out by an upheld dispute: not counted.
    pub struck: bool,
}

fn signal_view(s: SignalRow) -> SignalView {
    SignalView {
        id: s.id,
        kind: s.kind,
        quantity: s.quantity,
        day: day_text(s.day),
        source: s.source,
        struck: s.struck,
    }
}

/// A score with everything it is made of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreditView {
    pub score: i64,
    pub base: i64,
    pub day: String,
    pub factors: Vec<FactorView>,
    pub incentives: Vec<IncentiveView>,
    /// Every signal in the window, struck ones included (shown, not counted).
    pub signals: Vec<SignalView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScoreHistoryView {
    pub day: String,
    pub score: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DisputeView {
    pub id: i64,
    pub resident_id: i64,
    pub signal_id: i64,
    pub reason: String,
    pub status: String,
    pub officer: Option<String>,
    pub note: Option<String>,
    pub created_ms: i64,
    pub resolved_ms: Option<i64>,
}

pub fn dispute_view(d: DisputeRow) -> DisputeView {
    DisputeView {
        id: d.id,
        resident_id: d.resident_id,
        signal_id: d.signal_id,
        reason: d.reason,
        status: d.status,
        officer: d.officer,
        note: d.note,
        created_ms: d.created_ms,
        resolved_ms: d.resolved_ms,
    }
}

fn incentives_of(score: i64) -> Vec<IncentiveView> {
    ::credit::incentives(score)
        .into_iter()
        .map(|(i, eligible)| IncentiveView {
            code: i.code.into(),
            name_zh: i.name_zh.into(),
            name_en: i.name_en.into(),
            threshold: i.threshold,
            eligible,
        })
        .collect()
}

impl Platform {
    /// Records signals for residents who opted in (others are dropped), once per key.
    pub(crate) async fn credit_signals_add(&self, signals: &[NewSignal]) -> Result<u64> {
        if signals.is_empty() {
            return Ok(0);
        }
        Ok(self
            .store
            .credit_signals_record(signals, self.clock.now_ms())
            .await?)
    }

    async fn credit_enrolled_id(&self, id_number: &str) -> Result<i64> {
        let resident_id = self.resident_id_of(id_number).await?;
        if self.store.credit_enrolled(resident_id).await?.is_none() {
            return Err(PlatformError::Conflict(
                "the citizen has not opted in to the credit service; nothing is scored".into(),
            ));
        }
        Ok(resident_id)
    }

    /// Opts the citizen in; `false` when already in.
    pub async fn credit_opt_in(&self, caller: &Caller, id_number: &str) -> Result<bool> {
        may(caller, FOR_CITIZEN, "opt citizens in to the credit service")?;
        let resident_id = self.resident_id_of(id_number).await?;
        Ok(self
            .store
            .credit_opt_in(
                resident_id,
                caller.draft("credit.opt_in", format!("resident:{resident_id}"), ""),
                self.clock.now_ms(),
            )
            .await?)
    }

    /// Opts the citizen out: signals, scores and disputes are deleted; `false` when not in.
    pub async fn credit_opt_out(&self, caller: &Caller, id_number: &str) -> Result<bool> {
        may(
            caller,
            FOR_CITIZEN,
            "opt citizens out of the credit service",
        )?;
        let resident_id = self.resident_id_of(id_number).await?;
        Ok(self
            .store
            .credit_opt_out(
                resident_id,
                caller.draft(
                    "credit.opt_out",
                    format!("resident:{resident_id}"),
                    "signals, scores and disputes deleted",
                ),
                self.clock.now_ms(),
            )
            .await?)
    }

    async fn credit_compute(&self, caller: &Caller, resident_id: i64) -> Result<CreditView> {
        let today = day_number(self.clock.today());
        let rows = self
            .store
            .credit_signals(resident_id, today - ::credit::WINDOW_DAYS + 1)
            .await?;
        let signals: Vec<Signal> = rows
            .iter()
            .filter(|s| !s.struck)
            .filter_map(|s| {
                Some(Signal {
                    kind: SignalKind::parse(&s.kind)?,
                    quantity: s.quantity,
                    day: s.day,
                })
            })
            .collect();
        let sc = ::credit::score(&signals, today);
        let factors: Vec<FactorView> = sc
            .factors
            .into_iter()
            .map(|f| FactorView {
                kind: f.kind.as_str().into(),
                count: f.count,
                points_each: f.points_each,
                cap: f.cap,
                contribution: f.contribution,
                text_zh: f.text_zh,
                text_en: f.text_en,
            })
            .collect();
        let factors_json = serde_json::to_string(&factors)
            .map_err(|e| PlatformError::Unexpected(format!("factors as JSON: {e}")))?;
        self.store
            .credit_score_save(
                &ScoreRow {
                    resident_id,
                    day: today,
                    score: sc.score,
                    factors: factors_json,
                    computed_ms: self.clock.now_ms(),
                },
                caller.draft(
                    "credit.score",
                    format!("resident:{resident_id}"),
                    format!("{} on {}", sc.score, day_text(today)),
                ),
            )
            .await?;
        Ok(CreditView {
            score: sc.score,
            base: sc.base,
            day: day_text(today),
            incentives: incentives_of(sc.score),
            factors,
            signals: rows.into_iter().map(signal_view).collect(),
        })
    }

    /// The citizen's score today, computed now and kept in the history, with each factor in
    /// plain words, the incentives and the signals; refused when not opted in.
    pub async fn credit_score(&self, caller: &Caller, id_number: &str) -> Result<CreditView> {
        may(caller, READERS, "read credit scores")?;
        let resident_id = self.credit_enrolled_id(id_number).await?;
        self.credit_compute(caller, resident_id).await
    }

    /// The citizen's scores over time, newest first; refused when not opted in.
    pub async fn credit_history(
        &self,
        caller: &Caller,
        id_number: &str,
    ) -> Result<Vec<ScoreHistoryView>> {
        may(caller, READERS, "read credit scores")?;
        let resident_id = self.credit_enrolled_id(id_number).await?;
        self.audit(caller.draft("credit.history.read", format!("resident:{resident_id}"), ""))
            .await?;
        Ok(self
            .store
            .credit_scores(resident_id, 400)
            .await?
            .into_iter()
            .map(|s| ScoreHistoryView {
                day: day_text(s.day),
                score: s.score,
            })
            .collect())
    }

    /// A signal from a transit operator (fare evasion) or a library (a return on time or
    /// late), for the resident with this ID number; recorded only if they opted in. `true`
    /// when recorded now.
    pub async fn credit_report(
        &self,
        caller: &Caller,
        kind: SignalKind,
        event_id: &str,
        id_number: &str,
        quantity: i64,
    ) -> Result<bool> {
        may(caller, REPORTERS, "report credit signals")?;
        match kind {
            SignalKind::FareEvasion
            | SignalKind::LibraryReturnOnTime
            | SignalKind::LibraryReturnLate => {}
            _ => {
                return Err(PlatformError::invalid(
                    "kind",
                    "bills are signalled when paid, volunteer hours by civil affairs' points events",
                ));
            }
        }
        ::credit::check_quantity(kind, quantity).map_err(|e| credit_error("quantity", e))?;
        ::points::check_event_id(event_id)
            .map_err(|e| PlatformError::invalid("event_id", e.to_string()))?;
        let resident_id = self.resident_id_of(id_number).await?;
        let n = self
            .credit_signals_add(&[NewSignal {
                resident_id,
                kind: kind.as_str().into(),
                key: format!("{}:{event_id}", kind.as_str()),
                quantity,
                day: day_number(self.clock.today()),
                source: caller.username.clone(),
            }])
            .await?;
        self.audit(caller.draft(
            "credit.signal.report",
            format!("resident:{resident_id}"),
            format!(
                "{} {event_id}: {}",
                kind.as_str(),
                if n == 1 { "recorded" } else { "not recorded" }
            ),
        ))
        .await?;
        Ok(n == 1)
    }

    /// The citizen disputes one of their signals.
    pub async fn credit_dispute_open(
        &self,
        caller: &Caller,
        id_number: &str,
        signal_id: i64,
        reason: &str,
    ) -> Result<DisputeView> {
        may(caller, FOR_CITIZEN, "open credit disputes")?;
        ::credit::check_text(reason).map_err(|e| credit_error("reason", e))?;
        let resident_id = self.credit_enrolled_id(id_number).await?;
        let d = self
            .store
            .credit_dispute_open(
                resident_id,
                signal_id,
                reason,
                caller.draft(
                    "credit.dispute.open",
                    format!("resident:{resident_id}"),
                    format!("signal {signal_id}"),
                ),
                self.clock.now_ms(),
            )
            .await?;
        Ok(dispute_view(d))
    }

    /// An officer resolves an open dispute: upheld strikes the signal out and the score is
    /// computed again; rejected keeps it. The note is kept and audited.
    pub async fn credit_dispute_resolve(
        &self,
        caller: &Caller,
        id: i64,
        uphold: bool,
        note: &str,
    ) -> Result<DisputeView> {
        may(caller, RESOLVERS, "resolve credit disputes")?;
        ::credit::check_text(note).map_err(|e| credit_error("note", e))?;
        let Some(d) = self
            .store
            .credit_dispute_resolve(
                id,
                uphold,
                &caller.username,
                note,
                caller.draft(
                    "credit.dispute.resolve",
                    format!("credit_dispute:{id}"),
                    if uphold { "upheld" } else { "rejected" },
                ),
                self.clock.now_ms(),
            )
            .await?
        else {
            return Err(match self.store.credit_dispute(id).await? {
                None => PlatformError::NotFound(format!("dispute {id}")),
                Some(d) => PlatformError::Conflict(format!("dispute {id} is already {}", d.status)),
            });
        };
        if uphold && self.store.credit_enrolled(d.resident_id).await?.is_some() {
            self.credit_compute(caller, d.resident_id).await?;
        }
        Ok(dispute_view(d))
    }

    /// Disputes by status (`open`, `upheld`, `rejected`; all when `None`), newest first.
    pub async fn credit_disputes(
        &self,
        caller: &Caller,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DisputeView>> {
        may(caller, DISPUTE_READERS, "read credit disputes")?;
        if let Some(s) = status
            && ![DISPUTE_OPEN, "upheld", "rejected"].contains(&s)
        {
            return Err(PlatformError::invalid("status", "open, upheld or rejected"));
        }
        Ok(self
            .store
            .credit_disputes(status, limit)
            .await?
            .into_iter()
            .map(dispute_view)
            .collect())
    }
}
