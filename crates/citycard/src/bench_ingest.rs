//! `citycard bench ingest`: offline purchase uploads through `Platform::ingest_purchases`
//! (parse, TAC check through the master-key store, deny-list, dedup, counters, window,
//! aggregated posting, one audit entry per batch) on SQLite and, with --database-url, on
//! PostgreSQL, spread over many merchants and with every purchase crediting one hot merchant
//! (the metro). Beside it in the same command: a naive baseline (each purchase its own SQL
//! transaction: conditional debit, credit, insert) and, on PostgreSQL, a batched baseline (a
//! stored procedure posting 100 transfers per SQL transaction), both spread and hot, from
//! several concurrent clients.
//!
//! The records are made beforehand by the card emulator at a PSAM terminal (real TACs, not
//! timed); each round uploads fresh records, so nothing is a duplicate.

use crate::config::Config;
use anyhow::Context;
use chip::fleet::Fleet;
use chip::host::RawUpload;
use chip::{BcdDate, BcdTime, TerminalId};
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::clock::SystemClock;
use platform::purchases::{IngestCounts, UPLOAD_RECORDS_MAX};
use platform::{Caller, KeySource, Platform, StorageTarget};
use std::sync::Arc;
use std::time::Instant;

pub struct Args {
    pub purchases: u64,
    pub cards: u32,
    pub merchants: u32,
    pub batch: usize,
    pub rounds: u32,
    pub concurrency: usize,
    pub naive: u64,
    pub clients: usize,
    pub alg: crypto::Algorithm,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Figures {
    backend: &'static str,
    spread: f64,
    hot: f64,
    naive_spread: f64,
    naive_hot: f64,
    batched: Option<(f64, f64)>,
}

pub async fn run(a: Args, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=UPLOAD_RECORDS_MAX).contains(&a.batch),
        "--batch 1..={UPLOAD_RECORDS_MAX}"
    );
    anyhow::ensure!(
        a.rounds >= 1 && a.cards >= 1 && a.merchants >= 1 && a.concurrency >= 1 && a.clients >= 1,
        "sizes must be positive"
    );
    // Each card pays at most 300 fen a tap and holds the purse cap of 100,000 fen.
    let taps_per_card = (a.purchases * 2 * u64::from(a.rounds)).div_ceil(u64::from(a.cards));
    anyhow::ensure!(
        taps_per_card * 300 <= 100_000 && taps_per_card <= 65_535,
        "{taps_per_card} taps per card would empty the purses: give more --cards"
    );
    eprintln!(
        "bench ingest: {} cards make {} purchases with the emulator (not timed) …",
        a.cards,
        a.purchases * 2 * u64::from(a.rounds)
    );
    let start = Instant::now();
    let sets = generate(&a)?;
    eprintln!("  generated in {:.1} s", start.elapsed().as_secs_f64());

    let mut results = Vec::new();
    let dir = tempfile::tempdir()?;
    results.push(
        one(
            &a,
            &sets,
            StorageTarget::Sqlite(dir.path().join("bench.db")),
            "sqlite",
            dir.path(),
        )
        .await?,
    );
    if let Some(url) = &cfg.database_url {
        let schema = format!("bench_ingest_{}", std::process::id());
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
        let r = one(
            &a,
            &sets,
            StorageTarget::Postgres(scoped),
            "postgres",
            dir.path(),
        )
        .await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await?;
        results.push(r?);
    } else {
        eprintln!("(no --database-url: PostgreSQL skipped)");
    }

    println!(
        "\n{} purchases per round in batches of {}, {} uploads in flight, {} cards, {:?}; medians of {} rounds; baselines with {} clients\n",
        a.purchases, a.batch, a.concurrency, a.cards, a.alg, a.rounds, a.clients
    );
    println!(
        "| backend | case | ingest, purchases/s | naive baseline | ingest ÷ naive | batched baseline (100 per transaction) | ingest ÷ batched |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &results {
        for (case, ours, naive, batched) in [
            (
                format!("spread over {} merchants", a.merchants),
                f.spread,
                f.naive_spread,
                f.batched.map(|b| b.0),
            ),
            (
                "hot: one merchant".to_string(),
                f.hot,
                f.naive_hot,
                f.batched.map(|b| b.1),
            ),
        ] {
            let (b, r) = match batched {
                Some(b) => (format!("{b:.0}/s"), format!("{:.2}×", ours / b)),
                None => ("—".into(), "—".into()),
            };
            println!(
                "| {} | {case} | **{ours:.0}** | {naive:.0}/s | {:.1}× | {b} | {r} |",
                f.backend,
                ours / naive
            );
        }
        println!(
            "| {} | hot ÷ spread | {:.2} | {:.2} | | {} | |",
            f.backend,
            f.hot / f.spread,
            f.naive_hot / f.naive_spread,
            f.batched
                .map_or("—".to_string(), |b| format!("{:.2}", b.1 / b.0))
        );
    }
    Ok(())
}

