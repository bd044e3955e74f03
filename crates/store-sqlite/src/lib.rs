//! The embedded SQLite backend of the storage trait: one database file in WAL mode, one writer
//! connection (SQLite allows one writer; queuing in-process beats `SQLITE_BUSY`), a few readers.
//! Write transactions start with `BEGIN IMMEDIATE` so that a second process (the CLI while the
//! server runs) waits on the busy timeout instead of failing half-way.

mod apps;
mod bills;
mod citizens;
mod credit;
mod ecode;
mod notifications;
mod points;
mod production;
mod terminal_fleet;

use async_trait::async_trait;
use keys::BlindIndex;
use resident::{Residency, Source};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use store::{
    ApplicationRow, ApplyCounts, Backend, BalanceMoveRow, CardChange, CardEventRow, CardRow,
    ChangeRow, CredentialKind, CurrentMacs, DenyChangeRow, DenyOp, FeedRow, FeedTotals,
    NewCredential, NewFeed, NewOperator, OperatorRow, ResidentRow, Result, Role, SealedFacts,
    SealedField, Store, StoreError, StoredDataKeys,
};

mod applications;
mod clearing;
mod disbursements;
mod exchange;
mod exchange_oversight;
mod feed_reviews;
mod ledger;
mod money;
mod purchases;
mod terminals;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const READERS_MAX: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the checkpointer copies the write-ahead log into the database file: often, so that
/// each round has little to copy and sync.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Log pages (4 KiB) past which the log should start over (64 MiB): the checkpointer then asks
/// the writer to finish the checkpoint between two transactions ([`Checkpoints`]).
const WAL_RESTART_PAGES: i64 = 16_384;
/// Log pages past which the writer checkpoints on its own when it commits (1 GiB): a backstop
/// that bounds the log if the checkpointer cannot keep up; in normal running it never fires.
const WAL_WRITER_PAGES: &str = "262144";
/// The log file is cut back to this size when it restarts (it grows past it under bulk
/// writes while readers hold old snapshots). Twice [`WAL_RESTART_PAGES`], so that a log that
/// restarts on time is reused as it is, without a truncation inside the writer's next commit.
const WAL_KEEP_BYTES: &str = "134217728";

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    /// What the last offline-purchase ingest left for the next (`store::carry`).
    carry: store::carry::CarryOver,
    /// Where clearing windows are cut for the money movements that enter them.
    windows: store::money::Windows,
    /// Held while the store lives: the checkpointer stops when the last holder is gone.
    _alive: std::sync::Arc<()>,
    /// Shared with the checkpointer and the writer pool's `before_acquire`.
    checkpoints: std::sync::Arc<Checkpoints>,
}

/// Set by the checkpointer when the log has grown past [`WAL_RESTART_PAGES`]; taken by the
/// writer connection when it is next acquired, which then checkpoints what was appended since
/// the checkpointer's last round (a few milliseconds of commits, so little to copy and sync).
/// The log is then wholly in the database file and the writer's next transaction starts it
/// over. The log only starts over when a writer begins after a complete checkpoint, which a
/// checkpointer on another connection never sees while commits follow each other closely;
/// and a writer left to checkpoint by itself (`wal_autocheckpoint`) copies and syncs the whole
/// log inside a commit — tens of milliseconds that every payment queued behind it waited
/// (p99 24 ms against 9 ms without, at 2,000 payments/s).
#[derive(Default)]
struct Checkpoints {
    restart_due: std::sync::atomic::AtomicBool,
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::Conflict(d.message().to_string());
    }
    StoreError::database(e)
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open_with(opts).await
    }

    /// Opens a `sqlite:` URL (e.g. `sqlite::memory:` is refused: readers and writer must share
    /// one database, so use a file).
    pub async fn open_url(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(db)?
            .create_if_missing(true);
        Self::open_with(opts).await
    }

    async fn open_with(opts: SqliteConnectOptions) -> Result<Self> {
        let opts = opts
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", "-262144")
            // Statement journals (multi-row inserts inside a transaction) stay in memory
            // instead of a temporary file, and reads map the file instead of copying it.
            .pragma("temp_store", "MEMORY")
            .pragma("mmap_size", "1073741824")
            // A checkpoint run by the writer when it commits holds up every transaction queued
            // behind it (tens of milliseconds for a large log, seconds under bulk feeds), so a
            // connection of the store's own checkpoints passively in the background
            // (`checkpointer`) while the writer goes on appending, and the writer finishes
            // only the last few milliseconds' worth when the log should start over
            // (`Checkpoints`). The writer's own checkpoint is a backstop far above that.
            .pragma("wal_autocheckpoint", WAL_WRITER_PAGES)
            .pragma("journal_size_limit", WAL_KEEP_BYTES);
        let checkpoints = std::sync::Arc::new(Checkpoints::default());
        let due = checkpoints.clone();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // A local file: nothing to ping before each use.
            .test_before_acquire(false)
            .before_acquire(move |conn, _| {
                let due = due.clone();
                Box::pin(async move {
                    if due.restart_due.swap(false, Ordering::AcqRel) {
                        finish_checkpoint(conn).await;
                    }
                    Ok(true)
                })
            })
            .connect_with(opts.clone())
            .await
            .map_err(db)?;
        MIGRATOR.run(&write).await.map_err(StoreError::database)?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS_MAX)
            .test_before_acquire(false)
            .connect_with(opts.clone().read_only(true))
            .await
            .map_err(db)?;
        let background = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(db)?;
        let alive = std::sync::Arc::new(());
        tokio::spawn(checkpointer(
            background,
            checkpoints.clone(),
            std::sync::Arc::downgrade(&alive),
        ));
        Ok(SqliteStore {
            write,
            read,
            windows: Default::default(),
            carry: Default::default(),
            _alive: alive,
            checkpoints,
        })
    }

    /// What the checkpointer does past [`WAL_RESTART_PAGES`] of log: the writer, before its
    /// next transaction, checkpoints what is left, so that transaction starts the log over.
    /// For tests, and before copying the files (a backup then finds a short log).
    pub fn restart_log_soon(&self) {
        self.checkpoints.restart_due.store(true, Ordering::Release);
    }

    /// The writer pool, for tests that tamper with rows the way an intruder with file access
    /// would.
    pub fn pool(&self) -> &SqlitePool {
        &self.write
    }
}

