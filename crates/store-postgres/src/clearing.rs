//! `ClearingStore` on PostgreSQL.

use crate::{append_audit, db};
use async_trait::async_trait;
use sqlx::Row;
use store::{
    BankStatementRow, ClearingLineRow, ClearingStore, ClearingWindowRow, ClearingWindowTotalsRow,
    FeeRuleRow, ReconciliationExceptionRow, Result, SettlementInstructionRow, StoreError,
    WindowRunningRow, WindowSumRow,
};

use crate::PgStore;

/// The clearing window a posting stamped `window` (starting at `start_ms`) is written into,
/// read under the writer's lock: `window`, or — when that window was closed while the posting
/// waited for the lock — the next window not closed, so the posting is late, like an upload
/// after the cut-off, and never lands in a window whose report is already written. The close
/// counts the window's postings under the same lock (`clearing_close`), so every posting is in
/// exactly one report.
pub(crate) async fn open_window(
    conn: &mut sqlx::postgres::PgConnection,
    windows: &store::money::Windows,
    window: &str,
    start_ms: i64,
) -> Result<(String, i64)> {
    let mut at = (window.to_string(), start_ms);
    for _ in 0..=store::money::WINDOWS_SKIPPED_MAX {
        let closed: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM clearing_windows WHERE window_id = $1")
                .bind(&at.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        if closed.is_none() {
            return Ok(at);
        }
        at = windows.after(&at.0).ok_or_else(|| {
            store::StoreError::Corrupt(format!("{} is not a clearing window", at.0))
        })?;
    }
    Err(store::StoreError::Corrupt(format!(
        "more than {} clearing windows after {window} are closed already",
        store::money::WINDOWS_SKIPPED_MAX
    )))
}

fn line_row(r: &sqlx::postgres::PgRow) -> Result<ClearingLineRow> {
    Ok(ClearingLineRow {
        window_id: r.try_get("window_id").map_err(db)?,
        merchant: r.try_get("merchant").map_err(db)?,
        category: r.try_get("category").map_err(db)?,
        count: r.try_get("count").map_err(db)?,
        gross_fen: r.try_get("gross_fen").map_err(db)?,
        fee_fen: r.try_get("fee_fen").map_err(db)?,
        net_fen: r.try_get("net_fen").map_err(db)?,
    })
}

fn fee_rule_row(r: &sqlx::postgres::PgRow) -> Result<FeeRuleRow> {
    Ok(FeeRuleRow {
        id: r.try_get("id").map_err(db)?,
        scope_kind: r.try_get("scope_kind").map_err(db)?,
        scope_value: r.try_get("scope_value").map_err(db)?,
        rate_bp: r.try_get("rate_bp").map_err(db)?,
        fixed_fen: r.try_get("fixed_fen").map_err(db)?,
        effective_from: r.try_get("effective_from").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
        created_by: r.try_get("created_by").map_err(db)?,
    })
}

fn instruction_row(r: &sqlx::postgres::PgRow) -> Result<SettlementInstructionRow> {
    Ok(SettlementInstructionRow {
        end_to_end_id: r.try_get("end_to_end_id").map_err(db)?,
        window_id: r.try_get("window_id").map_err(db)?,
        merchant: r.try_get("merchant").map_err(db)?,
        amount_fen: r.try_get("amount_fen").map_err(db)?,
        execution_date: r.try_get("execution_date").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
    })
}

fn statement_row(r: &sqlx::postgres::PgRow) -> Result<BankStatementRow> {
    Ok(BankStatementRow {
        id: r.try_get("id").map_err(db)?,
        account: r.try_get("account").map_err(db)?,
        digest: r.try_get("digest").map_err(db)?,
        entries: r.try_get("entries").map_err(db)?,
        matched: r.try_get("matched").map_err(db)?,
        imported_ms: r.try_get("imported_ms").map_err(db)?,
        imported_by: r.try_get("imported_by").map_err(db)?,
    })
}

fn exception_row(r: &sqlx::postgres::PgRow) -> Result<ReconciliationExceptionRow> {
    Ok(ReconciliationExceptionRow {
        id: r.try_get("id").map_err(db)?,
        statement_id: r.try_get("statement_id").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        end_to_end_id: r.try_get("end_to_end_id").map_err(db)?,
        reference: r.try_get("reference").map_err(db)?,
        sent_fen: r.try_get("sent_fen").map_err(db)?,
        booked_fen: r.try_get("booked_fen").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        resolution: r.try_get("resolution").map_err(db)?,
        resolved_by: r.try_get("resolved_by").map_err(db)?,
        resolved_ms: r.try_get("resolved_ms").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

#[async_trait]
impl ClearingStore for PgStore {
    async fn clearing_close(
        &self,
        window: &ClearingWindowRow,
        lines: &[ClearingLineRow],
        postings: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        crate::lock_head(&mut tx).await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT window_id FROM clearing_windows WHERE window_id = $1")
                .bind(&window.window_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if exists.is_some() {
            return Ok(false);
        }
        // Counted under the lock every posting takes: a purchase or payment stamped before the
        // cut-off that committed after the report was made is found here.
        let now: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM purchases WHERE window_id = $1) + \
             (SELECT count(*) FROM money_movements WHERE window_id = $1)",
        )
        .bind(&window.window_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if now != postings {
            return Err(StoreError::Conflict(format!(
                "window {} holds {now} postings, not the {postings} its report was made from: a \
                 posting committed while the window was being closed; make the report again",
                window.window_id
            )));
        }
        sqlx::query(
            "INSERT INTO clearing_windows (window_id, closed_ms, closed_by, digest) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&window.window_id)
        .bind(window.closed_ms)
        .bind(&window.closed_by)
        .bind(&window.digest)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for chunk in lines.chunks(100) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO clearing_lines (window_id, merchant, category, count, gross_fen, \
                 fee_fen, net_fen) ",
            );
            q.push_values(chunk, |mut b, l| {
                b.push_bind(&l.window_id)
                    .push_bind(&l.merchant)
                    .push_bind(&l.category)
                    .push_bind(l.count)
                    .push_bind(l.gross_fen)
                    .push_bind(l.fee_fen)
                    .push_bind(l.net_fen);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn clearing_window(&self, window_id: &str) -> Result<Option<ClearingWindowRow>> {
        sqlx::query("SELECT * FROM clearing_windows WHERE window_id = $1")
            .bind(window_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| {
                Ok(ClearingWindowRow {
                    window_id: r.try_get("window_id").map_err(db)?,
                    closed_ms: r.try_get("closed_ms").map_err(db)?,
                    closed_by: r.try_get("closed_by").map_err(db)?,
                    digest: r.try_get("digest").map_err(db)?,
                })
            })
            .transpose()
    }

    async fn clearing_window_sums(&self, window_id: &str) -> Result<Vec<WindowSumRow>> {
        let rows = sqlx::query(&format!(
            "SELECT 'purchase' AS kind, merchant, amount_fen, count(*)::BIGINT AS n FROM purchases \
             WHERE window_id = $1 GROUP BY merchant, amount_fen \
             UNION ALL \
             SELECT kind, counterparty, amount, count(*)::BIGINT FROM money_movements \
             WHERE window_id = $2 GROUP BY kind, counterparty, amount \
             ORDER BY 1, 2, 3 LIMIT {}",
            store::CLEARING_SUMS_MAX + 1
        ))
        .bind(window_id)
        .bind(window_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        if rows.len() > store::CLEARING_SUMS_MAX {
            return Err(StoreError::TooMany {
                got: rows.len(),
                max: store::CLEARING_SUMS_MAX,
            });
        }
        rows.iter()
            .map(|r| {
                Ok(WindowSumRow {
                    kind: r.try_get(0).map_err(db)?,
                    merchant: r.try_get(1).map_err(db)?,
                    amount_fen: r.try_get(2).map_err(db)?,
                    count: r.try_get(3).map_err(db)?,
                })
            })
            .collect()
    }

    async fn clearing_lines(&self, window_id: &str) -> Result<Vec<ClearingLineRow>> {
        sqlx::query(
            "SELECT * FROM clearing_lines WHERE window_id = $1 ORDER BY merchant, category \
             LIMIT 100000",
        )
        .bind(window_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(line_row)
        .collect()
    }

    async fn settlement_instructions_record(
        &self,
        rows: &[SettlementInstructionRow],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for chunk in rows.chunks(100) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO settlement_instructions (end_to_end_id, window_id, merchant, \
                 amount_fen, execution_date, state) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.end_to_end_id)
                    .push_bind(&r.window_id)
                    .push_bind(&r.merchant)
                    .push_bind(r.amount_fen)
                    .push_bind(&r.execution_date)
                    .push_bind("sent");
            });
            q.push(" ON CONFLICT (end_to_end_id) DO NOTHING");
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn settlement_instructions_due(
        &self,
        date: &str,
    ) -> Result<Vec<SettlementInstructionRow>> {
        sqlx::query(
            "SELECT * FROM settlement_instructions WHERE state = 'sent' AND execution_date <= $1 \
             ORDER BY end_to_end_id LIMIT 200000",
        )
        .bind(date)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(instruction_row)
        .collect()
    }

    async fn settlement_instruction(
        &self,
        end_to_end_id: &str,
    ) -> Result<Option<SettlementInstructionRow>> {
        sqlx::query("SELECT * FROM settlement_instructions WHERE end_to_end_id = $1")
            .bind(end_to_end_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(instruction_row)
            .transpose()
    }

    async fn clearing_windows(&self, limit: i64) -> Result<Vec<ClearingWindowTotalsRow>> {
        // The latest windows first (through the primary key), then their lines' totals.
        sqlx::query(
            "SELECT w.window_id, w.closed_ms, w.closed_by, w.digest, COUNT(l.merchant) AS lines, \
             COALESCE(SUM(l.count), 0)::BIGINT AS count, COALESCE(SUM(l.gross_fen), 0)::BIGINT AS gross_fen, \
             COALESCE(SUM(l.fee_fen), 0)::BIGINT AS fee_fen, COALESCE(SUM(l.net_fen), 0)::BIGINT AS net_fen \
             FROM (SELECT * FROM clearing_windows ORDER BY window_id DESC LIMIT $1) w \
             LEFT JOIN clearing_lines l ON l.window_id = w.window_id \
             GROUP BY w.window_id, w.closed_ms, w.closed_by, w.digest \
             ORDER BY w.window_id DESC",
        )
        .bind(limit.clamp(0, store::PAGE_MAX as i64))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r: &sqlx::postgres::PgRow| {
            Ok(ClearingWindowTotalsRow {
                window: ClearingWindowRow {
                    window_id: r.try_get("window_id").map_err(db)?,
                    closed_ms: r.try_get("closed_ms").map_err(db)?,
                    closed_by: r.try_get("closed_by").map_err(db)?,
                    digest: r.try_get("digest").map_err(db)?,
                },
                lines: r.try_get("lines").map_err(db)?,
                count: r.try_get("count").map_err(db)?,
                gross_fen: r.try_get("gross_fen").map_err(db)?,
                fee_fen: r.try_get("fee_fen").map_err(db)?,
                net_fen: r.try_get("net_fen").map_err(db)?,
            })
        })
        .collect()
    }

    async fn clearing_running(&self, window_id: &str) -> Result<WindowRunningRow> {
        // Each through its window index (purchases_window, money_movements_window).
        let (purchases, purchases_fen): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*)::BIGINT, COALESCE(SUM(amount_fen), 0)::BIGINT FROM purchases WHERE window_id = $1",
        )
        .bind(window_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let (movements, movements_fen): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*)::BIGINT, COALESCE(SUM(CASE WHEN kind = 'payment' THEN amount \
             ELSE -amount END), 0)::BIGINT FROM money_movements WHERE window_id = $1",
        )
        .bind(window_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(WindowRunningRow {
            purchases,
            purchases_fen,
            movements,
            movements_fen,
        })
    }

    async fn settlement_instructions_of_window(
        &self,
        window_id: &str,
    ) -> Result<Vec<SettlementInstructionRow>> {
        sqlx::query(
            "SELECT * FROM settlement_instructions WHERE window_id = $1 ORDER BY end_to_end_id \
             LIMIT 100000",
        )
        .bind(window_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(instruction_row)
        .collect()
    }

    async fn statement_import(
        &self,
        statement: &BankStatementRow,
        matched: &[String],
        exceptions: &[ReconciliationExceptionRow],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO bank_statements (id, account, digest, entries, matched, imported_ms, \
             imported_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&statement.id)
        .bind(&statement.account)
        .bind(&statement.digest)
        .bind(statement.entries)
        .bind(statement.matched)
        .bind(statement.imported_ms)
        .bind(&statement.imported_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "bank statement {} is already imported",
                statement.id
            )),
            other => other,
        })?;
        for id in matched {
            sqlx::query(
                "UPDATE settlement_instructions SET state = 'matched' WHERE end_to_end_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for e in exceptions {
            sqlx::query(
                "INSERT INTO reconciliation_exceptions (statement_id, kind, end_to_end_id, \
                 reference, sent_fen, booked_fen, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&statement.id)
            .bind(&e.kind)
            .bind(&e.end_to_end_id)
            .bind(&e.reference)
            .bind(e.sent_fen)
            .bind(e.booked_fen)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(id) = &e.end_to_end_id {
                sqlx::query(
                    "UPDATE settlement_instructions SET state = 'exception' \
                     WHERE end_to_end_id = $1 AND state = 'sent'",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn bank_statement(&self, id: &str) -> Result<Option<BankStatementRow>> {
        sqlx::query("SELECT * FROM bank_statements WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(statement_row)
            .transpose()
    }

    async fn reconciliation_exceptions(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReconciliationExceptionRow>> {
        sqlx::query(
            "SELECT * FROM reconciliation_exceptions WHERE ($1::TEXT IS NULL OR state = $2) \
             ORDER BY id LIMIT $3",
        )
        .bind(state)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(exception_row)
        .collect()
    }

    async fn reconciliation_exception_resolve(
        &self,
        id: i64,
        resolution: &str,
        resolved_by: &str,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ReconciliationExceptionRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let current =
            sqlx::query("SELECT * FROM reconciliation_exceptions WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .as_ref()
                .map(exception_row)
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("reconciliation exception {id}")))?;
        if current.state != "open" {
            return Err(StoreError::Conflict(format!(
                "reconciliation exception {id} is already resolved"
            )));
        }
        let row = sqlx::query(
            "UPDATE reconciliation_exceptions SET state = 'resolved', resolution = $1, \
             resolved_by = $2, resolved_ms = $3 WHERE id = $4 RETURNING *",
        )
        .bind(resolution)
        .bind(resolved_by)
        .bind(now_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let row = exception_row(&row)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn fee_rules(&self) -> Result<Vec<FeeRuleRow>> {
        sqlx::query(
            "SELECT * FROM fee_rules ORDER BY scope_kind, scope_value, effective_from \
             LIMIT 100000",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(fee_rule_row)
        .collect()
    }

    async fn fee_rule_add(
        &self,
        rule: &FeeRuleRow,
        rules_max: usize,
        audit: audit::Draft,
    ) -> Result<FeeRuleRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        crate::lock_head(&mut tx).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM fee_rules")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count >= rules_max {
            return Err(StoreError::TooMany {
                got: count.saturating_add(1),
                max: rules_max,
            });
        }
        // Window ids are closing dates, YYYY-MM-DD: they order as text.
        let closed: Option<String> =
            sqlx::query_scalar("SELECT max(window_id) FROM clearing_windows WHERE window_id >= $1")
                .bind(&rule.effective_from)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        if let Some(w) = closed {
            return Err(StoreError::Conflict(format!(
                "closed clearing window {w}, on or after {},",
                rule.effective_from
            )));
        }
        let same: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM fee_rules WHERE scope_kind = $1 AND scope_value = $2 \
             AND effective_from = $3",
        )
        .bind(&rule.scope_kind)
        .bind(&rule.scope_value)
        .bind(&rule.effective_from)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if same.is_some() {
            return Err(StoreError::Conflict(format!(
                "a fee rule for {} {} from {}",
                rule.scope_kind, rule.scope_value, rule.effective_from
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO fee_rules (scope_kind, scope_value, rate_bp, fixed_fen, \
             effective_from, created_ms, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id",
        )
        .bind(&rule.scope_kind)
        .bind(&rule.scope_value)
        .bind(rule.rate_bp)
        .bind(rule.fixed_fen)
        .bind(&rule.effective_from)
        .bind(rule.created_ms)
        .bind(&rule.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, rule.created_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(FeeRuleRow { id, ..rule.clone() })
    }
}