/// `2 × rounds` sets of `purchases` records each (spread rounds, then hot rounds), card `k %
/// cards` making record `k`, so a batch holds distinct cards and counters only grow.
fn generate(a: &Args) -> anyhow::Result<Vec<Vec<RawUpload>>> {
    let today = platform::clock::now_in_city();
    let d = BcdDate::new(today.year() as u16, u8::from(today.month()), today.day())?;
    let t = BcdTime::new(today.hour(), today.minute(), 0)?;
    let mut fleet = Fleet::new(
        500_000_000,
        a.cards,
        a.alg,
        TerminalId([0x10, 0, 0, 0, 0, 1]),
    );
    for c in 0..fleet.len() {
        fleet.load(c, 100_000, d, t)?;
    }
    let mut sets = Vec::new();
    for _ in 0..2 * a.rounds {
        let mut set = Vec::with_capacity(a.purchases as usize);
        for k in 0..a.purchases {
            let card = (k % u64::from(a.cards)) as usize;
            let fen = 1 + (k * 7 % 300) as u32;
            set.push(fleet.buy(card, fen, d, t)?.to_raw());
        }
        sets.push(set);
    }
    Ok(sets)
}

async fn one(
    a: &Args,
    sets: &[Vec<RawUpload>],
    target: StorageTarget,
    backend: &'static str,
    dir: &std::path::Path,
) -> anyhow::Result<Figures> {
    eprintln!(
        "bench ingest on {backend}: seeding {} e-purse shadows …",
        a.cards
    );
    let p = platform::open::open_platform(
        &target,
        &dir.join(format!("keys-{backend}")),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let masters = keys::master::FileMasterKeyStore::create(
        &dir.join(format!("master-{backend}.json")),
        b"bench",
    )?;
    masters.load_test_key_set(keys::master::APP_TRANSIT)?;
    p.set_master_keys(Arc::new(masters));
    seed(&p, &sets[0], a.cards).await?;

    let mut spread = Vec::new();
    let mut hot = Vec::new();
    for round in 0..a.rounds as usize {
        let r = upload(&p, &sets[round], a, false).await?;
        eprintln!("  round {round} spread: {r:.0} purchases/s");
        spread.push(r);
        let r = upload(&p, &sets[a.rounds as usize + round], a, true).await?;
        eprintln!("  round {round} hot:    {r:.0} purchases/s");
        hot.push(r);
    }
    let check = p.ledger_check().await?;
    anyhow::ensure!(
        check.mismatch.is_none(),
        "ledger check failed: {:?}",
        check.mismatch
    );

    let mut naive_spread = Vec::new();
    let mut naive_hot = Vec::new();
    let mut batched_spread = Vec::new();
    let mut batched_hot = Vec::new();
    for round in 0..a.rounds {
        for is_hot in [false, true] {
            let r = baseline(&target, a, round, is_hot, 1).await?;
            eprintln!(
                "  naive round {round} {}: {r:.0}/s",
                if is_hot { "hot" } else { "spread" }
            );
            (if is_hot {
                &mut naive_hot
            } else {
                &mut naive_spread
            })
            .push(r);
            if matches!(target, StorageTarget::Postgres(_)) {
                let r = baseline(&target, a, round, is_hot, 100).await?;
                eprintln!(
                    "  batched round {round} {}: {r:.0}/s",
                    if is_hot { "hot" } else { "spread" }
                );
                (if is_hot {
                    &mut batched_hot
                } else {
                    &mut batched_spread
                })
                .push(r);
            }
        }
    }
    Ok(Figures {
        backend,
        spread: median(spread),
        hot: median(hot),
        naive_spread: median(naive_spread),
        naive_hot: median(naive_hot),
        batched: (!batched_spread.is_empty())
            .then(|| (median(batched_spread), median(batched_hot))),
    })
}

/// Mirrors the chips' loads: 100,000 fen onto every card's shadow (not timed).
pub(crate) async fn seed(p: &Platform, records: &[RawUpload], cards: u32) -> anyhow::Result<()> {
    let s = p.store.clone();
    let draft = || audit::Draft::new("system:bench", "ledger.post", "bench", "bench", "");
    let now = platform::clock::Clock::now_ms(&SystemClock);
    let bank = s
        .ledger_open_accounts(
            &[AccountKey::new(
                AccountKind::BankFloat,
                Owner::Bank("BENCH".into()),
                Unit::Cny,
            )?],
            draft(),
            now,
        )
        .await?[0]
        .id;
    let numbers: Vec<&str> = records
        .iter()
        .take(cards as usize)
        .map(|r| r.card_number.as_str())
        .collect();
    for chunk in numbers.chunks(5_000) {
        let keys: Vec<AccountKey> = chunk.iter().map(|n| AccountKey::epurse_shadow(n)).collect();
        let rows = s.ledger_open_accounts(&keys, draft(), now).await?;
        let loads: Vec<Transfer> = rows
            .iter()
            .map(|r| {
                Transfer::simple(
                    IdempotencyKey::parse(&format!("seed-{}", r.id)).expect("key"),
                    TransferKind::Load,
                    "bench seed",
                    bank,
                    r.id,
                    Unit::Cny,
                    Amount(100_000),
                )
            })
            .collect();
        s.ledger_post_batch(&loads, draft(), now).await?;
    }
    Ok(())
}

/// Uploads one set in batches, `concurrency` in flight; purchases per second.
async fn upload(p: &Platform, set: &[RawUpload], a: &Args, hot: bool) -> anyhow::Result<f64> {
    let batches: Vec<(String, Vec<RawUpload>)> = set
        .chunks(a.batch)
        .enumerate()
        .map(|(i, c)| {
            let merchant = if hot {
                "metro".to_string()
            } else {
                format!("M{}", i as u32 % a.merchants)
            };
            (merchant, c.to_vec())
        })
        .collect();
    let start = Instant::now();
    let posted = upload_batches(p, batches, a.concurrency).await?;
    anyhow::ensure!(
        posted == set.len() as u64,
        "posted {posted} of {}",
        set.len()
    );
    Ok(posted as f64 / start.elapsed().as_secs_f64())
}

/// Uploads `(merchant, records)` batches through `Platform::ingest_purchases`, `concurrency`
/// in flight; every record must be posted. The purchases posted.
pub(crate) async fn upload_batches(
    p: &Platform,
    batches: Vec<(String, Vec<RawUpload>)>,
    concurrency: usize,
) -> anyhow::Result<u64> {
    let queue = Arc::new(tokio::sync::Mutex::new(batches.into_iter()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (p, queue) = (p.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let caller = Caller::cli("bench");
            let mut posted = 0u64;
            loop {
                let next = queue.lock().await.next();
                let Some((merchant, records)) = next else {
                    break;
                };
                let out = p.ingest_purchases(&caller, &merchant, records).await?;
                let c = IngestCounts::of(&out);
                anyhow::ensure!(
                    c.posted as usize == out.len(),
                    "not everything was posted: {c:?}"
                );
                posted += c.posted;
            }
            anyhow::Ok(posted)
        }));
    }
    let mut posted = 0;
    for t in tasks {
        posted += t.await??;
    }
    Ok(posted)
}

