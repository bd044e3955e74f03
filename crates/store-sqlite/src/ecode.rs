//! E-code storage on SQLite: devices, root keys, certificates (see `store::EcodeStore`).
//! Devices leave with their card through the trigger of migration 0006.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use store::{
    CertificateRow, DEVICE_ACTIVE, DEVICE_REVOKED, DeviceRow, EcodeStore, NewDevice, ROOT_CURRENT,
    ROOT_RETIRED, ROOT_STANDBY, ROOT_WITHDRAWN, Result, RootKeyRow, StoreError,
};

use crate::{SqliteStore, append_audit, append_audit_many, db};

fn device_row(row: &SqliteRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        id: row.try_get("id").map_err(db)?,
        card_number: row.try_get("card_number").map_err(db)?,
        device_id: row.try_get("device_id").map_err(db)?,
        public_key: row.try_get("public_key").map_err(db)?,
        state: row.try_get("state").map_err(db)?,
        bound_ms: row.try_get("bound_ms").map_err(db)?,
        bound_by: row.try_get("bound_by").map_err(db)?,
        revoked_ms: row.try_get("revoked_ms").map_err(db)?,
        revoked_reason: row.try_get("revoked_reason").map_err(db)?,
        revoked_by: row.try_get("revoked_by").map_err(db)?,
    })
}

fn root_row(row: &SqliteRow) -> Result<RootKeyRow> {
    Ok(RootKeyRow {
        key_id: row.try_get("key_id").map_err(db)?,
        public_key: row.try_get("public_key").map_err(db)?,
        kek_id: row.try_get("kek_id").map_err(db)?,
        wrapped: row.try_get("wrapped").map_err(db)?,
        state: row.try_get("state").map_err(db)?,
        created_ms: row.try_get("created_ms").map_err(db)?,
        changed_ms: row.try_get("changed_ms").map_err(db)?,
    })
}

fn certificate_row(row: &SqliteRow) -> Result<CertificateRow> {
    Ok(CertificateRow {
        device: row.try_get("device").map_err(db)?,
        card_number: row.try_get("card_number").map_err(db)?,
        root_key_id: row.try_get("root_key_id").map_err(db)?,
        not_before_s: row.try_get("not_before_s").map_err(db)?,
        not_after_s: row.try_get("not_after_s").map_err(db)?,
        offline_limit_fen: row.try_get("offline_limit_fen").map_err(db)?,
        uses: row.try_get("uses").map_err(db)?,
        certificate: row.try_get("certificate").map_err(db)?,
        issued_by: row.try_get("issued_by").map_err(db)?,
    })
}

async fn card_state(conn: &mut SqliteConnection, number: &str) -> Result<String> {
    let row = sqlx::query("SELECT state FROM cards WHERE number = ?")
        .bind(number)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("card {number}")))?;
    row.try_get("state").map_err(db)
}

async fn root_state(conn: &mut SqliteConnection, key_id: i64) -> Result<String> {
    let row = sqlx::query("SELECT state FROM ecode_root_keys WHERE key_id = ?")
        .bind(key_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("e-code root key {key_id}")))?;
    row.try_get("state").map_err(db)
}

