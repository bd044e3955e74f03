//! Offline purchases on SQLite. One `BEGIN IMMEDIATE` transaction per batch, or per group of
//! concurrent terminal uploads (the one writer):
//! read the highest counter of each card and the stored purchases the batch repeats, find or
//! open the accounts, plan with `ledger::offline::plan`, then write the aggregated transfers,
//! their postings, the balances, the purchase rows (multi-row inserts) and the audit entry.
//!
//! Cards the store's previous ingests touched are not looked up by number again, nor their
//! highest counters, when the purchase head row shows that no other ingest committed since
//! (`store::carry`, [`stamp`]); their balances are read by account id.

use crate::clearing::open_window;
use crate::ledger::insert_planned;
use crate::terminal_fleet::{batch_stored, batch_write};
use crate::{SqliteStore, append_audit, append_audit_many, db, placeholders};
use ::ledger::offline::{Accounts, Known, Prior, plan};
use ::ledger::{AccountKey, AccountKind, Balance, Owner, Transfer, Unit};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use std::collections::HashMap;
use store::carry::{Carried, add_carried};
use store::purchases::{
    IngestOutcome, KeptBatch, KeptIngest, KeptUpload, PURCHASE_BATCH_MAX, PurchaseBatch,
    PurchaseRow, PurchaseStore, Replan, batch_cards, check_group, decode_flags, finish_group,
    group_plan, joined, kept_row, ledger_purchases, new_rows, outcomes, replan,
    transfer_key_prefix, transfer_memo,
};
use store::{Result, StoreError};

/// Bound values per statement stay well below SQLite's 32,766.
const KEYS_PER_QUERY: usize = 900;
const PURCHASE_COLS: usize = 19;
const ROWS_PER_INSERT: usize = 1_500;

fn purchase_row(r: &SqliteRow) -> Result<PurchaseRow> {
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

/// Accounts of one kind by owner: `?1` the kind, `?2` the owners as a JSON array.
const FIND_ACCOUNTS_SQL: &str = "SELECT group_concat(j.key || ' ' || a.id || ' ' || a.balance || ' ' || a.reserved \
         || ' ' || a.unit || ' ' || a.normal || ' ' || coalesce(a.floor, '-'), ',') \
         FROM json_each(?2) AS j CROSS JOIN ledger_accounts a \
         ON a.kind = ?1 AND a.owner = j.value AND a.unit = 'CNY'";
/// Balances of accounts: `?` the ids as a JSON array.
const BALANCES_BY_ID_SQL: &str = "SELECT group_concat(a.id || ' ' || a.balance || ' ' || a.reserved || ' ' || a.unit \
         || ' ' || a.normal || ' ' || coalesce(a.floor, '-'), ',') \
         FROM json_each(?) AS j CROSS JOIN ledger_accounts a ON a.id = j.value";
/// The highest stored counter of each card: `?` the card numbers as a JSON array.
const COUNTERS_MAX_SQL: &str = "SELECT group_concat(k || ' ' || m, ',') FROM (SELECT j.key AS k, \
             (SELECT MAX(offline_counter) FROM purchases WHERE card_number = j.value) AS m \
             FROM json_each(?) AS j) WHERE m IS NOT NULL";

/// Accounts of one kind (in CNY) by owner text: `owner → balance`, in one statement answering
/// one packed row (see [`packed_rows`]). `CROSS JOIN` keeps the keys the outer loop (SQLite
/// does not reorder it): one index probe per key, never a scan of the accounts per key.
async fn find_accounts(
    conn: &mut SqliteConnection,
    kind: AccountKind,
    owners: &[String],
) -> Result<HashMap<String, Balance>> {
    let packed: Option<String> = sqlx::query_scalar(FIND_ACCOUNTS_SQL)
        .bind(kind.as_str())
        .bind(json_strings(owners.iter().map(String::as_str)))
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let mut out = HashMap::with_capacity(owners.len());
    for f in packed_rows(packed.as_deref(), 7)? {
        let owner = owners
            .get(packed_int(f[0])? as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("packed account index {}", f[0])))?;
        out.insert(owner.clone(), packed_balance(&f[1..])?);
    }
    Ok(out)
}

