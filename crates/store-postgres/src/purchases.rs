//! Offline purchases on PostgreSQL. One transaction per batch (or per group of concurrent
//! terminal uploads) that first takes the audit
//! head's lock (as every audited transaction does, so batches — also concurrent batches for
//! one hot merchant — queue there in one order and never deadlock), then reads the highest
//! counter of each card and the stored purchases the batch repeats, finds or opens the
//! accounts, plans with `ledger::offline::plan`, and writes with array inserts (`unnest`):
//! aggregated transfers and their postings, balances as deltas in one conditional update
//! (floors hold, the CHECK constraint behind it), purchase rows, the audit entry.
//!
//! Accounts are read without `FOR UPDATE`: every ledger writer holds the head lock, so no
//! other writer can change them meanwhile, and the delta update would refuse a floor breach
//! anyway.
//!
//! Cards the store's previous ingests touched are not looked up by number again, nor their
//! highest counters, when the purchase head row shows that no other ingest committed since
//! (`store::carry`, [`stamp`]); their balances are read by account id.

use crate::clearing::open_window;
use crate::ledger::{balance_row, insert_planned};
use crate::terminal_fleet::{batch_stored, batch_write};
use crate::{PgStore, append_audit, append_audit_many, db, lock_head};
use ::ledger::offline::{Accounts, Known, Prior, plan};
use ::ledger::{AccountKey, AccountKind, Balance, Owner, Transfer, Unit};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::collections::HashMap;
use store::carry::{Carried, add_carried};
use store::purchases::{
    IngestOutcome, KeptBatch, KeptIngest, KeptUpload, PURCHASE_BATCH_MAX, PurchaseBatch,
    PurchaseRow, PurchaseStore, Replan, batch_cards, check_group, decode_flags, finish_group,
    group_plan, joined, kept_row, ledger_purchases, new_rows, outcomes, replan,
    transfer_key_prefix, transfer_memo,
};
use store::{Result, StoreError};

fn purchase_row(r: &PgRow) -> Result<PurchaseRow> {
    Ok(PurchaseRow {
        id: r.try_get("id").map_err(db)?,
        card_number: r.try_get("card_number").map_err(db)?,
        offline_counter: r.try_get::<i64, _>("offline_counter").map_err(db)? as u16,
        merchant: r.try_get("merchant").map_err(db)?,
        terminal_id: r.try_get("terminal_id").map_err(db)?,
        terminal_serial: r.try_get::<i64, _>("terminal_serial").map_err(db)? as u32,
        amount_fen: r.try_get::<i64, _>("amount_fen").map_err(db)? as u32,
        tx_type: r.try_get::<i64, _>("tx_type").map_err(db)? as u8,
        tx_ms: r.try_get("tx_ms").map_err(db)?,
        window: r.try_get("window_id").map_err(db)?,
        transfer_id: r.try_get("transfer_id").map_err(db)?,
        flags: decode_flags(
            r.try_get("flags").map_err(db)?,
            r.try_get("gap_first").map_err(db)?,
            r.try_get("gap_last").map_err(db)?,
            r.try_get("shortfall_fen").map_err(db)?,
        ),
        ingested_ms: r.try_get("ingested_ms").map_err(db)?,
    })
}

/// Accounts of one kind (in CNY) by owner text: `owner → balance`.
async fn find_accounts(
    conn: &mut PgConnection,
    kind: AccountKind,
    owners: &[String],
) -> Result<HashMap<String, Balance>> {
    // One index probe per owner, whatever the statistics say: a LATERAL subquery with LIMIT 1
    // is not flattened into a join. Without it, on a table not yet analysed, the planner
    // walked every account of the kind for each owner (`owner = ANY($2)`: 1.2 s, a plain
    // join: 9 s for 10,000 owners; this: 80 ms).
    let rows = sqlx::query(
        "SELECT a.id, o.owner, a.unit, a.normal, a.floor, a.balance, a.reserved \
         FROM (SELECT unnest($2::text[]) AS owner) o CROSS JOIN LATERAL ( \
           SELECT id, unit, normal, floor, balance, reserved FROM ledger_accounts \
           WHERE kind = $1 AND owner = o.owner AND unit = 'CNY' LIMIT 1) a",
    )
    .bind(kind.as_str())
    .bind(owners)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let b = balance_row(&r)?;
        out.insert(r.try_get("owner").map_err(db)?, b);
    }
    Ok(out)
}

