//! `citycard bench ledger`: transfers posted in batches through the ledger store (validate,
//! idempotency lookup, floors, postings, balances, one audit entry per batch) on SQLite and,
//! with --database-url, on PostgreSQL — each beside a naive baseline in the same command that
//! posts every transfer as its own SQL transaction (two conditional balance updates and an
//! insert, no idempotency, no audit).

use crate::config::Config;
use anyhow::Context;
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::clock::SystemClock;
use platform::{KeySource, StorageTarget};
use std::sync::Arc;
use std::time::Instant;
use store::Store;
use store::ledger::PostOutcome;

pub struct Args {
    pub transfers: u64,
    pub batch: usize,
    pub accounts: u64,
    pub merchants: u64,
    pub rounds: u32,
    pub naive: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Figures {
    backend: &'static str,
    batched: f64,
    naive: f64,
}

pub async fn run(a: Args, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch >= 1 && a.batch <= store::ledger::LEDGER_BATCH_MAX,
        "--batch 1..=20000"
    );
    anyhow::ensure!(
        a.rounds >= 1 && a.accounts >= 1 && a.merchants >= 1,
        "sizes must be positive"
    );
    let mut results = Vec::new();
    let dir = tempfile::tempdir()?;
    results.push(
        one(
            &a,
            StorageTarget::Sqlite(dir.path().join("bench.db")),
            "sqlite",
            dir.path(),
        )
        .await?,
    );
    if let Some(url) = &cfg.database_url {
        let schema = format!("bench_ledger_{}", std::process::id());
        let pool = sqlx::PgPool::connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        for sql in [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ] {
            sqlx::query(&sql).execute(&pool).await?;
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
        let r = one(&a, StorageTarget::Postgres(scoped), "postgres", dir.path()).await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await?;
        results.push(r?);
    } else {
        eprintln!("(no --database-url: PostgreSQL skipped)");
    }
    println!(
        "| benchmark | result (median of {}) | naive baseline (same run) | ratio |",
        a.rounds
    );
    println!("|---|---|---|---|");
    for f in results {
        println!(
            "| ledger post, {} transfers in batches of {} over {} e-purses → {} merchants ({}) | {:.0} transfers/s | one SQL transaction per transfer: {:.0} transfers/s | {:.1}× |",
            a.transfers,
            a.batch,
            a.accounts,
            a.merchants,
            f.backend,
            f.batched,
            f.naive,
            f.batched / f.naive
        );
    }
    Ok(())
}

fn card_number(i: u64) -> String {
    format!("{:016}", 4_101_900_000_000_000u64 + i)
}

async fn one(
    a: &Args,
    target: StorageTarget,
    backend: &'static str,
    dir: &std::path::Path,
) -> anyhow::Result<Figures> {
    eprintln!(
        "bench ledger on {backend}: opening {} accounts …",
        a.accounts + a.merchants + 1
    );
    let p = platform::open::open_platform(
        &target,
        &dir.join(format!("keys-{backend}")),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let s: Arc<dyn Store> = p.store.clone();
    let draft = || audit::Draft::new("system:bench", "ledger.post", "bench", "bench", "");
    let now = || platform::clock::Clock::now_ms(&SystemClock);
    let bank = s
        .ledger_open_accounts(
            &[AccountKey::new(
                AccountKind::BankFloat,
                Owner::Bank("BENCH".into()),
                Unit::Cny,
            )?],
            draft(),
            now(),
        )
        .await?[0]
        .id;
    let mut purses = Vec::new();
    for chunk in (0..a.accounts).collect::<Vec<_>>().chunks(10_000) {
        let keys: Vec<AccountKey> = chunk
            .iter()
            .map(|i| AccountKey::epurse_shadow(&card_number(*i)))
            .collect();
        purses.extend(
            s.ledger_open_accounts(&keys, draft(), now())
                .await?
                .into_iter()
                .map(|r| r.id),
        );
    }
    let keys: Vec<AccountKey> = (0..a.merchants)
        .map(|i| {
            AccountKey::new(
                AccountKind::MerchantPayable,
                Owner::Merchant(format!("M{i}")),
                Unit::Cny,
            )
        })
        .collect::<Result<_, _>>()?;
    let merchants: Vec<i64> = s
        .ledger_open_accounts(&keys, draft(), now())
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    // Seed every e-purse with plenty.
    let seed: Vec<Transfer> = purses
        .iter()
        .map(|id| {
            Transfer::simple(
                IdempotencyKey::parse(&format!("seed-{id}")).expect("key"),
                TransferKind::Load,
                "bench seed",
                bank,
                *id,
                Unit::Cny,
                Amount(100_000_000),
            )
        })
        .collect();
    for chunk in seed.chunks(a.batch.max(1000)) {
        s.ledger_post_batch(chunk, draft(), now()).await?;
    }

    let mut batched = Vec::new();
    for round in 0..a.rounds {
        let transfers: Vec<Transfer> = (0..a.transfers)
            .map(|i| {
                let purse = purses[((i * 7_919) % a.accounts) as usize];
                let merchant = merchants[(i % a.merchants) as usize];
                Transfer::simple(
                    IdempotencyKey::parse(&format!("r{round}-p{i}")).expect("key"),
                    TransferKind::Purchase,
                    "bench purchase",
                    purse,
                    merchant,
                    Unit::Cny,
                    Amount(1 + (i % 500) as i64),
                )
            })
            .collect();
        let start = Instant::now();
        for chunk in transfers.chunks(a.batch) {
            let out = s.ledger_post_batch(chunk, draft(), now()).await?;
            anyhow::ensure!(
                out.iter().all(|o| matches!(o, PostOutcome::Applied { .. })),
                "a bench transfer was not applied: {:?}",
                out.iter()
                    .find(|o| !matches!(o, PostOutcome::Applied { .. }))
            );
        }
        let rate = a.transfers as f64 / start.elapsed().as_secs_f64();
        eprintln!("  round {round}: {rate:.0} transfers/s");
        batched.push(rate);
    }
    let check = s.ledger_check().await?;
    anyhow::ensure!(
        check.mismatch.is_none(),
        "ledger check failed: {:?}",
        check.mismatch
    );

    let mut naive = Vec::new();
    for round in 0..a.rounds {
        let rate = naive_round(&target, a, round).await?;
        eprintln!("  naive round {round}: {rate:.0} transfers/s");
        naive.push(rate);
    }
    Ok(Figures {
        backend,
        batched: median(batched),
        naive: median(naive),
    })
}

/// The naive baseline: per transfer BEGIN; debit with a floor condition; credit; insert the
/// posting; COMMIT — the textbook way, on the same database engine and settings.
async fn naive_round(target: &StorageTarget, a: &Args, round: u32) -> anyhow::Result<f64> {
    let n = a.naive.min(a.transfers);
    let accounts = a.accounts + a.merchants;
    match target {
        StorageTarget::Sqlite(path) => {
            let url = format!("sqlite://{}", path.with_extension("naive.db").display());
            let opts: sqlx::sqlite::SqliteConnectOptions = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            naive_setup_sqlite(&pool, accounts, round).await?;
            let start = Instant::now();
            for i in 0..n {
                let (d, c, amt) = naive_pick(i, a);
                let mut tx = pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE naive_accounts SET balance = balance - ? WHERE id = ? AND balance >= ?",
                )
                .bind(amt)
                .bind(d)
                .bind(amt)
                .execute(&mut *tx)
                .await?;
                anyhow::ensure!(r.rows_affected() == 1, "naive debit refused");
                sqlx::query("UPDATE naive_accounts SET balance = balance + ? WHERE id = ?")
                    .bind(amt)
                    .bind(c)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO naive_postings (debit, credit, amount) VALUES (?, ?, ?)")
                    .bind(d)
                    .bind(c)
                    .bind(amt)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok(n as f64 / start.elapsed().as_secs_f64())
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            for sql in [
                "DROP TABLE IF EXISTS naive_postings".to_string(),
                "DROP TABLE IF EXISTS naive_accounts".to_string(),
                "CREATE TABLE naive_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)".to_string(),
                "CREATE TABLE naive_postings (id BIGSERIAL PRIMARY KEY, debit BIGINT NOT NULL, credit BIGINT NOT NULL, amount BIGINT NOT NULL)".to_string(),
                format!("INSERT INTO naive_accounts SELECT g, 100000000 FROM generate_series(0, {}) g", accounts - 1),
            ] {
                sqlx::query(&sql).execute(&pool).await?;
            }
            let start = Instant::now();
            for i in 0..n {
                let (d, c, amt) = naive_pick(i, a);
                let mut tx = pool.begin().await?;
                let r = sqlx::query("UPDATE naive_accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1")
                    .bind(amt).bind(d).execute(&mut *tx).await?;
                anyhow::ensure!(r.rows_affected() == 1, "naive debit refused");
                sqlx::query("UPDATE naive_accounts SET balance = balance + $1 WHERE id = $2")
                    .bind(amt)
                    .bind(c)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO naive_postings (debit, credit, amount) VALUES ($1, $2, $3)",
                )
                .bind(d)
                .bind(c)
                .bind(amt)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok(n as f64 / start.elapsed().as_secs_f64())
        }
    }
}

async fn naive_setup_sqlite(
    pool: &sqlx::SqlitePool,
    accounts: u64,
    round: u32,
) -> anyhow::Result<()> {
    if round > 0 {
        return Ok(());
    }
    sqlx::query("CREATE TABLE naive_accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        .execute(pool)
        .await?;
    sqlx::query("CREATE TABLE naive_postings (id INTEGER PRIMARY KEY, debit INTEGER NOT NULL, credit INTEGER NOT NULL, amount INTEGER NOT NULL)")
        .execute(pool)
        .await?;
    sqlx::query(
        "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?) \
         INSERT INTO naive_accounts SELECT i, 100000000 FROM g",
    )
    .bind(accounts as i64)
    .execute(pool)
    .await?;
    Ok(())
}

fn naive_pick(i: u64, a: &Args) -> (i64, i64, i64) {
    let purse = ((i * 7_919) % a.accounts) as i64;
    let merchant = (a.accounts + i % a.merchants) as i64;
    (purse, merchant, 1 + (i % 500) as i64)
}
