//! Money movements on PostgreSQL: the movement row, its parent's returned amount and its
//! ledger transfers in one transaction that first takes the audit head's lock (as every
//! transaction that appends audit does); the parent's conditional update and the CHECK on
//! `returned <= amount` keep refunds within the payment under concurrency.

use crate::clearing::open_window;
use crate::ledger::{balance_row, post_in, resolve_in};
use crate::{PgStore, append_audit, append_audit_many, db, lock_head};
use ::ledger::Balance;
use ::ledger::Transfer;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::collections::HashMap;
use store::ledger::{
    BatchPlan, PostOutcome, account_ids, decode_digest, initial_state, plan_post_batch,
};
use store::money::{
    MOVEMENTS_PAGE_MAX, MoneyStore, MovementKind, MovementRow, NewMovement, ParentChange, Recorded,
    Transition, Transitioned, Windows, batch_answers, check_many, check_new, clears,
    decode_movement_kind, fresh_items,
};
use store::{Result, StoreError};

fn movement_row(r: &PgRow) -> Result<MovementRow> {
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

async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<MovementRow>> {
    sqlx::query("SELECT * FROM money_movements WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(movement_row)
        .transpose()
}

async fn insert_movement(
    conn: &mut PgConnection,
    m: &NewMovement,
    window: Option<&str>,
    now_ms: i64,
) -> Result<MovementRow> {
    let row = sqlx::query(
        "INSERT INTO money_movements (kind, request_key, digest, resident_id, card_number, \
             counterparty, amount, parent_id, state, external_ref, detail, created_ms, updated_ms, \
             window_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING *",
    )
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
    .bind(window)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    movement_row(&row)
}

/// The clearing window a new movement is posted into, if it enters clearing (a payment, or a
/// refund or reversal of a payment that entered one): the window open at `now_ms` (see
/// `open_window`).
async fn window_for(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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

/// The group commit's usual path, in the caller's transaction after the audit head lock
/// (`head`): three round trips instead of one per table. One statement locks the accounts in
/// id order and says whether any key was seen before (then `Ok(None)`: [`group_slow`] answers
/// repeats from their rows); the batch is planned in memory with the same floors as every
/// posting (`plan_post_batch`); one statement with data-modifying CTEs writes transfers,
/// postings, balances (as deltas, conditional on the floors, all or the transaction fails),
/// audit entries, the audit head and the movements. The caller commits.
async fn group_fast(
    tx: &mut PgConnection,
    windows: &Windows,
    head: Option<(i64, audit::Hash)>,
    items: &[(NewMovement, Transfer)],
    audits: &[audit::Draft],
    now_ms: i64,
) -> Result<Option<Vec<Recorded>>> {
    // The window open now, unless it closed while the group waited for the head lock.
    let (window, _) = open_window(&mut *tx, windows, &windows.window_of(now_ms), 0).await?;
    let fresh = fresh_items(items, &HashMap::new());
    let transfers: Vec<Transfer> = fresh.iter().map(|i| items[*i].1.clone()).collect();
    let request_keys: Vec<&str> = items.iter().map(|(m, _)| m.request_key.as_str()).collect();
    let transfer_keys: Vec<&str> = transfers.iter().map(|t| t.key.as_str()).collect();
    let rows = sqlx::query(
        "SELECT id, unit, normal, floor, balance, reserved, \
         (SELECT count(*) FROM money_movements WHERE request_key = ANY($2)) AS seen_movements, \
         (SELECT count(*) FROM ledger_transfers WHERE key = ANY($3)) AS seen_transfers \
         FROM ledger_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(account_ids(&transfers))
    .bind(&request_keys)
    .bind(&transfer_keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut before: HashMap<i64, Balance> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let seen: i64 = r.try_get::<i64, _>("seen_movements").map_err(db)?
            + r.try_get::<i64, _>("seen_transfers").map_err(db)?;
        if seen > 0 {
            return Ok(None);
        }
        let b = balance_row(r)?;
        before.insert(b.id, b);
    }
    if rows.is_empty() {
        // No account found: the general path names what is missing.
        return Ok(None);
    }
    let mut after = before.clone();
    let plan: BatchPlan = plan_post_batch(&transfers, &HashMap::new(), &mut after);
    let planned: Vec<&Transfer> = plan.inserts.iter().map(|i| &transfers[*i]).collect();
    // Which fresh item each planned transfer carries, and the entries of the accepted ones.
    let slot_of: HashMap<&str, usize> = fresh
        .iter()
        .enumerate()
        .map(|(k, i)| (items[*i].1.key.as_str(), k))
        .collect();
    let accepted: Vec<usize> = planned
        .iter()
        .map(|t| fresh[slot_of[t.key.as_str()]])
        .collect();
    let mut done: HashMap<String, Recorded> = HashMap::new();
    let mut ids: Vec<i64> = Vec::new();
    if !planned.is_empty() {
        let mut last = head;
        let entries: Vec<audit::Entry> = accepted
            .iter()
            .map(|i| {
                let e = audit::chain_next(last, now_ms, audits[*i].clone());
                last = Some((e.seq, e.hash));
                e
            })
            .collect();
        let (head_seq, head_hash) = last.expect("at least one entry");
        let (mut t_key, mut t_kind, mut t_memo, mut t_mode, mut t_state, mut t_digest) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut t_posted: Vec<Option<i64>> = vec![];
        let (mut p_key, mut p_idx, mut p_acc, mut p_unit, mut p_side, mut p_amount) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for t in &planned {
            let (state, posted) = initial_state(t, now_ms);
            t_key.push(t.key.as_str());
            t_kind.push(t.kind.as_str());
            t_memo.push(t.memo.as_str());
            t_mode.push(t.mode.as_str());
            t_state.push(state.as_str());
            t_digest.push(t.digest().to_vec());
            t_posted.push(posted);
            for (k, p) in t.postings.iter().enumerate() {
                p_key.push(t.key.as_str());
                p_idx.push(k as i16);
                p_acc.push(p.account);
                p_unit.push(p.unit.as_str());
                p_side.push(p.side.as_str());
                p_amount.push(p.amount.get());
            }
        }
        let (mut b_id, mut b_db, mut b_dr) = (vec![], vec![], vec![]);
        for b in &plan.balances {
            let old = before.get(&b.id).ok_or_else(|| {
                StoreError::Corrupt(format!("ledger account {} not locked", b.id))
            })?;
            b_id.push(b.id);
            b_db.push(b.balance - old.balance);
            b_dr.push(b.reserved - old.reserved);
        }
        let moves: Vec<&NewMovement> = accepted.iter().map(|i| &items[*i].0).collect();
        let text = |f: &dyn Fn(&NewMovement) -> Option<String>| -> Vec<Option<String>> {
            moves.iter().map(|m| f(m)).collect()
        };
        let rows = sqlx::query(
            "WITH t AS ( \
               INSERT INTO ledger_transfers (key, kind, memo, mode, state, digest, created_ms, posted_ms) \
               SELECT key, kind, memo, mode, state, digest, $1, posted_ms FROM unnest($2::text[], \
                 $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bigint[]) \
                 AS v(key, kind, memo, mode, state, digest, posted_ms) \
               RETURNING id, key), \
             p AS ( \
               INSERT INTO ledger_postings (transfer_id, idx, account_id, unit, side, amount) \
               SELECT t.id, v.idx, v.account_id, v.unit, v.side, v.amount FROM unnest($9::text[], \
                 $10::smallint[], $11::bigint[], $12::text[], $13::text[], $14::bigint[]) \
                 AS v(key, idx, account_id, unit, side, amount) JOIN t ON t.key = v.key \
               RETURNING 1), \
             b AS ( \
               UPDATE ledger_accounts a SET balance = a.balance + v.db, reserved = a.reserved + v.dr \
               FROM unnest($15::bigint[], $16::bigint[], $17::bigint[]) AS v(id, db, dr) \
               WHERE a.id = v.id AND (a.floor IS NULL OR v.db - v.dr >= 0 \
                 OR a.balance + v.db - (a.reserved + v.dr) >= a.floor) \
               RETURNING 1), \
             l AS ( \
               INSERT INTO audit_log (seq, at_ms, actor, action, record, origin, detail, prev_hash, hash) \
               SELECT seq, $1, actor, action, record, origin, detail, prev_hash, hash FROM \
                 unnest($18::bigint[], $19::text[], $20::text[], $21::text[], $22::text[], \
                 $23::text[], $24::bytea[], $25::bytea[]) \
                 AS v(seq, actor, action, record, origin, detail, prev_hash, hash) \
               RETURNING 1), \
             h AS (UPDATE audit_head SET seq = $26, hash = $27 WHERE id = 1 RETURNING 1), \
             m AS ( \
               INSERT INTO money_movements (kind, request_key, digest, resident_id, card_number, \
                 counterparty, amount, parent_id, state, external_ref, detail, created_ms, \
                 updated_ms, window_id) \
               SELECT kind, request_key, digest, resident_id, card_number, counterparty, amount, \
                 NULL, state, external_ref, detail, $1, $1, window_id FROM unnest($28::text[], \
                 $29::text[], $30::bytea[], $31::bigint[], $32::text[], $33::text[], $34::bigint[], \
                 $35::text[], $36::text[], $37::text[], $38::text[]) AS v(kind, request_key, \
                 digest, resident_id, card_number, counterparty, amount, state, external_ref, \
                 detail, window_id) \
               RETURNING *) \
             SELECT m.*, t.id AS transfer_id, \
               (SELECT count(*) FROM p) AS postings_written, \
               (SELECT count(*) FROM b) AS balances_written, \
               (SELECT count(*) FROM l) + (SELECT count(*) FROM h) AS audits_written \
             FROM m JOIN unnest($29::text[], $39::text[]) AS k(request_key, transfer_key) \
               ON k.request_key = m.request_key JOIN t ON t.key = k.transfer_key",
        )
        .bind(now_ms)
        .bind(&t_key)
        .bind(&t_kind)
        .bind(&t_memo)
        .bind(&t_mode)
        .bind(&t_state)
        .bind(&t_digest)
        .bind(&t_posted)
        .bind(&p_key)
        .bind(&p_idx)
        .bind(&p_acc)
        .bind(&p_unit)
        .bind(&p_side)
        .bind(&p_amount)
        .bind(&b_id)
        .bind(&b_db)
        .bind(&b_dr)
        .bind(entries.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.draft.actor.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.draft.action.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.draft.record.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.draft.origin.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.draft.detail.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.prev_hash.to_vec()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.hash.to_vec()).collect::<Vec<_>>())
        .bind(head_seq)
        .bind(&head_hash[..])
        .bind(text(&|m| Some(m.kind.as_str().to_string())))
        .bind(text(&|m| Some(m.request_key.clone())))
        .bind(moves.iter().map(|m| m.digest.to_vec()).collect::<Vec<_>>())
        .bind(moves.iter().map(|m| m.resident_id).collect::<Vec<_>>())
        .bind(text(&|m| m.card_number.clone()))
        .bind(text(&|m| Some(m.counterparty.clone())))
        .bind(moves.iter().map(|m| m.amount).collect::<Vec<_>>())
        .bind(text(&|m| Some(m.state.clone())))
        .bind(text(&|m| m.external_ref.clone()))
        .bind(text(&|m| Some(m.detail.clone())))
        // A group commit holds no refunds (no parents): payments take the open window.
        .bind(text(&|m| clears(m.kind, false).then(|| window.clone())))
        .bind(planned.iter().map(|t| t.key.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let postings: usize = planned.iter().map(|t| t.postings.len()).sum();
        let first = rows.first();
        let count = |col: &str| -> Result<i64> {
            first.map_or(Ok(0), |r| r.try_get::<i64, _>(col).map_err(db))
        };
        if rows.len() != planned.len()
            || count("postings_written")? != postings as i64
            || count("audits_written")? != planned.len() as i64 + 1
        {
            return Err(StoreError::Corrupt(format!(
                "{} of {} money movements written with their transfers",
                rows.len(),
                planned.len()
            )));
        }
        if count("balances_written")? != plan.balances.len() as i64 {
            return Err(StoreError::Conflict(format!(
                "ledger floors: {} of {} balance updates refused",
                plan.balances.len() as i64 - count("balances_written")?,
                plan.balances.len()
            )));
        }
        let mut id_of: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let row = movement_row(r)?;
            let transfer_id: i64 = r.try_get("transfer_id").map_err(db)?;
            id_of.insert(row.request_key.clone(), transfer_id);
            done.insert(row.request_key.clone(), Recorded::Created(row));
        }
        for m in &moves {
            ids.push(*id_of.get(&m.request_key).ok_or_else(|| {
                StoreError::Corrupt(format!("money movement {} not written", m.request_key))
            })?);
        }
    }
    for (k, o) in plan.finish(&ids).into_iter().enumerate() {
        let m = &items[fresh[k]].0;
        match o {
            PostOutcome::Applied { .. } => {}
            PostOutcome::Rejected(e) => {
                done.insert(m.request_key.clone(), Recorded::Rejected(e));
            }
            o => {
                return Err(StoreError::Conflict(format!(
                    "a transfer of money movement {}: {o:?}",
                    m.request_key
                )));
            }
        }
    }
    Ok(Some(batch_answers(items, &HashMap::new(), &done, &fresh)))
}

/// The group commit's general path, in the caller's transaction (which holds the audit head
/// lock): repeated keys are answered from their stored rows, the rest posted through
/// [`post_in`]. Taken when [`group_fast`] finds a key seen before.
async fn group_slow(
    tx: &mut PgConnection,
    windows: &Windows,
    items: &[(NewMovement, Transfer)],
    audits: &[audit::Draft],
    now_ms: i64,
) -> Result<Vec<Recorded>> {
    let (window, _) = open_window(&mut *tx, windows, &windows.window_of(now_ms), 0).await?;
    let keys: Vec<&str> = items.iter().map(|(m, _)| m.request_key.as_str()).collect();
    let mut existing: HashMap<String, MovementRow> = HashMap::new();
    for r in sqlx::query("SELECT * FROM money_movements WHERE request_key = ANY($1)")
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
    {
        let row = movement_row(&r)?;
        existing.insert(row.request_key.clone(), row);
    }
    let fresh = fresh_items(items, &existing);
    let transfers: Vec<Transfer> = fresh.iter().map(|i| items[*i].1.clone()).collect();
    let (outcomes, _) = if transfers.is_empty() {
        (Vec::new(), 0)
    } else {
        post_in(&mut *tx, &transfers, now_ms).await?
    };
    let mut done: HashMap<String, Recorded> = HashMap::new();
    let mut created = Vec::new();
    let mut accepted: Vec<&NewMovement> = Vec::new();
    for (k, i) in fresh.iter().enumerate() {
        let m = &items[*i].0;
        match &outcomes[k] {
            PostOutcome::Applied { .. } => {
                accepted.push(m);
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
    // One array insert for the batch: a round trip per movement is what would bound it.
    if !accepted.is_empty() {
        let col = |f: &dyn Fn(&NewMovement) -> Option<String>| -> Vec<Option<String>> {
            accepted.iter().map(|m| f(m)).collect()
        };
        let rows = sqlx::query(
            "INSERT INTO money_movements (kind, request_key, digest, resident_id, card_number, \
             counterparty, amount, parent_id, state, external_ref, detail, created_ms, updated_ms, \
             window_id) \
             SELECT kind, request_key, digest, resident_id, card_number, counterparty, amount, \
             parent_id, state, external_ref, detail, $12, $12, window_id FROM unnest($1::text[], \
             $2::text[], $3::bytea[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], \
             $8::bigint[], $9::text[], $10::text[], $11::text[], $13::text[]) AS v(kind, \
             request_key, digest, resident_id, card_number, counterparty, amount, parent_id, \
             state, external_ref, detail, window_id) RETURNING *",
        )
        .bind(col(&|m| Some(m.kind.as_str().to_string())))
        .bind(col(&|m| Some(m.request_key.clone())))
        .bind(
            accepted
                .iter()
                .map(|m| m.digest.to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(accepted.iter().map(|m| m.resident_id).collect::<Vec<_>>())
        .bind(col(&|m| m.card_number.clone()))
        .bind(col(&|m| Some(m.counterparty.clone())))
        .bind(accepted.iter().map(|m| m.amount).collect::<Vec<_>>())
        .bind(accepted.iter().map(|m| m.parent_id).collect::<Vec<_>>())
        .bind(col(&|m| Some(m.state.clone())))
        .bind(col(&|m| m.external_ref.clone()))
        .bind(col(&|m| Some(m.detail.clone())))
        .bind(now_ms)
        // A group commit holds no refunds (no parents): payments take the open window.
        .bind(col(&|m| clears(m.kind, false).then(|| window.clone())))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if rows.len() != accepted.len() {
            return Err(StoreError::Corrupt(format!(
                "{} of {} money movements inserted",
                rows.len(),
                accepted.len()
            )));
        }
        for r in &rows {
            let row = movement_row(r)?;
            done.insert(row.request_key.clone(), Recorded::Created(row));
        }
    }
    if !created.is_empty() {
        append_audit_many(&mut *tx, created, now_ms).await?;
    }
    Ok(batch_answers(items, &existing, &done, &fresh))
}

#[async_trait]
impl MoneyStore for PgStore {
    async fn money_record(
        &self,
        m: &NewMovement,
        parent: Option<&ParentChange>,
        transfers: &[Transfer],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Recorded> {
        check_new(m, transfers)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        if let Some(r) = sqlx::query("SELECT * FROM money_movements WHERE request_key = $1")
            .bind(&m.request_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
        {
            return Ok(Recorded::Existing(movement_row(&r)?));
        }
        if let Some(pc) = parent {
            let n = sqlx::query(
                "UPDATE money_movements SET returned = returned + $1, \
                 state = COALESCE($2::text, state), updated_ms = $3 \
                 WHERE id = $4 AND state = $5 AND returned + $1 <= amount \
                 AND ($6::bigint IS NULL OR returned = $6)",
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
        let id = insert_movement(&mut tx, m, window.as_deref(), now_ms)
            .await?
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let head = lock_head(&mut tx).await?;
        let answers = match group_fast(&mut tx, &self.windows, head, items, audits, now_ms).await? {
            Some(answers) => answers,
            None => group_slow(&mut tx, &self.windows, items, audits, now_ms).await?,
        };
        if answers.iter().any(|a| matches!(a, Recorded::Created(_))) {
            tx.commit().await.map_err(db)?;
        }
        Ok(answers)
    }

    async fn money_transition(
        &self,
        t: &Transition,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Transitioned> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let n = sqlx::query(
            "UPDATE money_movements SET state = $1, detail = COALESCE($2::text, detail), \
             updated_ms = $3 WHERE id = $4 AND state = $5",
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
        sqlx::query("SELECT * FROM money_movements WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(movement_row)
            .transpose()
    }

    async fn money_by_key(&self, request_key: &str) -> Result<Option<MovementRow>> {
        sqlx::query("SELECT * FROM money_movements WHERE request_key = $1")
            .bind(request_key)
            .fetch_optional(&self.pool)
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
        sqlx::query("SELECT * FROM money_movements WHERE kind = $1 AND external_ref = $2")
            .bind(kind.as_str())
            .bind(external_ref)
            .fetch_optional(&self.pool)
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
            "SELECT * FROM money_movements WHERE kind = $1 AND state = $2 \
             AND ($3::text IS NULL OR card_number = $3) AND created_ms <= $4 AND id > $5 \
             ORDER BY id LIMIT $6",
        )
        .bind(kind.as_str())
        .bind(state)
        .bind(card_number)
        .bind(created_before_ms)
        .bind(after_id)
        .bind(i64::from(limit.min(MOVEMENTS_PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(movement_row)
        .collect()
    }

    async fn money_children(&self, parent_id: i64) -> Result<Vec<MovementRow>> {
        sqlx::query("SELECT * FROM money_movements WHERE parent_id = $1 ORDER BY id LIMIT $2")
            .bind(parent_id)
            .bind(i64::from(MOVEMENTS_PAGE_MAX))
            .fetch_all(&self.pool)
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
            "SELECT * FROM money_movements WHERE window_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(window_id)
        .bind(after_id)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(movement_row)
        .collect()
    }
}