/// Copies the write-ahead log into the database file every [`CHECKPOINT_EVERY`] on a
/// connection of its own, without waiting for readers or the writer (`PASSIVE`): what a
/// reader still needs stays in the log for the next round. Past [`WAL_RESTART_PAGES`] it asks
/// the writer to finish the checkpoint ([`Checkpoints`]). Stops with the store.
async fn checkpointer(
    pool: SqlitePool,
    checkpoints: std::sync::Arc<Checkpoints>,
    alive: std::sync::Weak<()>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.upgrade().is_none() {
            break;
        }
        let began = std::time::Instant::now();
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok((_, log, copied)) => {
                if log > WAL_RESTART_PAGES {
                    checkpoints.restart_due.store(true, Ordering::Release);
                }
                if log > 0 {
                    tracing::debug!(
                        log_pages = log,
                        copied_pages = copied,
                        took_us = began.elapsed().as_micros() as u64,
                        "SQLite checkpoint"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SQLite checkpoint failed; the next round retries")
            }
        }
    }
    pool.close().await;
}

/// The writer's part of a log restart: checkpoints, on the writer connection between two
/// transactions, what the checkpointer has not copied yet. A failure only delays the restart
/// to a later round; the writer goes on.
async fn finish_checkpoint(conn: &mut SqliteConnection) {
    let began = std::time::Instant::now();
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await
    {
        Ok((_, log, copied)) => tracing::debug!(
            log_pages = log,
            copied_pages = copied,
            took_us = began.elapsed().as_micros() as u64,
            "SQLite checkpoint by the writer, before the log starts over"
        ),
        Err(e) => tracing::warn!(error = %e, "SQLite checkpoint by the writer failed"),
    }
}

pub(crate) fn blind(row: &SqliteRow, col: &str) -> Result<BlindIndex> {
    let b: Vec<u8> = row.try_get(col).map_err(db)?;
    BlindIndex::from_slice(&b).ok_or_else(|| StoreError::Corrupt(format!("{col} length")))
}

fn opt_blind(row: &SqliteRow, col: &str) -> Result<Option<BlindIndex>> {
    let b: Option<Vec<u8>> = row.try_get(col).map_err(db)?;
    match b {
        None => Ok(None),
        Some(b) => {
            Ok(Some(BlindIndex::from_slice(&b).ok_or_else(|| {
                StoreError::Corrupt(format!("{col} length"))
            })?))
        }
    }
}

fn residency(row: &SqliteRow) -> Result<Option<Residency>> {
    let r: Option<String> = row.try_get("residency").map_err(db)?;
    r.map(|r| Residency::parse(&r).ok_or_else(|| StoreError::Corrupt(format!("residency {r}"))))
        .transpose()
}

fn hash32(b: Vec<u8>, what: &str) -> Result<audit::Hash> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

const RESIDENT_COLS: &str = "id, id_blind, id_sealed, birth_date, gender, region_code, \
    name_sealed, phone_sealed, address_sealed, residency, assistance_sealed, student_sealed, \
    created_ms, updated_ms, version";

