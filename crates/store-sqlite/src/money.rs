//! Money movements on SQLite: the movement row, its parent's returned amount and its ledger
//! transfers in one `BEGIN IMMEDIATE` transaction (the one writer makes every check and its
//! write atomic).

use crate::clearing::open_window;
use crate::ledger::{post_in, resolve_in};
use crate::{SqliteStore, append_audit, append_audit_many, db};
use ::ledger::Transfer;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use std::collections::HashMap;
use store::ledger::{PostOutcome, decode_digest};
use store::money::{
    MOVEMENTS_PAGE_MAX, MoneyStore, MovementKind, MovementRow, NewMovement, ParentChange, Recorded,
    Transition, Transitioned, Windows, batch_answers, check_many, check_new, clears,
    decode_movement_kind, fresh_items,
};
use store::{Result, StoreError};

fn movement_row(r: &SqliteRow) -> Result<MovementRow> {
    Ok(MovementRow {
        id: r.try_get("id").map_err(db)?,
        kind: decode_movement_kind(r.try_get("kind").map_err(db)?)?,
        request_key: r.try_get("request_key").map_err(db)?,
        digest: decode_digest(r.try_get("digest").map_err(db)?)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        card_number: r.try_get("card_number").map_err(db)?,
        counterparty: r.try_get("counterparty").map_err(db)?,
        amount: r.try_get("amount").map_err(db)?,
        returned: r.try_get("returned").map_err(db)?,
        parent_id: r.try_get("parent_id").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        external_ref: r.try_get("external_ref").map_err(db)?,
        detail: r.try_get("detail").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        updated_ms: r.try_get("updated_ms").map_err(db)?,
        window_id: r.try_get("window_id").map_err(db)?,
    })
}

async fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<Option<MovementRow>> {
    sqlx::query("SELECT * FROM money_movements WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(movement_row)
        .transpose()
}

/// Inserts movements, each with its clearing window, in multi-row statements (a group
/// commit's chunk is a thousand); the stored rows, in no set order.
async fn insert_movements(
    conn: &mut SqliteConnection,
    movements: &[(&NewMovement, Option<&str>)],
    now_ms: i64,
) -> Result<Vec<MovementRow>> {
    let mut out = Vec::with_capacity(movements.len());
    for chunk in movements.chunks(500) {
        let sql = format!(
            "INSERT INTO money_movements (kind, request_key, digest, resident_id, card_number, \
             counterparty, amount, parent_id, state, external_ref, detail, created_ms, \
             updated_ms, window_id) VALUES {} RETURNING *",
            crate::placeholders(chunk.len(), 14)
        );
        let mut q = sqlx::query(&sql);
        for (m, window) in chunk {
            q = q
                .bind(m.kind.as_str())
                .bind(&m.request_key)
                .bind(m.digest.to_vec())
                .bind(m.resident_id)
                .bind(&m.card_number)
                .bind(&m.counterparty)
                .bind(m.amount)
                .bind(m.parent_id)
                .bind(&m.state)
                .bind(&m.external_ref)
                .bind(&m.detail)
                .bind(now_ms)
                .bind(now_ms)
                .bind(*window);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
            out.push(movement_row(&r)?);
        }
    }
    Ok(out)
}

/// The clearing window a new movement is posted into, if it enters clearing (a payment, or a
/// refund or reversal of a payment that entered one): the window open at `now_ms` (see
/// `open_window`).
async fn window_for(
    conn: &mut SqliteConnection,
    windows: &Windows,
    m: &NewMovement,
    now_ms: i64,
) -> Result<Option<String>> {
    let parent_cleared = match (m.kind, m.parent_id) {
        (MovementKind::Refund | MovementKind::Reversal, Some(id)) => by_id(conn, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("money movement {id}")))?
            .window_id
            .is_some(),
        _ => false,
    };
    if !clears(m.kind, parent_cleared) {
        return Ok(None);
    }
    // The window open at `now_ms`, unless it closed while this movement waited for the lock.
    let (window, _) = open_window(conn, windows, &windows.window_of(now_ms), 0).await?;
    Ok(Some(window))
}