/// Finds the accounts of one kind, opening the missing ones.
async fn open_accounts(
    conn: &mut PgConnection,
    keys: &[AccountKey],
    now_ms: i64,
) -> Result<HashMap<String, Balance>> {
    let Some(kind) = keys.first().map(|k| k.kind()) else {
        return Ok(HashMap::new());
    };
    let owners: Vec<String> = keys.iter().map(|k| k.owner().text()).collect();
    let mut found = find_accounts(conn, kind, &owners).await?;
    let missing: Vec<String> = owners
        .iter()
        .filter(|o| !found.contains_key(*o))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(found);
    }
    sqlx::query(
        "INSERT INTO ledger_accounts (kind, owner, unit, normal, floor, created_ms) \
         SELECT $1, o, 'CNY', $2, $3, $4 FROM unnest($5::text[]) AS o \
         ON CONFLICT (kind, owner, unit) DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(kind.normal_side().as_str())
    .bind(kind.floor())
    .bind(now_ms)
    .bind(&missing)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    found.extend(find_accounts(conn, kind, &missing).await?);
    if found.len() != owners.len() {
        return Err(StoreError::Corrupt(format!(
            "{} of {} {} accounts could not be opened",
            owners.len() - found.len(),
            owners.len(),
            kind.as_str()
        )));
    }
    Ok(found)
}

/// The accounts of a batch: every card's shadow, the merchant's payable and suspense.
async fn batch_accounts(
    conn: &mut PgConnection,
    cards: &[String],
    merchant: &str,
    now_ms: i64,
) -> Result<(Accounts, HashMap<i64, Balance>)> {
    let bad = |e: ::ledger::KeyError| StoreError::Corrupt(format!("purchase account: {e}"));
    let shadow_keys: Vec<AccountKey> = cards.iter().map(|c| AccountKey::epurse_shadow(c)).collect();
    let merchant_key = AccountKey::new(
        AccountKind::MerchantPayable,
        Owner::Merchant(merchant.into()),
        Unit::Cny,
    )
    .map_err(bad)?;
    let suspense_key = AccountKey::company(AccountKind::Suspense, Unit::Cny).map_err(bad)?;
    let mut balances = HashMap::with_capacity(cards.len() + 2);
    let mut shadows = HashMap::with_capacity(cards.len());
    for (owner, b) in open_accounts(conn, &shadow_keys, now_ms).await? {
        let card = owner.strip_prefix("card:").unwrap_or(&owner).to_string();
        shadows.insert(card, b.id);
        balances.insert(b.id, b);
    }
    let m = open_accounts(conn, std::slice::from_ref(&merchant_key), now_ms).await?;
    let s = open_accounts(conn, std::slice::from_ref(&suspense_key), now_ms).await?;
    let (Some(m), Some(s)) = (m.into_values().next(), s.into_values().next()) else {
        return Err(StoreError::Corrupt(
            "merchant or suspense account missing".into(),
        ));
    };
    balances.insert(m.id, m);
    balances.insert(s.id, s);
    Ok((
        Accounts {
            shadows,
            merchant: m.id,
            suspense: s.id,
        },
        balances,
    ))
}

