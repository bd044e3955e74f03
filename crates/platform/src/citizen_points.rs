//! The signed-in citizen's own points, credit and message read state (issue 9, items 6 and 7
//! in the portal and the app). Each function fixes the record to the citizen of the session
//! and calls the counter's function (`points_of`, `points_redeem`, `credit_score`, …) with
//! the citizen as the caller, so the rules, refusals and audit entries are the same ones; no
//! function here takes an ID number or a resident id from the outside.

use crate::citizens::Citizen;
use crate::credit::{CreditView, DisputeView, ScoreHistoryView, dispute_view};
use crate::points::{EntryView, PointsView};
use crate::{Platform, PlatformError, Result};
use store::points::{CharityProjectRow, PointsItemRow};

/// The citizen's credit page: whether they are opted in and, only then, today's score.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CitizenCredit {
    /// When the citizen opted in; `None`: not opted in, nothing is recorded or scored.
    pub opted_in_ms: Option<i64>,
    pub score: Option<CreditView>,
}

impl Platform {
    /// The citizen's points: balance, totals, what expires within 30 days, recent entries;
    /// audited as a read by the citizen.
    pub async fn citizen_points(&self, c: &Citizen) -> Result<PointsView> {
        let id = self.citizen_id_number(c).await?;
        self.points_of(&c.caller(), &id).await
    }

    /// What the citizen may spend points on: catalogue items and charity projects still
    /// offered (withdrawn items and closed projects are not shown).
    pub async fn citizen_points_offers(
        &self,
        c: &Citizen,
    ) -> Result<(Vec<PointsItemRow>, Vec<CharityProjectRow>)> {
        let caller = c.caller();
        let items = self.points_items(&caller).await?;
        let projects = self.points_projects(&caller).await?;
        Ok((
            items.into_iter().filter(|i| i.active).collect(),
            projects.into_iter().filter(|p| p.active).collect(),
        ))
    }

    /// Redeems a catalogue item with the citizen's own points, once per `request_id`.
    pub async fn citizen_points_redeem(
        &self,
        c: &Citizen,
        item: &str,
        request_id: &str,
    ) -> Result<EntryView> {
        let id = self.citizen_id_number(c).await?;
        self.points_redeem(&c.caller(), &id, item, request_id).await
    }

    /// Donates the citizen's own points to an open charity project, once per `request_id`.
    pub async fn citizen_points_donate(
        &self,
        c: &Citizen,
        project: &str,
        points_n: i64,
        request_id: &str,
    ) -> Result<EntryView> {
        let id = self.citizen_id_number(c).await?;
        self.points_donate(&c.caller(), &id, project, points_n, request_id)
            .await
    }

    /// Whether the citizen is opted in to the credit service and, if so, today's score with
    /// every factor explained (computed now and kept in the history). A citizen who is not
    /// opted in gets no score: nothing is computed or stored for them.
    pub async fn citizen_credit(&self, c: &Citizen) -> Result<CitizenCredit> {
        let opted_in_ms = self.store.credit_enrolled(c.resident_id).await?;
        let score = match opted_in_ms {
            Some(_) => {
                let id = self.citizen_id_number(c).await?;
                Some(self.credit_score(&c.caller(), &id).await?)
            }
            None => {
                self.audit(c.caller().draft(
                    "credit.read",
                    format!("resident:{}", c.resident_id),
                    "not opted in: no score",
                ))
                .await?;
                None
            }
        };
        Ok(CitizenCredit { opted_in_ms, score })
    }

    /// The citizen's scores over time, newest first; refused when not opted in.
    pub async fn citizen_credit_history(&self, c: &Citizen) -> Result<Vec<ScoreHistoryView>> {
        let id = self.citizen_id_number(c).await?;
        self.credit_history(&c.caller(), &id).await
    }

    /// Opts the citizen in; `false` when already in.
    pub async fn citizen_credit_opt_in(&self, c: &Citizen) -> Result<bool> {
        let id = self.citizen_id_number(c).await?;
        self.credit_opt_in(&c.caller(), &id).await
    }

    /// Opts the citizen out (signals, scores and disputes are deleted); `false` when not in.
    pub async fn citizen_credit_opt_out(&self, c: &Citizen) -> Result<bool> {
        let id = self.citizen_id_number(c).await?;
        self.credit_opt_out(&c.caller(), &id).await
    }

    /// The citizen disputes one of their own signals; a signal of anyone else is "not found".
    pub async fn citizen_credit_dispute_open(
        &self,
        c: &Citizen,
        signal_id: i64,
        reason: &str,
    ) -> Result<DisputeView> {
        let id = self.citizen_id_number(c).await?;
        self.credit_dispute_open(&c.caller(), &id, signal_id, reason)
            .await
            .map_err(|e| match e {
                PlatformError::Store(store::StoreError::NotFound(_)) => {
                    PlatformError::NotFound("credit signal of this citizen".into())
                }
                e => e,
            })
    }

    /// The citizen's own disputes and how they were resolved, newest first; audited.
    pub async fn citizen_credit_disputes(&self, c: &Citizen) -> Result<Vec<DisputeView>> {
        let rows = self.store.credit_disputes_of(c.resident_id).await?;
        self.audit(c.caller().draft(
            "credit.disputes.read",
            format!("resident:{}", c.resident_id),
            "own disputes",
        ))
        .await?;
        Ok(rows.into_iter().map(dispute_view).collect())
    }

    /// How many of the citizen's in-app messages are unread (a count, no content: not
    /// audited, as it is shown on every page).
    pub async fn citizen_messages_unread(&self, c: &Citizen) -> Result<i64> {
        Ok(self.store.notifications_unread(c.resident_id).await?)
    }

    /// Marks one of the citizen's in-app messages read; `false` when it was read already.
    /// A message of anyone else, or an SMS, is "not found".
    pub async fn citizen_message_read(&self, c: &Citizen, id: i64) -> Result<bool> {
        let mine = self
            .store
            .notifications_of(c.resident_id, Some("inapp"), store::PAGE_MAX)
            .await?
            .into_iter()
            .any(|n| n.id == id);
        if !mine {
            return Err(PlatformError::NotFound("message of this citizen".into()));
        }
        let changed = self
            .store
            .notification_read(id, c.resident_id, self.clock.now_ms())
            .await?;
        if changed {
            self.audit(c.caller().draft(
                "notify.message.read",
                format!("resident:{}", c.resident_id),
                format!("message {id}"),
            ))
            .await?;
        }
        Ok(changed)
    }
}