/// Posts `transfers` in the caller's transaction; `Err(outcome)` with the first refusal.
async fn post_all(
    conn: &mut SqliteConnection,
    transfers: &[Transfer],
    now_ms: i64,
) -> Result<std::result::Result<(), PostOutcome>> {
    if transfers.is_empty() {
        return Ok(Ok(()));
    }
    let (outcomes, _) = post_in(conn, transfers, now_ms).await?;
    Ok(
        match outcomes.into_iter().find(|o| o.accepted().is_none()) {
            None => Ok(()),
            Some(o) => Err(o),
        },
    )
}

#[async_trait]
impl MoneyStore for SqliteStore {
    async fn money_record(
        &self,
        m: &NewMovement,
        parent: Option<&ParentChange>,
        transfers: &[Transfer],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Recorded> {
        check_new(m, transfers)?;
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        if let Some(r) = sqlx::query("SELECT * FROM money_movements WHERE request_key = ?")
            .bind(&m.request_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
        {
            return Ok(Recorded::Existing(movement_row(&r)?));
        }
        if let Some(pc) = parent {
            let n = sqlx::query(
                "UPDATE money_movements SET returned = returned + ?1, \
                 state = COALESCE(?2, state), updated_ms = ?3 \
                 WHERE id = ?4 AND state = ?5 AND returned + ?1 <= amount \
                 AND (?6 IS NULL OR returned = ?6)",
            )
            .bind(pc.add)
            .bind(pc.set_state.as_deref())
            .bind(now_ms)
            .bind(pc.id)
            .bind(&pc.require_state)
            .bind(pc.returned_before)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if n != 1 {
                let now = by_id(&mut tx, pc.id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("money movement {}", pc.id)))?;
                return Ok(Recorded::ParentRefused(now));
            }
        }
        let window = window_for(&mut tx, &self.windows, m, now_ms).await?;
        let id = insert_movements(&mut tx, &[(m, window.as_deref())], now_ms)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("money movement not inserted".into()))?
            .id;
        match post_all(&mut tx, transfers, now_ms).await? {
            Ok(()) => {}
            Err(PostOutcome::Rejected(e)) => return Ok(Recorded::Rejected(e)),
            Err(o) => {
                return Err(StoreError::Conflict(format!(
                    "a transfer of money movement {}: {o:?}",
                    m.request_key
                )));
            }
        }
        append_audit(&mut tx, audit, now_ms).await?;
        let row = by_id(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("money movement vanished".into()))?;
        tx.commit().await.map_err(db)?;
        Ok(Recorded::Created(row))
    }

    async fn money_record_many(
        &self,
        items: &[(NewMovement, Transfer)],
        audits: &[audit::Draft],
        now_ms: i64,
    ) -> Result<Vec<Recorded>> {
        check_many(items, audits)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let mut existing: HashMap<String, MovementRow> = HashMap::new();
        for chunk in items.chunks(900) {
            let sql = format!(
                "SELECT * FROM money_movements WHERE request_key IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (m, _) in chunk {
                q = q.bind(&m.request_key);
            }
            for r in q.fetch_all(&mut *tx).await.map_err(db)? {
                let row = movement_row(&r)?;
                existing.insert(row.request_key.clone(), row);
            }
        }
        let fresh = fresh_items(items, &existing);
        let transfers: Vec<Transfer> = fresh.iter().map(|i| items[*i].1.clone()).collect();
        let (outcomes, _) = if transfers.is_empty() {
            (Vec::new(), 0)
        } else {
            post_in(&mut tx, &transfers, now_ms).await?
        };
        let mut done: HashMap<String, Recorded> = HashMap::new();
        let mut created = Vec::new();
        let mut applied: Vec<&NewMovement> = Vec::new();
        for (k, i) in fresh.iter().enumerate() {
            let m = &items[*i].0;
            match &outcomes[k] {
                PostOutcome::Applied { .. } => {
                    applied.push(m);
                    created.push(audits[*i].clone());
                }
                PostOutcome::Rejected(e) => {
                    done.insert(m.request_key.clone(), Recorded::Rejected(e.clone()));
                }
                o => {
                    return Err(StoreError::Conflict(format!(
                        "a transfer of money movement {}: {o:?}",
                        m.request_key
                    )));
                }
            }
        }
        // A group commit holds no refunds (no parents): payments take the open window.
        let (window, _) =
            open_window(&mut tx, &self.windows, &self.windows.window_of(now_ms), 0).await?;
        let rows: Vec<(&NewMovement, Option<&str>)> = applied
            .iter()
            .map(|m| (*m, clears(m.kind, false).then_some(window.as_str())))
            .collect();
        for row in insert_movements(&mut tx, &rows, now_ms).await? {
            done.insert(row.request_key.clone(), Recorded::Created(row));
        }
        if done.len() != fresh.len() {
            return Err(StoreError::Corrupt(format!(
                "{} of {} new money movements were answered",
                done.len(),
                fresh.len()
            )));
        }
        if !created.is_empty() {
            append_audit_many(&mut tx, created, now_ms).await?;
            tx.commit().await.map_err(db)?;
        }
        Ok(batch_answers(items, &existing, &done, &fresh))
    }