/// What a batch repeats: the highest counter of each card of `cards` (added to the carried
/// `counters_max` of the others), then the stored purchases at or below it.
async fn known(
    conn: &mut PgConnection,
    batch: &PurchaseBatch<'_>,
    cards: &[String],
    counters_max: HashMap<String, u16>,
    by_terminal: bool,
) -> Result<Known> {
    let mut known = Known {
        counters_max,
        ..Known::default()
    };
    // One backward index probe per card.
    let rows = if cards.is_empty() {
        Vec::new()
    } else {
        sqlx::query(
            "SELECT c, (SELECT max(offline_counter) FROM purchases p WHERE p.card_number = c) \
             AS m FROM (SELECT unnest($1::text[]) AS c) v",
        )
        .bind(cards)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
    };
    for r in rows {
        if let Some(m) = r.try_get::<Option<i64>, _>("m").map_err(db)? {
            known
                .counters_max
                .insert(r.try_get("c").map_err(db)?, m as u16);
        }
    }
    // Only a record at or below its card's highest counter can repeat a stored one.
    // The TAC binds card, terminal and serial but not the counter: a record of a card with
    // history may repeat a stored purchase under another counter (read only `by_terminal`,
    // see `post_batch`).
    let mut at: Vec<(&str, &str, i64)> = batch
        .purchases
        .iter()
        .filter(|p| by_terminal && known.counters_max.contains_key(&p.card_number))
        .map(|p| {
            (
                p.card_number.as_str(),
                p.terminal_id.as_str(),
                i64::from(p.terminal_serial),
            )
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    if !at.is_empty() {
        let mut ac = Vec::with_capacity(at.len());
        let mut at_t = Vec::with_capacity(at.len());
        let mut an = Vec::with_capacity(at.len());
        for (c, t, n) in &at {
            ac.push(*c);
            at_t.push(*t);
            an.push(*n);
        }
        let rows = sqlx::query(
            "SELECT p.id, v.c AS card_number, v.t AS terminal_id, v.n AS terminal_serial, \
             p.window_id FROM (SELECT unnest($1::text[]) AS c, unnest($2::text[]) AS t, \
             unnest($3::bigint[]) AS n) v \
             CROSS JOIN LATERAL (SELECT id, window_id FROM purchases WHERE card_number = v.c \
             AND terminal_id = v.t AND terminal_serial = v.n LIMIT 1) p",
        )
        .bind(&ac)
        .bind(&at_t)
        .bind(&an)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        for r in rows {
            known.stored_by_terminal.insert(
                (
                    r.try_get("card_number").map_err(db)?,
                    r.try_get("terminal_id").map_err(db)?,
                    r.try_get::<i64, _>("terminal_serial").map_err(db)? as u32,
                ),
                Prior {
                    id: r.try_get("id").map_err(db)?,
                    window: r.try_get("window_id").map_err(db)?,
                },
            );
        }
    }
    let mut probes: Vec<(&str, u16)> = batch
        .purchases
        .iter()
        .filter(|p| {
            known
                .counters_max
                .get(&p.card_number)
                .is_some_and(|m| p.offline_counter <= *m)
        })
        .map(|p| (p.card_number.as_str(), p.offline_counter))
        .collect();
    probes.sort_unstable();
    probes.dedup();
    if probes.is_empty() {
        return Ok(known);
    }
    let (pc, pn): (Vec<&str>, Vec<i64>) = probes.iter().map(|(c, n)| (*c, i64::from(*n))).unzip();
    // LATERAL with LIMIT 1: one unique-index probe per record (see `find_accounts`).
    let rows = sqlx::query(
        "SELECT p.id, v.c AS card_number, v.n AS offline_counter, p.window_id \
         FROM (SELECT unnest($1::text[]) AS c, unnest($2::bigint[]) AS n) v CROSS JOIN LATERAL ( \
           SELECT id, window_id FROM purchases \
           WHERE card_number = v.c AND offline_counter = v.n LIMIT 1) p",
    )
    .bind(&pc)
    .bind(&pn)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in rows {
        known.stored.insert(
            (
                r.try_get("card_number").map_err(db)?,
                r.try_get::<i64, _>("offline_counter").map_err(db)? as u16,
            ),
            Prior {
                id: r.try_get("id").map_err(db)?,
                window: r.try_get("window_id").map_err(db)?,
            },
        );
    }
    Ok(known)
}

/// Posts one batch in the caller's transaction. A record that repeats a stored purchase under
/// another counter (same card, terminal and serial: a replay the TAC cannot tell apart) is
/// rare, so the batch is first written without looking for one, inside a savepoint; the
/// unique index `purchases_terminal_serial` refuses such a repeat, and then the savepoint is
/// rolled back and the batch planned again with those purchases read.
async fn post_batch(
    tx: &mut PgConnection,
    windows: &store::money::Windows,
    batch: &PurchaseBatch<'_>,
    carried: &mut Carried,
    now_ms: i64,
) -> Result<Vec<IngestOutcome>> {
    let (window, start) =
        open_window(&mut *tx, windows, batch.window, batch.window_start_ms).await?;
    let batch = &PurchaseBatch {
        window: &window,
        window_start_ms: start,
        ..*batch
    };
    sqlx::query("SAVEPOINT purchases_post")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let mut by_terminal = false;
    let posted = loop {
        match post_planned(&mut *tx, batch, carried, now_ms, by_terminal).await? {
            Posted::Done(o) => break o,
            Posted::Again(why) => {
                sqlx::query("ROLLBACK TO purchases_post")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                replan(why, carried, &mut by_terminal)?;
            }
        }
    };
    sqlx::query("RELEASE purchases_post")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    Ok(posted)
}

enum Posted {
    Done(Vec<IngestOutcome>),
    Again(Replan),
}

/// Plans and writes one batch in the caller's transaction (which holds the head lock): reads
/// what the plan needs, then the aggregated transfers, their postings, the balances and the
/// purchase rows.
async fn post_planned(
    tx: &mut PgConnection,
    batch: &PurchaseBatch<'_>,
    carried: &mut Carried,
    now_ms: i64,
    by_terminal: bool,
) -> Result<Posted> {
    let n = batch.purchases.len();
    let began = std::time::Instant::now();
    let stale_possible = !carried.is_empty();
    let cards = batch_cards(batch);
    let read_cards = carried.missing(&cards);
    let (counters, carried_shadows) = carried.of(&cards);
    let known = known(&mut *tx, batch, &read_cards, counters, by_terminal).await?;
    let known_done = std::time::Instant::now();
    let (mut accounts, mut before) =
        batch_accounts(&mut *tx, &read_cards, batch.merchant, now_ms).await?;
    if !carried_shadows.is_empty() {
        let ids: Vec<i64> = carried_shadows.values().copied().collect();
        let found = balances_by_id(&mut *tx, &ids).await?;
        add_carried(carried_shadows, found, &mut accounts, &mut before)?;
    }
    let mut balances = before.clone();
    // Ids for every record (those of repeats stay unused): the sequence never repeats, so
    // the first id also names this batch's transfers.
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('purchases_id_seq') FROM generate_series(1, $1)")
            .bind(n as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
    let read = std::time::Instant::now();
    let plan = plan(
        &ledger_purchases(batch),
        &known,
        &accounts,
        &mut balances,
        batch.window_start_ms,
        &transfer_key_prefix(ids[0]),
        &transfer_memo(batch),
    )
    .map_err(|e| StoreError::Corrupt(format!("offline purchases could not be planned: {e}")))?;
    let planned = std::time::Instant::now();
    let transfers: Vec<&Transfer> = plan.transfers.iter().collect();
    let transfer_ids =
        insert_planned(&mut *tx, &transfers, &before, &plan.balances, now_ms).await?;
    let ledger_done = std::time::Instant::now();
    let rows = new_rows(&plan.verdicts, &ids);
    let k = rows.len();
    let mut c = Cols::with_capacity(k);
    for (i, id, t, flags) in &rows {
        let p = &batch.purchases[*i];
        c.id.push(*id);
        c.card.push(p.card_number.as_str());
        c.counter.push(i64::from(p.offline_counter));
        c.terminal.push(p.terminal_id.as_str());
        c.serial.push(i64::from(p.terminal_serial));
        c.amount.push(i64::from(p.amount_fen));
        c.tx_type.push(i64::from(p.tx_type));
        c.alg.push(i64::from(p.algorithm_id));
        c.tx_ms.push(p.tx_ms);
        c.before.push(i64::from(p.balance_before_fen));
        c.tac.push(p.tac.to_vec());
        c.transfer.push(t.map(|t| transfer_ids[t]));
        c.flags.push(flags.bits());
        c.gap_first.push(flags.gap.map(|g| i64::from(g.0)));
        c.gap_last.push(flags.gap.map(|g| i64::from(g.1)));
        c.shortfall.push(flags.shortfall.get());
    }
    if k > 0 {
        let inserted = sqlx::query(
            "INSERT INTO purchases (id, card_number, offline_counter, merchant, terminal_id, \
             terminal_serial, amount_fen, tx_type, algorithm_id, tx_ms, balance_before_fen, \
             tac, window_id, transfer_id, flags, gap_first, gap_last, shortfall_fen, \
             ingested_ms) \
             SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::bigint[]), $17, \
               unnest($4::text[]), unnest($5::bigint[]), unnest($6::bigint[]), \
               unnest($7::bigint[]), unnest($8::bigint[]), unnest($9::bigint[]), \
               unnest($10::bigint[]), unnest($11::bytea[]), $18, unnest($12::bigint[]), \
               unnest($13::bigint[]), unnest($14::bigint[]), unnest($15::bigint[]), \
               unnest($16::bigint[]), $19",
        )
        .bind(&c.id)
        .bind(&c.card)
        .bind(&c.counter)
        .bind(&c.terminal)
        .bind(&c.serial)
        .bind(&c.amount)
        .bind(&c.tx_type)
        .bind(&c.alg)
        .bind(&c.tx_ms)
        .bind(&c.before)
        .bind(&c.tac)
        .bind(&c.transfer)
        .bind(&c.flags)
        .bind(&c.gap_first)
        .bind(&c.gap_last)
        .bind(&c.shortfall)
        .bind(batch.merchant)
        .bind(batch.window)
        .bind(now_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(d))
                if !by_terminal && d.constraint() == Some("purchases_terminal_serial") =>
            {
                return Ok(Posted::Again(Replan::RepeatsByTerminal));
            }
            Err(sqlx::Error::Database(d)) if stale_possible && d.is_unique_violation() => {
                return Ok(Posted::Again(Replan::Stale));
            }
            Err(e) => return Err(db(e)),
        }
    }
    tracing::debug!(
        purchases = n,
        cards = cards.len(),
        carried = cards.len() - read_cards.len(),
        known_us = (known_done - began).as_micros() as u64,
        accounts_us = (read - known_done).as_micros() as u64,
        plan_us = (planned - read).as_micros() as u64,
        ledger_us = (ledger_done - planned).as_micros() as u64,
        rows_us = ledger_done.elapsed().as_micros() as u64,
        "purchases posted"
    );
    carried.absorb(
        &accounts,
        &known.counters_max,
        batch.purchases,
        &plan.verdicts,
    );
    Ok(Posted::Done(outcomes(
        &plan.verdicts,
        &rows,
        &transfer_ids,
        batch.window,
    )))
}

/// The carry-over's stamp, read under the head lock: the purchase head's sequence number and
/// the transaction that last wrote it (`xmin`). Every ingest writes the row ([`advance`]), and
/// as transaction ids are not reused, a stamp left by a transaction whose commit failed never
/// matches again.
async fn stamp(conn: &mut PgConnection) -> Result<store::carry::Stamp> {
    let r = sqlx::query("SELECT seq, xmin::text::bigint AS x FROM purchases_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok([
        r.try_get("seq").map_err(db)?,
        r.try_get("x").map_err(db)?,
        0,
    ])
}

/// Marks an ingest in the purchase head row; the stamp the transaction leaves if it commits.
async fn advance(conn: &mut PgConnection) -> Result<store::carry::Stamp> {
    let r = sqlx::query(
        "UPDATE purchases_head SET seq = seq + 1 WHERE id = 1 \
         RETURNING seq, xmin::text::bigint AS x",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok([
        r.try_get("seq").map_err(db)?,
        r.try_get("x").map_err(db)?,
        0,
    ])
}

/// Balances by account id, read without a lock (the head lock keeps other writers out).
async fn balances_by_id(conn: &mut PgConnection, ids: &[i64]) -> Result<HashMap<i64, Balance>> {
    let rows = sqlx::query(
        "SELECT id, unit, normal, floor, balance, reserved FROM ledger_accounts \
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let b = balance_row(&r)?;
        out.insert(b.id, b);
    }
    Ok(out)
}

impl PgStore {
    /// One ingest transaction for a batch without a batch row.
    async fn ingest(
        &self,
        batch: &PurchaseBatch<'_>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<IngestOutcome>> {
        let n = batch.purchases.len();
        if n > PURCHASE_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: n,
                max: PURCHASE_BATCH_MAX,
            });
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let asked = std::time::Instant::now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_head(&mut tx).await?;
        let locked = std::time::Instant::now();
        let mut carried = self.carry.take(stamp(&mut tx).await?);
        let outcomes = post_batch(&mut tx, &self.windows, batch, &mut carried, now_ms).await?;
        append_audit(&mut tx, audit, now_ms).await?;
        // Left before the commit, so that the next batch, already waiting for the head lock,
        // finds it; it matches only if this transaction commits.
        self.carry.put(advance(&mut tx).await?, carried);
        let committing = std::time::Instant::now();
        tx.commit().await.map_err(db)?;
        tracing::debug!(
            wait_us = (locked - asked).as_micros() as u64,
            post_us = (committing - locked).as_micros() as u64,
            commit_us = committing.elapsed().as_micros() as u64,
            "purchase batch committed"
        );
        Ok(outcomes)
    }

    /// One transaction for a group of terminals' uploads (see `group_plan`).
    async fn ingest_uploads(
        &self,
        uploads: &[KeptUpload<'_>],
        now_ms: i64,
    ) -> Result<Vec<KeptIngest>> {
        check_group(uploads)?;
        if uploads.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The head lock serializes ingests, so the batch checks below cannot race a resend.
        lock_head(&mut tx).await?;
        let mut carried = self.carry.take(stamp(&mut tx).await?);
        let mut answers: Vec<Option<KeptIngest>> = Vec::with_capacity(uploads.len());
        for u in uploads {
            answers.push(
                batch_stored(&mut tx, u.kept.terminal, u.kept.batch_id)
                    .await?
                    .map(KeptIngest::Stored),
            );
        }
        let stored: Vec<bool> = answers.iter().map(Option::is_some).collect();
        let group = group_plan(uploads, &stored);
        let mut drafts = Vec::new();
        for post in &group.posts {
            let (all, starts) = joined(uploads, post);
            let first = &uploads[post[0]].batch;
            let outcomes = if all.is_empty() {
                Vec::new()
            } else {
                let batch = PurchaseBatch {
                    purchases: &all,
                    ..*first
                };
                post_batch(&mut tx, &self.windows, &batch, &mut carried, now_ms).await?
            };
            for (&i, start) in post.iter().zip(starts) {
                let u = &uploads[i];
                let mine = outcomes[start..start + u.batch.purchases.len()].to_vec();
                let answer = (u.kept.answer)(&mine);
                if !batch_write(&mut tx, &kept_row(&u.kept, answer.clone(), now_ms)).await? {
                    // Cannot happen under the head lock; refuse rather than post twice.
                    return Err(StoreError::Conflict(format!("batch {}", u.kept.batch_id)));
                }
                drafts.push(u.audit.clone());
                answers[i] = Some(KeptIngest::Ingested {
                    outcomes: mine,
                    answer,
                });
            }
        }
        let answers = finish_group(uploads, &group, answers, now_ms)?;
        if !drafts.is_empty() {
            append_audit_many(&mut tx, drafts, now_ms).await?;
            self.carry.put(advance(&mut tx).await?, carried);
            tx.commit().await.map_err(db)?;
        }
        Ok(answers)
    }
}

#[async_trait]
impl PurchaseStore for PgStore {
    async fn purchases_ingest(
        &self,
        batch: &PurchaseBatch<'_>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<IngestOutcome>> {
        self.ingest(batch, audit, now_ms).await
    }

    async fn purchases_ingest_kept(
        &self,
        batch: &PurchaseBatch<'_>,
        kept: &KeptBatch<'_>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<KeptIngest> {
        let upload = KeptUpload {
            batch: *batch,
            kept: *kept,
            audit,
        };
        self.ingest_uploads(std::slice::from_ref(&upload), now_ms)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no answer for the upload".into()))
    }

    async fn purchases_ingest_uploads(
        &self,
        uploads: &[KeptUpload<'_>],
        now_ms: i64,
    ) -> Result<Vec<KeptIngest>> {
        self.ingest_uploads(uploads, now_ms).await
    }

    async fn purchase_by_counter(&self, card: &str, counter: u16) -> Result<Option<PurchaseRow>> {
        sqlx::query("SELECT * FROM purchases WHERE card_number = $1 AND offline_counter = $2")
            .bind(card)
            .bind(i64::from(counter))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(purchase_row)
            .transpose()
    }

    async fn purchases_of_window(
        &self,
        window: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<PurchaseRow>> {
        sqlx::query("SELECT * FROM purchases WHERE window_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(window)
            .bind(after_id)
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(purchase_row)
            .collect()
    }
}

/// The purchase rows of a batch, column by column, for one `unnest` insert.
struct Cols<'a> {
    id: Vec<i64>,
    card: Vec<&'a str>,
    counter: Vec<i64>,
    terminal: Vec<&'a str>,
    serial: Vec<i64>,
    amount: Vec<i64>,
    tx_type: Vec<i64>,
    alg: Vec<i64>,
    tx_ms: Vec<i64>,
    before: Vec<i64>,
    tac: Vec<Vec<u8>>,
    transfer: Vec<Option<i64>>,
    flags: Vec<i64>,
    gap_first: Vec<Option<i64>>,
    gap_last: Vec<Option<i64>>,
    shortfall: Vec<i64>,
}

impl Cols<'_> {
    fn with_capacity(k: usize) -> Self {
        Cols {
            id: Vec::with_capacity(k),
            card: Vec::with_capacity(k),
            counter: Vec::with_capacity(k),
            terminal: Vec::with_capacity(k),
            serial: Vec::with_capacity(k),
            amount: Vec::with_capacity(k),
            tx_type: Vec::with_capacity(k),
            alg: Vec::with_capacity(k),
            tx_ms: Vec::with_capacity(k),
            before: Vec::with_capacity(k),
            tac: Vec::with_capacity(k),
            transfer: Vec::with_capacity(k),
            flags: Vec::with_capacity(k),
            gap_first: Vec::with_capacity(k),
            gap_last: Vec::with_capacity(k),
            shortfall: Vec::with_capacity(k),
        }
    }
}
