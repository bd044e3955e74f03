//! The ledger on PostgreSQL. A batch first takes the audit head's lock (as every transaction
//! that appends audit does, so no two lock orders meet), then locks the accounts it touches
//! in id order (`FOR UPDATE`), plans in memory with `store::ledger::plan_post_batch`, and
//! writes transfers and postings with array inserts (`unnest`) and balances with one
//! conditional update (`balance + delta - reserved >= floor`); the table's CHECK constraint
//! stands behind both. One database transaction per batch.

use crate::{PgStore, append_audit, db, lock_head};
use ::ledger::{AccountKey, Balance, Transfer, TransferState};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Executor, Row};
use std::collections::HashMap;
use store::ledger::{
    AccountRow, BatchPlan, DueMove, Existing, Found, LEDGER_BATCH_MAX, LedgerCheck, LedgerStore,
    Mismatch, MoveRelease, PostOutcome, ReleaseOutcome, Resolve, StatementLine, TransferRow,
    account_ids, decode_account, decode_balance, decode_digest, decode_kind, decode_mode,
    decode_posting, decode_state, initial_state, plan_post_batch, plan_resolve_batch,
    release_transfer,
};
use store::{Result, StoreError};

/// An account's balance from a row with its `id`, `unit`, `normal`, `floor`, `balance` and
/// `reserved`.
pub(crate) fn balance_row(r: &PgRow) -> Result<Balance> {
    decode_balance(
        r.try_get("id").map_err(db)?,
        r.try_get("unit").map_err(db)?,
        r.try_get("normal").map_err(db)?,
        r.try_get("floor").map_err(db)?,
        r.try_get("balance").map_err(db)?,
        r.try_get("reserved").map_err(db)?,
    )
}

fn account_row(r: &PgRow) -> Result<AccountRow> {
    decode_account(
        r.try_get("id").map_err(db)?,
        r.try_get("kind").map_err(db)?,
        r.try_get("owner").map_err(db)?,
        r.try_get("unit").map_err(db)?,
        r.try_get("balance").map_err(db)?,
        r.try_get("reserved").map_err(db)?,
        r.try_get("created_ms").map_err(db)?,
    )
}

type AccountText = (String, String, String);

/// The accounts of these (kind, owner, unit) keys that exist, by key.
async fn accounts_by_key<'e, E: sqlx::PgExecutor<'e>>(
    conn: E,
    keys: &[AccountText],
) -> Result<std::collections::HashMap<AccountText, AccountRow>> {
    let rows = sqlx::query(
        "SELECT a.* FROM ledger_accounts a \
         JOIN UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS v(kind, owner, unit) \
         ON a.kind = v.kind AND a.owner = v.owner AND a.unit = v.unit",
    )
    .bind(keys.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|t| t.2.as_str()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await
    .map_err(db)?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let key = (
            r.try_get::<String, _>("kind").map_err(db)?,
            r.try_get::<String, _>("owner").map_err(db)?,
            r.try_get::<String, _>("unit").map_err(db)?,
        );
        out.insert(key, account_row(r)?);
    }
    Ok(out)
}

/// The accounts in the order of `keys`, when every one is there.
fn in_order(
    keys: &[AccountText],
    found: &std::collections::HashMap<AccountText, AccountRow>,
) -> Option<Vec<AccountRow>> {
    keys.iter().map(|k| found.get(k).cloned()).collect()
}

fn transfer_row(r: &PgRow) -> Result<TransferRow> {
    Ok(TransferRow {
        id: r.try_get("id").map_err(db)?,
        key: r.try_get("key").map_err(db)?,
        kind: decode_kind(r.try_get("kind").map_err(db)?)?,
        memo: r.try_get("memo").map_err(db)?,
        mode: decode_mode(r.try_get("mode").map_err(db)?)?,
        state: decode_state(r.try_get("state").map_err(db)?)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        posted_ms: r.try_get("posted_ms").map_err(db)?,
        postings: Vec::new(),
    })
}

fn posting_of(r: &PgRow) -> Result<(i64, ::ledger::Posting)> {
    Ok((
        r.try_get("transfer_id").map_err(db)?,
        decode_posting(
            r.try_get("account_id").map_err(db)?,
            r.try_get("unit").map_err(db)?,
            r.try_get("side").map_err(db)?,
            r.try_get("amount").map_err(db)?,
        )?,
    ))
}

