//! `PointsStore` on PostgreSQL: every entry with its ledger transfer and audit entry in one
//! transaction that first takes the audit head's lock (so the cap and expiry sums are exact).

use crate::ledger::post_in;
use crate::{PgStore, append_audit, db, lock_head};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::collections::HashMap;
use store::ledger::PostOutcome;
use store::points::*;
use store::{Result, StoreError};

fn rule_row(r: &PgRow) -> Result<PointsRuleRow> {
    Ok(PointsRuleRow {
        kind: r.try_get("kind").map_err(db)?,
        points_per_unit: r.try_get("points_per_unit").map_err(db)?,
        daily_cap: r.try_get("daily_cap").map_err(db)?,
        validity_days: r.try_get("validity_days").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        updated_ms: r.try_get("updated_ms").map_err(db)?,
    })
}

fn item_row(r: &PgRow) -> Result<PointsItemRow> {
    Ok(PointsItemRow {
        code: r.try_get("code").map_err(db)?,
        name_zh: r.try_get("name_zh").map_err(db)?,
        name_en: r.try_get("name_en").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        cost_points: r.try_get("cost_points").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        updated_ms: r.try_get("updated_ms").map_err(db)?,
    })
}

fn project_row(r: &PgRow) -> Result<CharityProjectRow> {
    Ok(CharityProjectRow {
        code: r.try_get("code").map_err(db)?,
        name_zh: r.try_get("name_zh").map_err(db)?,
        name_en: r.try_get("name_en").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        updated_ms: r.try_get("updated_ms").map_err(db)?,
    })
}

fn entry_row(r: &PgRow) -> Result<PointsEntryRow> {
    Ok(PointsEntryRow {
        id: r.try_get("id").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        op: r.try_get("op").map_err(db)?,
        key: r.try_get("key").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        target: r.try_get("target").map_err(db)?,
        points: r.try_get("points").map_err(db)?,
        day: r.try_get("day").map_err(db)?,
        expires_day: r.try_get("expires_day").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

const ENTRY_COLS: &str =
    "id, resident_id, op, key, kind, target, points, day, expires_day, created_ms";

async fn entry_by_key(conn: &mut PgConnection, key: &str) -> Result<Option<PointsEntryRow>> {
    sqlx::query(&format!(
        "SELECT {ENTRY_COLS} FROM points_entries WHERE key = $1"
    ))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .as_ref()
    .map(entry_row)
    .transpose()
}

#[allow(clippy::too_many_arguments)]
async fn insert_entry(
    conn: &mut PgConnection,
    resident_id: i64,
    op: &str,
    key: &str,
    kind: Option<&str>,
    target: Option<&str>,
    points: i64,
    day: i64,
    expires_day: Option<i64>,
    now_ms: i64,
) -> Result<PointsEntryRow> {
    let r = sqlx::query(&format!(
        "INSERT INTO points_entries (resident_id, op, key, kind, target, points, day, \
         expires_day, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING {ENTRY_COLS}"
    ))
    .bind(resident_id)
    .bind(op)
    .bind(key)
    .bind(kind)
    .bind(target)
    .bind(points)
    .bind(day)
    .bind(expires_day)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    entry_row(&r)
}

/// Posts one points transfer in the transaction; `Err(outcome)` when the ledger refused it.
async fn post_one(
    conn: &mut PgConnection,
    t: ::ledger::Transfer,
    now_ms: i64,
) -> Result<std::result::Result<(), PostOutcome>> {
    let (mut out, _) = post_in(conn, std::slice::from_ref(&t), now_ms).await?;
    let o = out.pop().expect("one outcome");
    Ok(match o {
        PostOutcome::Applied { .. } => Ok(()),
        o => Err(o),
    })
}

async fn totals(conn: &mut PgConnection, resident_id: i64, day: i64) -> Result<PointsTotals> {
    let r = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN op = 'earn' THEN points END), 0)::BIGINT AS earned, \
           COALESCE(SUM(CASE WHEN op = 'redeem' THEN points END), 0)::BIGINT AS redeemed, \
           COALESCE(SUM(CASE WHEN op = 'donate' THEN points END), 0)::BIGINT AS donated, \
           COALESCE(SUM(CASE WHEN op = 'expire' THEN points END), 0)::BIGINT AS expired, \
           COALESCE(SUM(CASE WHEN op = 'earn' AND expires_day <= $2 THEN points END), 0)::BIGINT AS due \
         FROM points_entries WHERE resident_id = $1",
    )
    .bind(resident_id)
    .bind(day)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok(PointsTotals {
        earned: r.try_get("earned").map_err(db)?,
        redeemed: r.try_get("redeemed").map_err(db)?,
        donated: r.try_get("donated").map_err(db)?,
        expired: r.try_get("expired").map_err(db)?,
        due: r.try_get("due").map_err(db)?,
    })
}