fn resident_row(row: &SqliteRow) -> Result<ResidentRow> {
    Ok(ResidentRow {
        id: row.try_get("id").map_err(db)?,
        id_blind: blind(row, "id_blind")?,
        id_sealed: row.try_get("id_sealed").map_err(db)?,
        birth_date: row.try_get("birth_date").map_err(db)?,
        gender: row.try_get("gender").map_err(db)?,
        region_code: row.try_get("region_code").map_err(db)?,
        name_sealed: row.try_get("name_sealed").map_err(db)?,
        phone_sealed: row.try_get("phone_sealed").map_err(db)?,
        address_sealed: row.try_get("address_sealed").map_err(db)?,
        residency: residency(row)?,
        assistance_sealed: row.try_get("assistance_sealed").map_err(db)?,
        student_sealed: row.try_get("student_sealed").map_err(db)?,
        created_ms: row.try_get("created_ms").map_err(db)?,
        updated_ms: row.try_get("updated_ms").map_err(db)?,
        version: row.try_get("version").map_err(db)?,
    })
}

fn operator_row(row: &SqliteRow) -> Result<OperatorRow> {
    let role: String = row.try_get("role").map_err(db)?;
    let dept: Option<String> = row.try_get("department").map_err(db)?;
    Ok(OperatorRow {
        id: row.try_get("id").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        display_name: row.try_get("display_name").map_err(db)?,
        password_hash: row.try_get("password_hash").map_err(db)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        department: dept
            .map(|d| Source::parse(&d).ok_or_else(|| StoreError::Corrupt(format!("dept {d}"))))
            .transpose()?,
        created_ms: row.try_get("created_ms").map_err(db)?,
        disabled: row.try_get::<i64, _>("disabled").map_err(db)? != 0,
    })
}

fn audit_row(row: &SqliteRow) -> Result<audit::Entry> {
    Ok(audit::Entry {
        seq: row.try_get("seq").map_err(db)?,
        at_ms: row.try_get("at_ms").map_err(db)?,
        draft: audit::Draft {
            actor: row.try_get("actor").map_err(db)?,
            action: row.try_get("action").map_err(db)?,
            record: row.try_get("record").map_err(db)?,
            origin: row.try_get("origin").map_err(db)?,
            detail: row.try_get("detail").map_err(db)?,
        },
        prev_hash: hash32(row.try_get("prev_hash").map_err(db)?, "prev_hash")?,
        hash: hash32(row.try_get("hash").map_err(db)?, "hash")?,
    })
}

/// Appends to the audit chain inside the caller's transaction.
pub(crate) async fn append_audit(
    conn: &mut SqliteConnection,
    draft: audit::Draft,
    now_ms: i64,
) -> Result<audit::Entry> {
    let mut v = append_audit_many(conn, vec![draft], now_ms).await?;
    v.pop()
        .ok_or_else(|| StoreError::Corrupt("audit append returned nothing".into()))
}

/// Appends several entries in order with one multi-row insert (group commit).
pub(crate) async fn append_audit_many(
    conn: &mut SqliteConnection,
    drafts: Vec<audit::Draft>,
    now_ms: i64,
) -> Result<Vec<audit::Entry>> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let seq: i64 = head.try_get("seq").map_err(db)?;
    let prev = if seq == 0 {
        None
    } else {
        Some((
            seq,
            hash32(head.try_get("hash").map_err(db)?, "audit head")?,
        ))
    };
    let mut entries: Vec<audit::Entry> = Vec::with_capacity(drafts.len());
    let mut last = prev;
    for d in drafts {
        let e = audit::chain_next(last, now_ms, d);
        last = Some((e.seq, e.hash));
        entries.push(e);
    }
    let Some(tail) = entries.last() else {
        return Ok(entries);
    };
    let (tail_seq, tail_hash) = (tail.seq, tail.hash);
    for chunk in entries.chunks(1000) {
        let sql = format!(
            "INSERT INTO audit_log (seq, at_ms, actor, action, record, origin, detail, prev_hash, hash) VALUES {}",
            placeholders(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.seq)
                .bind(e.at_ms)
                .bind(&e.draft.actor)
                .bind(&e.draft.action)
                .bind(&e.draft.record)
                .bind(&e.draft.origin)
                .bind(&e.draft.detail)
                .bind(&e.prev_hash[..])
                .bind(&e.hash[..]);
        }
        q.execute(&mut *conn).await.map_err(db)?;
    }
    sqlx::query("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1")
        .bind(tail_seq)
        .bind(&tail_hash[..])
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(entries)
}

pub(crate) fn placeholders(n: usize, per_row: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; n].join(", ")
}

pub(crate) fn card_row(row: &SqliteRow) -> Result<CardRow> {
    Ok(CardRow {
        number: row.try_get("number").map_err(db)?,
        resident_id: row.try_get("resident_id").map_err(db)?,
        state: row.try_get("state").map_err(db)?,
        state_json: row.try_get("state_json").map_err(db)?,
        card_type: row.try_get("card_type").map_err(db)?,
        valid_until_s: row.try_get("valid_until_s").map_err(db)?,
        version: row.try_get("version").map_err(db)?,
        created_ms: row.try_get("created_ms").map_err(db)?,
        updated_ms: row.try_get("updated_ms").map_err(db)?,
    })
}

