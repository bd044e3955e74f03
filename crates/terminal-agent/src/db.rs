//! The terminal's local store: one SQLite file (WAL, `synchronous = FULL`, so a committed tap
//! survives a power cut) holding parameters, the deny-list, the emulated cards and PSAM, the
//! queue of taken records and the upload batches.

use std::path::Path;
use std::str::FromStr;

use chip::{CardImage, CardNumber, PsamImage};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{AgentError, QueueCounts, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS emulated_cards (number TEXT PRIMARY KEY, image TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('card', 'ecode')),
    tap_ref TEXT UNIQUE,
    body TEXT NOT NULL,
    amount_fen INTEGER NOT NULL,
    taken_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'batched', 'accepted', 'refused')),
    batch_id TEXT,
    result TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS records_state ON records (state, kind, seq);
CREATE INDEX IF NOT EXISTS records_batch ON records (batch_id, seq);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    answered_ms INTEGER
);
";

fn corrupt(what: &'static str, reason: impl ToString) -> AgentError {
    AgentError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

/// A record to write with a tap.
pub(crate) struct NewRecord<'a> {
    pub kind: &'static str,
    pub tap_ref: Option<&'a str>,
    pub body: String,
    pub amount_fen: i64,
    pub taken_ms: i64,
}

/// A batch to send.
pub(crate) struct Batch {
    pub id: String,
    pub kind: String,
    /// `(seq, body)` in order.
    pub records: Vec<(i64, String)>,
}

/// The answer for one record of a batch.
pub(crate) struct Answer {
    pub accepted: bool,
    pub result: String,
    pub reason: Option<String>,
}

pub(crate) struct Db {
    pool: SqlitePool,
}

