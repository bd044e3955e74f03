//! [`AppsStore`] on SQLite: the application registry and card function states.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use store::{
    AppRow, AppsStore, CardFunctionEventRow, CardFunctionRow, ChipUpdateEventRow, ChipUpdateRow,
    FunctionRow, Result, StoreError,
};

use crate::{SqliteStore, append_audit, db};

/// Maps a foreign-key failure to `NotFound` (of what the row refers to).
fn refs(e: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_foreign_key_violation()
    {
        return StoreError::NotFound(what.to_string());
    }
    db(e)
}

fn app_row(r: &SqliteRow) -> Result<AppRow> {
    Ok(AppRow {
        code: r.try_get("code").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        aid_hex: r.try_get("aid_hex").map_err(db)?,
        owner: r.try_get("owner").map_err(db)?,
        files_json: r.try_get("files_json").map_err(db)?,
        key_purposes: r.try_get("key_purposes").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn function_row(r: &SqliteRow) -> Result<FunctionRow> {
    Ok(FunctionRow {
        code: r.try_get("code").map_err(db)?,
        app: r.try_get("app").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        target_json: r.try_get("target_json").map_err(db)?,
        parameters_hex: r.try_get("parameters_hex").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn state_row(r: &SqliteRow) -> Result<CardFunctionRow> {
    Ok(CardFunctionRow {
        number: r.try_get("number").map_err(db)?,
        function: r.try_get("function").map_err(db)?,
        enabled: r.try_get("enabled").map_err(db)?,
        pending: r.try_get("pending").map_err(db)?,
        version: r.try_get("version").map_err(db)?,
        updated_ms: r.try_get("updated_ms").map_err(db)?,
    })
}

#[async_trait]
impl AppsStore for SqliteStore {
    async fn app_insert(&self, a: &AppRow, audit: audit::Draft, now_ms: i64) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO card_apps (code, name, aid_hex, owner, files_json, key_purposes, \
             created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.code)
        .bind(&a.name)
        .bind(&a.aid_hex)
        .bind(&a.owner)
        .bind(&a.files_json)
        .bind(&a.key_purposes)
        .bind(a.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("application {} or AID {}", a.code, a.aid_hex))
            }
            e => e,
        })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn apps_list(&self) -> Result<Vec<AppRow>> {
        let rows = sqlx::query("SELECT * FROM card_apps ORDER BY code")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(app_row).collect()
    }

    async fn function_insert(
        &self,
        f: &FunctionRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO card_app_functions (code, app, name, target_json, parameters_hex, \
             created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&f.code)
        .bind(&f.app)
        .bind(&f.name)
        .bind(&f.target_json)
        .bind(&f.parameters_hex)
        .bind(f.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match refs(e, &format!("application {}", f.app)) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("function {}", f.code)),
            e => e,
        })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn functions_list(&self) -> Result<Vec<FunctionRow>> {
        let rows = sqlx::query("SELECT * FROM card_app_functions ORDER BY app, code")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(function_row).collect()
    }

    async fn card_functions(&self, number: &str) -> Result<Vec<CardFunctionRow>> {
        let rows =
            sqlx::query("SELECT * FROM card_function_states WHERE number = ? ORDER BY function")
                .bind(number)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
        rows.iter().map(state_row).collect()
    }

    async fn card_function_set(
        &self,
        row: &CardFunctionRow,
        event: &CardFunctionEventRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let what = format!("card {} or function {}", row.number, row.function);
        let moved = || {
            StoreError::Conflict(format!(
                "function {} of card {} changed meanwhile (expected version {})",
                row.function,
                row.number,
                row.version - 1
            ))
        };
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        if row.version == 1 {
            sqlx::query(
                "INSERT INTO card_function_states (number, function, enabled, pending, version, \
                 updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&row.number)
            .bind(&row.function)
            .bind(row.enabled)
            .bind(row.pending)
            .bind(row.version)
            .bind(row.updated_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| match refs(e, &what) {
                StoreError::Conflict(_) => moved(),
                e => e,
            })?;
        } else {
            let done = sqlx::query(
                "UPDATE card_function_states SET enabled = ?, pending = ?, version = ?, \
                 updated_ms = ? WHERE number = ? AND function = ? AND version = ?",
            )
            .bind(row.enabled)
            .bind(row.pending)
            .bind(row.version)
            .bind(row.updated_ms)
            .bind(&row.number)
            .bind(&row.function)
            .bind(row.version - 1)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() != 1 {
                return Err(moved());
            }
        }
        sqlx::query(
            "INSERT INTO card_function_events (number, function, action, sw, actor, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.number)
        .bind(&event.function)
        .bind(&event.action)
        .bind(event.sw)
        .bind(&event.actor)
        .bind(event.at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| refs(e, &what))?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn card_function_events(&self, number: &str) -> Result<Vec<CardFunctionEventRow>> {
        let rows = sqlx::query(
            "SELECT number, function, action, sw, actor, at_ms FROM card_function_events \
             WHERE number = ? ORDER BY id LIMIT 1000",
        )
        .bind(number)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(CardFunctionEventRow {
                    number: r.try_get("number").map_err(db)?,
                    function: r.try_get("function").map_err(db)?,
                    action: r.try_get("action").map_err(db)?,
                    sw: r.try_get("sw").map_err(db)?,
                    actor: r.try_get("actor").map_err(db)?,
                    at_ms: r.try_get("at_ms").map_err(db)?,
                })
            })
            .collect()
    }

    async fn chip_updates(&self, number: &str) -> Result<Vec<ChipUpdateRow>> {
        let rows = sqlx::query(
            "SELECT number, item, value, version, state, updated_ms FROM card_chip_updates \
             WHERE number = ? ORDER BY item",
        )
        .bind(number)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state").map_err(db)?;
                Ok(ChipUpdateRow {
                    number: r.try_get("number").map_err(db)?,
                    item: r.try_get("item").map_err(db)?,
                    value: r.try_get("value").map_err(db)?,
                    version: r.try_get("version").map_err(db)?,
                    pending: state == "pending",
                    updated_ms: r.try_get("updated_ms").map_err(db)?,
                })
            })
            .collect()
    }

    async fn chip_update_record(
        &self,
        event: &ChipUpdateEventRow,
        applied: bool,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM card_chip_updates WHERE number = ? AND item = ?",
        )
        .bind(&event.number)
        .bind(&event.item)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "chip update {} of card {}",
                event.item, event.number
            )));
        }
        if applied {
            let done = sqlx::query(
                "UPDATE card_chip_updates SET state = 'applied', updated_ms = ? \
                 WHERE number = ? AND item = ? AND version = ? AND state = 'pending'",
            )
            .bind(now_ms)
            .bind(&event.number)
            .bind(&event.item)
            .bind(event.version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "chip update {} of card {} is no longer pending at version {}",
                    event.item, event.number, event.version
                )));
            }
        }
        sqlx::query(
            "INSERT INTO card_chip_update_events (number, item, value, version, action, sw, \
             actor, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.number)
        .bind(&event.item)
        .bind(&event.value)
        .bind(event.version)
        .bind(&event.action)
        .bind(event.sw)
        .bind(&event.actor)
        .bind(event.at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn chip_update_events(&self, number: &str) -> Result<Vec<ChipUpdateEventRow>> {
        let rows = sqlx::query(
            "SELECT number, item, value, version, action, sw, actor, at_ms \
             FROM card_chip_update_events WHERE number = ? ORDER BY id LIMIT 1000",
        )
        .bind(number)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ChipUpdateEventRow {
                    number: r.try_get("number").map_err(db)?,
                    item: r.try_get("item").map_err(db)?,
                    value: r.try_get("value").map_err(db)?,
                    version: r.try_get("version").map_err(db)?,
                    action: r.try_get("action").map_err(db)?,
                    sw: r.try_get("sw").map_err(db)?,
                    actor: r.try_get("actor").map_err(db)?,
                    at_ms: r.try_get("at_ms").map_err(db)?,
                })
            })
            .collect()
    }
}
