//! `CreditStore` on PostgreSQL.

use crate::{PgStore, append_audit, db, lock_head};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use store::credit::*;
use store::{PAGE_MAX, Result, StoreError};

fn signal_row(r: &PgRow) -> Result<SignalRow> {
    Ok(SignalRow {
        id: r.try_get("id").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        key: r.try_get("key").map_err(db)?,
        quantity: r.try_get("quantity").map_err(db)?,
        day: r.try_get("day").map_err(db)?,
        source: r.try_get("source").map_err(db)?,
        struck: r.try_get("struck").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn score_row(r: &PgRow) -> Result<ScoreRow> {
    Ok(ScoreRow {
        resident_id: r.try_get("resident_id").map_err(db)?,
        day: r.try_get("day").map_err(db)?,
        score: r.try_get("score").map_err(db)?,
        factors: r.try_get("factors").map_err(db)?,
        computed_ms: r.try_get("computed_ms").map_err(db)?,
    })
}

fn dispute_row(r: &PgRow) -> Result<DisputeRow> {
    Ok(DisputeRow {
        id: r.try_get("id").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        signal_id: r.try_get("signal_id").map_err(db)?,
        reason: r.try_get("reason").map_err(db)?,
        status: r.try_get("status").map_err(db)?,
        officer: r.try_get("officer").map_err(db)?,
        note: r.try_get("note").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        resolved_ms: r.try_get("resolved_ms").map_err(db)?,
    })
}

#[async_trait]
impl CreditStore for PgStore {
    async fn credit_opt_in(
        &self,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM residents WHERE id = $1")
            .bind(resident_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("resident {resident_id}")));
        }
        let n = sqlx::query(
            "INSERT INTO credit_enrolments (resident_id, opted_in_ms) VALUES ($1, $2) \
             ON CONFLICT (resident_id) DO NOTHING",
        )
        .bind(resident_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn credit_opt_out(
        &self,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let n = sqlx::query("DELETE FROM credit_enrolments WHERE resident_id = $1")
            .bind(resident_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM credit_disputes WHERE resident_id = $1",
            "DELETE FROM credit_scores WHERE resident_id = $1",
            "DELETE FROM credit_signals WHERE resident_id = $1",
        ] {
            sqlx::query(sql)
                .bind(resident_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn credit_enrolled(&self, resident_id: i64) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT opted_in_ms FROM credit_enrolments WHERE resident_id = $1")
            .bind(resident_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn credit_signals_record(&self, signals: &[NewSignal], now_ms: i64) -> Result<u64> {
        if signals.len() > SIGNAL_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: signals.len(),
                max: SIGNAL_BATCH_MAX,
            });
        }
        if signals.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        // One statement for the batch (a bill run records a chunk's signals at once).
        let n = sqlx::query(
            "INSERT INTO credit_signals (resident_id, kind, key, quantity, day, source, \
             created_ms) SELECT v.resident_id, v.kind, v.key, v.quantity, v.day, v.source, $7 \
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
             $6::TEXT[]) AS v(resident_id, kind, key, quantity, day, source) WHERE EXISTS \
             (SELECT 1 FROM credit_enrolments e WHERE e.resident_id = v.resident_id) \
             ON CONFLICT (resident_id, key) DO NOTHING",
        )
        .bind(signals.iter().map(|s| s.resident_id).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| s.key.as_str()).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| s.quantity).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| s.day).collect::<Vec<_>>())
        .bind(
            signals
                .iter()
                .map(|s| s.source.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn credit_signals(&self, resident_id: i64, since_day: i64) -> Result<Vec<SignalRow>> {
        sqlx::query(
            "SELECT * FROM credit_signals WHERE resident_id = $1 AND day >= $2 \
             ORDER BY day, id LIMIT 10000",
        )
        .bind(resident_id)
        .bind(since_day)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(signal_row)
        .collect()
    }

    async fn credit_score_save(&self, s: &ScoreRow, audit: audit::Draft) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO credit_scores (resident_id, day, score, factors, computed_ms) \
             SELECT $1::BIGINT, $2::BIGINT, $3::BIGINT, $4::TEXT, $5::BIGINT WHERE EXISTS \
             (SELECT 1 FROM credit_enrolments WHERE resident_id = $1) \
             ON CONFLICT (resident_id, day) DO UPDATE SET score = excluded.score, \
             factors = excluded.factors, computed_ms = excluded.computed_ms",
        )
        .bind(s.resident_id)
        .bind(s.day)
        .bind(s.score)
        .bind(&s.factors)
        .bind(s.computed_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, s.computed_ms).await?;
        tx.commit().await.map_err(db)
    }

    async fn credit_scores(&self, resident_id: i64, limit: u32) -> Result<Vec<ScoreRow>> {
        sqlx::query("SELECT * FROM credit_scores WHERE resident_id = $1 ORDER BY day DESC LIMIT $2")
            .bind(resident_id)
            .bind(i64::from(limit.min(PAGE_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(score_row)
            .collect()
    }

    async fn credit_dispute_open(
        &self,
        resident_id: i64,
        signal_id: i64,
        reason: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DisputeRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let mine: Option<i64> =
            sqlx::query_scalar("SELECT id FROM credit_signals WHERE id = $1 AND resident_id = $2")
                .bind(signal_id)
                .bind(resident_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if mine.is_none() {
            return Err(StoreError::NotFound(format!(
                "signal {signal_id} of this resident"
            )));
        }
        let r = sqlx::query(
            "INSERT INTO credit_disputes (resident_id, signal_id, reason, status, created_ms) \
             VALUES ($1, $2, $3, 'open', $4) RETURNING *",
        )
        .bind(resident_id)
        .bind(signal_id)
        .bind(reason)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("an open dispute about signal {signal_id}"))
            }
            e => e,
        })?;
        let row = dispute_row(&r)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn credit_dispute_resolve(
        &self,
        id: i64,
        uphold: bool,
        officer: &str,
        note: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Option<DisputeRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let Some(r) = sqlx::query(
            "UPDATE credit_disputes SET status = $2, officer = $3, note = $4, resolved_ms = $5 \
             WHERE id = $1 AND status = 'open' RETURNING *",
        )
        .bind(id)
        .bind(if uphold {
            DISPUTE_UPHELD
        } else {
            DISPUTE_REJECTED
        })
        .bind(officer)
        .bind(note)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let row = dispute_row(&r)?;
        if uphold {
            sqlx::query("UPDATE credit_signals SET struck = TRUE WHERE id = $1")
                .bind(row.signal_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(row))
    }

    async fn credit_dispute(&self, id: i64) -> Result<Option<DisputeRow>> {
        sqlx::query("SELECT * FROM credit_disputes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(dispute_row)
            .transpose()
    }

    async fn credit_disputes(&self, status: Option<&str>, limit: u32) -> Result<Vec<DisputeRow>> {
        sqlx::query(
            "SELECT * FROM credit_disputes WHERE ($1::TEXT IS NULL OR status = $1) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(status)
        .bind(i64::from(limit.min(PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(dispute_row)
        .collect()
    }

    async fn credit_disputes_of(&self, resident_id: i64) -> Result<Vec<DisputeRow>> {
        sqlx::query(
            "SELECT * FROM credit_disputes WHERE resident_id = $1 ORDER BY id DESC LIMIT 500",
        )
        .bind(resident_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(dispute_row)
        .collect()
    }
}