#[async_trait]
impl EcodeStore for SqliteStore {
    async fn device_bind(
        &self,
        device: &NewDevice,
        replaces: Option<i64>,
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<DeviceRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let state = card_state(&mut tx, &device.card_number).await?;
        if state != "active" {
            return Err(StoreError::Conflict(format!(
                "card {} is {state}: only an active card takes a device",
                device.card_number
            )));
        }
        let active: Option<i64> =
            sqlx::query("SELECT id FROM ecode_devices WHERE card_number = ? AND state = ?")
                .bind(&device.card_number)
                .bind(DEVICE_ACTIVE)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .map(|r| r.try_get("id"))
                .transpose()
                .map_err(db)?;
        if active != replaces {
            return Err(StoreError::Conflict(format!(
                "the devices of card {} changed meanwhile",
                device.card_number
            )));
        }
        if let Some(old) = active {
            sqlx::query(
                "UPDATE ecode_devices SET state = ?, revoked_ms = ?, revoked_reason = 'replaced', \
                 revoked_by = ? WHERE id = ?",
            )
            .bind(DEVICE_REVOKED)
            .bind(now_ms)
            .bind(&device.bound_by)
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let row = sqlx::query(
            "INSERT INTO ecode_devices (card_number, device_id, public_key, state, bound_ms, \
             bound_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(&device.card_number)
        .bind(&device.device_id)
        .bind(&device.public_key)
        .bind(DEVICE_ACTIVE)
        .bind(now_ms)
        .bind(&device.bound_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("this device key is already enrolled on another card".into())
            }
            e => e,
        })?;
        let row = device_row(&row)?;
        append_audit_many(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn device_revoke(
        &self,
        id: i64,
        reason: &str,
        by: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<DeviceRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let row = sqlx::query(
            "UPDATE ecode_devices SET state = ?, revoked_ms = ?, revoked_reason = ?, \
             revoked_by = ? WHERE id = ? AND state = ? RETURNING *",
        )
        .bind(DEVICE_REVOKED)
        .bind(now_ms)
        .bind(reason)
        .bind(by)
        .bind(id)
        .bind(DEVICE_ACTIVE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            let exists = sqlx::query("SELECT 1 FROM ecode_devices WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .is_some();
            return Err(if exists {
                StoreError::Conflict(format!("device {id} is already revoked"))
            } else {
                StoreError::NotFound(format!("device {id}"))
            });
        };
        let row = device_row(&row)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn device_by_id(&self, id: i64) -> Result<Option<DeviceRow>> {
        sqlx::query("SELECT * FROM ecode_devices WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .as_ref()
            .map(device_row)
            .transpose()
    }

    async fn devices_of_card(&self, card_number: &str) -> Result<Vec<DeviceRow>> {
        let rows =
            sqlx::query("SELECT * FROM ecode_devices WHERE card_number = ? ORDER BY id LIMIT 1000")
                .bind(card_number)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
        rows.iter().map(device_row).collect()
    }

    async fn ecode_roots(&self) -> Result<Vec<RootKeyRow>> {
        let rows = sqlx::query("SELECT * FROM ecode_root_keys ORDER BY key_id")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(root_row).collect()
    }

    async fn ecode_root_insert(
        &self,
        row: &RootKeyRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO ecode_root_keys (key_id, public_key, kek_id, wrapped, state, \
             created_ms, changed_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.key_id)
        .bind(&row.public_key)
        .bind(&row.kek_id)
        .bind(&row.wrapped)
        .bind(&row.state)
        .bind(row.created_ms)
        .bind(row.changed_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "e-code root key {} exists, or another key is current",
                row.key_id
            )),
            e => e,
        })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn ecode_root_rotate(&self, key_id: i64, audit: audit::Draft, now_ms: i64) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let state = root_state(&mut tx, key_id).await?;
        if state != ROOT_STANDBY {
            return Err(StoreError::Conflict(format!(
                "e-code root key {key_id} is {state}: only a standby key becomes current"
            )));
        }
        sqlx::query("UPDATE ecode_root_keys SET state = ?, changed_ms = ? WHERE state = ?")
            .bind(ROOT_RETIRED)
            .bind(now_ms)
            .bind(ROOT_CURRENT)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE ecode_root_keys SET state = ?, changed_ms = ? WHERE key_id = ?")
            .bind(ROOT_CURRENT)
            .bind(now_ms)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn ecode_root_withdraw(
        &self,
        key_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let state = root_state(&mut tx, key_id).await?;
        if state == ROOT_WITHDRAWN {
            return Err(StoreError::Conflict(format!(
                "e-code root key {key_id} is already withdrawn"
            )));
        }
        sqlx::query("UPDATE ecode_root_keys SET state = ?, changed_ms = ? WHERE key_id = ?")
            .bind(ROOT_WITHDRAWN)
            .bind(now_ms)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn ecode_certificate_insert(
        &self,
        row: &CertificateRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let device = sqlx::query("SELECT state, card_number FROM ecode_devices WHERE id = ?")
            .bind(row.device)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound(format!("device {}", row.device)))?;
        let device_state: String = device.try_get("state").map_err(db)?;
        let device_card: String = device.try_get("card_number").map_err(db)?;
        if device_state != DEVICE_ACTIVE || device_card != row.card_number {
            return Err(StoreError::Conflict(format!(
                "device {} is not enrolled on card {}",
                row.device, row.card_number
            )));
        }
        let state = card_state(&mut tx, &row.card_number).await?;
        if state != "active" {
            return Err(StoreError::Conflict(format!(
                "card {} is {state}",
                row.card_number
            )));
        }
        let root = root_state(&mut tx, row.root_key_id).await?;
        if root != ROOT_CURRENT {
            return Err(StoreError::Conflict(format!(
                "e-code root key {} is {root}, no longer current",
                row.root_key_id
            )));
        }
        sqlx::query(
            "INSERT INTO ecode_certificates (device, card_number, root_key_id, not_before_s, \
             not_after_s, offline_limit_fen, uses, certificate, issued_ms, issued_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.device)
        .bind(&row.card_number)
        .bind(row.root_key_id)
        .bind(row.not_before_s)
        .bind(row.not_after_s)
        .bind(row.offline_limit_fen)
        .bind(row.uses)
        .bind(&row.certificate)
        .bind(now_ms)
        .bind(&row.issued_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn ecode_certificates_of_card(
        &self,
        card_number: &str,
        limit: u32,
    ) -> Result<Vec<CertificateRow>> {
        let rows = sqlx::query(
            "SELECT * FROM ecode_certificates WHERE card_number = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(card_number)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(certificate_row).collect()
    }

    async fn ecode_payment(&self, key: &str) -> Result<Option<store::EcodePaymentRow>> {
        sqlx::query("SELECT * FROM ecode_payments WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .map(|r| ecode_payment_row(&r))
            .transpose()
    }

    async fn ecode_payment_insert(
        &self,
        row: &store::EcodePaymentRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO ecode_payments (key, card_number, certificate_digest, merchant, terminal, \
             amount_fen, code_time, state, payment_id, over_limit, created_ms, authorised) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.key)
        .bind(&row.card_number)
        .bind(&row.certificate_digest)
        .bind(&row.merchant)
        .bind(&row.terminal)
        .bind(row.amount_fen)
        .bind(row.code_time)
        .bind(&row.state)
        .bind(row.payment_id)
        .bind(i64::from(row.over_limit))
        .bind(now_ms)
        .bind(if row.online { "online" } else { "offline" })
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("e-code payment {}", row.key)),
            other => other,
        })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn ecode_spent_on_certificate(&self, certificate_digest: &str) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM ecode_payments \
             WHERE certificate_digest = ? AND authorised = 'offline'",
        )
        .bind(certificate_digest)
        .fetch_one(&self.read)
        .await
        .map_err(db)
    }

    async fn ecode_debts_of_card(&self, card_number: &str) -> Result<Vec<store::EcodePaymentRow>> {
        sqlx::query(
            "SELECT * FROM ecode_payments WHERE card_number = ? AND state = 'debt' \
             ORDER BY created_ms, key LIMIT 1000",
        )
        .bind(card_number)
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(ecode_payment_row)
        .collect()
    }

    async fn ecode_debt_settle(
        &self,
        key: &str,
        payment_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE ecode_payments SET state = 'settled', payment_id = ?, settled_ms = ? \
             WHERE key = ? AND state = 'debt'",
        )
        .bind(payment_id)
        .bind(now_ms)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "e-code payment {key} is not a debt"
            )));
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn ecode_stat_add(&self, day: &str, purpose: &str, reason: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO ecode_stats (day, purpose, reason, count) VALUES (?, ?, ?, 1) \
             ON CONFLICT (day, purpose, reason) DO UPDATE SET count = ecode_stats.count + 1",
        )
        .bind(day)
        .bind(purpose)
        .bind(reason)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn ecode_stats(&self, from_day: &str, to_day: &str) -> Result<Vec<store::EcodeStatRow>> {
        let rows = sqlx::query(
            "SELECT day, purpose, reason, count FROM ecode_stats WHERE day >= ? AND day <= ? \
             ORDER BY day, purpose, reason LIMIT 10000",
        )
        .bind(from_day)
        .bind(to_day)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(store::EcodeStatRow {
                    day: r.try_get("day").map_err(db)?,
                    purpose: r.try_get("purpose").map_err(db)?,
                    reason: r.try_get("reason").map_err(db)?,
                    count: r.try_get("count").map_err(db)?,
                })
            })
            .collect()
    }
}

fn ecode_payment_row(r: &sqlx::sqlite::SqliteRow) -> Result<store::EcodePaymentRow> {
    Ok(store::EcodePaymentRow {
        key: r.try_get("key").map_err(db)?,
        card_number: r.try_get("card_number").map_err(db)?,
        certificate_digest: r.try_get("certificate_digest").map_err(db)?,
        merchant: r.try_get("merchant").map_err(db)?,
        terminal: r.try_get("terminal").map_err(db)?,
        amount_fen: r.try_get("amount_fen").map_err(db)?,
        code_time: r.try_get("code_time").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        payment_id: r.try_get("payment_id").map_err(db)?,
        over_limit: r.try_get::<i64, _>("over_limit").map_err(db)? != 0,
        online: r.try_get::<String, _>("authorised").map_err(db)? == "online",
        created_ms: r.try_get("created_ms").map_err(db)?,
        settled_ms: r.try_get("settled_ms").map_err(db)?,
    })
}
