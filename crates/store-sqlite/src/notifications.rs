//! `NotificationStore` on SQLite.

use crate::{SqliteStore, append_audit, db};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use store::notifications::*;
use store::{PAGE_MAX, Result, StoreError};

fn prefs_row(r: &SqliteRow) -> Result<NotifyPrefsRow> {
    Ok(NotifyPrefsRow {
        resident_id: r.try_get("resident_id").map_err(db)?,
        language: r.try_get("language").map_err(db)?,
        sms_enabled: r.try_get("sms_enabled").map_err(db)?,
        phone_sealed: r.try_get("phone_sealed").map_err(db)?,
        updated_ms: r.try_get("updated_ms").map_err(db)?,
    })
}

fn notification_row(r: &SqliteRow) -> Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.try_get("id").map_err(db)?,
        key: r.try_get("key").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        channel: r.try_get("channel").map_err(db)?,
        template: r.try_get("template").map_err(db)?,
        language: r.try_get("language").map_err(db)?,
        body: r.try_get("body").map_err(db)?,
        phone_sealed: r.try_get("phone_sealed").map_err(db)?,
        status: r.try_get("status").map_err(db)?,
        attempts: r.try_get("attempts").map_err(db)?,
        next_attempt_ms: r.try_get("next_attempt_ms").map_err(db)?,
        last_error: r.try_get("last_error").map_err(db)?,
        gateway_ref: r.try_get("gateway_ref").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        done_ms: r.try_get("done_ms").map_err(db)?,
    })
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn notify_prefs_set(
        &self,
        p: &NotifyPrefsRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM residents WHERE id = ?")
            .bind(p.resident_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("resident {}", p.resident_id)));
        }
        sqlx::query(
            "INSERT INTO notify_prefs (resident_id, language, sms_enabled, phone_sealed, \
             updated_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (resident_id) DO UPDATE SET \
             language = excluded.language, sms_enabled = excluded.sms_enabled, \
             phone_sealed = excluded.phone_sealed, updated_ms = excluded.updated_ms",
        )
        .bind(p.resident_id)
        .bind(&p.language)
        .bind(p.sms_enabled)
        .bind(&p.phone_sealed)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn notify_prefs(&self, resident_id: i64) -> Result<Option<NotifyPrefsRow>> {
        sqlx::query("SELECT * FROM notify_prefs WHERE resident_id = ?")
            .bind(resident_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .map(|r| prefs_row(&r))
            .transpose()
    }

    async fn notify_prefs_many(&self, resident_ids: &[i64]) -> Result<Vec<NotifyPrefsRow>> {
        let mut out = Vec::new();
        for chunk in resident_ids.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT * FROM notify_prefs WHERE resident_id IN (",
            );
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            for r in q.build().fetch_all(&self.read).await.map_err(db)? {
                out.push(prefs_row(&r)?);
            }
        }
        Ok(out)
    }

    async fn notify_enqueue(&self, items: &[NewNotification], now_ms: i64) -> Result<u64> {
        if items.len() > NOTIFY_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: items.len(),
                max: NOTIFY_BATCH_MAX,
            });
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let mut new = 0;
        for chunk in items.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO notifications (key, resident_id, channel, template, language, body, \
                 phone_sealed, status, next_attempt_ms, created_ms) ",
            );
            q.push_values(chunk, |mut b, n| {
                b.push_bind(&n.key)
                    .push_bind(n.resident_id)
                    .push_bind(&n.channel)
                    .push_bind(&n.template)
                    .push_bind(&n.language)
                    .push_bind(&n.body)
                    .push_bind(&n.phone_sealed)
                    .push_bind(if n.channel == "sms" {
                        NOTIFY_PENDING
                    } else {
                        NOTIFY_UNREAD
                    })
                    .push_bind(now_ms)
                    .push_bind(now_ms);
            });
            q.push(" ON CONFLICT (key) DO NOTHING");
            new += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(new)
    }

    async fn notify_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRow>> {
        let limit = limit.min(NOTIFY_BATCH_MAX as u32);
        // One writer: the select and the update are one transaction, so no two claimers
        // take the same row. The due index is named: left to itself the planner takes the
        // status index and sorts every pending row (seconds per claim at a million pending).
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let rows = sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, next_attempt_ms = ? \
             WHERE id IN (SELECT id FROM notifications INDEXED BY notifications_due \
             WHERE status = 'pending' \
             AND next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?) RETURNING *",
        )
        .bind(now_ms.saturating_add(lease_ms))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut out = rows
            .iter()
            .map(notification_row)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn notify_finish(
        &self,
        id: i64,
        attempts: i32,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<bool> {
        let q = match outcome {
            DeliveryOutcome::Sent { gateway_ref } => sqlx::query(
                "UPDATE notifications SET status = 'sent', gateway_ref = ?, done_ms = ?, \
                 last_error = NULL WHERE id = ? AND status = 'pending' AND attempts = ?",
            )
            .bind(gateway_ref)
            .bind(now_ms),
            DeliveryOutcome::Retry {
                error,
                next_attempt_ms,
            } => sqlx::query(
                "UPDATE notifications SET last_error = ?, next_attempt_ms = ? \
                 WHERE id = ? AND status = 'pending' AND attempts = ?",
            )
            .bind(error)
            .bind(*next_attempt_ms),
            DeliveryOutcome::Failed { error } => sqlx::query(
                "UPDATE notifications SET status = 'failed', last_error = ?, done_ms = ? \
                 WHERE id = ? AND status = 'pending' AND attempts = ?",
            )
            .bind(error)
            .bind(now_ms),
        };
        let n = q
            .bind(id)
            .bind(attempts)
            .execute(&self.write)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn notification_by_key(&self, key: &str) -> Result<Option<NotificationRow>> {
        sqlx::query("SELECT * FROM notifications WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .map(|r| notification_row(&r))
            .transpose()
    }

    async fn notifications_of(
        &self,
        resident_id: i64,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>> {
        sqlx::query(
            "SELECT * FROM notifications WHERE resident_id = ? AND (? IS NULL OR channel = ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(resident_id)
        .bind(channel)
        .bind(channel)
        .bind(limit.min(PAGE_MAX))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(notification_row)
        .collect()
    }

    async fn notifications_page(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>> {
        sqlx::query(
            "SELECT * FROM notifications WHERE (? IS NULL OR status = ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(status)
        .bind(status)
        .bind(limit.min(PAGE_MAX))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(notification_row)
        .collect()
    }

    async fn notification_read(&self, id: i64, resident_id: i64, now_ms: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE notifications SET status = 'read', done_ms = ? \
             WHERE id = ? AND resident_id = ? AND status = 'unread'",
        )
        .bind(now_ms)
        .bind(id)
        .bind(resident_id)
        .execute(&self.write)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn notifications_unread(&self, resident_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM notifications \
             WHERE resident_id = ? AND channel = 'inapp' AND status = 'unread'",
        )
        .bind(resident_id)
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        row.try_get::<i64, _>("n").map_err(db)
    }

    async fn notify_counts(&self) -> Result<Vec<NotifyCount>> {
        let rows = sqlx::query(
            "SELECT channel, status, COUNT(*) AS n FROM notifications GROUP BY channel, status \
             ORDER BY channel, status",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(NotifyCount {
                    channel: r.try_get("channel").map_err(db)?,
                    status: r.try_get("status").map_err(db)?,
                    count: r.try_get("n").map_err(db)?,
                })
            })
            .collect()
    }
}
