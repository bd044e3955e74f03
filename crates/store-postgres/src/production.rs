//! [`ProductionStore`] on PostgreSQL: outlets and clerks, production batches, chip serials,
//! outlet stock, the counter journal and day closings. Every write transaction takes the audit
//! head lock first; the card changes of a batch are applied with one `UNNEST` statement each
//! for the cards and their events.

use crate::{PgStore, append_audit, append_audit_many, apply_change, card_row, db, lock_head};
use async_trait::async_trait;
use keys::BlindIndex;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use store::{
    BatchCardRow, BatchOutcome, BatchRow, CardChange, CardRow, ChipRow, ClosingAudit, ClosingRow,
    CounterAct, JournalEntry, JournalRow, NewBatch, NewClosing, NewOutlet, OutletRow,
    ProductionCandidate, ProductionStore, Result, StoreError,
};

fn outlet_row(r: &PgRow) -> Result<OutletRow> {
    Ok(OutletRow {
        id: r.try_get("id").map_err(db)?,
        code: r.try_get("code").map_err(db)?,
        name_zh: r.try_get("name_zh").map_err(db)?,
        name_en: r.try_get("name_en").map_err(db)?,
        address: r.try_get("address").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn batch_row(r: &PgRow) -> Result<BatchRow> {
    Ok(BatchRow {
        id: r.try_get("id").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        algorithm: r.try_get("algorithm").map_err(db)?,
        key_version: r.try_get("key_version").map_err(db)?,
        transport_key: r.try_get("transport_key").map_err(db)?,
        start_date: r.try_get("start_date").map_err(db)?,
        expiry_date: r.try_get("expiry_date").map_err(db)?,
        card_count: r.try_get("card_count").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        created_by: r.try_get("created_by").map_err(db)?,
        exports: r.try_get("exports").map_err(db)?,
        export_digest: r.try_get("export_digest").map_err(db)?,
        exported_ms: r.try_get("exported_ms").map_err(db)?,
        import_digest: r.try_get("import_digest").map_err(db)?,
        imported_ms: r.try_get("imported_ms").map_err(db)?,
        produced: r.try_get("produced").map_err(db)?,
        failed: r.try_get("failed").map_err(db)?,
        distributed: r.try_get("distributed").map_err(db)?,
    })
}

fn blind(r: &PgRow) -> Result<BlindIndex> {
    let b: Vec<u8> = r.try_get("id_blind").map_err(db)?;
    BlindIndex::from_slice(&b).ok_or_else(|| StoreError::Corrupt("id_blind length".into()))
}

fn journal_row(r: &PgRow) -> Result<JournalRow> {
    Ok(JournalRow {
        id: r.try_get("id").map_err(db)?,
        entry: JournalEntry {
            outlet_id: r.try_get("outlet_id").map_err(db)?,
            clerk_id: r.try_get("clerk_id").map_err(db)?,
            clerk: r.try_get("clerk").map_err(db)?,
            business_day: r.try_get("business_day").map_err(db)?,
            act: r.try_get("act").map_err(db)?,
            card_number: r.try_get("card_number").map_err(db)?,
            fee_fen: r.try_get("fee_fen").map_err(db)?,
            at_ms: r.try_get("at_ms").map_err(db)?,
        },
    })
}

fn closing_row(r: &PgRow) -> Result<ClosingRow> {
    Ok(ClosingRow {
        outlet_id: r.try_get("outlet_id").map_err(db)?,
        business_day: r.try_get("business_day").map_err(db)?,
        acts: r.try_get("acts").map_err(db)?,
        expected_fen: r.try_get("expected_fen").map_err(db)?,
        declared_fen: r.try_get("declared_fen").map_err(db)?,
        difference_fen: r.try_get("difference_fen").map_err(db)?,
        closed_by: r.try_get("closed_by").map_err(db)?,
        closed_ms: r.try_get("closed_ms").map_err(db)?,
    })
}

async fn batch_in(conn: &mut PgConnection, id: i64) -> Result<BatchRow> {
    let r = sqlx::query("SELECT * FROM production_batches WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?;
    batch_row(&r)
}

/// Applies card changes in order. A set of plain transitions (no successor, deny-list change or
/// balance move, each card once) goes as one `UNNEST` update and one `UNNEST` insert of events,
/// checked to touch exactly one row per card at its expected version; anything else goes one by
/// one.
async fn apply_all(conn: &mut PgConnection, changes: &[CardChange], now_ms: i64) -> Result<()> {
    let plain = changes
        .iter()
        .all(|c| c.successor.is_none() && c.deny.is_empty() && c.moves.is_empty());
    let distinct = changes
        .iter()
        .map(|c| c.card.number.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
        == changes.len();
    if !(plain && distinct) || changes.len() < 2 {
        for c in changes {
            apply_change(conn, c, now_ms).await?;
        }
        return Ok(());
    }
    let col = |f: fn(&CardChange) -> String| changes.iter().map(f).collect::<Vec<String>>();
    let numbers = col(|c| c.card.number.clone());
    let states = col(|c| c.card.state.clone());
    let jsons = col(|c| c.card.state_json.clone());
    let types = col(|c| c.card.card_type.clone());
    let valid: Vec<Option<i64>> = changes.iter().map(|c| c.card.valid_until_s).collect();
    let versions: Vec<i64> = changes.iter().map(|c| c.card.version).collect();
    let updated: Vec<i64> = changes.iter().map(|c| c.card.updated_ms).collect();
    let n = sqlx::query(
        "UPDATE cards AS c SET state = u.state, state_json = u.state_json, \
         card_type = u.card_type, valid_until_s = u.valid_until_s, version = u.version, \
         updated_ms = u.updated_ms \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
         $6::bigint[], $7::bigint[]) \
         AS u(number, state, state_json, card_type, valid_until_s, version, updated_ms) \
         WHERE c.number = u.number AND c.version = u.version - 1",
    )
    .bind(&numbers)
    .bind(&states)
    .bind(&jsons)
    .bind(&types)
    .bind(&valid)
    .bind(&versions)
    .bind(&updated)
    .execute(&mut *conn)
    .await
    .map_err(db)?
    .rows_affected();
    if n != changes.len() as u64 {
        return Err(StoreError::Conflict(format!(
            "{} of {} cards changed meanwhile",
            changes.len() as u64 - n,
            changes.len()
        )));
    }
    let events: Vec<&store::CardEventRow> = changes.iter().flat_map(|c| &c.events).collect();
    let ecol = |f: fn(&store::CardEventRow) -> String| {
        events.iter().map(|e| f(e)).collect::<Vec<String>>()
    };
    sqlx::query(
        "INSERT INTO card_events (number, from_state, to_state, action, reason, actor, at_ms) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::bigint[])",
    )
    .bind(ecol(|e| e.number.clone()))
    .bind(ecol(|e| e.from_state.clone()))
    .bind(ecol(|e| e.to_state.clone()))
    .bind(ecol(|e| e.action.clone()))
    .bind(ecol(|e| e.reason.clone()))
    .bind(ecol(|e| e.actor.clone()))
    .bind(events.iter().map(|e| e.at_ms).collect::<Vec<i64>>())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

async fn closing_in(
    conn: &mut PgConnection,
    outlet_id: i64,
    day: &str,
) -> Result<Option<ClosingRow>> {
    sqlx::query("SELECT * FROM counter_closings WHERE outlet_id = $1 AND business_day = $2")
        .bind(outlet_id)
        .bind(day)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(closing_row)
        .transpose()
}

const CANDIDATE_COLS: &str = "c.*, r.id_blind, r.name_sealed";

#[async_trait]
impl ProductionStore for PgStore {
    async fn outlet_create(
        &self,
        o: &NewOutlet,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<OutletRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let id = sqlx::query(
            "INSERT INTO outlets (code, name_zh, name_en, address, active, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, TRUE, $5, $6) RETURNING id",
        )
        .bind(&o.code)
        .bind(&o.name_zh)
        .bind(&o.name_en)
        .bind(&o.address)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("outlet {}", o.code)),
            e => e,
        })?
        .try_get("id")
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(OutletRow {
            id,
            code: o.code.clone(),
            name_zh: o.name_zh.clone(),
            name_en: o.name_en.clone(),
            address: o.address.clone(),
            active: true,
            created_ms: now_ms,
        })
    }

    async fn outlet_set_active(
        &self,
        outlet_id: i64,
        active: bool,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let n = sqlx::query("UPDATE outlets SET active = $1, updated_ms = $2 WHERE id = $3")
            .bind(active)
            .bind(now_ms)
            .bind(outlet_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::NotFound(format!("outlet {outlet_id}")));
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn outlets_list(&self) -> Result<Vec<OutletRow>> {
        let rows = sqlx::query("SELECT * FROM outlets ORDER BY code LIMIT 10000")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(outlet_row).collect()
    }

    async fn outlet_by_code(&self, code: &str) -> Result<Option<OutletRow>> {
        sqlx::query("SELECT * FROM outlets WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(outlet_row)
            .transpose()
    }

    async fn outlet_by_id(&self, id: i64) -> Result<Option<OutletRow>> {
        sqlx::query("SELECT * FROM outlets WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(outlet_row)
            .transpose()
    }

    async fn clerk_assign(
        &self,
        operator_id: i64,
        outlet_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO outlet_clerks (operator_id, outlet_id, assigned_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (operator_id) DO UPDATE SET outlet_id = excluded.outlet_id, \
             assigned_ms = excluded.assigned_ms",
        )
        .bind(operator_id)
        .bind(outlet_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn clerk_outlet(&self, operator_id: i64) -> Result<Option<OutletRow>> {
        sqlx::query(
            "SELECT o.* FROM outlet_clerks k JOIN outlets o ON o.id = k.outlet_id \
             WHERE k.operator_id = $1",
        )
        .bind(operator_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(outlet_row)
        .transpose()
    }

    async fn outlet_clerks(&self, outlet_id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT o.username FROM outlet_clerks k JOIN operators o ON o.id = k.operator_id \
             WHERE k.outlet_id = $1 ORDER BY o.username LIMIT 1000",
        )
        .bind(outlet_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("username").map_err(db))
            .collect()
    }

    async fn production_candidates(
        &self,
        after_number: &str,
        limit: u32,
    ) -> Result<Vec<ProductionCandidate>> {
        let rows = sqlx::query(&format!(
            "SELECT {CANDIDATE_COLS} FROM cards c JOIN residents r ON r.id = c.resident_id \
             WHERE c.state = 'approved' AND c.number > $1 ORDER BY c.number LIMIT $2"
        ))
        .bind(after_number)
        .bind(i64::from(limit.min(store::BATCH_CREATE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ProductionCandidate {
                    card: card_row(r)?,
                    id_blind: blind(r)?,
                    name_sealed: r.try_get("name_sealed").map_err(db)?,
                })
            })
            .collect()
    }

    async fn batch_create(
        &self,
        b: &NewBatch,
        changes: &[CardChange],
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<BatchRow> {
        if changes.is_empty() || changes.len() > store::BATCH_CREATE_MAX as usize {
            return Err(StoreError::TooMany {
                got: changes.len(),
                max: store::BATCH_CREATE_MAX as usize,
            });
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let id = sqlx::query(
            "INSERT INTO production_batches (state, algorithm, key_version, transport_key, \
             start_date, expiry_date, card_count, created_ms, created_by) \
             VALUES ('created', $1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&b.algorithm)
        .bind(b.key_version)
        .bind(&b.transport_key)
        .bind(&b.start_date)
        .bind(&b.expiry_date)
        .bind(changes.len() as i64)
        .bind(now_ms)
        .bind(&b.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .try_get("id")
        .map_err(db)?;
        let numbers: Vec<&str> = changes.iter().map(|c| c.card.number.as_str()).collect();
        let idx: Vec<i64> = (1..=changes.len() as i64).collect();
        sqlx::query(
            "INSERT INTO batch_cards (batch_id, idx, number) \
             SELECT $1, u.idx, u.number FROM UNNEST($2::bigint[], $3::text[]) AS u(idx, number)",
        )
        .bind(id)
        .bind(&idx)
        .bind(&numbers)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        apply_all(&mut tx, changes, now_ms).await?;
        append_audit_many(&mut tx, audit, now_ms).await?;
        let row = batch_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn batch_by_id(&self, id: i64) -> Result<Option<BatchRow>> {
        sqlx::query("SELECT * FROM production_batches WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(batch_row)
            .transpose()
    }

    async fn batches_recent(&self, limit: u32) -> Result<Vec<BatchRow>> {
        let rows = sqlx::query("SELECT * FROM production_batches ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(batch_row).collect()
    }

    async fn batch_cards(&self, id: i64, after_idx: i64, limit: u32) -> Result<Vec<BatchCardRow>> {
        let rows = sqlx::query(
            "SELECT b.idx, b.outcome, b.chip_serial, b.failure, c.*, \
             r.id_blind, r.id_sealed, r.name_sealed FROM batch_cards b JOIN cards c ON c.number = b.number \
             JOIN residents r ON r.id = c.resident_id \
             WHERE b.batch_id = $1 AND b.idx > $2 ORDER BY b.idx LIMIT $3",
        )
        .bind(id)
        .bind(after_idx)
        .bind(i64::from(limit.min(store::BATCH_CREATE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(BatchCardRow {
                    idx: r.try_get("idx").map_err(db)?,
                    card: card_row(r)?,
                    outcome: r.try_get("outcome").map_err(db)?,
                    chip_serial: r.try_get("chip_serial").map_err(db)?,
                    failure: r.try_get("failure").map_err(db)?,
                    id_blind: blind(r)?,
                    id_sealed: r.try_get("id_sealed").map_err(db)?,
                    name_sealed: r.try_get("name_sealed").map_err(db)?,
                })
            })
            .collect()
    }

    async fn batch_exported(
        &self,
        id: i64,
        digest: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let n = sqlx::query(
            "UPDATE production_batches SET state = 'exported', exports = exports + 1, \
             export_digest = $1, exported_ms = $2 WHERE id = $3 AND state IN ('created', 'exported')",
        )
        .bind(digest)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "batch {id} is no longer waiting for production"
            )));
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn batch_import(
        &self,
        id: i64,
        digest: &str,
        outcomes: &[BatchOutcome],
        changes: &[CardChange],
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()> {
        let produced = outcomes.iter().filter(|o| o.chip_serial.is_some()).count() as i64;
        let failed = outcomes.len() as i64 - produced;
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let n = sqlx::query(
            "UPDATE production_batches SET state = 'imported', import_digest = $1, \
             imported_ms = $2, produced = $3, failed = $4 WHERE id = $5 AND state = 'exported'",
        )
        .bind(digest)
        .bind(now_ms)
        .bind(produced)
        .bind(failed)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "batch {id} is not waiting for results (never exported, or already imported)"
            )));
        }
        let numbers: Vec<&str> = outcomes.iter().map(|o| o.number.as_str()).collect();
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| {
                if o.chip_serial.is_some() {
                    "produced"
                } else {
                    "failed"
                }
            })
            .collect();
        let serials: Vec<Option<&str>> =
            outcomes.iter().map(|o| o.chip_serial.as_deref()).collect();
        let failures: Vec<Option<&str>> = outcomes.iter().map(|o| o.failure.as_deref()).collect();
        let n = sqlx::query(
            "UPDATE batch_cards AS b SET outcome = u.outcome, chip_serial = u.serial, \
             failure = u.failure FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
             AS u(number, outcome, serial, failure) \
             WHERE b.batch_id = $5 AND b.number = u.number AND b.outcome IS NULL",
        )
        .bind(&numbers)
        .bind(&kinds)
        .bind(&serials)
        .bind(&failures)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n != outcomes.len() as u64 {
            return Err(StoreError::Conflict(format!(
                "{} outcome(s) name no open card of batch {id}",
                outcomes.len() as u64 - n
            )));
        }
        sqlx::query(
            "INSERT INTO card_chips (number, chip_serial, batch_id, recorded_ms) \
             SELECT u.number, u.serial, $3, $4 FROM UNNEST($1::text[], $2::text[]) \
             AS u(number, serial) WHERE u.serial IS NOT NULL",
        )
        .bind(&numbers)
        .bind(&serials)
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(m) => StoreError::Conflict(format!(
                "a chip serial of this result file is already recorded for another card ({m})"
            )),
            e => e,
        })?;
        apply_all(&mut tx, changes, now_ms).await?;
        append_audit_many(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn batch_distribute(
        &self,
        id: i64,
        outlet_id: i64,
        changes: &[CardChange],
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let numbers: Vec<&str> = changes.iter().map(|c| c.card.number.as_str()).collect();
        sqlx::query(
            "INSERT INTO card_outlets (number, outlet_id, batch_id, assigned_ms) \
             SELECT u.number, $2, $3, $4 FROM UNNEST($1::text[]) AS u(number)",
        )
        .bind(&numbers)
        .bind(outlet_id)
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE production_batches SET distributed = distributed + $1 WHERE id = $2")
            .bind(changes.len() as i64)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        apply_all(&mut tx, changes, now_ms).await?;
        append_audit_many(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn card_chip(&self, number: &str) -> Result<Option<ChipRow>> {
        let r = sqlx::query("SELECT * FROM card_chips WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        r.map(|r| {
            Ok(ChipRow {
                number: r.try_get("number").map_err(db)?,
                chip_serial: r.try_get("chip_serial").map_err(db)?,
                batch_id: r.try_get("batch_id").map_err(db)?,
                outlet_id: r.try_get("outlet_id").map_err(db)?,
                recorded_ms: r.try_get("recorded_ms").map_err(db)?,
            })
        })
        .transpose()
    }

    async fn outlet_stock(&self, outlet_id: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT c.state, COUNT(*) AS n FROM card_outlets o JOIN cards c ON c.number = o.number \
             WHERE o.outlet_id = $1 GROUP BY c.state ORDER BY c.state",
        )
        .bind(outlet_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get("state").map_err(db)?, r.try_get("n").map_err(db)?)))
            .collect()
    }

    async fn outlet_waiting(
        &self,
        outlet_id: i64,
        after_number: &str,
        limit: u32,
    ) -> Result<Vec<CardRow>> {
        let rows = sqlx::query(
            "SELECT c.* FROM card_outlets o JOIN cards c ON c.number = o.number \
             WHERE o.outlet_id = $1 AND c.state = 'at_outlet' AND o.number > $2 \
             ORDER BY o.number LIMIT $3",
        )
        .bind(outlet_id)
        .bind(after_number)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(card_row).collect()
    }

    async fn counter_apply(
        &self,
        act: &CounterAct,
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()> {
        let j = &act.journal;
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        if let Some(c) = closing_in(&mut tx, j.outlet_id, &j.business_day).await? {
            return Err(StoreError::Conflict(format!(
                "the counter day {} was closed by {}",
                c.business_day, c.closed_by
            )));
        }
        apply_all(&mut tx, &act.changes, now_ms).await?;
        if let Some(chip) = &act.chip {
            sqlx::query(
                "INSERT INTO card_chips (number, chip_serial, batch_id, outlet_id, recorded_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&chip.number)
            .bind(&chip.chip_serial)
            .bind(chip.batch_id)
            .bind(chip.outlet_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "chip serial {} (card {}) is already recorded",
                    chip.chip_serial, chip.number
                )),
                e => e,
            })?;
        }
        if let Some((number, outlet_id)) = &act.stock {
            sqlx::query(
                "INSERT INTO card_outlets (number, outlet_id, batch_id, assigned_ms) \
                 VALUES ($1, $2, NULL, $3)",
            )
            .bind(number)
            .bind(outlet_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO counter_journal (outlet_id, clerk_id, clerk, business_day, act, \
             card_number, fee_fen, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(j.outlet_id)
        .bind(j.clerk_id)
        .bind(&j.clerk)
        .bind(&j.business_day)
        .bind(&j.act)
        .bind(&j.card_number)
        .bind(j.fee_fen)
        .bind(j.at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit_many(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn journal_day(&self, outlet_id: i64, business_day: &str) -> Result<Vec<JournalRow>> {
        let rows = sqlx::query(
            "SELECT * FROM counter_journal WHERE outlet_id = $1 AND business_day = $2 \
             ORDER BY id LIMIT 100000",
        )
        .bind(outlet_id)
        .bind(business_day)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(journal_row).collect()
    }

    async fn day_close(
        &self,
        c: &NewClosing,
        audit: &ClosingAudit,
        now_ms: i64,
    ) -> Result<ClosingRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        if let Some(done) = closing_in(&mut tx, c.outlet_id, &c.business_day).await? {
            return Err(StoreError::Conflict(format!(
                "the counter day {} was already closed by {} (declared {} fen, expected {} fen, \
                 difference {} fen)",
                done.business_day,
                done.closed_by,
                done.declared_fen,
                done.expected_fen,
                done.difference_fen
            )));
        }
        let sums = sqlx::query(
            "SELECT COUNT(*) AS acts, COALESCE(SUM(fee_fen), 0)::BIGINT AS fees FROM counter_journal \
             WHERE outlet_id = $1 AND business_day = $2",
        )
        .bind(c.outlet_id)
        .bind(&c.business_day)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let acts: i64 = sums.try_get("acts").map_err(db)?;
        let expected_fen: i64 = sums.try_get("fees").map_err(db)?;
        let row = ClosingRow {
            outlet_id: c.outlet_id,
            business_day: c.business_day.clone(),
            acts,
            expected_fen,
            declared_fen: c.declared_fen,
            difference_fen: c
                .declared_fen
                .checked_sub(expected_fen)
                .ok_or_else(|| StoreError::Corrupt("closing difference overflows".into()))?,
            closed_by: c.closed_by.clone(),
            closed_ms: now_ms,
        };
        sqlx::query(
            "INSERT INTO counter_closings (outlet_id, business_day, acts, expected_fen, \
             declared_fen, difference_fen, closed_by, closed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.outlet_id)
        .bind(&row.business_day)
        .bind(row.acts)
        .bind(row.expected_fen)
        .bind(row.declared_fen)
        .bind(row.difference_fen)
        .bind(&row.closed_by)
        .bind(row.closed_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit(&row), now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn day_closing(&self, outlet_id: i64, business_day: &str) -> Result<Option<ClosingRow>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        closing_in(&mut conn, outlet_id, business_day).await
    }
}
