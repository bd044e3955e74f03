//! `BillStore` on PostgreSQL.

use crate::{PgStore, append_audit, db};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use store::{
    AgreementRow, BILL_BATCH_MAX, BillDebitFailed, BillDue, BillPaid, BillRow, BillRunRow,
    BillStore, BillUpload, BillerRow, NewBill, PAGE_MAX, Result, StoreError,
};

fn biller_row(r: &PgRow) -> Result<BillerRow> {
    Ok(BillerRow {
        code: r.try_get("code").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

pub(crate) fn bill_row(r: &PgRow) -> Result<BillRow> {
    Ok(BillRow {
        id: r.try_get("id").map_err(db)?,
        biller: r.try_get("biller").map_err(db)?,
        bill_number: r.try_get("bill_number").map_err(db)?,
        customer_no: r.try_get("customer_no").map_err(db)?,
        period: r.try_get("period").map_err(db)?,
        amount_fen: r.try_get("amount_fen").map_err(db)?,
        due_date: r.try_get("due_date").map_err(db)?,
        status: r.try_get("status").map_err(db)?,
        payment_id: r.try_get("payment_id").map_err(db)?,
        paid_by: r.try_get("paid_by").map_err(db)?,
        paid_ms: r.try_get("paid_ms").map_err(db)?,
        debit_attempts: r.try_get("debit_attempts").map_err(db)?,
        next_debit_ms: r.try_get("next_debit_ms").map_err(db)?,
        last_error: r.try_get("last_error").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn agreement_row(r: &PgRow, p: &str) -> Result<AgreementRow> {
    let c = |n: &str| format!("{p}{n}");
    Ok(AgreementRow {
        id: r.try_get(c("id").as_str()).map_err(db)?,
        resident_id: r.try_get(c("resident_id").as_str()).map_err(db)?,
        biller: r.try_get(c("biller").as_str()).map_err(db)?,
        customer_no: r.try_get(c("customer_no").as_str()).map_err(db)?,
        limit_fen: r.try_get(c("limit_fen").as_str()).map_err(db)?,
        status: r.try_get(c("status").as_str()).map_err(db)?,
        created_ms: r.try_get(c("created_ms").as_str()).map_err(db)?,
    })
}

fn run_row(r: &PgRow) -> Result<BillRunRow> {
    Ok(BillRunRow {
        id: r.try_get("id").map_err(db)?,
        due_on: r.try_get("due_on").map_err(db)?,
        started_ms: r.try_get("started_ms").map_err(db)?,
        finished_ms: r.try_get("finished_ms").map_err(db)?,
        considered: r.try_get("considered").map_err(db)?,
        debited: r.try_get("debited").map_err(db)?,
        debited_fen: r.try_get("debited_fen").map_err(db)?,
        short_of_funds: r.try_get("short_of_funds").map_err(db)?,
        over_limit: r.try_get("over_limit").map_err(db)?,
        notices: r.try_get("notices").map_err(db)?,
    })
}

#[async_trait]
impl BillStore for PgStore {
    async fn biller_insert(&self, b: &BillerRow, audit: audit::Draft, now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT code FROM merchants WHERE code = $1")
                .bind(&b.code)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("merchant {}", b.code)));
        }
        sqlx::query("INSERT INTO billers (code, kind, created_ms) VALUES ($1, $2, $3)")
            .bind(&b.code)
            .bind(&b.kind)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("biller {}", b.code)),
                other => other,
            })?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn biller(&self, code: &str) -> Result<Option<BillerRow>> {
        sqlx::query("SELECT * FROM billers WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| biller_row(&r))
            .transpose()
    }

    async fn billers(&self) -> Result<Vec<BillerRow>> {
        sqlx::query("SELECT * FROM billers ORDER BY code LIMIT 10000")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(biller_row)
            .collect()
    }

    async fn bills_upload(
        &self,
        biller: &str,
        bills: &[NewBill],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<BillUpload> {
        if bills.len() > BILL_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: bills.len(),
                max: BILL_BATCH_MAX,
            });
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let known: Option<String> = sqlx::query_scalar("SELECT code FROM billers WHERE code = $1")
            .bind(biller)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("biller {biller}")));
        }
        let mut out = BillUpload::default();
        let mut seen = std::collections::HashSet::new();
        for chunk in bills.chunks(1000) {
            // Bills stored before must be the same bill, or the whole upload is refused.
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "SELECT bill_number, customer_no, period, amount_fen, due_date FROM bills \
                 WHERE biller = ",
            );
            q.push_bind(biller).push(" AND bill_number IN (");
            let mut sep = q.separated(", ");
            for n in chunk {
                sep.push_bind(&n.bill_number);
            }
            q.push(")");
            let mut stored = std::collections::HashMap::new();
            for r in q.build().fetch_all(&mut *tx).await.map_err(db)? {
                let number: String = r.try_get("bill_number").map_err(db)?;
                stored.insert(
                    number.clone(),
                    NewBill {
                        bill_number: number,
                        customer_no: r.try_get("customer_no").map_err(db)?,
                        period: r.try_get("period").map_err(db)?,
                        amount_fen: r.try_get("amount_fen").map_err(db)?,
                        due_date: r.try_get("due_date").map_err(db)?,
                    },
                );
            }
            let mut fresh = Vec::with_capacity(chunk.len());
            for n in chunk {
                if !seen.insert(n.bill_number.as_str()) {
                    return Err(StoreError::Conflict(format!(
                        "bill {} twice in one upload",
                        n.bill_number
                    )));
                }
                match stored.get(&n.bill_number) {
                    Some(s) if s == n => out.unchanged += 1,
                    Some(_) => {
                        return Err(StoreError::Conflict(format!(
                            "bill {} with other content",
                            n.bill_number
                        )));
                    }
                    None => fresh.push(n),
                }
            }
            if fresh.is_empty() {
                continue;
            }
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO bills (biller, bill_number, customer_no, period, amount_fen, \
                 due_date, status, next_debit_ms, created_ms) ",
            );
            q.push_values(fresh, |mut b, n| {
                b.push_bind(biller)
                    .push_bind(&n.bill_number)
                    .push_bind(&n.customer_no)
                    .push_bind(&n.period)
                    .push_bind(n.amount_fen)
                    .push_bind(&n.due_date)
                    .push_bind("open")
                    .push_bind(0i64)
                    .push_bind(now_ms);
            });
            out.inserted += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn bill(&self, biller: &str, bill_number: &str) -> Result<Option<BillRow>> {
        sqlx::query("SELECT * FROM bills WHERE biller = $1 AND bill_number = $2")
            .bind(biller)
            .bind(bill_number)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| bill_row(&r))
            .transpose()
    }

    async fn bills_of_customer(
        &self,
        biller: &str,
        customer_no: &str,
        limit: u32,
    ) -> Result<Vec<BillRow>> {
        sqlx::query(
            "SELECT * FROM bills WHERE biller = $1 AND customer_no = $2 \
             ORDER BY due_date DESC, id DESC LIMIT $3",
        )
        .bind(biller)
        .bind(customer_no)
        .bind(i64::from(limit.min(PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(bill_row)
        .collect()
    }

    async fn agreement_insert(
        &self,
        a: &AgreementRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<AgreementRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let known: Option<String> = sqlx::query_scalar("SELECT code FROM billers WHERE code = $1")
            .bind(&a.biller)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("biller {}", a.biller)));
        }
        let row = sqlx::query(
            "INSERT INTO bill_agreements (resident_id, biller, customer_no, limit_fen, status, \
             created_ms) VALUES ($1, $2, $3, $4, 'active', $5) RETURNING *",
        )
        .bind(a.resident_id)
        .bind(&a.biller)
        .bind(&a.customer_no)
        .bind(a.limit_fen)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "an active agreement for {} {}",
                a.biller, a.customer_no
            )),
            other => other,
        })?;
        let out = agreement_row(&row, "")?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn agreement_cancel(
        &self,
        id: i64,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE bill_agreements SET status = 'cancelled' \
             WHERE id = $1 AND resident_id = $2 AND status = 'active'",
        )
        .bind(id)
        .bind(resident_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn agreements_of(&self, resident_id: i64) -> Result<Vec<AgreementRow>> {
        sqlx::query("SELECT * FROM bill_agreements WHERE resident_id = $1 ORDER BY id LIMIT 1000")
            .bind(resident_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(|r| agreement_row(r, ""))
            .collect()
    }

    async fn bills_due(
        &self,
        due_on: &str,
        now_ms: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<BillDue>> {
        let rows = sqlx::query(
            "SELECT b.*, a.id AS a_id, a.resident_id AS a_resident_id, a.biller AS a_biller, \
             a.customer_no AS a_customer_no, a.limit_fen AS a_limit_fen, a.status AS a_status, \
             a.created_ms AS a_created_ms \
             FROM bills b JOIN LATERAL (SELECT * FROM bill_agreements x \
             WHERE x.biller = b.biller AND x.customer_no = b.customer_no \
             AND x.status = 'active') a ON TRUE \
             WHERE b.id > $1 AND b.status = 'open' AND b.next_debit_ms IS NOT NULL \
             AND b.next_debit_ms <= $2 AND b.due_date <= $3 ORDER BY b.id LIMIT $4",
        )
        // Meant to walk the bills in id order from `after_id`, each joined to its household's
        // one active agreement by that index; the planner does so once the tables have
        // statistics, which `bill_run_start` makes sure of.
        .bind(after_id)
        .bind(now_ms)
        .bind(due_on)
        .bind(i64::from(limit.min(BILL_BATCH_MAX as u32)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(BillDue {
                    bill: bill_row(r)?,
                    agreement: agreement_row(r, "a_")?,
                })
            })
            .collect()
    }

    async fn bills_settle(
        &self,
        paid: &[BillPaid],
        failed: &[BillDebitFailed],
        _now_ms: i64,
    ) -> Result<u64> {
        if paid.len() + failed.len() > BILL_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: paid.len() + failed.len(),
                max: BILL_BATCH_MAX,
            });
        }
        // One statement each for the paid and the failed (a bill run settles its chunks so).
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut n = 0;
        if !paid.is_empty() {
            n = sqlx::query(
                "UPDATE bills SET status = 'paid', payment_id = v.payment_id, \
                 paid_by = v.paid_by, paid_ms = v.paid_ms, next_debit_ms = NULL \
                 FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[]) \
                 AS v(id, payment_id, paid_by, paid_ms) \
                 WHERE bills.id = v.id AND bills.status = 'open'",
            )
            .bind(paid.iter().map(|p| p.bill_id).collect::<Vec<_>>())
            .bind(paid.iter().map(|p| p.payment_id).collect::<Vec<_>>())
            .bind(paid.iter().map(|p| p.paid_by.as_str()).collect::<Vec<_>>())
            .bind(paid.iter().map(|p| p.paid_ms).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        }
        if !failed.is_empty() {
            sqlx::query(
                "UPDATE bills SET debit_attempts = debit_attempts + 1, \
                 last_error = v.last_error, next_debit_ms = v.next_debit_ms \
                 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) \
                 AS v(id, last_error, next_debit_ms) \
                 WHERE bills.id = v.id AND bills.status = 'open'",
            )
            .bind(failed.iter().map(|f| f.bill_id).collect::<Vec<_>>())
            .bind(failed.iter().map(|f| f.error.as_str()).collect::<Vec<_>>())
            .bind(failed.iter().map(|f| f.next_debit_ms).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn bills_paid(
        &self,
        biller: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<BillRow>> {
        sqlx::query(
            "SELECT * FROM bills WHERE biller = $1 AND status = 'paid' AND paid_ms >= $2 \
             AND paid_ms < $3 ORDER BY paid_ms, id LIMIT $4",
        )
        .bind(biller)
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::from(limit.min(BILL_BATCH_MAX as u32)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(bill_row)
        .collect()
    }

    async fn bill_run_start(&self, due_on: &str, now_ms: i64) -> Result<i64> {
        // A run follows the month's uploads, often before autovacuum has looked at them:
        // without fresh statistics the planner takes the agreements as the outer side of
        // `bills_due` and reads every one of them for each chunk (0.1 s a chunk at 50,000
        // bills). ANALYZE samples a bounded number of rows, so this costs well under a second.
        sqlx::query("ANALYZE bills, bill_agreements")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        sqlx::query_scalar(
            "INSERT INTO bill_runs (due_on, started_ms) VALUES ($1, $2) RETURNING id",
        )
        .bind(due_on)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn bill_run_finish(&self, run: &BillRunRow, audit: audit::Draft) -> Result<()> {
        let now_ms = run.finished_ms.unwrap_or(run.started_ms);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let n = sqlx::query(
            "UPDATE bill_runs SET finished_ms = $1, considered = $2, debited = $3, debited_fen = $4, \
             short_of_funds = $5, over_limit = $6, notices = $7 WHERE id = $8 AND finished_ms IS NULL",
        )
        .bind(now_ms)
        .bind(run.considered)
        .bind(run.debited)
        .bind(run.debited_fen)
        .bind(run.short_of_funds)
        .bind(run.over_limit)
        .bind(run.notices)
        .bind(run.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "bill run {} finished",
                run.id
            )));
        }
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn bill_runs(&self, limit: u32) -> Result<Vec<BillRunRow>> {
        sqlx::query("SELECT * FROM bill_runs ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit.min(PAGE_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(run_row)
            .collect()
    }
}