async fn insert_card(conn: &mut SqliteConnection, c: &CardRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO cards (number, resident_id, state, state_json, card_type, valid_until_s, \
         version, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&c.number)
    .bind(c.resident_id)
    .bind(&c.state)
    .bind(&c.state_json)
    .bind(&c.card_type)
    .bind(c.valid_until_s)
    .bind(c.version)
    .bind(c.created_ms)
    .bind(c.updated_ms)
    .execute(&mut *conn)
    .await
    .map_err(|e| match db(e) {
        StoreError::Conflict(m) if m.contains("number") || m.contains("pkey") => {
            StoreError::Conflict(format!("card {}", c.number))
        }
        StoreError::Conflict(_) => StoreError::Conflict("a live card for this resident".into()),
        e => e,
    })?;
    Ok(())
}

pub(crate) async fn insert_event(conn: &mut SqliteConnection, e: &CardEventRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO card_events (number, from_state, to_state, action, reason, actor, at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.number)
    .bind(&e.from_state)
    .bind(&e.to_state)
    .bind(&e.action)
    .bind(&e.reason)
    .bind(&e.actor)
    .bind(e.at_ms)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Applies one card transition inside the caller's transaction: the card (if still at
/// `version - 1`, else `Conflict`), its successor, events, deny-list changes and balance moves.
pub(crate) async fn apply_change(
    conn: &mut SqliteConnection,
    change: &CardChange,
    now_ms: i64,
) -> Result<()> {
    let c = &change.card;
    let updated = sqlx::query(
        "UPDATE cards SET state = ?, state_json = ?, card_type = ?, valid_until_s = ?, \
         version = ?, updated_ms = ? WHERE number = ? AND version = ?",
    )
    .bind(&c.state)
    .bind(&c.state_json)
    .bind(&c.card_type)
    .bind(c.valid_until_s)
    .bind(c.version)
    .bind(c.updated_ms)
    .bind(&c.number)
    .bind(c.version - 1)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "card {} changed meanwhile (expected version {})",
            c.number,
            c.version - 1
        )));
    }
    if let Some(s) = &change.successor {
        insert_card(&mut *conn, s).await?;
    }
    for e in &change.events {
        insert_event(&mut *conn, e).await?;
    }
    for (number, op) in &change.deny {
        sqlx::query("INSERT INTO deny_list (number, op, at_ms) VALUES (?, ?, ?)")
            .bind(number)
            .bind(op.as_str())
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    for m in &change.moves {
        sqlx::query(
            "INSERT INTO balance_moves (from_number, to_number, not_before_s, created_ms) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(&m.from_number)
        .bind(&m.to_number)
        .bind(m.not_before_s)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn data_keys(&self, purpose: &str) -> Result<Option<StoredDataKeys>> {
        let row = sqlx::query("SELECT purpose, kek_id, wrapped FROM data_keys WHERE purpose = ?")
            .bind(purpose)
            .fetch_optional(&self.write)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(StoredDataKeys {
                purpose: r.try_get("purpose").map_err(db)?,
                kek_id: r.try_get("kek_id").map_err(db)?,
                wrapped: r.try_get("wrapped").map_err(db)?,
            })
        })
        .transpose()
    }

    async fn data_keys_insert(&self, k: &StoredDataKeys) -> Result<StoredDataKeys> {
        sqlx::query(
            "INSERT INTO data_keys (purpose, kek_id, wrapped) VALUES (?, ?, ?) \
             ON CONFLICT (purpose) DO NOTHING",
        )
        .bind(&k.purpose)
        .bind(&k.kek_id)
        .bind(&k.wrapped)
        .execute(&self.write)
        .await
        .map_err(db)?;
        self.data_keys(&k.purpose)
            .await?
            .ok_or_else(|| StoreError::Corrupt("data keys vanished after insert".into()))
    }

    async fn feed_begin(&self, feed: &NewFeed, audit: audit::Draft, now_ms: i64) -> Result<i64> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO feeds (source, channel, digest, started_ms) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(feed.source.as_str())
        .bind(&feed.channel)
        .bind(&feed.digest)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let mut audit = audit;
        audit.record = format!("feed:{id}");
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn residents_apply(
        &self,
        feed_id: i64,
        rows: &[SealedFacts],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ApplyCounts> {
        if rows.len() > store::APPLY_BATCH_MAX {
            return Err(StoreError::TooMany {
                got: rows.len(),
                max: store::APPLY_BATCH_MAX,
            });
        }
        let mut counts = ApplyCounts::default();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;

        // What is stored now for the residents of this batch.
        let mut current: std::collections::HashMap<BlindIndex, (i64, CurrentMacs)> =
            std::collections::HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(500) {
            let sql = format!(
                "SELECT id, id_blind, name_mac, phone_mac, address_mac, residency, assistance_mac, student_mac \
                 FROM residents WHERE id_blind IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q.bind(&r.id_blind.0[..]);
            }
            for row in q.fetch_all(&mut *tx).await.map_err(db)? {
                let macs = CurrentMacs {
                    name: opt_blind(&row, "name_mac")?,
                    phone: opt_blind(&row, "phone_mac")?,
                    address: opt_blind(&row, "address_mac")?,
                    residency: residency(&row)?,
                    assistance: opt_blind(&row, "assistance_mac")?,
                    student: opt_blind(&row, "student_mac")?,
                };
                current.insert(
                    blind(&row, "id_blind")?,
                    (row.try_get("id").map_err(db)?, macs),
                );
            }
        }

        let source: Option<String> = sqlx::query_scalar("SELECT source FROM feeds WHERE id = ?")
            .bind(feed_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let source = source
            .ok_or_else(|| StoreError::NotFound(format!("feed {feed_id}")))
            .and_then(|s| {
                Source::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("feed source {s}")))
            })?;
        // (resident id, held field): contradictions from a department that is not the field's
        // authority, kept for review instead of applied.
        let mut held_rows: Vec<(i64, &SealedField)> = Vec::new();
        let mut new_rows: Vec<&SealedFacts> = Vec::new();
        // (resident id, mask, sealed values)
        let mut changes: Vec<(i64, u8, &[u8])> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in rows {
            if !seen.insert(r.id_blind) {
                return Err(StoreError::Conflict(
                    "the same resident twice in one batch".into(),
                ));
            }
            match current.get(&r.id_blind) {
                None => new_rows.push(r),
                Some((id, macs)) => {
                    let changed = store::changed_fields(Some(macs), r);
                    if changed == 0 {
                        counts.unchanged += 1;
                        continue;
                    }
                    let held = store::held_fields(Some(macs), changed, source);
                    let mask = changed & !held;
                    for f in resident::Field::from_mask(held) {
                        if let Some(sf) = r.field(f) {
                            held_rows.push((*id, sf));
                        }
                    }
                    if held != 0 {
                        counts.held += 1;
                    }
                    if mask == 0 {
                        continue;
                    }
                    counts.updated += 1;
                    let f =
                        |field: resident::Field| r.field(field).filter(|_| mask & field.bit() != 0);
                    use resident::Field::{Address, Assistance, Name, Phone, Student};
                    sqlx::query(
                        "UPDATE residents SET \
                         name_mac = COALESCE(?, name_mac), name_sealed = COALESCE(?, name_sealed), \
                         phone_mac = COALESCE(?, phone_mac), phone_sealed = COALESCE(?, phone_sealed), \
                         address_mac = COALESCE(?, address_mac), address_sealed = COALESCE(?, address_sealed), \
                         residency = COALESCE(?, residency), \
                         assistance_mac = COALESCE(?, assistance_mac), assistance_sealed = COALESCE(?, assistance_sealed), \
                         student_mac = COALESCE(?, student_mac), student_sealed = COALESCE(?, student_sealed), \
                         updated_ms = ?, version = version + 1 \
                         WHERE id = ?",
                    )
                    .bind(f(Name).map(|s| &s.mac.0[..]))
                    .bind(f(Name).map(|s| &s.sealed[..]))
                    .bind(f(Phone).map(|s| &s.mac.0[..]))
                    .bind(f(Phone).map(|s| &s.sealed[..]))
                    .bind(f(Address).map(|s| &s.mac.0[..]))
                    .bind(f(Address).map(|s| &s.sealed[..]))
                    .bind(r.residency.filter(|_| mask & resident::Field::Residency.bit() != 0).map(Residency::as_str))
                    .bind(f(Assistance).map(|s| &s.mac.0[..]))
                    .bind(f(Assistance).map(|s| &s.sealed[..]))
                    .bind(f(Student).map(|s| &s.mac.0[..]))
                    .bind(f(Student).map(|s| &s.sealed[..]))
                    .bind(now_ms)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    changes.push((*id, mask, &r.change_sealed));
                }
            }
        }

        const COLS: usize = 19;
        for chunk in new_rows.chunks(1000) {
            let sql = format!(
                "INSERT INTO residents (id_blind, id_sealed, birth_date, gender, region_code, \
                 name_mac, name_sealed, phone_mac, phone_sealed, address_mac, address_sealed, \
                 residency, assistance_mac, assistance_sealed, student_mac, student_sealed, \
                 created_ms, updated_ms, version) VALUES {} RETURNING id, id_blind",
                placeholders(chunk.len(), COLS)
            );
            let mut q = sqlx::query(&sql);
            use resident::Field::{Address, Assistance, Name, Phone, Student};
            for r in chunk {
                let f = |field| r.field(field);
                q = q
                    .bind(&r.id_blind.0[..])
                    .bind(&r.id_sealed[..])
                    .bind(&r.birth_date)
                    .bind(&r.gender)
                    .bind(&r.region_code)
                    .bind(f(Name).map(|s| &s.mac.0[..]))
                    .bind(f(Name).map(|s| &s.sealed[..]))
                    .bind(f(Phone).map(|s| &s.mac.0[..]))
                    .bind(f(Phone).map(|s| &s.sealed[..]))
                    .bind(f(Address).map(|s| &s.mac.0[..]))
                    .bind(f(Address).map(|s| &s.sealed[..]))
                    .bind(r.residency.map(Residency::as_str))
                    .bind(f(Assistance).map(|s| &s.mac.0[..]))
                    .bind(f(Assistance).map(|s| &s.sealed[..]))
                    .bind(f(Student).map(|s| &s.mac.0[..]))
                    .bind(f(Student).map(|s| &s.sealed[..]))
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(1i64);
            }
            let by_blind: std::collections::HashMap<BlindIndex, &SealedFacts> =
                chunk.iter().map(|r| (r.id_blind, *r)).collect();
            for row in q.fetch_all(&mut *tx).await.map_err(db)? {
                let b = blind(&row, "id_blind")?;
                let r = by_blind
                    .get(&b)
                    .ok_or_else(|| StoreError::Corrupt("inserted an unknown resident".into()))?;
                changes.push((
                    row.try_get("id").map_err(db)?,
                    store::changed_fields(None, r),
                    &r.change_sealed,
                ));
                counts.inserted += 1;
            }
        }

        for chunk in changes.chunks(2000) {
            let sql = format!(
                "INSERT INTO resident_changes (resident_id, feed_id, fields_mask, values_sealed, at_ms) VALUES {}",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for (id, mask, sealed) in chunk {
                q = q
                    .bind(*id)
                    .bind(feed_id)
                    .bind(i64::from(*mask))
                    .bind(*sealed)
                    .bind(now_ms);
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }

        crate::feed_reviews::insert_held(&mut tx, feed_id, source, &held_rows, now_ms).await?;

        let mut audit = audit;
        audit.detail = format!(
            "{} inserted={} updated={} unchanged={} held={}",
            audit.detail, counts.inserted, counts.updated, counts.unchanged, counts.held
        );
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(counts)
    }

    async fn feed_finish(&self, feed_id: i64, t: &FeedTotals, now_ms: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE feeds SET finished_ms = ?, rows_total = ?, inserted = ?, updated = ?, \
             unchanged = ?, rejected = ? WHERE id = ?",
        )
        .bind(now_ms)
        .bind(t.rows as i64)
        .bind(t.inserted as i64)
        .bind(t.updated as i64)
        .bind(t.unchanged as i64)
        .bind(t.rejected as i64)
        .bind(feed_id)
        .execute(&self.write)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("feed {feed_id}")));
        }
        Ok(())
    }

    async fn feeds_recent(&self, limit: u32) -> Result<Vec<FeedRow>> {
        let rows = sqlx::query("SELECT * FROM feeds ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let g = |c: &str| -> Result<u64> {
                    Ok(r.try_get::<i64, _>(c).map_err(db)?.max(0) as u64)
                };
                Ok(FeedRow {
                    id: r.try_get("id").map_err(db)?,
                    source: r.try_get("source").map_err(db)?,
                    channel: r.try_get("channel").map_err(db)?,
                    digest: r.try_get("digest").map_err(db)?,
                    started_ms: r.try_get("started_ms").map_err(db)?,
                    finished_ms: r.try_get("finished_ms").map_err(db)?,
                    totals: FeedTotals {
                        rows: g("rows_total")?,
                        inserted: g("inserted")?,
                        updated: g("updated")?,
                        unchanged: g("unchanged")?,
                        rejected: g("rejected")?,
                    },
                })
            })
            .collect()
    }

    async fn resident_by_blind(&self, id_blind: &BlindIndex) -> Result<Option<ResidentRow>> {
        let sql = format!("SELECT {RESIDENT_COLS} FROM residents WHERE id_blind = ?");
        let row = sqlx::query(&sql)
            .bind(&id_blind.0[..])
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(resident_row).transpose()
    }

    async fn resident_by_id(&self, id: i64) -> Result<Option<ResidentRow>> {
        let sql = format!("SELECT {RESIDENT_COLS} FROM residents WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(resident_row).transpose()
    }

    async fn residents_by_ids(&self, ids: &[i64]) -> Result<Vec<ResidentRow>> {
        if ids.len() > store::RESIDENTS_BY_IDS_MAX {
            return Err(StoreError::TooMany {
                got: ids.len(),
                max: store::RESIDENTS_BY_IDS_MAX,
            });
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(900) {
            let sql = format!(
                "SELECT {RESIDENT_COLS} FROM residents WHERE id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.read).await.map_err(db)? {
                out.push(resident_row(&r)?);
            }
        }
        Ok(out)
    }

    async fn residents_by_name(
        &self,
        name_mac: &BlindIndex,
        limit: u32,
    ) -> Result<Vec<ResidentRow>> {
        let sql =
            format!("SELECT {RESIDENT_COLS} FROM residents WHERE name_mac = ? ORDER BY id LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(&name_mac.0[..])
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(resident_row).collect()
    }

    async fn residents_page(&self, after_id: i64, limit: u32) -> Result<Vec<ResidentRow>> {
        let sql = format!("SELECT {RESIDENT_COLS} FROM residents WHERE id > ? ORDER BY id LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(after_id)
            .bind(i64::from(limit.min(store::PAGE_MAX)))
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(resident_row).collect()
    }

    async fn resident_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM residents")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        Ok(n.max(0) as u64)
    }

    async fn resident_history(&self, resident_id: i64) -> Result<Vec<ChangeRow>> {
        let rows = sqlx::query(
            "SELECT c.feed_id, f.source, f.channel, c.fields_mask, c.values_sealed, c.at_ms \
             FROM resident_changes c JOIN feeds f ON f.id = c.feed_id \
             WHERE c.resident_id = ? ORDER BY c.id LIMIT 1000",
        )
        .bind(resident_id)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ChangeRow {
                    feed_id: r.try_get("feed_id").map_err(db)?,
                    source: r.try_get("source").map_err(db)?,
                    channel: r.try_get("channel").map_err(db)?,
                    fields_mask: r.try_get::<i64, _>("fields_mask").map_err(db)? as u8,
                    values_sealed: r.try_get("values_sealed").map_err(db)?,
                    at_ms: r.try_get("at_ms").map_err(db)?,
                })
            })
            .collect()
    }

    async fn operator_create(
        &self,
        op: &NewOperator,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<OperatorRow> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let row = sqlx::query(
            "INSERT INTO operators (username, display_name, password_hash, role, department, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(&op.username)
        .bind(&op.display_name)
        .bind(&op.password_hash)
        .bind(op.role.as_str())
        .bind(op.department.map(Source::as_str))
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("operator {}", op.username)),
            e => e,
        })?;
        let created = operator_row(&row)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(created)
    }

    async fn operator_by_username(&self, username: &str) -> Result<Option<OperatorRow>> {
        let row = sqlx::query("SELECT * FROM operators WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(operator_row).transpose()
    }

    async fn operators_list(&self) -> Result<Vec<OperatorRow>> {
        let rows = sqlx::query("SELECT * FROM operators ORDER BY id LIMIT 10000")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(operator_row).collect()
    }

    async fn credential_create(
        &self,
        c: &NewCredential,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, operator_id, kind, label, created_ms, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.token_hash[..])
        .bind(c.operator_id)
        .bind(c.kind.as_str())
        .bind(&c.label)
        .bind(now_ms)
        .bind(c.expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn credential_lookup(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<(OperatorRow, CredentialKind, i64)>> {
        let row = sqlx::query(
            "SELECT o.*, c.kind AS credential_kind, c.expires_ms AS credential_expires_ms FROM credentials c \
             JOIN operators o ON o.id = c.operator_id \
             WHERE c.token_hash = ? AND c.revoked_ms IS NULL AND c.expires_ms > ? AND o.disabled = 0",
        )
        .bind(&token_hash[..])
        .bind(now_ms)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        match row {
            None => Ok(None),
            Some(r) => {
                let kind: String = r.try_get("credential_kind").map_err(db)?;
                let kind = CredentialKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("credential kind {kind}")))?;
                let expires: i64 = r.try_get("credential_expires_ms").map_err(db)?;
                Ok(Some((operator_row(&r)?, kind, expires)))
            }
        }
    }

    async fn credential_revoke(&self, token_hash: &[u8; 32], now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE credentials SET revoked_ms = ? WHERE token_hash = ? AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(&token_hash[..])
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn card_sequence_next(&self) -> Result<u32> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let n: i64 = sqlx::query_scalar(
            "UPDATE card_sequence SET next = next + 1 WHERE id = 1 RETURNING next - 1",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("card sequence {n}")))
    }

    async fn card_insert(
        &self,
        card: &CardRow,
        event: &CardEventRow,
        application: Option<&ApplicationRow>,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        insert_card(&mut tx, card).await?;
        if let Some(a) = application {
            sqlx::query(
                "INSERT INTO card_applications (number, channel, delivery, outlet_code, photo_ref, \
                 guardian_resident_id, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.number)
            .bind(&a.channel)
            .bind(&a.delivery)
            .bind(&a.outlet_code)
            .bind(&a.photo_ref)
            .bind(a.guardian_resident_id)
            .bind(a.created_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        insert_event(&mut tx, event).await?;
        append_audit(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn card_apply(
        &self,
        change: &CardChange,
        audit: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        apply_change(&mut tx, change, now_ms).await?;
        append_audit_many(&mut tx, audit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn card_by_number(&self, number: &str) -> Result<Option<CardRow>> {
        let row = sqlx::query("SELECT * FROM cards WHERE number = ?")
            .bind(number)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(card_row).transpose()
    }

    async fn cards_of_resident(&self, resident_id: i64) -> Result<Vec<CardRow>> {
        let rows = sqlx::query(
            "SELECT * FROM cards WHERE resident_id = ? ORDER BY created_ms, number LIMIT 1000",
        )
        .bind(resident_id)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(card_row).collect()
    }

    async fn cards_page(
        &self,
        state: Option<&str>,
        after_number: &str,
        limit: u32,
    ) -> Result<Vec<CardRow>> {
        let rows = sqlx::query(
            "SELECT * FROM cards WHERE (CAST(? AS TEXT) IS NULL OR state = ?) AND number > ? \
             ORDER BY number LIMIT ?",
        )
        .bind(state)
        .bind(state)
        .bind(after_number)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(card_row).collect()
    }

    async fn card_events(&self, number: &str) -> Result<Vec<CardEventRow>> {
        let rows =
            sqlx::query("SELECT * FROM card_events WHERE number = ? ORDER BY id LIMIT 10000")
                .bind(number)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(CardEventRow {
                    number: r.try_get("number").map_err(db)?,
                    from_state: r.try_get("from_state").map_err(db)?,
                    to_state: r.try_get("to_state").map_err(db)?,
                    action: r.try_get("action").map_err(db)?,
                    reason: r.try_get("reason").map_err(db)?,
                    actor: r.try_get("actor").map_err(db)?,
                    at_ms: r.try_get("at_ms").map_err(db)?,
                })
            })
            .collect()
    }

    async fn deny_list_version(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM deny_list")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        Ok(v.unwrap_or(0))
    }

    async fn deny_list_changes(
        &self,
        after_version: i64,
        limit: u32,
    ) -> Result<Vec<DenyChangeRow>> {
        let rows =
            sqlx::query("SELECT * FROM deny_list WHERE version > ? ORDER BY version LIMIT ?")
                .bind(after_version)
                .bind(i64::from(limit.min(1_000_000)))
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
        rows.iter()
            .map(|r| {
                let op: String = r.try_get("op").map_err(db)?;
                Ok(DenyChangeRow {
                    version: r.try_get("version").map_err(db)?,
                    number: r.try_get("number").map_err(db)?,
                    op: DenyOp::parse(&op)
                        .ok_or_else(|| StoreError::Corrupt(format!("deny op {op}")))?,
                    at_ms: r.try_get("at_ms").map_err(db)?,
                })
            })
            .collect()
    }

    async fn balance_moves_pending(&self, limit: u32) -> Result<Vec<BalanceMoveRow>> {
        let rows = sqlx::query(
            "SELECT * FROM balance_moves WHERE released_ms IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(BalanceMoveRow {
                    from_number: r.try_get("from_number").map_err(db)?,
                    to_number: r.try_get("to_number").map_err(db)?,
                    not_before_s: r.try_get("not_before_s").map_err(db)?,
                })
            })
            .collect()
    }

    async fn audit_append(&self, draft: audit::Draft, now_ms: i64) -> Result<audit::Entry> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let e = append_audit(&mut tx, draft, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(e)
    }

    async fn audit_append_batch(
        &self,
        drafts: Vec<audit::Draft>,
        now_ms: i64,
    ) -> Result<Vec<audit::Entry>> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let out = append_audit_many(&mut tx, drafts, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn audit_head(&self) -> Result<Option<(i64, audit::Hash)>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        let seq: i64 = row.try_get("seq").map_err(db)?;
        if seq == 0 {
            return Ok(None);
        }
        Ok(Some((
            seq,
            hash32(row.try_get("hash").map_err(db)?, "audit head")?,
        )))
    }

    async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<audit::Entry>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after_seq)
            .bind(i64::from(limit.min(10_000)))
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_recent(&self, action: Option<&str>, limit: u32) -> Result<Vec<audit::Entry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE (? IS NULL OR action = ?) ORDER BY seq DESC LIMIT ?",
        )
        .bind(action)
        .bind(action)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_of_record(
        &self,
        record: &str,
        action: Option<&str>,
        limit: u32,
    ) -> Result<Vec<audit::Entry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE record = ? AND (? IS NULL OR action = ?) \
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(record)
        .bind(action)
        .bind(action)
        .bind(i64::from(limit.min(store::PAGE_MAX)))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(audit_row).collect()
    }
}
