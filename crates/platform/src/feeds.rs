//! Department feeds with per-field authority (issue 8, item 6): changes pushed as JSON beside
//! the CSV import, the review queue of values held because a department that is not a field's
//! authority contradicted it (listed, accepted or rejected once by an officer, audited), and
//! what a feed means for the card: a graduation ends the student concession.
//!
//! Which department is a field's authority is `resident::Field::authority`; the decision to
//! hold is taken inside the storage transaction (`store::held_fields`), so two feeds cannot
//! race it.

use crate::residents::{ImportReport, Reject, change_ctx, ctx, seal_facts};
use crate::{Caller, Platform, PlatformError, Result};
use keys::BlindIndex;
use resident::{Field, Source, Student};
use store::{FeedTotals, NewFeed, ReviewRow, ReviewStatus, Role};

/// Changes in one pushed request; bigger feeds go through the CSV import.
pub const PUSH_CHANGES_MAX: usize = 1_000;

/// One change a department pushes: the ID number and whatever fields it reports (absent
/// means "not reported").
/// No `Debug`: it holds personal data in clear.
#[derive(Clone, Default)]
pub struct ResidentChange {
    pub id_number: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub residency: Option<String>,
    pub assistance: Option<String>,
    pub student: Option<String>,
}

/// A held value as an officer sees it: masked unless unmasked by a role that may.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewView {
    pub id: i64,
    pub resident_id: i64,
    pub id_number: String,
    pub field: Field,
    /// The department that reported the held value.
    pub source: String,
    /// The department whose word on the field is final.
    pub authority: Option<Source>,
    pub feed_id: i64,
    pub proposed: String,
    pub current: Option<String>,
    pub status: ReviewStatus,
    pub created_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub note: Option<String>,
}

fn mask_value(field: Field, v: &str) -> String {
    match field {
        Field::Name => resident::mask_name(v),
        Field::Phone => resident::mask_phone(v),
        Field::Address => resident::mask_address(v),
        Field::Residency => v.to_string(),
        Field::Assistance | Field::Student => "***".into(),
    }
}