/// Loads and locks (`FOR UPDATE`, in id order, so two batches never wait on each other in
/// opposite orders) the accounts `ids`.
async fn lock_balances(conn: &mut PgConnection, ids: &[i64]) -> Result<HashMap<i64, Balance>> {
    let mut out = HashMap::with_capacity(ids.len());
    let rows = sqlx::query(
        "SELECT id, unit, normal, floor, balance, reserved FROM ledger_accounts \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in rows {
        let b = balance_row(&r)?;
        out.insert(b.id, b);
    }
    Ok(out)
}

async fn load_existing(
    conn: &mut PgConnection,
    keys: &[&str],
) -> Result<HashMap<String, Existing>> {
    let mut out = HashMap::new();
    let rows =
        sqlx::query("SELECT id, key, digest, state FROM ledger_transfers WHERE key = ANY($1)")
            .bind(keys)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    for r in rows {
        out.insert(
            r.try_get("key").map_err(db)?,
            Existing {
                id: r.try_get("id").map_err(db)?,
                digest: decode_digest(r.try_get("digest").map_err(db)?)?,
                state: decode_state(r.try_get("state").map_err(db)?)?,
            },
        );
    }
    Ok(out)
}

/// Applies the planned balances as deltas against what was locked, in one conditional update:
/// a row whose new available balance would fall below its floor (while falling) is not
/// updated, and the batch fails instead of writing it.
async fn write_balances(
    conn: &mut PgConnection,
    before: &HashMap<i64, Balance>,
    after: &[Balance],
) -> Result<()> {
    let ids: Vec<i64> = after.iter().map(|b| b.id).collect();
    let mut d_balance = Vec::with_capacity(after.len());
    let mut d_reserved = Vec::with_capacity(after.len());
    for b in after {
        let old = before
            .get(&b.id)
            .ok_or_else(|| StoreError::Corrupt(format!("ledger account {} not locked", b.id)))?;
        d_balance.push(b.balance - old.balance);
        d_reserved.push(b.reserved - old.reserved);
    }
    let n = sqlx::query(
        "UPDATE ledger_accounts a SET balance = a.balance + v.db, reserved = a.reserved + v.dr \
         FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::bigint[]) AS db, \
           unnest($3::bigint[]) AS dr) v \
         WHERE a.id = v.id AND (a.floor IS NULL OR v.db - v.dr >= 0 \
           OR a.balance + v.db - (a.reserved + v.dr) >= a.floor)",
    )
    .bind(&ids)
    .bind(&d_balance)
    .bind(&d_reserved)
    .execute(&mut *conn)
    .await
    .map_err(db)?
    .rows_affected();
    if n != ids.len() as u64 {
        return Err(StoreError::Conflict(format!(
            "ledger floors: {} of {} balance updates refused",
            ids.len() as u64 - n,
            ids.len()
        )));
    }
    Ok(())
}

/// Plans and writes a batch inside the caller's transaction (which holds the audit head lock);
/// `Ok((outcomes, applied))`.
pub(crate) async fn post_in(
    conn: &mut PgConnection,
    transfers: &[Transfer],
    now_ms: i64,
) -> Result<(Vec<PostOutcome>, usize)> {
    let keys: Vec<&str> = transfers.iter().map(|t| t.key.as_str()).collect();
    let existing = load_existing(conn, &keys).await?;
    let before = lock_balances(conn, &account_ids(transfers)).await?;
    let mut balances = before.clone();
    let plan: BatchPlan = plan_post_batch(transfers, &existing, &mut balances);
    let n = plan.applied();
    if n == 0 {
        return Ok((plan.finish(&[]), 0));
    }
    let planned: Vec<&Transfer> = plan.inserts.iter().map(|i| &transfers[*i]).collect();
    let ids = insert_planned(conn, &planned, &before, &plan.balances, now_ms).await?;
    Ok((plan.finish(&ids), n))
}

