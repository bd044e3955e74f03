//! `DisbursementStore` on SQLite.

use crate::{append_audit, db};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use store::{
    DISBURSEMENT_PAGE_MAX, DisbursementLineRow, DisbursementRow, DisbursementStore, LineOutcome,
    NewDisbursement, NewDisbursementLine, ReceivedRow, Result, StoreError,
};

use crate::SqliteStore;

/// A batch with its line counts, derived from the lines (never kept twice).
const BATCH_SELECT: &str = "SELECT b.*, \
     (SELECT COUNT(*) FROM disbursement_lines l WHERE l.batch_id = b.id) AS n_lines, \
     (SELECT COUNT(*) FROM disbursement_lines l WHERE l.batch_id = b.id AND l.outcome = 'pending') AS n_pending, \
     (SELECT COUNT(*) FROM disbursement_lines l WHERE l.batch_id = b.id AND l.outcome = 'paid') AS n_paid, \
     (SELECT COALESCE(SUM(amount_fen), 0) FROM disbursement_lines l WHERE l.batch_id = b.id AND l.outcome = 'paid') AS paid_fen, \
     (SELECT COUNT(*) FROM disbursement_lines l WHERE l.batch_id = b.id AND l.outcome = 'rejected') AS n_rejected, \
     (SELECT COALESCE(SUM(amount_fen), 0) FROM disbursement_lines l WHERE l.batch_id = b.id AND l.resident_id IS NOT NULL) AS total_fen \
     FROM disbursement_batches b";

fn batch_row(r: &SqliteRow) -> Result<DisbursementRow> {
    Ok(DisbursementRow {
        id: r.try_get("id").map_err(db)?,
        department: r.try_get("department").map_err(db)?,
        label: r.try_get("label").map_err(db)?,
        digest: r.try_get("digest").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        submitted_by: r.try_get("submitted_by").map_err(db)?,
        submitted_ms: r.try_get("submitted_ms").map_err(db)?,
        decided_by: r.try_get("decided_by").map_err(db)?,
        decided_ms: r.try_get("decided_ms").map_err(db)?,
        lines: r.try_get("n_lines").map_err(db)?,
        pending_lines: r.try_get("n_pending").map_err(db)?,
        paid_lines: r.try_get("n_paid").map_err(db)?,
        paid_fen: r.try_get("paid_fen").map_err(db)?,
        rejected_lines: r.try_get("n_rejected").map_err(db)?,
        total_fen: r.try_get("total_fen").map_err(db)?,
    })
}

fn line_row(r: &SqliteRow) -> Result<DisbursementLineRow> {
    Ok(DisbursementLineRow {
        batch_id: r.try_get("batch_id").map_err(db)?,
        line: r.try_get("line").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        benefit: r.try_get("benefit").map_err(db)?,
        earmark: r.try_get("earmark").map_err(db)?,
        amount_fen: r.try_get("amount_fen").map_err(db)?,
        outcome: r.try_get("outcome").map_err(db)?,
        reason: r.try_get("reason").map_err(db)?,
        transfer_id: r.try_get("transfer_id").map_err(db)?,
    })
}

impl SqliteStore {
    async fn batch_in<'e, E>(&self, exec: E, id: i64) -> Result<Option<DisbursementRow>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        sqlx::query(&format!("{BATCH_SELECT} WHERE b.id = ?"))
            .bind(id)
            .fetch_optional(exec)
            .await
            .map_err(db)?
            .map(|r| batch_row(&r))
            .transpose()
    }
}

