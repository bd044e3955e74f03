//! `ExchangeOversightStore` on PostgreSQL.

use crate::exchange::access_row;
use crate::{PgStore, db};
use async_trait::async_trait;
use sqlx::Row;
use store::{
    AccessQuery, AccessRow, ConsentStat, EXCHANGE_LIST_MAX, ExchangeOversightStore, Result,
};

#[async_trait]
impl ExchangeOversightStore for PgStore {
    async fn accesses_search(&self, q: &AccessQuery) -> Result<Vec<AccessRow>> {
        sqlx::query(
            "SELECT * FROM exchange_access WHERE ($1::TEXT IS NULL OR consumer = $1) \
             AND ($2::TEXT IS NULL OR service = $2) AND ($3::BIGINT IS NULL OR resident_id = $3) \
             AND ($4::TEXT IS NULL OR outcome = $4) AND ($5::BIGINT IS NULL OR at_ms >= $5) \
             AND ($6::BIGINT IS NULL OR at_ms < $6) AND ($7::BIGINT IS NULL OR id < $7) \
             ORDER BY id DESC LIMIT $8",
        )
        .bind(q.consumer.as_deref())
        .bind(q.service.as_deref())
        .bind(q.resident_id)
        .bind(q.outcome.as_deref())
        .bind(q.from_ms)
        .bind(q.until_ms)
        .bind(q.before_id)
        .bind(i64::from(q.limit.min(EXCHANGE_LIST_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(access_row)
        .collect()
    }

    async fn consent_stats(&self, now_ms: i64) -> Result<Vec<ConsentStat>> {
        sqlx::query(
            "SELECT consumer, service, \
             COUNT(*) FILTER (WHERE revoked_ms IS NULL AND expires_ms > $1) AS active, \
             COUNT(*) FILTER (WHERE revoked_ms IS NOT NULL) AS revoked, \
             COUNT(*) FILTER (WHERE revoked_ms IS NULL AND expires_ms <= $1) AS expired \
             FROM exchange_consents GROUP BY consumer, service ORDER BY consumer, service LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let n = |c: &str| -> Result<u64> {
                let v: i64 = r.try_get(c).map_err(db)?;
                Ok(v.max(0) as u64)
            };
            Ok(ConsentStat {
                consumer: r.try_get("consumer").map_err(db)?,
                service: r.try_get("service").map_err(db)?,
                active: n("active")?,
                revoked: n("revoked")?,
                expired: n("expired")?,
            })
        })
        .collect()
    }
}