/// The baselines, on tables of their own in the same database: `per_tx` = 1 is the naive one
/// (each purchase: BEGIN; debit the card with a floor condition; credit the merchant; insert
/// the purchase; COMMIT), `per_tx` = 100 the batched one (PostgreSQL: a PL/pgSQL procedure
/// doing the same for 100 purchases per call, one transaction per call). `a.clients` clients
/// at once (SQLite has one writer: one client).
async fn baseline(
    target: &StorageTarget,
    a: &Args,
    round: u32,
    hot: bool,
    per_tx: usize,
) -> anyhow::Result<f64> {
    let n = a.naive.min(a.purchases) as usize;
    let cards = u64::from(a.cards);
    let merchants = i64::from(a.merchants);
    let merchant_of = move |i: usize| -> i64 { if hot { 0 } else { 1 + (i as i64 % merchants) } };
    let card_of = move |i: usize| -> i64 { 1_000_000 + (i as u64 % cards) as i64 };
    let amount_of = |i: usize| -> i64 { 1 + (i as i64 * 7 % 300) };
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
            for sql in [
                "DROP TABLE IF EXISTS naive_purchases",
                "DROP TABLE IF EXISTS naive_accounts",
                "CREATE TABLE naive_accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
                "CREATE TABLE naive_purchases (id INTEGER PRIMARY KEY, card INTEGER NOT NULL, \
                 counter INTEGER NOT NULL, merchant INTEGER NOT NULL, amount INTEGER NOT NULL, \
                 UNIQUE (card, counter))",
            ] {
                sqlx::query(sql).execute(&pool).await?;
            }
            for (base, count) in [(0, merchants + 1), (1_000_000, cards as i64)] {
                sqlx::query(
                    "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?) \
                     INSERT INTO naive_accounts SELECT ? + i, 100000000 FROM g",
                )
                .bind(count)
                .bind(base)
                .execute(&pool)
                .await?;
            }
            let start = Instant::now();
            for i in 0..n {
                let mut tx = pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE naive_accounts SET balance = balance - ? WHERE id = ? AND balance >= ?",
                )
                .bind(amount_of(i))
                .bind(card_of(i))
                .bind(amount_of(i))
                .execute(&mut *tx)
                .await?;
                anyhow::ensure!(r.rows_affected() == 1, "naive debit refused");
                sqlx::query("UPDATE naive_accounts SET balance = balance + ? WHERE id = ?")
                    .bind(amount_of(i))
                    .bind(merchant_of(i))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO naive_purchases (card, counter, merchant, amount) VALUES (?, ?, ?, ?)",
                )
                .bind(card_of(i))
                .bind((i as u64 / cards) as i64 + i64::from(round) * 1_000_000)
                .bind(merchant_of(i))
                .bind(amount_of(i))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok(n as f64 / start.elapsed().as_secs_f64())
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(a.clients as u32 + 1)
                .connect(url)
                .await?;
            for sql in [
                "DROP TABLE IF EXISTS naive_purchases".to_string(),
                "DROP TABLE IF EXISTS naive_accounts".to_string(),
                "CREATE TABLE naive_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"
                    .to_string(),
                "CREATE TABLE naive_purchases (id BIGSERIAL PRIMARY KEY, card BIGINT NOT NULL, \
                 counter BIGINT NOT NULL, merchant BIGINT NOT NULL, amount BIGINT NOT NULL, \
                 UNIQUE (card, counter))"
                    .to_string(),
                format!(
                    "INSERT INTO naive_accounts SELECT g, 100000000 FROM generate_series(0, {}) g \
                     UNION ALL SELECT 1000000 + g, 100000000 FROM generate_series(0, {}) g",
                    a.merchants,
                    cards - 1
                ),
                "CREATE OR REPLACE FUNCTION naive_post(cs BIGINT[], ns BIGINT[], ms BIGINT[], \
                 amts BIGINT[]) RETURNS void LANGUAGE plpgsql AS $$ \
                 BEGIN FOR i IN 1 .. array_length(cs, 1) LOOP \
                   UPDATE naive_accounts SET balance = balance - amts[i] \
                     WHERE id = cs[i] AND balance >= amts[i]; \
                   IF NOT FOUND THEN RAISE EXCEPTION 'debit refused'; END IF; \
                   UPDATE naive_accounts SET balance = balance + amts[i] WHERE id = ms[i]; \
                   INSERT INTO naive_purchases (card, counter, merchant, amount) \
                     VALUES (cs[i], ns[i], ms[i], amts[i]); \
                 END LOOP; END $$"
                    .to_string(),
            ] {
                sqlx::query(&sql).execute(&pool).await?;
            }
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..a.clients {
                let (pool, next) = (pool.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let from = next.fetch_add(per_tx, std::sync::atomic::Ordering::SeqCst);
                        if from >= n {
                            break;
                        }
                        let idx: Vec<usize> = (from..(from + per_tx).min(n)).collect();
                        let counter = |i: usize| (i as u64 / cards) as i64 + i64::from(round) * 1_000_000;
                        if per_tx == 1 {
                            let i = idx[0];
                            let mut tx = pool.begin().await?;
                            let r = sqlx::query(
                                "UPDATE naive_accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
                            )
                            .bind(amount_of(i))
                            .bind(card_of(i))
                            .execute(&mut *tx)
                            .await?;
                            anyhow::ensure!(r.rows_affected() == 1, "naive debit refused");
                            sqlx::query("UPDATE naive_accounts SET balance = balance + $1 WHERE id = $2")
                                .bind(amount_of(i))
                                .bind(merchant_of(i))
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(
                                "INSERT INTO naive_purchases (card, counter, merchant, amount) VALUES ($1, $2, $3, $4)",
                            )
                            .bind(card_of(i))
                            .bind(counter(i))
                            .bind(merchant_of(i))
                            .bind(amount_of(i))
                            .execute(&mut *tx)
                            .await?;
                            tx.commit().await?;
                        } else {
                            let cs: Vec<i64> = idx.iter().map(|i| card_of(*i)).collect();
                            let ns: Vec<i64> = idx.iter().map(|i| counter(*i)).collect();
                            let ms: Vec<i64> = idx.iter().map(|i| merchant_of(*i)).collect();
                            let amts: Vec<i64> = idx.iter().map(|i| amount_of(*i)).collect();
                            sqlx::query("SELECT naive_post($1, $2, $3, $4)")
                                .bind(&cs)
                                .bind(&ns)
                                .bind(&ms)
                                .bind(&amts)
                                .execute(&pool)
                                .await?;
                        }
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok(n as f64 / start.elapsed().as_secs_f64())
        }
    }
}