/// A JSON array of strings, for `json_each`: one bound value for any number of keys.
fn json_strings<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for ch in item.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// The rows of a packed answer: rows separated by `,`, fields by a space, each row `width`
/// fields of digits or codes. sqlx hands each row of a SQLite statement over a channel to the
/// caller's task, which for the 10,000 cards of an upload cost as much as the reads themselves;
/// packed, an upload's reads answer one row each.
fn packed_rows(packed: Option<&str>, width: usize) -> Result<Vec<Vec<&str>>> {
    packed
        .unwrap_or("")
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let f: Vec<&str> = r.split(' ').collect();
            if f.len() == width {
                Ok(f)
            } else {
                Err(StoreError::Corrupt(format!("packed row {r:?}")))
            }
        })
        .collect()
}

fn packed_int(x: &str) -> Result<i64> {
    x.parse()
        .map_err(|_| StoreError::Corrupt(format!("packed number {x:?}")))
}

/// `id balance reserved unit normal floor` (`-`: no floor).
fn packed_balance(f: &[&str]) -> Result<Balance> {
    let floor = if f[5] == "-" {
        None
    } else {
        Some(packed_int(f[5])?)
    };
    store::ledger::decode_balance(
        packed_int(f[0])?,
        f[3],
        f[4],
        floor,
        packed_int(f[1])?,
        packed_int(f[2])?,
    )
}