#[async_trait]
impl PointsStore for PgStore {
    async fn points_rules(&self) -> Result<Vec<PointsRuleRow>> {
        sqlx::query("SELECT * FROM points_rules ORDER BY kind")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rule_row)
            .collect()
    }

    async fn points_rule_set(&self, r: &PointsRuleRow, audit: audit::Draft) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO points_rules (kind, points_per_unit, daily_cap, validity_days, active, \
             updated_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind) DO UPDATE SET \
             points_per_unit = excluded.points_per_unit, daily_cap = excluded.daily_cap, \
             validity_days = excluded.validity_days, active = excluded.active, \
             updated_ms = excluded.updated_ms",
        )
        .bind(&r.kind)
        .bind(r.points_per_unit)
        .bind(r.daily_cap)
        .bind(r.validity_days)
        .bind(r.active)
        .bind(r.updated_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, r.updated_ms).await?;
        tx.commit().await.map_err(db)
    }

    async fn points_items(&self) -> Result<Vec<PointsItemRow>> {
        sqlx::query("SELECT * FROM points_items ORDER BY code")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(item_row)
            .collect()
    }

    async fn points_item_set(&self, i: &PointsItemRow, audit: audit::Draft) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO points_items (code, name_zh, name_en, kind, cost_points, active, \
             updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (code) DO UPDATE SET \
             name_zh = excluded.name_zh, name_en = excluded.name_en, kind = excluded.kind, \
             cost_points = excluded.cost_points, active = excluded.active, \
             updated_ms = excluded.updated_ms",
        )
        .bind(&i.code)
        .bind(&i.name_zh)
        .bind(&i.name_en)
        .bind(&i.kind)
        .bind(i.cost_points)
        .bind(i.active)
        .bind(i.updated_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, i.updated_ms).await?;
        tx.commit().await.map_err(db)
    }

    async fn points_projects(&self) -> Result<Vec<CharityProjectRow>> {
        sqlx::query("SELECT * FROM points_projects ORDER BY code")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(project_row)
            .collect()
    }

    async fn points_project_set(&self, p: &CharityProjectRow, audit: audit::Draft) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO points_projects (code, name_zh, name_en, active, updated_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code) DO UPDATE SET \
             name_zh = excluded.name_zh, name_en = excluded.name_en, active = excluded.active, \
             updated_ms = excluded.updated_ms",
        )
        .bind(&p.code)
        .bind(&p.name_zh)
        .bind(&p.name_en)
        .bind(p.active)
        .bind(p.updated_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, p.updated_ms).await?;
        tx.commit().await.map_err(db)
    }

    async fn points_earn(
        &self,
        earnings: &[NewEarning],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<EarnOutcome>> {
        if earnings.len() > EARN_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: earnings.len(),
                max: EARN_BATCH_MAX,
            });
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        // Three statements per batch, not per earning: the stored keys, the day's sums, the
        // insert.
        let mut stored: HashMap<String, PointsEntryRow> = HashMap::new();
        for r in sqlx::query(&format!(
            "SELECT {ENTRY_COLS} FROM points_entries WHERE key = ANY($1)"
        ))
        .bind(earnings.iter().map(|e| e.key.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        {
            let row = entry_row(&r)?;
            stored.insert(row.key.clone(), row);
        }
        let mut triples: Vec<(i64, &str, i64)> = earnings
            .iter()
            .filter(|e| !stored.contains_key(&e.key))
            .map(|e| (e.resident_id, e.kind.as_str(), e.day))
            .collect();
        triples.sort_unstable();
        triples.dedup();
        let mut earned: HashMap<(i64, String, i64), i64> = HashMap::new();
        if !triples.is_empty() {
            let sums: Vec<(i64, String, i64, i64)> = sqlx::query_as(
                "SELECT v.r, v.k, v.d, (SELECT COALESCE(SUM(p.points), 0)::BIGINT \
                 FROM points_entries p WHERE p.resident_id = v.r AND p.kind = v.k \
                 AND p.day = v.d AND p.op = 'earn') \
                 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS v(r, k, d)",
            )
            .bind(triples.iter().map(|t| t.0).collect::<Vec<_>>())
            .bind(triples.iter().map(|t| t.1).collect::<Vec<_>>())
            .bind(triples.iter().map(|t| t.2).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for (r, k, d, sum) in sums {
                earned.insert((r, k, d), sum);
            }
        }
        let keys: std::collections::HashSet<String> = stored.keys().cloned().collect();
        let steps = plan_earnings(earnings, &keys, &earned);
        let new: Vec<(&NewEarning, i64)> = earnings
            .iter()
            .zip(&steps)
            .filter_map(|(e, s)| match s {
                EarnStep::Insert { granted } => Some((e, *granted)),
                _ => None,
            })
            .collect();
        let mut inserted: HashMap<String, PointsEntryRow> = HashMap::new();
        if !new.is_empty() {
            for r in sqlx::query(&format!(
                "INSERT INTO points_entries (resident_id, op, key, kind, points, day, \
                 expires_day, created_ms) SELECT v.r, 'earn', v.key, v.kind, v.points, v.day, \
                 v.expires, $7 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], \
                 $5::BIGINT[], $6::BIGINT[]) AS v(r, key, kind, points, day, expires) \
                 RETURNING {ENTRY_COLS}"
            ))
            .bind(new.iter().map(|(e, _)| e.resident_id).collect::<Vec<_>>())
            .bind(new.iter().map(|(e, _)| e.key.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|(e, _)| e.kind.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|(_, g)| *g).collect::<Vec<_>>())
            .bind(new.iter().map(|(e, _)| e.day).collect::<Vec<_>>())
            .bind(new.iter().map(|(e, _)| e.expires_day).collect::<Vec<_>>())
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            {
                let row = entry_row(&r)?;
                inserted.insert(row.key.clone(), row);
            }
        }
        let out = earn_outcomes(earnings, &steps, &stored, &inserted)?;
        if !new.is_empty() {
            let transfers = new
                .iter()
                .map(|(e, granted)| {
                    entry_transfer(OP_EARN, &e.key, e.account, e.issuance, *granted)
                })
                .collect::<Result<Vec<_>>>()?;
            // One ledger batch for the whole call (a bill run's chunk earns at once).
            let (outcomes, _) = post_in(&mut tx, &transfers, now_ms).await?;
            if let Some(o) = outcomes
                .iter()
                .find(|o| !matches!(o, PostOutcome::Applied { .. }))
            {
                return Err(StoreError::Conflict(format!("a points earning: {o:?}")));
            }
            append_audit(&mut tx, audit, now_ms).await?;
            tx.commit().await.map_err(db)?;
        }
        Ok(out)
    }

    async fn points_spend(
        &self,
        s: &NewSpend,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<SpendOutcome> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        if let Some(first) = entry_by_key(&mut tx, &s.key).await? {
            if first.op != s.op
                || first.points != s.points
                || first.target.as_deref() != Some(&s.target)
                || first.resident_id != s.resident_id
            {
                return Err(StoreError::Conflict(format!(
                    "points key {} for a different request",
                    s.key
                )));
            }
            return Ok(SpendOutcome::Duplicate(first));
        }
        let t = entry_transfer(&s.op, &s.key, s.account, s.sink, s.points)?;
        match post_one(&mut tx, t, now_ms).await? {
            Ok(()) => {}
            Err(PostOutcome::Rejected(e)) => return Ok(SpendOutcome::Refused(e)),
            Err(o) => {
                return Err(StoreError::Conflict(format!(
                    "points spending {}: {o:?}",
                    s.key
                )));
            }
        }
        let row = insert_entry(
            &mut tx,
            s.resident_id,
            &s.op,
            &s.key,
            None,
            Some(&s.target),
            s.points,
            s.day,
            None,
            now_ms,
        )
        .await?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(SpendOutcome::Spent(row))
    }

    async fn points_expire(
        &self,
        resident_id: i64,
        day: i64,
        account: i64,
        expired_account: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Option<PointsEntryRow>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let t = totals(&mut tx, resident_id, day).await?;
        // Oldest points leave first (`points::expiring`).
        let amount = (t.due - t.outflow()).max(0);
        sqlx::query(
            "UPDATE points_entries SET lot_closed = TRUE WHERE resident_id = $1 AND op = 'earn' \
             AND lot_closed = FALSE AND expires_day <= $2",
        )
        .bind(resident_id)
        .bind(day)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if amount == 0 {
            tx.commit().await.map_err(db)?;
            return Ok(None);
        }
        let key = expire_key(resident_id, day);
        let tr = entry_transfer(OP_EXPIRE, &key, account, expired_account, amount)?;
        if let Err(o) = post_one(&mut tx, tr, now_ms).await? {
            return Err(StoreError::Conflict(format!("points expiry {key}: {o:?}")));
        }
        let row = insert_entry(
            &mut tx,
            resident_id,
            OP_EXPIRE,
            &key,
            None,
            None,
            amount,
            day,
            None,
            now_ms,
        )
        .await?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(row))
    }

    async fn points_expiry_due(&self, day: i64, after: i64, limit: u32) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT DISTINCT resident_id FROM points_entries WHERE op = 'earn' \
             AND lot_closed = FALSE AND expires_day <= $1 AND resident_id > $2 \
             ORDER BY resident_id LIMIT $3",
        )
        .bind(day)
        .bind(after)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn points_totals(&self, resident_id: i64, day: i64) -> Result<PointsTotals> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        totals(&mut conn, resident_id, day).await
    }

    async fn points_entries(
        &self,
        resident_id: i64,
        before: i64,
        limit: u32,
    ) -> Result<Vec<PointsEntryRow>> {
        sqlx::query(&format!(
            "SELECT {ENTRY_COLS} FROM points_entries WHERE resident_id = $1 \
             AND ($2::BIGINT = 0 OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(resident_id)
        .bind(before)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(entry_row)
        .collect()
    }

    async fn points_entry(&self, key: &str) -> Result<Option<PointsEntryRow>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        entry_by_key(&mut conn, key).await
    }
}