#[async_trait]
impl DisbursementStore for SqliteStore {
    async fn disbursement_submit(
        &self,
        batch: &NewDisbursement,
        lines: &[NewDisbursementLine],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<(DisbursementRow, bool)> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM disbursement_batches WHERE department = ? AND digest = ?",
        )
        .bind(&batch.department)
        .bind(&batch.digest)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(id) = existing {
            let row = self
                .batch_in(&mut *tx, id)
                .await?
                .ok_or_else(|| StoreError::Conflict("batch vanished".into()))?;
            return Ok((row, false));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO disbursement_batches (department, label, digest, state, submitted_by, \
             submitted_ms) VALUES (?, ?, ?, 'submitted', ?, ?) RETURNING id",
        )
        .bind(&batch.department)
        .bind(&batch.label)
        .bind(&batch.digest)
        .bind(batch.submitted_by)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        // Multi-row inserts, 100 lines (900 parameters) per statement.
        for chunk in lines.chunks(100) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO disbursement_lines (batch_id, line, resident_id, benefit, earmark, \
                 amount_fen, outcome, reason, transfer_id) ",
            );
            q.push_values(chunk, |mut b, l| {
                b.push_bind(id)
                    .push_bind(l.line)
                    .push_bind(l.resident_id)
                    .push_bind(&l.benefit)
                    .push_bind(&l.earmark)
                    .push_bind(l.amount_fen)
                    .push_bind(&l.outcome)
                    .push_bind(&l.reason)
                    .push_bind(None::<i64>);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        let row = self
            .batch_in(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Conflict("batch vanished".into()))?;
        tx.commit().await.map_err(db)?;
        Ok((row, true))
    }

    async fn disbursement(&self, id: i64) -> Result<Option<DisbursementRow>> {
        self.batch_in(&self.read, id).await
    }

    async fn disbursements(
        &self,
        department: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DisbursementRow>> {
        sqlx::query(&format!(
            "{BATCH_SELECT} WHERE (? IS NULL OR b.department = ?) ORDER BY b.id DESC LIMIT ?"
        ))
        .bind(department)
        .bind(department)
        .bind(i64::from(limit.min(DISBURSEMENT_PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(batch_row)
        .collect()
    }

    async fn disbursement_lines(
        &self,
        id: i64,
        after_line: i64,
        limit: u32,
    ) -> Result<Vec<DisbursementLineRow>> {
        sqlx::query(
            "SELECT * FROM disbursement_lines WHERE batch_id = ? AND line > ? \
             ORDER BY line LIMIT ?",
        )
        .bind(id)
        .bind(after_line)
        .bind(i64::from(limit.min(DISBURSEMENT_PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(line_row)
        .collect()
    }

    async fn disbursement_decide(
        &self,
        id: i64,
        approver: i64,
        approve: bool,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DisbursementRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE disbursement_batches SET state = ?, decided_by = ?, decided_ms = ? \
             WHERE id = ? AND state = 'submitted'",
        )
        .bind(if approve { "approved" } else { "rejected" })
        .bind(approver)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let row = self
            .batch_in(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("disbursement batch {id}")))?;
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "disbursement batch {id} is {}, not submitted",
                row.state
            )));
        }
        if !approve {
            sqlx::query(
                "UPDATE disbursement_lines SET outcome = 'rejected', \
                 reason = 'the batch was rejected' WHERE batch_id = ? AND outcome = 'pending'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        let row = self
            .batch_in(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("disbursement batch {id}")))?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn disbursement_record(
        &self,
        id: i64,
        outcomes: &[LineOutcome],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DisbursementRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM disbursement_batches WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        match state.as_deref() {
            None => return Err(StoreError::NotFound(format!("disbursement batch {id}"))),
            Some("approved") | Some("paid") => {}
            Some(s) => {
                return Err(StoreError::Conflict(format!(
                    "disbursement batch {id} is {s}: only an approved batch is paid"
                )));
            }
        }
        for o in outcomes {
            sqlx::query(
                "UPDATE disbursement_lines SET outcome = ?, transfer_id = ?, reason = ? \
                 WHERE batch_id = ? AND line = ? AND outcome = 'pending'",
            )
            .bind(if o.paid { "paid" } else { "rejected" })
            .bind(o.transfer_id)
            .bind(&o.reason)
            .bind(id)
            .bind(o.line)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(
            "UPDATE disbursement_batches SET state = 'paid', paid_ms = ? WHERE id = ? \
             AND state = 'approved' AND NOT EXISTS (SELECT 1 FROM disbursement_lines \
             WHERE batch_id = ? AND outcome = 'pending')",
        )
        .bind(now_ms)
        .bind(id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        let row = self
            .batch_in(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("disbursement batch {id}")))?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn disbursements_of_resident(
        &self,
        resident_id: i64,
        limit: u32,
    ) -> Result<Vec<ReceivedRow>> {
        let rows = sqlx::query(
            "SELECT l.*, b.department, b.label, b.paid_ms FROM disbursement_lines l \
             JOIN disbursement_batches b ON b.id = l.batch_id \
             WHERE l.resident_id = ? AND l.outcome IN ('paid', 'pending') \
             AND b.state IN ('submitted', 'approved', 'paid') \
             ORDER BY l.batch_id DESC, l.line LIMIT ?",
        )
        .bind(resident_id)
        .bind(i64::from(limit.min(DISBURSEMENT_PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ReceivedRow {
                    batch_id: r.try_get("batch_id").map_err(db)?,
                    department: r.try_get("department").map_err(db)?,
                    label: r.try_get("label").map_err(db)?,
                    paid_ms: r.try_get("paid_ms").map_err(db)?,
                    line: line_row(r)?,
                })
            })
            .collect()
    }
}
