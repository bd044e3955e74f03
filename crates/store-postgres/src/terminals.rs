//! `TerminalStore` on PostgreSQL.

use crate::{append_audit, db, lock_head};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use store::{MerchantRow, Result, StoreError, TerminalRow, TerminalStore};

use crate::PgStore;

fn merchant_row(r: &PgRow) -> Result<MerchantRow> {
    Ok(MerchantRow {
        code: r.try_get("code").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        category: r.try_get("category").map_err(db)?,
        settlement_account: r.try_get("settlement_account").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn terminal_row(r: &PgRow) -> Result<TerminalRow> {
    Ok(TerminalRow {
        id: r.try_get("id").map_err(db)?,
        merchant: r.try_get("merchant").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        site: r.try_get("site").map_err(db)?,
        status: r.try_get("status").map_err(db)?,
        activation_digest: r.try_get("activation_digest").map_err(db)?,
        public_key: r.try_get("public_key").map_err(db)?,
        psam_serial: r.try_get("psam_serial").map_err(db)?,
        software_version: r.try_get("software_version").map_err(db)?,
        registered_ms: r.try_get("registered_ms").map_err(db)?,
        activated_ms: r.try_get("activated_ms").map_err(db)?,
    })
}

#[async_trait]
impl TerminalStore for PgStore {
    async fn merchant_insert(
        &self,
        m: &MerchantRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO merchants (code, name, category, settlement_account, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&m.code)
        .bind(&m.name)
        .bind(&m.category)
        .bind(&m.settlement_account)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("merchant {}", m.code)),
            other => other,
        })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn merchant(&self, code: &str) -> Result<Option<MerchantRow>> {
        sqlx::query("SELECT * FROM merchants WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| merchant_row(&r))
            .transpose()
    }

    async fn merchants(&self) -> Result<Vec<MerchantRow>> {
        sqlx::query("SELECT * FROM merchants ORDER BY code LIMIT 10000")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(merchant_row)
            .collect()
    }

    async fn terminal_insert(
        &self,
        t: &TerminalRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT code FROM merchants WHERE code = $1")
                .bind(&t.merchant)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("merchant {}", t.merchant)));
        }
        sqlx::query(
            "INSERT INTO terminals (id, merchant, kind, site, status, activation_digest, \
             psam_serial, registered_ms) VALUES ($1, $2, $3, $4, 'registered', $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(&t.merchant)
        .bind(&t.kind)
        .bind(&t.site)
        .bind(&t.activation_digest)
        .bind(&t.psam_serial)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("terminal {}", t.id)),
            other => other,
        })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn terminal(&self, id: &str) -> Result<Option<TerminalRow>> {
        sqlx::query("SELECT * FROM terminals WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| terminal_row(&r))
            .transpose()
    }

    async fn terminals_of(&self, merchant: Option<&str>) -> Result<Vec<TerminalRow>> {
        sqlx::query(
            "SELECT * FROM terminals WHERE ($1::TEXT IS NULL OR merchant = $2) ORDER BY id LIMIT 10000",
        )
        .bind(merchant)
        .bind(merchant)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(terminal_row)
        .collect()
    }

    async fn terminal_activate(
        &self,
        id: &str,
        digest: &str,
        public_key: &[u8],
        software_version: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<TerminalRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE terminals SET status = 'active', public_key = $1, software_version = $2, \
             activated_ms = $3, activation_digest = NULL \
             WHERE id = $4 AND status = 'registered' AND activation_digest = $5",
        )
        .bind(public_key)
        .bind(software_version)
        .bind(now_ms)
        .bind(id)
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "terminal {id} is not waiting for this activation code"
            )));
        }
        append_audit(&mut tx, audit, now_ms).await?;
        let row = sqlx::query("SELECT * FROM terminals WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let out = terminal_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }
}
