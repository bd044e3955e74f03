//! `ExchangeStore` on PostgreSQL.

use crate::{append_audit, append_audit_many, db, lock_head};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use store::{
    AccessRow, ConsentRow, EXCHANGE_LIST_MAX, ExchangeStore, GrantRow, HeadStampRow, MemberRow,
    NonceClaim, Result, ServiceRow, StoreError,
};

use crate::PgStore;

fn join(v: &[String]) -> String {
    v.join(",")
}

fn split(s: String) -> Vec<String> {
    if s.is_empty() {
        vec![]
    } else {
        s.split(',').map(str::to_string).collect()
    }
}

fn member_row(r: &PgRow) -> Result<MemberRow> {
    Ok(MemberRow {
        code: r.try_get("code").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        public_key: r.try_get("public_key").map_err(db)?,
        status: r.try_get("status").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn service_row(r: &PgRow) -> Result<ServiceRow> {
    Ok(ServiceRow {
        code: r.try_get("code").map_err(db)?,
        provider: r.try_get("provider").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        description: r.try_get("description").map_err(db)?,
        input: r.try_get("input").map_err(db)?,
        fields_json: r.try_get("fields_json").map_err(db)?,
        endpoint: r.try_get("endpoint").map_err(db)?,
        consent_required: r.try_get("consent_required").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

fn grant_row(r: &PgRow) -> Result<GrantRow> {
    Ok(GrantRow {
        id: r.try_get("id").map_err(db)?,
        consumer: r.try_get("consumer").map_err(db)?,
        service: r.try_get("service").map_err(db)?,
        fields: split(r.try_get("fields").map_err(db)?),
        full_fields: split(r.try_get("full_fields").map_err(db)?),
        purpose: r.try_get("purpose").map_err(db)?,
        legal_basis: r.try_get("legal_basis").map_err(db)?,
        valid_from_ms: r.try_get("valid_from_ms").map_err(db)?,
        valid_until_ms: r.try_get("valid_until_ms").map_err(db)?,
        withdrawn_ms: r.try_get("withdrawn_ms").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

pub(crate) fn consent_row(r: &PgRow) -> Result<ConsentRow> {
    Ok(ConsentRow {
        id: r.try_get("id").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        consumer: r.try_get("consumer").map_err(db)?,
        service: r.try_get("service").map_err(db)?,
        purpose: r.try_get("purpose").map_err(db)?,
        channel: r.try_get("channel").map_err(db)?,
        given_ms: r.try_get("given_ms").map_err(db)?,
        expires_ms: r.try_get("expires_ms").map_err(db)?,
        revoked_ms: r.try_get("revoked_ms").map_err(db)?,
    })
}

pub(crate) fn access_row(r: &PgRow) -> Result<AccessRow> {
    Ok(AccessRow {
        id: r.try_get("id").map_err(db)?,
        at_ms: r.try_get("at_ms").map_err(db)?,
        consumer: r.try_get("consumer").map_err(db)?,
        service: r.try_get("service").map_err(db)?,
        provider: r.try_get("provider").map_err(db)?,
        resident_id: r.try_get("resident_id").map_err(db)?,
        fields: split(r.try_get("fields").map_err(db)?),
        masked: split(r.try_get("masked").map_err(db)?),
        purpose: r.try_get("purpose").map_err(db)?,
        legal_basis: r.try_get("legal_basis").map_err(db)?,
        grant_id: r.try_get("grant_id").map_err(db)?,
        consent_id: r.try_get("consent_id").map_err(db)?,
        outcome: r.try_get("outcome").map_err(db)?,
        reason: r.try_get("reason").map_err(db)?,
        request_digest: r.try_get("request_digest").map_err(db)?,
        response_digest: r.try_get("response_digest").map_err(db)?,
        request_signature: r.try_get("request_signature").map_err(db)?,
        request_batch: r.try_get("request_batch").map_err(db)?,
        response_signature: r.try_get("response_signature").map_err(db)?,
        response_batch: r.try_get("response_batch").map_err(db)?,
        audit_seq: r.try_get("audit_seq").map_err(db)?,
    })
}

fn stamp_row(r: &PgRow) -> Result<HeadStampRow> {
    let hash: Vec<u8> = r.try_get("hash").map_err(db)?;
    Ok(HeadStampRow {
        seq: r.try_get("seq").map_err(db)?,
        hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("head stamp hash length".into()))?,
        stamped_ms: r.try_get("stamped_ms").map_err(db)?,
        signature: r.try_get("signature").map_err(db)?,
    })
}

fn renamed(what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match db(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what),
        other => other,
    }
}

#[async_trait]
impl ExchangeStore for PgStore {
    async fn member_insert(&self, m: &MemberRow, audit: audit::Draft, now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO exchange_members (code, name, public_key, status, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&m.code)
        .bind(&m.name)
        .bind(&m.public_key)
        .bind(&m.status)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(renamed(format!("member {}", m.code)))?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn member(&self, code: &str) -> Result<Option<MemberRow>> {
        sqlx::query("SELECT * FROM exchange_members WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| member_row(&r))
            .transpose()
    }

    async fn members(&self) -> Result<Vec<MemberRow>> {
        sqlx::query("SELECT * FROM exchange_members ORDER BY code LIMIT 1000")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(member_row)
            .collect()
    }

    async fn service_insert(&self, s: &ServiceRow, audit: audit::Draft, now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT code FROM exchange_members WHERE code = $1")
                .bind(&s.provider)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("member {}", s.provider)));
        }
        sqlx::query(
            "INSERT INTO exchange_services (code, provider, name, description, input, \
             fields_json, endpoint, consent_required, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&s.code)
        .bind(&s.provider)
        .bind(&s.name)
        .bind(&s.description)
        .bind(&s.input)
        .bind(&s.fields_json)
        .bind(&s.endpoint)
        .bind(s.consent_required)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(renamed(format!("service {}", s.code)))?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn service(&self, code: &str) -> Result<Option<ServiceRow>> {
        sqlx::query("SELECT * FROM exchange_services WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| service_row(&r))
            .transpose()
    }

    async fn services(&self) -> Result<Vec<ServiceRow>> {
        sqlx::query("SELECT * FROM exchange_services ORDER BY code LIMIT 1000")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(service_row)
            .collect()
    }

    async fn grant_insert(&self, g: &GrantRow, audit: audit::Draft, now_ms: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let consumer: Option<String> =
            sqlx::query_scalar("SELECT code FROM exchange_members WHERE code = $1")
                .bind(&g.consumer)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if consumer.is_none() {
            return Err(StoreError::NotFound(format!("member {}", g.consumer)));
        }
        let service: Option<String> =
            sqlx::query_scalar("SELECT code FROM exchange_services WHERE code = $1")
                .bind(&g.service)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if service.is_none() {
            return Err(StoreError::NotFound(format!("service {}", g.service)));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO exchange_grants (consumer, service, fields, full_fields, purpose, \
             legal_basis, valid_from_ms, valid_until_ms, withdrawn_ms, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9) RETURNING id",
        )
        .bind(&g.consumer)
        .bind(&g.service)
        .bind(join(&g.fields))
        .bind(join(&g.full_fields))
        .bind(&g.purpose)
        .bind(&g.legal_basis)
        .bind(g.valid_from_ms)
        .bind(g.valid_until_ms)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn grant_withdraw(&self, id: i64, audit: audit::Draft, now_ms: i64) -> Result<GrantRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let row = sqlx::query("SELECT * FROM exchange_grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound(format!("grant {id}")))?;
        let mut g = grant_row(&row)?;
        if g.withdrawn_ms.is_some() {
            return Err(StoreError::Conflict(format!("grant {id} is withdrawn")));
        }
        sqlx::query("UPDATE exchange_grants SET withdrawn_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        g.withdrawn_ms = Some(now_ms);
        Ok(g)
    }

    async fn grant(&self, id: i64) -> Result<Option<GrantRow>> {
        sqlx::query("SELECT * FROM exchange_grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| grant_row(&r))
            .transpose()
    }

    async fn grants_of(
        &self,
        consumer: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<GrantRow>> {
        sqlx::query(
            "SELECT * FROM exchange_grants WHERE ($1::text IS NULL OR consumer = $1) \
             AND ($2::text IS NULL OR service = $2) ORDER BY id LIMIT $3",
        )
        .bind(consumer)
        .bind(service)
        .bind(i64::from(EXCHANGE_LIST_MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(grant_row)
        .collect()
    }

    async fn consent_insert(
        &self,
        c: &ConsentRow,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let known: Option<String> = sqlx::query_scalar(
            "SELECT s.code FROM exchange_services s, exchange_members m \
             WHERE s.code = $1 AND m.code = $2",
        )
        .bind(&c.service)
        .bind(&c.consumer)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!(
                "service {} or member {}",
                c.service, c.consumer
            )));
        }
        let resident: Option<i64> = sqlx::query_scalar("SELECT id FROM residents WHERE id = $1")
            .bind(c.resident_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if resident.is_none() {
            return Err(StoreError::NotFound(format!("resident {}", c.resident_id)));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO exchange_consents (resident_id, consumer, service, purpose, channel, \
             given_ms, expires_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) \
             RETURNING id",
        )
        .bind(c.resident_id)
        .bind(&c.consumer)
        .bind(&c.service)
        .bind(&c.purpose)
        .bind(&c.channel)
        .bind(c.given_ms)
        .bind(c.expires_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn consent_revoke(
        &self,
        id: i64,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ConsentRow> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let row = sqlx::query("SELECT * FROM exchange_consents WHERE id = $1 AND resident_id = $2")
            .bind(id)
            .bind(resident_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound(format!("consent {id}")))?;
        let mut c = consent_row(&row)?;
        if c.revoked_ms.is_some() {
            return Err(StoreError::Conflict(format!("consent {id} is revoked")));
        }
        sqlx::query("UPDATE exchange_consents SET revoked_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        c.revoked_ms = Some(now_ms);
        Ok(c)
    }

    async fn consents_of(
        &self,
        resident_id: i64,
        consumer_service: Option<(&str, &str)>,
    ) -> Result<Vec<ConsentRow>> {
        let (consumer, service) = consumer_service.unzip();
        sqlx::query(
            "SELECT * FROM exchange_consents WHERE resident_id = $1 \
             AND ($2::text IS NULL OR consumer = $2) AND ($3::text IS NULL OR service = $3) \
             ORDER BY id LIMIT $4",
        )
        .bind(resident_id)
        .bind(consumer)
        .bind(service)
        .bind(i64::from(EXCHANGE_LIST_MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(consent_row)
        .collect()
    }

    async fn exchange_nonce_use(&self, member: &str, nonce: &str, at_ms: i64) -> Result<()> {
        sqlx::query("INSERT INTO exchange_nonces (member, nonce, at_ms) VALUES ($1, $2, $3)")
            .bind(member)
            .bind(nonce.to_ascii_lowercase())
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(renamed(format!("nonce of {member}")))?;
        Ok(())
    }

    async fn exchange_nonces_purge(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM exchange_nonces WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected())
    }

    async fn access_insert(&self, a: &AccessRow) -> Result<i64> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        insert_access(&mut conn, a).await
    }

    async fn exchange_nonces_claim(&self, claims: &[NonceClaim]) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // No flush of its own: a call is answered only after its log transaction commits
        // with the flush, and PostgreSQL's WAL is flushed in order, so every nonce of an
        // answered call is durable; a crash can only forget nonces of calls never answered.
        sqlx::query("SET LOCAL synchronous_commit TO OFF")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut fresh = Vec::with_capacity(claims.len());
        for c in claims {
            let n = sqlx::query(
                "INSERT INTO exchange_nonces (member, nonce, at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&c.member)
            .bind(c.nonce.to_ascii_lowercase())
            .bind(c.at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            fresh.push(n == 1);
        }
        tx.commit().await.map_err(db)?;
        Ok(fresh)
    }

    async fn exchange_log_batch(
        &self,
        items: Vec<(audit::Draft, AccessRow)>,
        now_ms: i64,
    ) -> Result<Vec<audit::Entry>> {
        let (drafts, mut rows): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let entries = append_audit_many(&mut tx, drafts, now_ms).await?;
        for (row, entry) in rows.iter_mut().zip(&entries) {
            row.audit_seq = Some(entry.seq);
        }
        insert_accesses(&mut tx, &rows).await?;
        tx.commit().await.map_err(db)?;
        Ok(entries)
    }

    async fn accesses_of_resident(&self, resident_id: i64, limit: u32) -> Result<Vec<AccessRow>> {
        sqlx::query(
            "SELECT * FROM exchange_access WHERE resident_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(resident_id)
        .bind(i64::from(limit.min(EXCHANGE_LIST_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(access_row)
        .collect()
    }

    async fn accesses_recent(
        &self,
        consumer: Option<&str>,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccessRow>> {
        sqlx::query(
            "SELECT * FROM exchange_access WHERE ($1::text IS NULL OR consumer = $1) \
             AND ($2::text IS NULL OR outcome = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(consumer)
        .bind(outcome)
        .bind(i64::from(limit.min(EXCHANGE_LIST_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(access_row)
        .collect()
    }

    async fn head_stamp_insert(&self, h: &HeadStampRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_head_stamps (seq, hash, stamped_ms, signature) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(h.seq)
        .bind(h.hash.to_vec())
        .bind(h.stamped_ms)
        .bind(&h.signature)
        .execute(&self.pool)
        .await
        .map_err(renamed(format!("head stamp {}", h.seq)))?;
        Ok(())
    }

    async fn head_stamps(&self, limit: u32) -> Result<Vec<HeadStampRow>> {
        sqlx::query("SELECT * FROM audit_head_stamps ORDER BY seq DESC LIMIT $1")
            .bind(i64::from(limit.min(EXCHANGE_LIST_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(stamp_row)
            .collect()
    }
}

async fn insert_access(conn: &mut PgConnection, a: &AccessRow) -> Result<i64> {
    insert_accesses(conn, std::slice::from_ref(a))
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an access row was not inserted".into()))
}

/// Access rows in one statement (a group commit's, all at once: one round trip while the
/// audit head is locked instead of one per row); their ids in the given order.
async fn insert_accesses(conn: &mut PgConnection, rows: &[AccessRow]) -> Result<Vec<i64>> {
    fn col<T>(rows: &[AccessRow], f: impl Fn(&AccessRow) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    sqlx::query_scalar(
        "INSERT INTO exchange_access (at_ms, consumer, service, provider, resident_id, \
         fields, masked, purpose, legal_basis, grant_id, consent_id, outcome, reason, \
         request_digest, response_digest, audit_seq, request_signature, request_batch, \
         response_signature, response_batch) \
         SELECT at_ms, consumer, service, provider, resident_id, fields, masked, purpose, \
         legal_basis, grant_id, consent_id, outcome, reason, request_digest, response_digest, \
         audit_seq, request_signature, request_batch, response_signature, response_batch \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], \
         $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::text[], \
         $18::text[], $19::text[], $20::text[]) WITH ORDINALITY AS r \
         (at_ms, consumer, service, provider, resident_id, fields, masked, purpose, \
         legal_basis, grant_id, consent_id, outcome, reason, request_digest, response_digest, \
         audit_seq, request_signature, request_batch, response_signature, response_batch, n) \
         ORDER BY n RETURNING id",
    )
    .bind(col(rows, |a| a.at_ms))
    .bind(col(rows, |a| a.consumer.clone()))
    .bind(col(rows, |a| a.service.clone()))
    .bind(col(rows, |a| a.provider.clone()))
    .bind(col(rows, |a| a.resident_id))
    .bind(col(rows, |a| join(&a.fields)))
    .bind(col(rows, |a| join(&a.masked)))
    .bind(col(rows, |a| a.purpose.clone()))
    .bind(col(rows, |a| a.legal_basis.clone()))
    .bind(col(rows, |a| a.grant_id))
    .bind(col(rows, |a| a.consent_id))
    .bind(col(rows, |a| a.outcome.clone()))
    .bind(col(rows, |a| a.reason.clone()))
    .bind(col(rows, |a| a.request_digest.clone()))
    .bind(col(rows, |a| a.response_digest.clone()))
    .bind(col(rows, |a| a.audit_seq))
    .bind(col(rows, |a| a.request_signature.clone()))
    .bind(col(rows, |a| a.request_batch.clone()))
    .bind(col(rows, |a| a.response_signature.clone()))
    .bind(col(rows, |a| a.response_batch.clone()))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)
}
