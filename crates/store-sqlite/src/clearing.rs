//! `ClearingStore` on SQLite.

use crate::{append_audit, db};
use async_trait::async_trait;
use sqlx::Row;
use store::{ClearingLineRow, ClearingStore, ClearingWindowRow, Result};

use crate::SqliteStore;

fn line_row(r: &sqlx::sqlite::SqliteRow) -> Result<ClearingLineRow> {
    Ok(ClearingLineRow {
        window_id: r.try_get("window_id").map_err(db)?,
        merchant: r.try_get("merchant").map_err(db)?,
        category: r.try_get("category").map_err(db)?,
        count: r.try_get("count").map_err(db)?,
        gross_fen: r.try_get("gross_fen").map_err(db)?,
        fee_fen: r.try_get("fee_fen").map_err(db)?,
        net_fen: r.try_get("net_fen").map_err(db)?,
    })
}

#[async_trait]
impl ClearingStore for SqliteStore {
    async fn clearing_close(
        &self,
        window: &ClearingWindowRow,
        lines: &[ClearingLineRow],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT window_id FROM clearing_windows WHERE window_id = ?")
                .bind(&window.window_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO clearing_windows (window_id, closed_ms, closed_by, digest) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(&window.window_id)
        .bind(window.closed_ms)
        .bind(&window.closed_by)
        .bind(&window.digest)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for chunk in lines.chunks(100) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO clearing_lines (window_id, merchant, category, count, gross_fen, \
                 fee_fen, net_fen) ",
            );
            q.push_values(chunk, |mut b, l| {
                b.push_bind(&l.window_id)
                    .push_bind(&l.merchant)
                    .push_bind(&l.category)
                    .push_bind(l.count)
                    .push_bind(l.gross_fen)
                    .push_bind(l.fee_fen)
                    .push_bind(l.net_fen);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn clearing_window(&self, window_id: &str) -> Result<Option<ClearingWindowRow>> {
        sqlx::query("SELECT * FROM clearing_windows WHERE window_id = ?")
            .bind(window_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .map(|r| {
                Ok(ClearingWindowRow {
                    window_id: r.try_get("window_id").map_err(db)?,
                    closed_ms: r.try_get("closed_ms").map_err(db)?,
                    closed_by: r.try_get("closed_by").map_err(db)?,
                    digest: r.try_get("digest").map_err(db)?,
                })
            })
            .transpose()
    }

    async fn clearing_lines(&self, window_id: &str) -> Result<Vec<ClearingLineRow>> {
        sqlx::query(
            "SELECT * FROM clearing_lines WHERE window_id = ? ORDER BY merchant, category \
             LIMIT 100000",
        )
        .bind(window_id)
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(line_row)
        .collect()
    }
}