impl Db {
    pub async fn open(path: &Path) -> Result<Db> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Db { pool })
    }

    pub async fn meta_text(&self, key: &str) -> Result<Option<String>> {
        let v: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        v.map(|b| String::from_utf8(b).map_err(|e| corrupt("meta text", e)))
            .transpose()
    }

    pub async fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Sets several meta entries in one transaction.
    pub async fn meta_set(&self, entries: &[(&str, Vec<u8>)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (k, v) in entries {
            sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(*k)
                .bind(v.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn psam(&self) -> Result<Option<PsamImage>> {
        self.meta_text("psam")
            .await?
            .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("PSAM image", e)))
            .transpose()
    }

    pub async fn psam_save(&self, image: &PsamImage) -> Result<()> {
        let json = serde_json::to_string(image).map_err(|e| corrupt("PSAM image", e))?;
        self.meta_set(&[("psam", json.into_bytes())]).await
    }

    pub async fn fares(&self) -> Result<Option<fares::FareRules>> {
        self.meta_text("fares")
            .await?
            .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("fares", e)))
            .transpose()
    }

    /// The deny-list as last verified and stored (kept unsigned locally: it was checked on
    /// download, and the file is the terminal's own).
    pub async fn deny_list(&self) -> Result<Option<issuance::DenyList>> {
        self.meta_blob("deny_list")
            .await?
            .map(|b| {
                issuance::DenyList::decode(&b, &issuance::Unsigned)
                    .map_err(|e| corrupt("deny-list", e))
            })
            .transpose()
    }

    pub async fn emulated_cards(&self) -> Result<Vec<CardNumber>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT number FROM emulated_cards ORDER BY number")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|n| CardNumber::parse(n).map_err(|e| corrupt("card number", e)))
            .collect()
    }

    pub async fn emulated_card(&self, number: CardNumber) -> Result<Option<CardImage>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT image FROM emulated_cards WHERE number = ?")
                .bind(number.to_string())
                .fetch_optional(&self.pool)
                .await?;
        text.map(|t| CardImage::from_json(&t).map_err(|e| corrupt("card image", e)))
            .transpose()
    }

    pub async fn emulated_cards_insert(&self, cards: &[(CardNumber, CardImage)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (n, image) in cards {
            sqlx::query("INSERT INTO emulated_cards (number, image) VALUES (?, ?)")
                .bind(n.to_string())
                .bind(image.to_json())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn has_tap_ref(&self, tap_ref: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM records WHERE tap_ref = ?")
                .bind(tap_ref)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Writes a taken record with the chip state it left (the emulated card's and the PSAM's
    /// images), in one transaction: after a crash either all of it is there or none.
    pub async fn record_tap(
        &self,
        record: Option<&NewRecord<'_>>,
        card: Option<(CardNumber, &CardImage)>,
        psam: Option<&PsamImage>,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut seq = None;
        if let Some(r) = record {
            seq = Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO records (kind, tap_ref, body, amount_fen, taken_ms) \
                     VALUES (?, ?, ?, ?, ?) RETURNING seq",
                )
                .bind(r.kind)
                .bind(r.tap_ref)
                .bind(&r.body)
                .bind(r.amount_fen)
                .bind(r.taken_ms)
                .fetch_one(&mut *tx)
                .await?,
            );
        }
        if let Some((n, image)) = card {
            sqlx::query("UPDATE emulated_cards SET image = ? WHERE number = ?")
                .bind(image.to_json())
                .bind(n.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(p) = psam {
            let json = serde_json::to_string(p).map_err(|e| corrupt("PSAM image", e))?;
            sqlx::query("INSERT INTO meta (key, value) VALUES ('psam', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(json.into_bytes())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    pub async fn counts(&self) -> Result<QueueCounts> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM records GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut c = QueueCounts::default();
        for r in rows {
            let n = r.try_get::<i64, _>("n")? as u64;
            match r.try_get::<String, _>("state")?.as_str() {
                "queued" => c.queued = n,
                "batched" => c.batched = n,
                "accepted" => c.accepted = n,
                _ => c.refused = n,
            }
        }
        Ok(c)
    }

    /// The oldest batch not answered yet, or a new one cut from the queue (the oldest record's
    /// kind, at most `max_card` / `max_ecode` records); `None` when nothing waits.
    pub async fn next_batch(
        &self,
        max_card: u32,
        max_ecode: u32,
        now_ms: i64,
    ) -> Result<Option<Batch>> {
        let open = sqlx::query(
            "SELECT id, kind FROM batches WHERE answered_ms IS NULL ORDER BY created_ms, id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let (id, kind) = match open {
            Some(r) => (
                r.try_get::<String, _>("id")?,
                r.try_get::<String, _>("kind")?,
            ),
            None => {
                let mut tx = self.pool.begin().await?;
                let kind: Option<String> = sqlx::query_scalar(
                    "SELECT kind FROM records WHERE state = 'queued' ORDER BY seq LIMIT 1",
                )
                .fetch_optional(&mut *tx)
                .await?;
                let Some(kind) = kind else {
                    return Ok(None);
                };
                let max = if kind == "card" { max_card } else { max_ecode };
                let id = uuid::Uuid::new_v4().simple().to_string();
                sqlx::query("INSERT INTO batches (id, kind, created_ms) VALUES (?, ?, ?)")
                    .bind(&id)
                    .bind(&kind)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE records SET state = 'batched', batch_id = ? WHERE seq IN \
                     (SELECT seq FROM records WHERE state = 'queued' AND kind = ? ORDER BY seq LIMIT ?)",
                )
                .bind(&id)
                .bind(&kind)
                .bind(i64::from(max))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                (id, kind)
            }
        };
        let rows = sqlx::query("SELECT seq, body FROM records WHERE batch_id = ? ORDER BY seq")
            .bind(&id)
            .fetch_all(&self.pool)
            .await?;
        let records = rows
            .iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("body")?)))
            .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?;
        Ok(Some(Batch { id, kind, records }))
    }

    /// Marks a batch answered and each of its records by its answer, in one transaction.
    pub async fn answer_batch(&self, batch: &Batch, answers: &[Answer], now_ms: i64) -> Result<()> {
        assert_eq!(batch.records.len(), answers.len(), "one answer per record");
        let mut tx = self.pool.begin().await?;
        for ((seq, _), a) in batch.records.iter().zip(answers) {
            sqlx::query("UPDATE records SET state = ?, result = ?, reason = ? WHERE seq = ? AND state = 'batched'")
                .bind(if a.accepted { "accepted" } else { "refused" })
                .bind(&a.result)
                .bind(&a.reason)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE batches SET answered_ms = ? WHERE id = ?")
            .bind(now_ms)
            .bind(&batch.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Answered records by the platform's result (`posted`, `duplicate`, `bad_tac`, …).
    pub async fn result_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT COALESCE(result, '') AS result, COUNT(*) AS n FROM records \
             WHERE state IN ('accepted', 'refused') GROUP BY result ORDER BY result",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("result")?, r.try_get::<i64, _>("n")? as u64)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// `(result, reason)` of every record refused, oldest first, at most `limit`.
    pub async fn refused(&self, limit: u32) -> Result<Vec<(i64, String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT seq, result, reason FROM records WHERE state = 'refused' ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("seq")?,
                    r.try_get::<Option<String>, _>("result")?
                        .unwrap_or_default(),
                    r.try_get("reason")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
