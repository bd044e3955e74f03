//! `ApplicationStore` on SQLite.

use crate::{append_audit, blind, db};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use store::{ApplicationRow, ApplicationStore, EnrolmentRow, NewEnrolment, Result, StoreError};

use crate::SqliteStore;

fn application_row(r: &SqliteRow) -> Result<ApplicationRow> {
    Ok(ApplicationRow {
        number: r.try_get("number").map_err(db)?,
        channel: r.try_get("channel").map_err(db)?,
        delivery: r.try_get("delivery").map_err(db)?,
        outlet_code: r.try_get("outlet_code").map_err(db)?,
        photo_ref: r.try_get("photo_ref").map_err(db)?,
        guardian_resident_id: r.try_get("guardian_resident_id").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn enrolment_row(r: &SqliteRow) -> Result<EnrolmentRow> {
    Ok(EnrolmentRow {
        id: r.try_get("id").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        issuer_region: r.try_get("issuer_region").map_err(db)?,
        card_blind: blind(r, "card_blind")?,
        card_sealed: r.try_get("card_sealed").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        withdrawn_ms: r.try_get("withdrawn_ms").map_err(db)?,
    })
}

#[async_trait]
impl ApplicationStore for SqliteStore {
    async fn card_application(&self, number: &str) -> Result<Option<ApplicationRow>> {
        sqlx::query("SELECT * FROM card_applications WHERE number = ?")
            .bind(number)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .map(|r| application_row(&r))
            .transpose()
    }

    async fn enrolment_insert(
        &self,
        e: &NewEnrolment,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<EnrolmentRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let row = sqlx::query(
            "INSERT INTO service_enrolments (resident_id, issuer_region, card_blind, card_sealed, \
             created_ms) VALUES (?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(e.resident_id)
        .bind(&e.issuer_region)
        .bind(&e.card_blind.0[..])
        .bind(&e.card_sealed)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| match db(err) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("this resident or this card is already enrolled".into())
            }
            other => other,
        })?;
        let out = enrolment_row(&row)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn enrolments_of_resident(&self, resident_id: i64) -> Result<Vec<EnrolmentRow>> {
        sqlx::query("SELECT * FROM service_enrolments WHERE resident_id = ? ORDER BY id")
            .bind(resident_id)
            .fetch_all(&self.read)
            .await
            .map_err(db)?
            .iter()
            .map(enrolment_row)
            .collect()
    }
}