impl Platform {
    /// Applies changes a department pushes over HTTP, as one feed (`channel` `api:changes`):
    /// the same rules as the CSV import — authoritative fields apply, contradictions from
    /// another department are held for review — and a reported graduation ends the student
    /// concession of the resident's cards. Invalid changes are reported by index (0-based)
    /// and the rest applied.
    pub async fn push_resident_changes(
        &self,
        caller: &Caller,
        source: Source,
        digest: String,
        changes: &[ResidentChange],
    ) -> Result<ImportReport> {
        Self::may_feed(caller, source)?;
        if changes.len() > PUSH_CHANGES_MAX {
            return Err(PlatformError::TooLarge {
                what: "the changes".into(),
                limit: format!("{PUSH_CHANGES_MAX} changes"),
            });
        }
        let today = self.clock.today();
        let mut rows = Vec::with_capacity(changes.len());
        let mut graduated = Vec::new();
        let mut rejects = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, c) in changes.iter().enumerate() {
            let v = |o: &Option<String>| o.clone().unwrap_or_default();
            let values = [
                v(&c.name),
                v(&c.phone),
                v(&c.address),
                v(&c.residency),
                v(&c.assistance),
                v(&c.student),
            ];
            let parsed =
                resident::parse_change(&c.id_number, values.each_ref().map(String::as_str), today);
            let facts = match parsed {
                Ok(f) => f,
                Err(e) => {
                    rejects.push(Reject {
                        row: i as u64,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let sealed = seal_facts(&self.vault, &facts)?;
            if !seen.insert(sealed.id_blind) {
                rejects.push(Reject {
                    row: i as u64,
                    reason: "id_number appears again in this request".into(),
                });
                continue;
            }
            if facts.student == Some(Student::Graduated) {
                graduated.push(sealed.id_blind);
            }
            rows.push(sealed);
        }
        let feed_id = self
            .store
            .feed_begin(
                &NewFeed {
                    source,
                    channel: "api:changes".into(),
                    digest: digest.clone(),
                },
                caller.draft(
                    "resident.feed.begin",
                    "",
                    format!("source={} digest={digest}", source.as_str()),
                ),
                self.clock.now_ms(),
            )
            .await?;
        let mut totals = FeedTotals {
            rows: changes.len() as u64,
            rejected: rejects.len() as u64,
            ..FeedTotals::default()
        };
        let mut held = 0;
        let mut concessions_ended = Vec::new();
        if !rows.is_empty() {
            let counts = self
                .store
                .residents_apply(
                    feed_id,
                    &rows,
                    caller.draft(
                        "resident.push",
                        format!("feed:{feed_id}"),
                        format!("rows={}", rows.len()),
                    ),
                    self.clock.now_ms(),
                )
                .await?;
            totals.inserted = counts.inserted;
            totals.updated = counts.updated;
            totals.unchanged = counts.unchanged;
            held = counts.held;
            concessions_ended = self.graduations_applied(caller, &graduated).await?;
        }
        self.store
            .feed_finish(feed_id, &totals, self.clock.now_ms())
            .await?;
        Ok(ImportReport {
            feed_id,
            source,
            totals,
            rejects,
            rejects_truncated: false,
            held,
            concessions_ended,
        })
    }

    /// For residents a feed reported as graduated: when the stored student status now says so
    /// (it applied, rather than being held), their student cards become ordinary cards, which
    /// ends the concession wherever the platform's card type is used (fares quoted from it,
    /// e-code certificates). Returns the card numbers changed.
    pub(crate) async fn graduations_applied(
        &self,
        caller: &Caller,
        graduated: &[BlindIndex],
    ) -> Result<Vec<String>> {
        let mut ended = Vec::new();
        for blind in graduated {
            let Some(row) = self.store.resident_by_blind(blind).await? else {
                continue;
            };
            let Some(sealed) = &row.student_sealed else {
                continue;
            };
            let status = self.vault.open_string(&ctx(blind, "student"), sealed)?;
            if status != Student::Graduated.as_str() {
                continue;
            }
            ended.extend(self.end_student_concession(caller, row.id).await?);
        }
        Ok(ended)
    }

    async fn end_student_concession(
        &self,
        caller: &Caller,
        resident_id: i64,
    ) -> Result<Vec<String>> {
        Ok(self
            .store
            .cards_end_student_concession(
                resident_id,
                caller.draft(
                    "card.concession.end",
                    format!("resident:{resident_id}"),
                    "education reports graduation: student card becomes ordinary",
                ),
                self.clock.now_ms(),
            )
            .await?)
    }

    fn may_review(caller: &Caller, field: Option<Field>) -> Result<()> {
        match caller.role {
            Role::Administrator => Ok(()),
            // A department officer decides the fields its department is the authority for.
            Role::DepartmentOfficer
                if field.is_none() || field.and_then(Field::authority) == caller.department =>
            {
                Ok(())
            }
            _ => Err(PlatformError::Forbidden(
                "held feed values are decided by an administrator or an officer of the field's \
                 authority"
                    .into(),
            )),
        }
    }

    async fn review_view(&self, r: ReviewRow, unmask: bool) -> Result<ReviewView> {
        let row = self
            .store
            .resident_by_id(r.resident_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("resident {}", r.resident_id)))?;
        let b = row.id_blind;
        let col = r.field.as_str();
        let id_number = self
            .vault
            .open_string(&ctx(&b, "id_number"), &row.id_sealed)?;
        let proposed = self.vault.open_string(&ctx(&b, col), &r.sealed)?;
        let current_sealed = match r.field {
            Field::Name => &row.name_sealed,
            Field::Phone => &row.phone_sealed,
            Field::Address => &row.address_sealed,
            Field::Assistance => &row.assistance_sealed,
            Field::Student => &row.student_sealed,
            Field::Residency => &None,
        };
        let current = current_sealed
            .as_ref()
            .map(|s| self.vault.open_string(&ctx(&b, col), s))
            .transpose()?;
        let (id_number, proposed, current) = if unmask {
            (id_number, proposed, current)
        } else {
            (
                resident::mask_id_number(&id_number),
                mask_value(r.field, &proposed),
                current.map(|c| mask_value(r.field, &c)),
            )
        };
        Ok(ReviewView {
            id: r.id,
            resident_id: r.resident_id,
            id_number,
            field: r.field,
            authority: r.field.authority(),
            source: r.source,
            feed_id: r.feed_id,
            proposed,
            current,
            status: r.status,
            created_ms: r.created_ms,
            decided_by: r.decided_by,
            decided_ms: r.decided_ms,
            note: r.note,
        })
    }

    /// The review queue, oldest first, masked unless `unmask` (audited as a read of the
    /// residents it shows).
    pub async fn feed_reviews(
        &self,
        caller: &Caller,
        status: Option<ReviewStatus>,
        after_id: i64,
        limit: u32,
        unmask: bool,
    ) -> Result<Vec<ReviewView>> {
        if let Err(e) = Self::may_review(caller, None) {
            self.audit(caller.draft("resident.review.denied", "", e.to_string()))
                .await?;
            return Err(e);
        }
        if unmask && !crate::residents::UNMASK_ROLES.contains(&caller.role) {
            return Err(PlatformError::Forbidden(
                "this role sees held values masked only".into(),
            ));
        }
        let mut rows = self.store.feed_reviews(status, after_id, limit).await?;
        // A department officer sees the values held on its own fields only.
        if caller.role == Role::DepartmentOfficer {
            rows.retain(|r| r.field.authority() == caller.department);
        }
        let ids: Vec<String> = rows.iter().map(|r| r.resident_id.to_string()).collect();
        self.audit(caller.draft(
            if unmask {
                "resident.unmask"
            } else {
                "resident.read"
            },
            format!("resident:{}", ids.join(",")),
            format!("review queue: {} held value(s)", rows.len()),
        ))
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.review_view(r, unmask).await?);
        }
        Ok(out)
    }