/// Inserts transfers already planned (validated, applied to `after` by `ledger::apply`) with
/// new ids, and writes the changed balances as deltas from `before` (what was read in this
/// transaction); returns the ids. Runs inside the caller's transaction.
pub(crate) async fn insert_planned(
    conn: &mut PgConnection,
    transfers: &[&Transfer],
    before: &HashMap<i64, Balance>,
    after: &[Balance],
    now_ms: i64,
) -> Result<Vec<i64>> {
    let n = transfers.len();
    if n == 0 && after.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('ledger_transfers', 'id')) FROM generate_series(1, $1)",
    )
    .bind(n as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut t_key = Vec::with_capacity(n);
    let mut t_kind = Vec::with_capacity(n);
    let mut t_memo = Vec::with_capacity(n);
    let mut t_mode = Vec::with_capacity(n);
    let mut t_state = Vec::with_capacity(n);
    let mut t_digest = Vec::with_capacity(n);
    let mut t_posted = Vec::with_capacity(n);
    let (mut p_tid, mut p_idx, mut p_acc, mut p_unit, mut p_side, mut p_amount) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (t, id) in transfers.iter().zip(&ids) {
        let (state, posted) = initial_state(t, now_ms);
        t_key.push(t.key.as_str());
        t_kind.push(t.kind.as_str());
        t_memo.push(t.memo.as_str());
        t_mode.push(t.mode.as_str());
        t_state.push(state.as_str());
        t_digest.push(t.digest().to_vec());
        t_posted.push(posted);
        for (k, p) in t.postings.iter().enumerate() {
            p_tid.push(*id);
            p_idx.push(k as i16);
            p_acc.push(p.account);
            p_unit.push(p.unit.as_str());
            p_side.push(p.side.as_str());
            p_amount.push(p.amount.get());
        }
    }
    sqlx::query(
        "INSERT INTO ledger_transfers (id, key, kind, memo, mode, state, digest, created_ms, posted_ms) \
         SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::text[]), \
           unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), unnest($7::bytea[]), $8, \
           unnest($9::bigint[])",
    )
    .bind(&ids)
    .bind(&t_key)
    .bind(&t_kind)
    .bind(&t_memo)
    .bind(&t_mode)
    .bind(&t_state)
    .bind(&t_digest)
    .bind(now_ms)
    .bind(&t_posted)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO ledger_postings (transfer_id, idx, account_id, unit, side, amount) \
         SELECT unnest($1::bigint[]), unnest($2::smallint[]), unnest($3::bigint[]), \
           unnest($4::text[]), unnest($5::text[]), unnest($6::bigint[])",
    )
    .bind(&p_tid)
    .bind(&p_idx)
    .bind(&p_acc)
    .bind(&p_unit)
    .bind(&p_side)
    .bind(&p_amount)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    write_balances(conn, before, after).await?;
    Ok(ids)
}

