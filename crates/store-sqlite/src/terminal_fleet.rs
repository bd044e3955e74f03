//! `TerminalFleetStore` on SQLite.

use crate::{SqliteStore, db};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use store::{
    Result, StoreError, TerminalBatchRow, TerminalFleetStore, TerminalReport, TerminalStatusRow,
};

fn batch_row(r: &SqliteRow) -> Result<TerminalBatchRow> {
    Ok(TerminalBatchRow {
        terminal: r.try_get("terminal_id").map_err(db)?,
        batch_id: r.try_get("batch_id").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        digest: r.try_get("digest").map_err(db)?,
        records: r.try_get("records").map_err(db)?,
        answer: r.try_get("answer").map_err(db)?,
        received_ms: r.try_get("received_ms").map_err(db)?,
    })
}

/// The stored batch of a terminal, read in the caller's transaction.
pub(crate) async fn batch_stored(
    conn: &mut sqlx::SqliteConnection,
    terminal: &str,
    batch_id: &str,
) -> Result<Option<TerminalBatchRow>> {
    sqlx::query("SELECT * FROM terminal_batches WHERE terminal_id = ? AND batch_id = ?")
        .bind(terminal)
        .bind(batch_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(batch_row)
        .transpose()
}

/// Stores an answered batch and counts its records as uploaded, in the caller's transaction.
pub(crate) async fn batch_write(
    conn: &mut sqlx::SqliteConnection,
    row: &TerminalBatchRow,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO terminal_batches (terminal_id, batch_id, kind, digest, records, answer, \
         received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&row.terminal)
    .bind(&row.batch_id)
    .bind(&row.kind)
    .bind(&row.digest)
    .bind(row.records)
    .bind(&row.answer)
    .bind(row.received_ms)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO terminal_status (terminal_id, last_seen_ms, last_upload_ms, uploaded_records) \
         VALUES (?, ?, ?, ?) ON CONFLICT (terminal_id) DO UPDATE SET \
         last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), \
         last_upload_ms = excluded.last_upload_ms, \
         uploaded_records = uploaded_records + excluded.uploaded_records",
    )
    .bind(&row.terminal)
    .bind(row.received_ms)
    .bind(row.received_ms)
    .bind(row.records)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

fn status_row(r: &SqliteRow) -> Result<TerminalStatusRow> {
    Ok(TerminalStatusRow {
        terminal: r.try_get("terminal_id").map_err(db)?,
        last_seen_ms: r.try_get("last_seen_ms").map_err(db)?,
        last_upload_ms: r.try_get("last_upload_ms").map_err(db)?,
        uploaded_records: r.try_get("uploaded_records").map_err(db)?,
        records_pending: r.try_get("records_pending").map_err(db)?,
        parameters_version: r.try_get("parameters_version").map_err(db)?,
        deny_list_version: r.try_get("deny_list_version").map_err(db)?,
    })
}

#[async_trait]
impl TerminalFleetStore for SqliteStore {
    async fn terminal_psam_bind(
        &self,
        terminal: &str,
        psam_terminal_id: &str,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM terminals WHERE id = ?")
            .bind(terminal)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("terminal {terminal}")));
        }
        let bound: Option<String> =
            sqlx::query_scalar("SELECT psam_terminal_id FROM terminal_psams WHERE terminal_id = ?")
                .bind(terminal)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        match bound {
            Some(p) if p == psam_terminal_id => return Ok(()),
            Some(p) => {
                return Err(StoreError::Conflict(format!(
                    "terminal {terminal} is bound to PSAM {p}"
                )));
            }
            None => {}
        }
        sqlx::query(
            "INSERT INTO terminal_psams (terminal_id, psam_terminal_id, bound_ms) VALUES (?, ?, ?)",
        )
        .bind(terminal)
        .bind(psam_terminal_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "PSAM {psam_terminal_id} is bound to another terminal"
            )),
            other => other,
        })?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn terminal_psam(&self, terminal: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT psam_terminal_id FROM terminal_psams WHERE terminal_id = ?")
            .bind(terminal)
            .fetch_optional(&self.read)
            .await
            .map_err(db)
    }

    async fn terminal_batch(
        &self,
        terminal: &str,
        batch_id: &str,
    ) -> Result<Option<TerminalBatchRow>> {
        sqlx::query("SELECT * FROM terminal_batches WHERE terminal_id = ? AND batch_id = ?")
            .bind(terminal)
            .bind(batch_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .map(|r| batch_row(&r))
            .transpose()
    }

    async fn terminal_batch_insert(&self, row: &TerminalBatchRow) -> Result<TerminalBatchRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        if let Some(r) = batch_stored(&mut tx, &row.terminal, &row.batch_id).await? {
            return Ok(r);
        }
        batch_write(&mut tx, row).await?;
        tx.commit().await.map_err(db)?;
        Ok(row.clone())
    }

    async fn terminal_seen(
        &self,
        terminal: &str,
        now_ms: i64,
        report: Option<&TerminalReport>,
    ) -> Result<()> {
        let q = match report {
            None => sqlx::query(
                "INSERT INTO terminal_status (terminal_id, last_seen_ms) VALUES (?, ?) \
                 ON CONFLICT (terminal_id) DO UPDATE SET \
                 last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
            )
            .bind(terminal)
            .bind(now_ms),
            Some(r) => sqlx::query(
                "INSERT INTO terminal_status (terminal_id, last_seen_ms, records_pending, \
                 parameters_version, deny_list_version) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (terminal_id) DO UPDATE SET \
                 last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), \
                 records_pending = excluded.records_pending, \
                 parameters_version = excluded.parameters_version, \
                 deny_list_version = excluded.deny_list_version",
            )
            .bind(terminal)
            .bind(now_ms)
            .bind(r.records_pending)
            .bind(&r.parameters_version)
            .bind(r.deny_list_version),
        };
        q.execute(&self.write).await.map_err(db)?;
        Ok(())
    }

    async fn terminals_seen(&self, seen: &[(String, i64)]) -> Result<()> {
        let latest = store::latest_seen(seen);
        for chunk in latest.chunks(400) {
            let sql = format!(
                "INSERT INTO terminal_status (terminal_id, last_seen_ms) VALUES {} \
                 ON CONFLICT (terminal_id) DO UPDATE SET \
                 last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
                crate::placeholders(chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for (t, ms) in chunk {
                q = q.bind(*t).bind(*ms);
            }
            q.execute(&self.write).await.map_err(db)?;
        }
        Ok(())
    }

    async fn terminal_statuses(&self) -> Result<Vec<TerminalStatusRow>> {
        sqlx::query("SELECT * FROM terminal_status ORDER BY terminal_id LIMIT 100000")
            .fetch_all(&self.read)
            .await
            .map_err(db)?
            .iter()
            .map(status_row)
            .collect()
    }
}