    /// Accepts or rejects a held value, once. Accepting applies it (with a history row from
    /// the feed that reported it); an accepted graduation ends the student concession.
    pub async fn feed_review_decide(
        &self,
        caller: &Caller,
        id: i64,
        accept: bool,
        note: &str,
    ) -> Result<ReviewView> {
        if note.chars().count() > 500 {
            return Err(PlatformError::invalid("note", "at most 500 characters"));
        }
        let review = self
            .store
            .feed_review(id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("review {id}")))?;
        if let Err(e) = Self::may_review(caller, Some(review.field)) {
            self.audit(caller.draft(
                "resident.review.denied",
                format!("review:{id}"),
                e.to_string(),
            ))
            .await?;
            return Err(e);
        }
        let row = self
            .store
            .resident_by_id(review.resident_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("resident {}", review.resident_id)))?;
        let b = row.id_blind;
        let value = self
            .vault
            .open_string(&ctx(&b, review.field.as_str()), &review.sealed)?;
        let change = serde_json::json!({ review.field.as_str(): value, "review": id });
        let change_sealed = self
            .vault
            .seal(&change_ctx(&b), change.to_string().as_bytes())?;
        let decided = self
            .store
            .feed_review_decide(
                id,
                accept,
                &caller.actor(),
                note,
                &change_sealed,
                caller.draft(
                    if accept {
                        "resident.review.accept"
                    } else {
                        "resident.review.reject"
                    },
                    format!("resident:{}", review.resident_id),
                    format!(
                        "review={id} field={} source={} note={note}",
                        review.field.as_str(),
                        review.source
                    ),
                ),
                self.clock.now_ms(),
            )
            .await?;
        if accept && review.field == Field::Student && value == Student::Graduated.as_str() {
            self.end_student_concession(caller, review.resident_id)
                .await?;
        }
        let decided = self
            .store
            .feed_review(decided.id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("review {id}")))?;
        self.review_view(decided, false).await
    }
}