/// Finds the accounts of one kind, opening the missing ones.
async fn open_accounts(
    conn: &mut SqliteConnection,
    keys: &[AccountKey],
    now_ms: i64,
) -> Result<HashMap<String, Balance>> {
    let Some(kind) = keys.first().map(|k| k.kind()) else {
        return Ok(HashMap::new());
    };
    let owners: Vec<String> = keys.iter().map(|k| k.owner().text()).collect();
    let mut found = find_accounts(conn, kind, &owners).await?;
    let missing: Vec<&String> = owners.iter().filter(|o| !found.contains_key(*o)).collect();
    if missing.is_empty() {
        return Ok(found);
    }
    for chunk in missing.chunks(KEYS_PER_QUERY / 6) {
        let sql = format!(
            "INSERT INTO ledger_accounts (kind, owner, unit, normal, floor, created_ms) VALUES {} \
             ON CONFLICT (kind, owner, unit) DO NOTHING",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for o in chunk {
            q = q
                .bind(kind.as_str())
                .bind(o.as_str())
                .bind(Unit::Cny.as_str())
                .bind(kind.normal_side().as_str())
                .bind(kind.floor())
                .bind(now_ms);
        }
        q.execute(&mut *conn).await.map_err(db)?;
    }
    let missing: Vec<String> = missing.into_iter().cloned().collect();
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
    conn: &mut SqliteConnection,
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

/// What the store knows of the batch's cards: the highest counter of each card of `cards`
/// (added to the carried `counters_max` of the others), the stored purchases the batch may
/// repeat by card and counter, and — with `by_terminal` — by card, terminal and terminal
/// serial.
async fn known(
    conn: &mut SqliteConnection,
    batch: &PurchaseBatch<'_>,
    cards: &[String],
    counters_max: HashMap<String, u16>,
    by_terminal: bool,
) -> Result<Known> {
    let mut known = Known {
        counters_max,
        ..Known::default()
    };
    if !cards.is_empty() {
        // One backward probe of the (card, counter) index per card: `MAX … GROUP BY` would
        // read every stored purchase of the card, which grows with its history. Packed: the
        // card's index in `cards` and its highest counter.
        let packed: Option<String> = sqlx::query_scalar(COUNTERS_MAX_SQL)
            .bind(json_strings(cards.iter().map(String::as_str)))
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        for f in packed_rows(packed.as_deref(), 2)? {
            let card = cards
                .get(packed_int(f[0])? as usize)
                .ok_or_else(|| StoreError::Corrupt(format!("packed card index {}", f[0])))?;
            let m = u16::try_from(packed_int(f[1])?)
                .map_err(|_| StoreError::Corrupt(format!("offline counter {}", f[1])))?;
            known.counters_max.insert(card.clone(), m);
        }
    }
    // Only a record at or below its card's highest counter can repeat a stored one.
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
    for chunk in probes.chunks(KEYS_PER_QUERY / 2) {
        let sql = format!(
            "SELECT id, card_number, offline_counter, window_id FROM purchases \
             WHERE (card_number, offline_counter) IN (VALUES {})",
            placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (c, n) in chunk {
            q = q.bind(*c).bind(i64::from(*n));
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
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
    }
    if !by_terminal {
        return Ok(known);
    }
    // The TAC binds card, terminal and serial but not the counter: a record of a card with
    // history may repeat a stored purchase under another counter.
    let mut at: Vec<(&str, u32, &str)> = batch
        .purchases
        .iter()
        .filter(|p| known.counters_max.contains_key(&p.card_number))
        .map(|p| {
            (
                p.terminal_id.as_str(),
                p.terminal_serial,
                p.card_number.as_str(),
            )
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    for chunk in at.chunks(KEYS_PER_QUERY / 3) {
        // In the order of the unique index `purchases_terminal_serial` (migration 0041).
        let sql = format!(
            "SELECT id, card_number, terminal_id, terminal_serial, window_id FROM purchases \
             WHERE (terminal_id, terminal_serial, card_number) IN (VALUES {})",
            placeholders(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (t, n, c) in chunk {
            q = q.bind(*t).bind(i64::from(*n)).bind(*c);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
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
    Ok(known)
}

/// Posts one batch in the caller's transaction. A record that repeats a stored purchase under
/// another counter (same card, terminal and serial: a replay the TAC cannot tell apart) is
/// rare, so the batch is first written without looking for one, inside a savepoint; the
/// unique index on card, terminal and serial refuses such a repeat, and then the savepoint is
/// rolled back and the batch planned again with those purchases read.
async fn post_batch(
    tx: &mut SqliteConnection,
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

/// Plans and writes one batch in the caller's transaction: reads what the plan needs, then the
/// aggregated transfers, their postings, the balances and the purchase rows.
async fn post_planned(
    tx: &mut SqliteConnection,
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
        let found = balances_packed(&mut *tx, &ids).await?;
        add_carried(carried_shadows, found, &mut accounts, &mut before)?;
    }
    let mut balances = before.clone();
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM purchases")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let read = std::time::Instant::now();
    let plan = plan(
        &ledger_purchases(batch),
        &known,
        &accounts,
        &mut balances,
        batch.window_start_ms,
        &transfer_key_prefix(first),
        &transfer_memo(batch),
    )
    .map_err(|e| StoreError::Corrupt(format!("offline purchases could not be planned: {e}")))?;
    let planned = std::time::Instant::now();
    let transfers: Vec<&Transfer> = plan.transfers.iter().collect();
    let transfer_ids = insert_planned(&mut *tx, &transfers, &plan.balances, now_ms).await?;
    let ids: Vec<i64> = (0..n as i64).map(|k| first + k).collect();
    let ledger_done = std::time::Instant::now();
    let rows = new_rows(&plan.verdicts, &ids);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO purchases (id, card_number, offline_counter, merchant, terminal_id, \
             terminal_serial, amount_fen, tx_type, algorithm_id, tx_ms, balance_before_fen, \
             tac, window_id, transfer_id, flags, gap_first, gap_last, shortfall_fen, \
             ingested_ms) VALUES {}",
            placeholders(chunk.len(), PURCHASE_COLS)
        );
        let mut q = sqlx::query(&sql);
        for (i, id, t, flags) in chunk {
            let p = &batch.purchases[*i];
            q = q
                .bind(*id)
                .bind(&p.card_number)
                .bind(i64::from(p.offline_counter))
                .bind(batch.merchant)
                .bind(&p.terminal_id)
                .bind(i64::from(p.terminal_serial))
                .bind(i64::from(p.amount_fen))
                .bind(i64::from(p.tx_type))
                .bind(i64::from(p.algorithm_id))
                .bind(p.tx_ms)
                .bind(i64::from(p.balance_before_fen))
                .bind(&p.tac[..])
                .bind(batch.window)
                .bind(t.map(|t| transfer_ids[t]))
                .bind(flags.bits())
                .bind(flags.gap.map(|g| i64::from(g.0)))
                .bind(flags.gap.map(|g| i64::from(g.1)))
                .bind(flags.shortfall.get())
                .bind(now_ms);
        }
        match q.execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(d))
                if !by_terminal
                    && d.is_unique_violation()
                    && d.message().contains("purchases.terminal_serial") =>
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

/// The carry-over's stamp, read in the writing transaction: the purchase head's sequence
/// number. Every ingest, of any process, advances it ([`advance`]), and the carry-over is left
/// only after a commit, so an equal number means that no ingest committed since.
async fn stamp(conn: &mut SqliteConnection) -> Result<store::carry::Stamp> {
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM purchases_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok([seq, 0, 0])
}

/// Balances by account id, in one statement answering one packed row (see [`packed_rows`]).
async fn balances_packed(
    conn: &mut SqliteConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Balance>> {
    let list = format!(
        "[{}]",
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    let packed: Option<String> = sqlx::query_scalar(BALANCES_BY_ID_SQL)
        .bind(list)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let mut out = HashMap::with_capacity(ids.len());
    for f in packed_rows(packed.as_deref(), 6)? {
        let b = packed_balance(&f)?;
        out.insert(b.id, b);
    }
    Ok(out)
}

/// Marks an ingest in the purchase head row; the stamp the transaction leaves once committed.
async fn advance(conn: &mut SqliteConnection) -> Result<store::carry::Stamp> {
    sqlx::query("UPDATE purchases_head SET seq = seq + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    stamp(conn).await
}

impl SqliteStore {
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
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let locked = std::time::Instant::now();
        let mut carried = self.carry.take(stamp(&mut tx).await?);
        let outcomes = post_batch(&mut tx, &self.windows, batch, &mut carried, now_ms).await?;
        append_audit(&mut tx, audit, now_ms).await?;
        let left = advance(&mut tx).await?;
        let committing = std::time::Instant::now();
        tx.commit().await.map_err(db)?;
        self.carry.put(left, carried);
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
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
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
                batch_write(&mut tx, &kept_row(&u.kept, answer.clone(), now_ms)).await?;
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
            let left = advance(&mut tx).await?;
            tx.commit().await.map_err(db)?;
            self.carry.put(left, carried);
        }
        Ok(answers)
    }
}

#[async_trait]
impl PurchaseStore for SqliteStore {
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
        sqlx::query("SELECT * FROM purchases WHERE card_number = ? AND offline_counter = ?")
            .bind(card)
            .bind(i64::from(counter))
            .fetch_optional(&self.read)
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
        sqlx::query("SELECT * FROM purchases WHERE window_id = ? AND id > ? ORDER BY id LIMIT ?")
            .bind(window)
            .bind(after_id)
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.read)
            .await
            .map_err(db)?
            .iter()
            .map(purchase_row)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[tokio::test]
    async fn keys_go_through_json_each_as_they_are_and_packed_rows_come_back_whole() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let keys = [
            "card:4101000000000001",
            "a \"quoted\" name, with a comma",
            "back\\slash",
            "tab\tand\nnewline",
            "商户",
            "",
        ];
        let back: Vec<String> = sqlx::query_scalar("SELECT value FROM json_each(?) ORDER BY key")
            .bind(json_strings(keys.iter().copied()))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(back, keys);
        assert_eq!(
            packed_rows(Some("0 5,1 7"), 2).unwrap(),
            vec![vec!["0", "5"], vec!["1", "7"]]
        );
        assert!(packed_rows(None, 2).unwrap().is_empty());
        assert!(
            packed_rows(Some("0 5 9"), 2).is_err(),
            "a row of the wrong width"
        );
        assert!(packed_int("12a").is_err());
        let b = packed_balance(&["7", "100", "20", "CNY", "credit", "-"]).unwrap();
        assert_eq!((b.id, b.balance, b.reserved, b.floor), (7, 100, 20, None));
        let b = packed_balance(&["7", "100", "20", "CNY", "debit", "0"]).unwrap();
        assert_eq!(b.floor, Some(0));
    }

    /// Each key is one index probe: a scan of the accounts or purchases per key made an upload
    /// of 10,000 new cards over 100,000 accounts take minutes.
    #[tokio::test]
    async fn packed_reads_probe_an_index_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("citycard.db"))
            .await
            .unwrap();
        let mut conn = s.write.acquire().await.unwrap();
        // Statistics of a database with many accounts, as `PRAGMA optimize` leaves them.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO ledger_accounts (kind, owner, unit, normal, floor, created_ms) \
             SELECT 'epurse_shadow', 'card:' || i, 'CNY', 'credit', 0, 0 FROM n",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query("ANALYZE").execute(&mut *conn).await.unwrap();
        for sql in [FIND_ACCOUNTS_SQL, BALANCES_BY_ID_SQL, COUNTERS_MAX_SQL] {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind("epurse_shadow")
                .bind("[1]")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect();
            assert!(
                plan.iter().any(|d| d.starts_with("SCAN j")),
                "the keys are the outer loop: {plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|d| d.starts_with("SCAN a") || d.starts_with("SCAN purchases")),
                "no scan of the table: {plan:?}"
            );
        }
    }
}
