//! `ApplicationStore` on PostgreSQL.

use crate::{append_audit, blind, db, lock_head};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use store::{ApplicationRow, ApplicationStore, EnrolmentRow, NewEnrolment, Result, StoreError};

use crate::PgStore;

fn application_row(r: &PgRow) -> Result<ApplicationRow> {
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

fn enrolment_row(r: &PgRow) -> Result<EnrolmentRow> {
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
impl ApplicationStore for PgStore {
    async fn card_application(&self, number: &str) -> Result<Option<ApplicationRow>> {
        sqlx::query("SELECT * FROM card_applications WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let row = sqlx::query(
            "INSERT INTO service_enrolments (resident_id, issuer_region, card_blind, card_sealed, \
             created_ms) VALUES ($1, $2, $3, $4, $5) RETURNING *",
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
        sqlx::query("SELECT * FROM service_enrolments WHERE resident_id = $1 ORDER BY id")
            .bind(resident_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(enrolment_row)
            .collect()
    }
}
