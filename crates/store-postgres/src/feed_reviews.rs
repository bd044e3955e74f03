//! `FeedReviewStore` on PostgreSQL: the review queue of held feed values, and ending student
//! concessions.

use crate::{PgStore, append_audit, blind, db, lock_head};
use async_trait::async_trait;
use resident::{Field, Source};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use store::{
    FeedReviewStore, REVIEWS_LIST_MAX, Result, ReviewRow, ReviewStatus, SealedField, StoreError,
};

const COLS: &str = "id, resident_id, feed_id, source, field, mac, sealed, status, created_ms, \
    decided_by, decided_ms, note";

fn review_row(r: &PgRow) -> Result<ReviewRow> {
    let field: String = r.try_get("field").map_err(db)?;
    let status: String = r.try_get("status").map_err(db)?;
    Ok(ReviewRow {
        id: r.try_get("id").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        feed_id: r.try_get("feed_id").map_err(db)?,
        source: r.try_get("source").map_err(db)?,
        field: Field::parse(&field)
            .ok_or_else(|| StoreError::Corrupt(format!("review field {field}")))?,
        mac: blind(r, "mac")?,
        sealed: r.try_get("sealed").map_err(db)?,
        status: ReviewStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("review status {status}")))?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        decided_by: r.try_get("decided_by").map_err(db)?,
        decided_ms: r.try_get("decided_ms").map_err(db)?,
        note: r.try_get("note").map_err(db)?,
    })
}

/// Writes the held values of one `residents_apply` batch, inside its transaction.
pub(crate) async fn insert_held(
    conn: &mut PgConnection,
    feed_id: i64,
    source: Source,
    held: &[(i64, &SealedField)],
    now_ms: i64,
) -> Result<()> {
    for (resident_id, f) in held {
        sqlx::query(
            "INSERT INTO resident_reviews (resident_id, feed_id, source, field, mac, sealed, \
             status, created_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
        )
        .bind(resident_id)
        .bind(feed_id)
        .bind(source.as_str())
        .bind(f.field.as_str())
        .bind(&f.mac.0[..])
        .bind(&f.sealed)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl FeedReviewStore for PgStore {
    async fn feed_reviews(
        &self,
        status: Option<ReviewStatus>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ReviewRow>> {
        let sql = format!(
            "SELECT {COLS} FROM resident_reviews WHERE id > $1 AND ($2::TEXT IS NULL OR status = $2) \
             ORDER BY id LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(after_id)
            .bind(status.map(ReviewStatus::as_str))
            .bind(i64::from(limit.min(REVIEWS_LIST_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(review_row)
            .collect()
    }

    async fn feed_review(&self, id: i64) -> Result<Option<ReviewRow>> {
        let sql = format!("SELECT {COLS} FROM resident_reviews WHERE id = $1");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| review_row(&r))
            .transpose()
    }

    async fn feed_review_decide(
        &self,
        id: i64,
        accept: bool,
        decided_by: &str,
        note: &str,
        change_sealed: &[u8],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ReviewRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let status = if accept {
            ReviewStatus::Accepted
        } else {
            ReviewStatus::Rejected
        };
        let sql = format!(
            "UPDATE resident_reviews SET status = $1, decided_by = $2, decided_ms = $3, note = $4 \
             WHERE id = $5 AND status = 'pending' RETURNING {COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(decided_by)
            .bind(now_ms)
            .bind(note)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some(row) = row else {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT id FROM resident_reviews WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            return Err(match exists {
                None => StoreError::NotFound(format!("review {id}")),
                Some(_) => StoreError::Conflict(format!("review {id} is already decided")),
            });
        };
        let review = review_row(&row)?;
        if accept {
            let col = review.field.as_str();
            // The column names come from `Field`, never from input.
            let sql = format!(
                "UPDATE residents SET {col}_mac = $1, {col}_sealed = $2, updated_ms = $3, \
                 version = version + 1 WHERE id = $4"
            );
            sqlx::query(&sql)
                .bind(&review.mac.0[..])
                .bind(&review.sealed)
                .bind(now_ms)
                .bind(review.resident_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(
                "INSERT INTO resident_changes (resident_id, feed_id, fields_mask, values_sealed, \
                 at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(review.resident_id)
            .bind(review.feed_id)
            .bind(i16::from(review.field.bit()))
            .bind(change_sealed)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(review)
    }

    async fn cards_end_student_concession(
        &self,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let numbers: Vec<String> = sqlx::query_scalar(
            "UPDATE cards SET card_type = 'ordinary', updated_ms = $1, version = version + 1 \
             WHERE resident_id = $2 AND card_type = 'student' RETURNING number",
        )
        .bind(now_ms)
        .bind(resident_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if numbers.is_empty() {
            return Ok(numbers);
        }
        let mut audit = audit;
        audit.detail = format!("{} cards={}", audit.detail, numbers.join(","));
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(numbers)
    }
}
