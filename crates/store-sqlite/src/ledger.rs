//! The ledger on SQLite. One writer: a batch reads the balances it touches, plans in memory
//! with `store::ledger::plan_post_batch`, and writes transfers, postings, balances and its
//! audit entry in one `BEGIN IMMEDIATE` transaction; no other writer can interleave.

use crate::{SqliteStore, append_audit, db, placeholders};
use ::ledger::{AccountKey, Balance, Transfer, TransferState};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
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

/// SQLite allows 32,766 bound values per statement; stay well below.
const KEYS_PER_QUERY: usize = 900;

/// An account's balance from a row with its `id`, `unit`, `normal`, `floor`, `balance` and
/// `reserved`.
pub(crate) fn balance_row(r: &SqliteRow) -> Result<Balance> {
    decode_balance(
        r.try_get("id").map_err(db)?,
        r.try_get("unit").map_err(db)?,
        r.try_get("normal").map_err(db)?,
        r.try_get("floor").map_err(db)?,
        r.try_get("balance").map_err(db)?,
        r.try_get("reserved").map_err(db)?,
    )
}

fn account_row(r: &SqliteRow) -> Result<AccountRow> {
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

fn transfer_row(r: &SqliteRow) -> Result<TransferRow> {
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

fn posting_of(r: &SqliteRow) -> Result<(i64, ::ledger::Posting)> {
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

pub(crate) async fn load_balances(
    conn: &mut SqliteConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Balance>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(KEYS_PER_QUERY) {
        let sql = format!(
            "SELECT id, unit, normal, floor, balance, reserved FROM ledger_accounts WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
            let b = balance_row(&r)?;
            out.insert(b.id, b);
        }
    }
    Ok(out)
}

async fn load_existing(
    conn: &mut SqliteConnection,
    keys: &[&str],
) -> Result<HashMap<String, Existing>> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let sql = format!(
            "SELECT id, key, digest, state FROM ledger_transfers WHERE key IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for k in chunk {
            q = q.bind(*k);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
            out.insert(
                r.try_get("key").map_err(db)?,
                Existing {
                    id: r.try_get("id").map_err(db)?,
                    digest: decode_digest(r.try_get("digest").map_err(db)?)?,
                    state: decode_state(r.try_get("state").map_err(db)?)?,
                },
            );
        }
    }
    Ok(out)
}

async fn write_balances(conn: &mut SqliteConnection, balances: &[Balance]) -> Result<()> {
    for chunk in balances.chunks(KEYS_PER_QUERY) {
        let sql = format!(
            "WITH v(id, balance, reserved) AS (VALUES {}) \
             UPDATE ledger_accounts SET balance = v.balance, reserved = v.reserved \
             FROM v WHERE ledger_accounts.id = v.id",
            placeholders(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for b in chunk {
            q = q.bind(b.id).bind(b.balance).bind(b.reserved);
        }
        let n = q.execute(&mut *conn).await.map_err(db)?.rows_affected();
        if n != chunk.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "ledger balance update touched {n} of {} accounts",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Plans and writes a batch inside the caller's transaction; `Ok((outcomes, applied))`.
pub(crate) async fn post_in(
    conn: &mut SqliteConnection,
    transfers: &[Transfer],
    now_ms: i64,
) -> Result<(Vec<PostOutcome>, usize)> {
    let keys: Vec<&str> = transfers.iter().map(|t| t.key.as_str()).collect();
    let existing = load_existing(conn, &keys).await?;
    let mut balances = load_balances(conn, &account_ids(transfers)).await?;
    let plan: BatchPlan = plan_post_batch(transfers, &existing, &mut balances);
    let n = plan.applied();
    if n == 0 {
        return Ok((plan.finish(&[]), 0));
    }
    let planned: Vec<&Transfer> = plan.inserts.iter().map(|i| &transfers[*i]).collect();
    let ids = insert_planned(conn, &planned, &plan.balances, now_ms).await?;
    Ok((plan.finish(&ids), n))
}

/// Inserts transfers already planned (validated, applied to `balances` by `ledger::apply`)
/// with consecutive new ids, and writes the changed balances; returns the ids. Runs inside the
/// caller's transaction.
pub(crate) async fn insert_planned(
    conn: &mut SqliteConnection,
    transfers: &[&Transfer],
    balances: &[Balance],
    now_ms: i64,
) -> Result<Vec<i64>> {
    if transfers.is_empty() && balances.is_empty() {
        return Ok(Vec::new());
    }
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM ledger_transfers")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let ids: Vec<i64> = (0..transfers.len() as i64).map(|i| first + i).collect();
    let inserted: Vec<(i64, &Transfer)> = transfers
        .iter()
        .zip(&ids)
        .map(|(t, id)| (*id, *t))
        .collect();
    for chunk in inserted.chunks(1000) {
        let sql = format!(
            "INSERT INTO ledger_transfers (id, key, kind, memo, mode, state, digest, created_ms, posted_ms) VALUES {}",
            placeholders(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for (id, t) in chunk {
            let (state, posted) = initial_state(t, now_ms);
            q = q
                .bind(*id)
                .bind(t.key.as_str())
                .bind(t.kind.as_str())
                .bind(&t.memo)
                .bind(t.mode.as_str())
                .bind(state.as_str())
                .bind(t.digest().to_vec())
                .bind(now_ms)
                .bind(posted);
        }
        q.execute(&mut *conn).await.map_err(db)?;
    }
    let postings: Vec<(i64, usize, &::ledger::Posting)> = inserted
        .iter()
        .flat_map(|(id, t)| t.postings.iter().enumerate().map(move |(i, p)| (*id, i, p)))
        .collect();
    for chunk in postings.chunks(2000) {
        let sql = format!(
            "INSERT INTO ledger_postings (transfer_id, idx, account_id, unit, side, amount) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for (id, i, p) in chunk {
            q = q
                .bind(*id)
                .bind(*i as i64)
                .bind(p.account)
                .bind(p.unit.as_str())
                .bind(p.side.as_str())
                .bind(p.amount.get());
        }
        q.execute(&mut *conn).await.map_err(db)?;
    }
    write_balances(conn, balances).await?;
    Ok(ids)
}

/// Plans and writes resolutions inside the caller's transaction; `Ok((outcomes, changed))`.
pub(crate) async fn resolve_in(
    conn: &mut SqliteConnection,
    resolves: &[Resolve],
    now_ms: i64,
) -> Result<(Vec<PostOutcome>, usize)> {
    let mut found: HashMap<String, Found> = HashMap::new();
    for chunk in resolves.chunks(KEYS_PER_QUERY) {
        let sql = format!(
            "SELECT * FROM ledger_transfers WHERE key IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(r.key.as_str());
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
            let t = transfer_row(&r)?;
            let ps =
                sqlx::query("SELECT * FROM ledger_postings WHERE transfer_id = ? ORDER BY idx")
                    .bind(t.id)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db)?;
            let postings = ps
                .iter()
                .map(|r| posting_of(r).map(|x| x.1))
                .collect::<Result<Vec<_>>>()?;
            found.insert(
                t.key.clone(),
                Found {
                    id: t.id,
                    state: t.state,
                    mode: t.mode,
                    postings,
                },
            );
        }
    }
    let mut ids: Vec<i64> = found
        .values()
        .flat_map(|f| f.postings.iter().map(|p| p.account))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut balances = load_balances(conn, &ids).await?;
    let (outcomes, changes, changed) = plan_resolve_batch(resolves, &found, &mut balances);
    if changes.is_empty() {
        return Ok((outcomes, 0));
    }
    for (id, state) in &changes {
        let posted = (*state == TransferState::Posted).then_some(now_ms);
        sqlx::query(
            "UPDATE ledger_transfers SET state = ?, resolved_ms = ?, posted_ms = ? \
                 WHERE id = ? AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(now_ms)
        .bind(posted)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    write_balances(conn, &changed).await?;
    Ok((outcomes, changes.len()))
}

async fn attach_postings(
    conn: impl Executor<'_, Database = sqlx::Sqlite>,
    rows: &mut [TransferRow],
) -> Result<()> {
    let (Some(lo), Some(hi)) = (rows.first().map(|t| t.id), rows.last().map(|t| t.id)) else {
        return Ok(());
    };
    let ps = sqlx::query(
        "SELECT * FROM ledger_postings WHERE transfer_id BETWEEN ? AND ? ORDER BY transfer_id, idx",
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
impl LedgerStore for SqliteStore {
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
        // Most calls find every account already open: answer those from a reader.
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match self.ledger_account(k).await? {
                Some(a) => out.push(a),
                None => break,
            }
        }
        if out.len() == keys.len() {
            return Ok(out);
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let mut created = 0;
        out.clear();
        for k in keys {
            let kind = k.kind();
            created += sqlx::query(
                "INSERT INTO ledger_accounts (kind, owner, unit, normal, floor, created_ms) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, owner, unit) DO NOTHING",
            )
            .bind(kind.as_str())
            .bind(k.owner().text())
            .bind(k.unit().as_str())
            .bind(kind.normal_side().as_str())
            .bind(kind.floor())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            let r = sqlx::query(
                "SELECT * FROM ledger_accounts WHERE kind = ? AND owner = ? AND unit = ?",
            )
            .bind(kind.as_str())
            .bind(k.owner().text())
            .bind(k.unit().as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            out.push(account_row(&r)?);
        }
        if created > 0 {
            append_audit(&mut tx, audit, now_ms).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn ledger_account(&self, key: &AccountKey) -> Result<Option<AccountRow>> {
        sqlx::query("SELECT * FROM ledger_accounts WHERE kind = ? AND owner = ? AND unit = ?")
            .bind(key.kind().as_str())
            .bind(key.owner().text())
            .bind(key.unit().as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .as_ref()
            .map(account_row)
            .transpose()
    }

    async fn ledger_accounts_page(&self, after_id: i64, limit: u32) -> Result<Vec<AccountRow>> {
        sqlx::query("SELECT * FROM ledger_accounts WHERE id > ? ORDER BY id LIMIT ?")
            .bind(after_id)
            .bind(limit.min(store::PAGE_MAX) as i64)
            .fetch_all(&self.read)
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
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
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
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let (outcomes, changed) = resolve_in(&mut tx, resolves, now_ms).await?;
        if changed == 0 {
            return Ok(outcomes);
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(outcomes)
    }

    async fn ledger_transfer(&self, key: &str) -> Result<Option<TransferRow>> {
        let Some(r) = sqlx::query("SELECT * FROM ledger_transfers WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let mut rows = vec![transfer_row(&r)?];
        attach_postings(&self.read, &mut rows).await?;
        Ok(rows.pop())
    }

    async fn ledger_transfers_page(&self, after_id: i64, limit: u32) -> Result<Vec<TransferRow>> {
        let mut rows =
            sqlx::query("SELECT * FROM ledger_transfers WHERE id > ? ORDER BY id LIMIT ?")
                .bind(after_id)
                .bind(i64::from(limit.min(10_000)))
                .fetch_all(&self.read)
                .await
                .map_err(db)?
                .iter()
                .map(transfer_row)
                .collect::<Result<Vec<_>>>()?;
        attach_postings(&self.read, &mut rows).await?;
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
             ON t.id = p.transfer_id WHERE p.account_id = ? AND p.transfer_id > ? \
             ORDER BY p.transfer_id, p.idx LIMIT ?",
        )
        .bind(account)
        .bind(after_transfer_id)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
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
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        let mut check = LedgerCheck {
            accounts: counts.try_get::<i64, _>("a").map_err(db)? as u64,
            transfers: counts.try_get::<i64, _>("t").map_err(db)? as u64,
            postings: counts.try_get::<i64, _>("p").map_err(db)? as u64,
            mismatch: None,
        };
        let dangling = sqlx::query(store::ledger::DANGLING_POSTING_SQL)
            .fetch_optional(&self.read)
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
                   CASE WHEN p.side = a2.normal THEN p.amount ELSE -p.amount END ELSE 0 END) AS posted, \
                 SUM(CASE WHEN t.state = 'pending' AND p.side <> a2.normal THEN p.amount ELSE 0 END) AS held \
               FROM ledger_postings p JOIN ledger_transfers t ON t.id = p.transfer_id \
               JOIN ledger_accounts a2 ON a2.id = p.account_id GROUP BY p.account_id \
             ) s ON s.account_id = a.id \
             WHERE a.balance <> COALESCE(s.posted, 0) OR a.reserved <> COALESCE(s.held, 0) \
             ORDER BY a.id LIMIT 1",
        )
        .fetch_optional(&self.read)
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
        .fetch_optional(&self.read)
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
             ON t.id = p.transfer_id GROUP BY p.transfer_id, p.unit \
             HAVING SUM(CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END) <> 0 \
             ORDER BY p.transfer_id LIMIT 1",
        )
        .fetch_optional(&self.read)
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
             WHERE released_ms IS NULL AND not_before_s <= ? ORDER BY id LIMIT ?",
        )
        .bind(now_s)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
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
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let released: Option<Option<i64>> =
            sqlx::query_scalar("SELECT released_ms FROM balance_moves WHERE id = ?")
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
        let balances = load_balances(&mut tx, &ids).await?;
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
            "UPDATE balance_moves SET released_ms = ?, transfer_id = ? WHERE id = ? AND released_ms IS NULL",
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
