//! `CitizenStore` on SQLite.

use crate::{SqliteStore, append_audit, db};
use async_trait::async_trait;
use sqlx::Row;
use store::Result;
use store::citizens::*;

fn hash32(v: Vec<u8>) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| store::StoreError::Corrupt("stored hash is not 32 bytes".into()))
}

#[async_trait]
impl CitizenStore for SqliteStore {
    async fn citizen_password_set(
        &self,
        resident_id: i64,
        password_hash: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO citizen_passwords (resident_id, password_hash, set_ms) VALUES (?, ?, ?) \
             ON CONFLICT (resident_id) DO UPDATE SET password_hash = excluded.password_hash, \
             set_ms = excluded.set_ms",
        )
        .bind(resident_id)
        .bind(password_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn citizen_password(&self, resident_id: i64) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT password_hash FROM citizen_passwords WHERE resident_id = ?")
            .bind(resident_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)
    }

    async fn citizen_challenge_create(&self, c: &NewChallenge, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO citizen_challenges (id_hash, resident_id, purpose, code_hash, \
             expires_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id_hash[..])
        .bind(c.resident_id)
        .bind(&c.purpose)
        .bind(&c.code_hash[..])
        .bind(c.expires_ms)
        .bind(now_ms)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn citizen_challenges_since(&self, resident_id: i64, since_ms: i64) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM citizen_challenges WHERE resident_id = ? AND created_ms >= ?",
        )
        .bind(resident_id)
        .bind(since_ms)
        .fetch_one(&self.write)
        .await
        .map_err(db)
    }

    async fn citizen_challenge(&self, id_hash: &[u8; 32]) -> Result<Option<ChallengeRow>> {
        let Some(r) = sqlx::query("SELECT * FROM citizen_challenges WHERE id_hash = ?")
            .bind(&id_hash[..])
            .fetch_optional(&self.write)
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        Ok(Some(ChallengeRow {
            resident_id: r.try_get("resident_id").map_err(db)?,
            purpose: r.try_get("purpose").map_err(db)?,
            code_hash: hash32(r.try_get("code_hash").map_err(db)?)?,
            expires_ms: r.try_get("expires_ms").map_err(db)?,
            attempts: r.try_get("attempts").map_err(db)?,
            used_ms: r.try_get("used_ms").map_err(db)?,
            created_ms: r.try_get("created_ms").map_err(db)?,
        }))
    }

    async fn citizen_challenge_fail(&self, id_hash: &[u8; 32]) -> Result<i32> {
        let n: Option<i32> = sqlx::query_scalar(
            "UPDATE citizen_challenges SET attempts = attempts + 1 WHERE id_hash = ? \
             RETURNING attempts",
        )
        .bind(&id_hash[..])
        .fetch_optional(&self.write)
        .await
        .map_err(db)?;
        Ok(n.unwrap_or(CHALLENGE_ATTEMPTS_MAX))
    }

    async fn citizen_challenge_use(&self, id_hash: &[u8; 32], now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE citizen_challenges SET used_ms = ? WHERE id_hash = ? AND used_ms IS NULL",
        )
        .bind(now_ms)
        .bind(&id_hash[..])
        .execute(&self.write)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(done == 1)
    }

    async fn citizen_session_create(
        &self,
        token_hash: &[u8; 32],
        s: &CitizenSessionRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO citizen_sessions (token_hash, resident_id, kind, created_ms, expires_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token_hash[..])
        .bind(s.resident_id)
        .bind(&s.kind)
        .bind(now_ms)
        .bind(s.expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn citizen_session(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<CitizenSessionRow>> {
        let Some(r) = sqlx::query(
            "SELECT resident_id, kind, expires_ms FROM citizen_sessions WHERE token_hash = ? \
             AND revoked_ms IS NULL AND expires_ms > ?",
        )
        .bind(&token_hash[..])
        .bind(now_ms)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        Ok(Some(CitizenSessionRow {
            resident_id: r.try_get("resident_id").map_err(db)?,
            kind: r.try_get("kind").map_err(db)?,
            expires_ms: r.try_get("expires_ms").map_err(db)?,
        }))
    }

    async fn citizen_session_revoke(&self, token_hash: &[u8; 32], now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE citizen_sessions SET revoked_ms = ? WHERE token_hash = ? \
             AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(&token_hash[..])
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }
}