    async fn money_transition(
        &self,
        t: &Transition,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Transitioned> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE money_movements SET state = ?, detail = COALESCE(?, detail), updated_ms = ? \
             WHERE id = ? AND state = ?",
        )
        .bind(&t.to)
        .bind(t.detail.as_deref())
        .bind(now_ms)
        .bind(t.id)
        .bind(&t.from)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n != 1 {
            let now = by_id(&mut tx, t.id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("money movement {}", t.id)))?;
            return Ok(Transitioned::Stale(now));
        }
        if !t.resolves.is_empty() {
            let (outcomes, _) = resolve_in(&mut tx, &t.resolves, now_ms).await?;
            if let Some(o) = outcomes.iter().find(|o| o.accepted().is_none()) {
                return Err(StoreError::Corrupt(format!(
                    "money movement {}: resolving its transfer gave {o:?}",
                    t.id
                )));
            }
        }
        match post_all(&mut tx, &t.transfers, now_ms).await? {
            Ok(()) => {}
            Err(o) => {
                return Err(StoreError::Corrupt(format!(
                    "money movement {}: its transfer gave {o:?}",
                    t.id
                )));
            }
        }
        append_audit(&mut tx, audit, now_ms).await?;
        let row = by_id(&mut tx, t.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("money movement vanished".into()))?;
        tx.commit().await.map_err(db)?;
        Ok(Transitioned::Changed(row))
    }

    async fn money_by_id(&self, id: i64) -> Result<Option<MovementRow>> {
        sqlx::query("SELECT * FROM money_movements WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .as_ref()
            .map(movement_row)
            .transpose()
    }

    async fn money_by_key(&self, request_key: &str) -> Result<Option<MovementRow>> {
        sqlx::query("SELECT * FROM money_movements WHERE request_key = ?")
            .bind(request_key)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .as_ref()
            .map(movement_row)
            .transpose()
    }

    async fn money_by_ref(
        &self,
        kind: MovementKind,
        external_ref: &str,
    ) -> Result<Option<MovementRow>> {
        sqlx::query("SELECT * FROM money_movements WHERE kind = ? AND external_ref = ?")
            .bind(kind.as_str())
            .bind(external_ref)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .as_ref()
            .map(movement_row)
            .transpose()
    }

    async fn money_list(
        &self,
        kind: MovementKind,
        state: &str,
        card_number: Option<&str>,
        created_before_ms: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<MovementRow>> {
        sqlx::query(
            "SELECT * FROM money_movements WHERE kind = ? AND state = ? \
             AND (? IS NULL OR card_number = ?) AND created_ms <= ? AND id > ? \
             ORDER BY id LIMIT ?",
        )
        .bind(kind.as_str())
        .bind(state)
        .bind(card_number)
        .bind(card_number)
        .bind(created_before_ms)
        .bind(after_id)
        .bind(i64::from(limit.min(MOVEMENTS_PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(movement_row)
        .collect()
    }

    async fn money_children(&self, parent_id: i64) -> Result<Vec<MovementRow>> {
        sqlx::query("SELECT * FROM money_movements WHERE parent_id = ? ORDER BY id LIMIT ?")
            .bind(parent_id)
            .bind(i64::from(MOVEMENTS_PAGE_MAX))
            .fetch_all(&self.read)
            .await
            .map_err(db)?
            .iter()
            .map(movement_row)
            .collect()
    }

    fn money_windows_set(&self, calendar: ::ledger::WindowCalendar) {
        self.windows.set(calendar);
    }

    async fn money_of_window(
        &self,
        window_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<MovementRow>> {
        sqlx::query(
            "SELECT * FROM money_movements WHERE window_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(window_id)
        .bind(after_id)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(movement_row)
        .collect()
    }
}