/// Plans and writes resolutions inside the caller's transaction (which holds the audit head
/// lock); `Ok((outcomes, changed))`.
pub(crate) async fn resolve_in(
    conn: &mut PgConnection,
    resolves: &[Resolve],
    now_ms: i64,
) -> Result<(Vec<PostOutcome>, usize)> {
    let mut found: HashMap<String, Found> = HashMap::new();
    let keys: Vec<&str> = resolves.iter().map(|r| r.key.as_str()).collect();
    let rows =
        sqlx::query("SELECT * FROM ledger_transfers WHERE key = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    let mut by_id: HashMap<i64, Found> = HashMap::new();
    let mut key_of: Vec<(i64, String)> = Vec::new();
    for r in &rows {
        let t = transfer_row(r)?;
        key_of.push((t.id, t.key.clone()));
        by_id.insert(
            t.id,
            Found {
                id: t.id,
                state: t.state,
                mode: t.mode,
                postings: Vec::new(),
            },
        );
    }
    let tids: Vec<i64> = key_of.iter().map(|(id, _)| *id).collect();
    let ps = sqlx::query(
        "SELECT * FROM ledger_postings WHERE transfer_id = ANY($1) ORDER BY transfer_id, idx",
    )
    .bind(&tids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in &ps {
        let (tid, p) = posting_of(r)?;
        if let Some(f) = by_id.get_mut(&tid) {
            f.postings.push(p);
        }
    }
    for (id, key) in key_of {
        if let Some(f) = by_id.remove(&id) {
            found.insert(key, f);
        }
    }
    let mut ids: Vec<i64> = found
        .values()
        .flat_map(|f| f.postings.iter().map(|p| p.account))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let before = lock_balances(conn, &ids).await?;
    let mut balances = before.clone();
    let (outcomes, changes, changed) = plan_resolve_batch(resolves, &found, &mut balances);
    if changes.is_empty() {
        return Ok((outcomes, 0));
    }
    let c_ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
    let c_states: Vec<&str> = changes.iter().map(|(_, s)| s.as_str()).collect();
    let c_posted: Vec<Option<i64>> = changes
        .iter()
        .map(|(_, s)| (*s == TransferState::Posted).then_some(now_ms))
        .collect();
    sqlx::query(
        "UPDATE ledger_transfers t SET state = v.state, resolved_ms = $4, posted_ms = v.posted_ms \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS v(id, state, posted_ms) \
             WHERE t.id = v.id AND t.state = 'pending'",
    )
    .bind(&c_ids)
    .bind(&c_states)
    .bind(&c_posted)
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    write_balances(conn, &before, &changed).await?;
    Ok((outcomes, changes.len()))
}

async fn attach_postings(
    conn: impl Executor<'_, Database = sqlx::Postgres>,
    rows: &mut [TransferRow],
) -> Result<()> {
    let (Some(lo), Some(hi)) = (rows.first().map(|t| t.id), rows.last().map(|t| t.id)) else {
        return Ok(());
    };
    let ps = sqlx::query(
        "SELECT * FROM ledger_postings WHERE transfer_id BETWEEN $1 AND $2 ORDER BY transfer_id, idx",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    let at: HashMap<i64, usize> = rows.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for r in &ps {
        let (tid, p) = posting_of(r)?;
        if let Some(i) = at.get(&tid) {
            rows[*i].postings.push(p);
        }
    }
    Ok(())
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn ledger_open_accounts(
        &self,
        keys: &[AccountKey],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<AccountRow>> {
        if keys.len() > LEDGER_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: keys.len(),
                max: LEDGER_BATCH_MAX,
            });
        }
        // Most calls find every account already open: answer those from a reader, in one
        // array query (a bill run's chunk names a thousand accounts).
        let texts: Vec<(String, String, String)> = keys
            .iter()
            .map(|k| {
                (
                    k.kind().as_str().to_string(),
                    k.owner().text(),
                    k.unit().as_str().to_string(),
                )
            })
            .collect();
        let found = accounts_by_key(&self.pool, &texts).await?;
        if let Some(out) = in_order(&texts, &found) {
            return Ok(out);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let created = sqlx::query(
            "INSERT INTO ledger_accounts (kind, owner, unit, normal, floor, created_ms) \
             SELECT v.kind, v.owner, v.unit, v.normal, v.floor, $6 \
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) \
             AS v(kind, owner, unit, normal, floor) \
             ON CONFLICT (kind, owner, unit) DO NOTHING",
        )
        .bind(texts.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
        .bind(texts.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
        .bind(texts.iter().map(|t| t.2.as_str()).collect::<Vec<_>>())
        .bind(
            keys.iter()
                .map(|k| k.kind().normal_side().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(keys.iter().map(|k| k.kind().floor()).collect::<Vec<_>>())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let found = accounts_by_key(&mut *tx, &texts).await?;
        let out = in_order(&texts, &found).ok_or_else(|| {
            StoreError::Corrupt("a ledger account just opened is not there".into())
        })?;
        if created > 0 {
            append_audit(&mut tx, audit, now_ms).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn ledger_account(&self, key: &AccountKey) -> Result<Option<AccountRow>> {
        sqlx::query("SELECT * FROM ledger_accounts WHERE kind = $1 AND owner = $2 AND unit = $3")
            .bind(key.kind().as_str())
            .bind(key.owner().text())
            .bind(key.unit().as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(account_row)
            .transpose()
    }

    async fn ledger_accounts_page(&self, after_id: i64, limit: u32) -> Result<Vec<AccountRow>> {
        sqlx::query("SELECT * FROM ledger_accounts WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(account_row)
            .collect()
    }

    async fn ledger_post_batch(
        &self,
        transfers: &[Transfer],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<PostOutcome>> {
        if transfers.len() > LEDGER_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: transfers.len(),
                max: LEDGER_BATCH_MAX,
            });
        }
        if transfers.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let (outcomes, applied) = post_in(&mut tx, transfers, now_ms).await?;
        if applied > 0 {
            append_audit(&mut tx, audit, now_ms).await?;
            tx.commit().await.map_err(db)?;
        }
        Ok(outcomes)
    }

    async fn ledger_resolve_batch(
        &self,
        resolves: &[Resolve],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<PostOutcome>> {
        if resolves.len() > LEDGER_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: resolves.len(),
                max: LEDGER_BATCH_MAX,
            });
        }
        if resolves.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let (outcomes, changed) = resolve_in(&mut tx, resolves, now_ms).await?;
        if changed == 0 {
            return Ok(outcomes);
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(outcomes)
    }

    async fn ledger_transfer(&self, key: &str) -> Result<Option<TransferRow>> {
        let Some(r) = sqlx::query("SELECT * FROM ledger_transfers WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let mut rows = vec![transfer_row(&r)?];
        attach_postings(&self.pool, &mut rows).await?;
        Ok(rows.pop())
    }

    async fn ledger_transfers_page(&self, after_id: i64, limit: u32) -> Result<Vec<TransferRow>> {
        let mut rows =
            sqlx::query("SELECT * FROM ledger_transfers WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after_id)
                .bind(i64::from(limit.min(10_000)))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?
                .iter()
                .map(transfer_row)
                .collect::<Result<Vec<_>>>()?;
        attach_postings(&self.pool, &mut rows).await?;
        Ok(rows)
    }

    async fn ledger_statement(
        &self,
        account: i64,
        after_transfer_id: i64,
        limit: u32,
    ) -> Result<Vec<StatementLine>> {
        sqlx::query(
            "SELECT p.transfer_id, p.account_id, p.unit, p.side, p.amount, t.key, t.kind, \
             t.state, t.created_ms FROM ledger_postings p JOIN ledger_transfers t \
             ON t.id = p.transfer_id WHERE p.account_id = $1 AND p.transfer_id > $2 \
             ORDER BY p.transfer_id, p.idx LIMIT $3",
        )
        .bind(account)
        .bind(after_transfer_id)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let (transfer_id, posting) = posting_of(r)?;
            Ok(StatementLine {
                transfer_id,
                key: r.try_get("key").map_err(db)?,
                kind: decode_kind(r.try_get("kind").map_err(db)?)?,
                state: decode_state(r.try_get("state").map_err(db)?)?,
                posting,
                created_ms: r.try_get("created_ms").map_err(db)?,
            })
        })
        .collect()
    }

    async fn ledger_check(&self) -> Result<LedgerCheck> {
        let counts = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM ledger_accounts) AS a, \
             (SELECT COUNT(*) FROM ledger_transfers) AS t, \
             (SELECT COUNT(*) FROM ledger_postings) AS p",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let mut check = LedgerCheck {
            accounts: counts.try_get::<i64, _>("a").map_err(db)? as u64,
            transfers: counts.try_get::<i64, _>("t").map_err(db)? as u64,
            postings: counts.try_get::<i64, _>("p").map_err(db)? as u64,
            mismatch: None,
        };
        let dangling = sqlx::query(store::ledger::DANGLING_POSTING_SQL)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        if let Some(r) = dangling {
            check.mismatch = Some(Mismatch::dangling(
                r.try_get("transfer_id").map_err(db)?,
                r.try_get("account_id").map_err(db)?,
                r.try_get::<&str, _>("missing").map_err(db)?,
            ));
            return Ok(check);
        }
        let bad = sqlx::query(
            "SELECT a.id, a.kind, a.owner, a.unit, a.balance, a.reserved, a.created_ms, \
             COALESCE(s.posted, 0) AS posted, COALESCE(s.held, 0) AS held \
             FROM ledger_accounts a LEFT JOIN ( \
               SELECT p.account_id, \
                 SUM(CASE WHEN t.state = 'posted' THEN \
                   CASE WHEN p.side = a2.normal THEN p.amount ELSE -p.amount END ELSE 0 END)::bigint AS posted, \
                 SUM(CASE WHEN t.state = 'pending' AND p.side <> a2.normal THEN p.amount ELSE 0 END)::bigint AS held \
               FROM ledger_postings p JOIN ledger_transfers t ON t.id = p.transfer_id \
               JOIN ledger_accounts a2 ON a2.id = p.account_id GROUP BY p.account_id \
             ) s ON s.account_id = a.id \
             WHERE a.balance <> COALESCE(s.posted, 0) OR a.reserved <> COALESCE(s.held, 0) \
             ORDER BY a.id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(r) = bad {
            let a = account_row(&r)?;
            check.mismatch = Some(Mismatch::Balance {
                account: a.id,
                key: a.key.to_string(),
                stored: a.balance,
                computed: r.try_get("posted").map_err(db)?,
                stored_reserved: a.reserved,
                computed_reserved: r.try_get("held").map_err(db)?,
            });
            return Ok(check);
        }
        let unit = sqlx::query(
            "SELECT t.key, p.account_id FROM ledger_postings p \
             JOIN ledger_transfers t ON t.id = p.transfer_id \
             JOIN ledger_accounts a ON a.id = p.account_id WHERE a.unit <> p.unit \
             ORDER BY p.transfer_id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(r) = unit {
            check.mismatch = Some(Mismatch::UnitMismatch {
                transfer: r.try_get("key").map_err(db)?,
                account: r.try_get("account_id").map_err(db)?,
            });
            return Ok(check);
        }
        let unbalanced = sqlx::query(
            "SELECT t.key, p.unit FROM ledger_postings p JOIN ledger_transfers t \
             ON t.id = p.transfer_id GROUP BY p.transfer_id, t.key, p.unit \
             HAVING SUM(CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END) <> 0 \
             ORDER BY p.transfer_id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(r) = unbalanced {
            check.mismatch = Some(Mismatch::Unbalanced {
                transfer: r.try_get("key").map_err(db)?,
                unit: r.try_get("unit").map_err(db)?,
            });
        }
        Ok(check)
    }

    async fn balance_moves_due(&self, now_s: i64, limit: u32) -> Result<Vec<DueMove>> {
        sqlx::query(
            "SELECT id, from_number, to_number, not_before_s FROM balance_moves \
             WHERE released_ms IS NULL AND not_before_s <= $1 ORDER BY id LIMIT $2",
        )
        .bind(now_s)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            Ok(DueMove {
                id: r.try_get("id").map_err(db)?,
                from_number: r.try_get("from_number").map_err(db)?,
                to_number: r.try_get("to_number").map_err(db)?,
                not_before_s: r.try_get("not_before_s").map_err(db)?,
            })
        })
        .collect()
    }

    async fn balance_move_release(
        &self,
        release: &MoveRelease,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ReleaseOutcome> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let released: Option<Option<i64>> =
            sqlx::query_scalar("SELECT released_ms FROM balance_moves WHERE id = $1 FOR UPDATE")
                .bind(release.move_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        match released {
            None => {
                return Err(StoreError::NotFound(format!(
                    "balance move {}",
                    release.move_id
                )));
            }
            Some(Some(_)) => return Ok(ReleaseOutcome::AlreadyReleased),
            Some(None) => {}
        }
        let mut ids: Vec<i64> = release.sweeps.iter().flat_map(|(a, b)| [*a, *b]).collect();
        ids.sort_unstable();
        ids.dedup();
        let balances = lock_balances(&mut tx, &ids).await?;
        let (transfer_id, moved) = match release_transfer(release, &balances)? {
            Err((account, reserved)) => return Ok(ReleaseOutcome::Deferred { account, reserved }),
            Ok(None) => (None, 0),
            Ok(Some(t)) => {
                let (outcomes, _) = post_in(&mut tx, std::slice::from_ref(&t), now_ms).await?;
                match outcomes.first().and_then(PostOutcome::accepted) {
                    Some((id, _)) => (Some(id), store::ledger::moved(&t)),
                    None => {
                        return Err(StoreError::Corrupt(format!(
                            "balance move {} could not post: {:?}",
                            release.move_id, outcomes
                        )));
                    }
                }
            }
        };
        sqlx::query(
            "UPDATE balance_moves SET released_ms = $1, transfer_id = $2 WHERE id = $3 AND released_ms IS NULL",
        )
        .bind(now_ms)
        .bind(transfer_id)
        .bind(release.move_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(ReleaseOutcome::Released { transfer_id, moved })
    }
}
