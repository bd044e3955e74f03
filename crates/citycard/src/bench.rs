//! Benchmarks, each run beside its baseline in the same command so the ratio survives a noisy
//! machine. Results are printed as Markdown rows for `docs/benchmarks.md`.

use crate::config::Config;
use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::clock::SystemClock;
use platform::{Caller, KeySource, StorageTarget};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Resident import (rows/s) and ID lookups over HTTP (requests/s, p50, p99), on the
    /// backend chosen by --database-url (a scratch schema) or a scratch SQLite file.
    Residents {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 50_000)]
        lookups: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The deny-list terminals download: full list and delta built from the database's
    /// change log (replay, SM2 signature, encoding), beside the pure encoder.
    Denylist {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        #[arg(long, default_value_t = 10_000)]
        delta: u64,
        /// Downloads measured: the first is cold (whole log replayed), the rest warm.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
    },
    /// E-code certificate issuance and online verification (per second) through the platform,
    /// offline verification with the terminal's Verifier, beside raw SM2 sign and verify.
    Ecode(crate::ecode_cmd::BenchArgs),
    /// What a gate does with an e-code on one core: scan to decision from camera-sized frames
    /// (median, p90), offline verifications per second beside `openssl speed sm2`, and how often
    /// one frame reads by module size beside zbar.
    EcodeOffline(crate::bench_ecode_scan::ScanArgs),
    /// Ledger transfers posted in batches on SQLite and (with --database-url) PostgreSQL,
    /// beside a naive baseline of one SQL transaction per transfer.
    Ledger {
        #[arg(long, default_value_t = 200_000)]
        transfers: u64,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// E-purse accounts the purchases are spread over.
        #[arg(long, default_value_t = 50_000)]
        accounts: u64,
        #[arg(long, default_value_t = 20)]
        merchants: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Transfers per naive round (it is slow).
        #[arg(long, default_value_t = 5_000)]
        naive: u64,
    },
    /// Offline purchase uploads (TAC check + dedup + posting) through the platform, spread over
    /// merchants and into one hot merchant, on SQLite and (with --database-url) PostgreSQL,
    /// beside a naive baseline (one SQL transaction per purchase) and, on PostgreSQL, a
    /// batched one (a stored procedure posting 100 per transaction).
    Ingest {
        /// Purchases per round (each round uploads fresh records made by the card emulator).
        #[arg(long, default_value_t = 100_000)]
        purchases: u64,
        #[arg(long, default_value_t = 10_000)]
        cards: u32,
        /// Merchants of the spread case.
        #[arg(long, default_value_t = 50)]
        merchants: u32,
        /// Records per upload (at most 10,000).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Uploads in flight at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Purchases per baseline round (the naive one is slow).
        #[arg(long, default_value_t = 5_000)]
        naive: u64,
        /// Concurrent clients of the PostgreSQL baselines.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, value_enum, default_value = "sm4")]
        alg: crate::card::AlgArg,
    },
    /// Closing a clearing window over millions of offline purchases (filled through the
    /// real ingest, not timed), beside one count-and-sum scan of the window, on SQLite and
    /// (with --database-url) PostgreSQL.
    Close {
        #[arg(long, default_value_t = 10_000_000)]
        purchases: u64,
        /// Cards making them (each can pay about 333 taps from a full purse).
        #[arg(long, default_value_t = 40_000)]
        cards: u32,
        #[arg(long, default_value_t = 200)]
        merchants: u32,
        /// Uploads in flight while filling.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    /// Production of personalization data through the platform (batch creation in storage,
    /// export with key diversification and wrapping) beside the pure library's `write_batch`
    /// on the same cards, on the backend chosen by --database-url or a scratch SQLite file.
    Production {
        #[arg(long, default_value_t = 100_000)]
        cards: u32,
        #[arg(long, value_enum, default_value = "sm4")]
        alg: crate::card::AlgArg,
    },
    /// Online payment authorization over HTTP at a fixed rate (p50, p99) beside GET /healthz
    /// at the same rate, on SQLite and (with --database-url) PostgreSQL.
    Payments(crate::bench_payments::Args),
    /// Data-sharing calls (issue 8) through the exchange to a local simulated provider beside
    /// direct calls to the same provider: calls/s and the p50 the exchange adds.
    Exchange(crate::exchange_cmd::BenchArgs),
    /// The terminal network (issue 6): a tap at the agent with its durable write (beside the
    /// purchase flow alone), uploads of many simulated terminals over HTTP loopback into the
    /// ledger on SQLite (beside in-process ingest), and signed deny-list delta downloads
    /// (beside building them in process).
    Terminal {
        #[arg(long, default_value_t = 2_000)]
        taps: u32,
        #[arg(long, default_value_t = 1_000)]
        terminals: u32,
        #[arg(long, default_value_t = 20)]
        records_per_terminal: u32,
        #[arg(long, default_value_t = 10_000)]
        deny_downloads: u32,
        /// Cards on the deny-list before the 100 changes of the delta.
        #[arg(long, default_value_t = 100_000)]
        deny_entries: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// A monthly bill run (auto-debit and notices) of N bills through the platform, beside
    /// the ledger's raw batch posting of as many transfers, on SQLite and (with
    /// --database-url) PostgreSQL.
    Billrun(crate::bench_billrun::Args),
    /// The citizen portal (issue 9): signed-in citizens' pages over HTTP keep-alive (pages/s,
    /// p50, p99, max, overall and per page) beside its style sheet through the same server.
    Portal(crate::bench_portal::Args),
}

pub(crate) struct Scratch {
    pub(crate) target: StorageTarget,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) pg_cleanup: Option<(String, String)>,
}

impl Scratch {
    /// Drops the scratch PostgreSQL schema (the SQLite file goes with the directory).
    pub(crate) async fn cleanup(&self) -> anyhow::Result<()> {
        if let Some((url, schema)) = &self.pg_cleanup {
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await?;
        }
        Ok(())
    }
}

pub(crate) async fn scratch(cfg: &Config) -> anyhow::Result<Scratch> {
    let dir = tempfile::tempdir()?;
    match &cfg.database_url {
        None => Ok(Scratch {
            target: StorageTarget::Sqlite(dir.path().join("bench.db")),
            _dir: dir,
            pg_cleanup: None,
        }),
        Some(url) => {
            let schema = format!("bench_{}", std::process::id());
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
            Ok(Scratch {
                target: StorageTarget::Postgres(scoped),
                _dir: dir,
                pg_cleanup: Some((url.clone(), schema)),
            })
        }
    }
}

/// The baseline: the same CSV rows parsed and inserted as plain text, 1,000 per transaction,
/// with no validation, encryption, provenance or audit. It is the storage engine's floor.
async fn baseline_import(
    target: &StorageTarget,
    csv_path: &std::path::Path,
) -> anyhow::Result<f64> {
    let mut reader = csv::Reader::from_path(csv_path)?;
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let start = Instant::now();
    match target {
        StorageTarget::Sqlite(path) => {
            let url = format!("sqlite://{}", path.with_extension("baseline.db").display());
            let opts: sqlx::sqlite::SqliteConnectOptions = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            let pool = sqlx::SqlitePool::connect_with(opts).await?;
            sqlx::query("CREATE TABLE plain (id_number TEXT PRIMARY KEY, name TEXT, phone TEXT, address TEXT, residency TEXT)")
                .execute(&pool)
                .await?;
            for chunk in rows.chunks(1000) {
                let mut tx = pool.begin().await?;
                let sql = format!(
                    "INSERT INTO plain VALUES {}",
                    vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    for c in r.iter() {
                        q = q.bind(c.to_string());
                    }
                }
                q.execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query("CREATE TABLE plain (id_number TEXT PRIMARY KEY, name TEXT, phone TEXT, address TEXT, residency TEXT)")
                .execute(&pool)
                .await?;
            for chunk in rows.chunks(1000) {
                let mut tx = pool.begin().await?;
                let cells: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let b = i * 5;
                        format!(
                            "(${}, ${}, ${}, ${}, ${})",
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4,
                            b + 5
                        )
                    })
                    .collect();
                let sql = format!("INSERT INTO plain VALUES {}", cells.join(", "));
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    for c in r.iter() {
                        q = q.bind(c.to_string());
                    }
                }
                q.execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(rows.len() as f64 / start.elapsed().as_secs_f64())
}

struct LoadResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Sends `total` GET requests from `concurrency` keep-alive clients and measures each.
async fn load(
    base: &str,
    paths: Arc<Vec<String>>,
    token: &str,
    total: u64,
    concurrency: usize,
) -> LoadResult {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, paths) = (client.clone(), next.clone(), paths.clone());
        let (base, token) = (base.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let uri = format!("{base}{}", paths[(i as usize) % paths.len()]);
                let req = hyper::Request::get(uri)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Empty::new())
                    .expect("valid request");
                let t = Instant::now();
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if !ok {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i].as_secs_f64() * 1000.0
    };
    LoadResult {
        rps: all.len() as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

pub async fn run(cmd: BenchCommand, cfg: &Config) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Residents {
            rows,
            lookups,
            concurrency,
            seed,
        } => residents(rows, lookups, concurrency, seed, cfg).await,
        BenchCommand::Denylist {
            entries,
            delta,
            rounds,
        } => crate::bench_denylist::run(entries, delta, rounds, cfg).await,
        BenchCommand::Ecode(args) => crate::ecode_cmd::bench(args, cfg).await,
        BenchCommand::EcodeOffline(args) => crate::bench_ecode_scan::run(args),
        BenchCommand::Ledger {
            transfers,
            batch,
            accounts,
            merchants,
            rounds,
            naive,
        } => {
            crate::bench_ledger::run(
                crate::bench_ledger::Args {
                    transfers,
                    batch,
                    accounts,
                    merchants,
                    rounds,
                    naive,
                },
                cfg,
            )
            .await
        }
        BenchCommand::Ingest {
            purchases,
            cards,
            merchants,
            batch,
            rounds,
            concurrency,
            naive,
            clients,
            alg,
        } => {
            crate::bench_ingest::run(
                crate::bench_ingest::Args {
                    purchases,
                    cards,
                    merchants,
                    batch,
                    rounds,
                    concurrency,
                    naive,
                    clients,
                    alg: alg.into(),
                },
                cfg,
            )
            .await
        }
        BenchCommand::Close {
            purchases,
            cards,
            merchants,
            concurrency,
        } => {
            crate::bench_close::run(
                crate::bench_close::Args {
                    purchases,
                    cards,
                    merchants,
                    concurrency,
                },
                cfg,
            )
            .await
        }
        BenchCommand::Production { cards, alg } => {
            crate::bench_production::run(cards, alg, cfg).await
        }
        BenchCommand::Payments(args) => crate::bench_payments::run(args, cfg).await,
        BenchCommand::Exchange(args) => crate::exchange_cmd::bench(args, cfg).await,
        BenchCommand::Terminal {
            taps,
            terminals,
            records_per_terminal,
            deny_downloads,
            deny_entries,
            concurrency,
        } => {
            crate::bench_terminal::run(
                crate::bench_terminal::Args {
                    taps,
                    terminals,
                    records_per_terminal,
                    deny_downloads,
                    deny_entries,
                    concurrency,
                },
                cfg,
            )
            .await
        }
        BenchCommand::Billrun(args) => crate::bench_billrun::run(args, cfg).await,
        BenchCommand::Portal(args) => crate::bench_portal::run(args, cfg).await,
    }
}

async fn residents(
    rows: u64,
    lookups: u64,
    concurrency: usize,
    seed: u64,
    cfg: &Config,
) -> anyhow::Result<()> {
    let s = scratch(cfg).await?;
    let today = platform::clock::Clock::today(&SystemClock);
    let backend = match &s.target {
        StorageTarget::Sqlite(_) => "sqlite",
        StorageTarget::Postgres(_) => "postgres",
    };
    eprintln!(
        "bench residents on {backend}: {rows} rows, {lookups} lookups, concurrency {concurrency}"
    );

    let csv_path = s._dir.path().join("feed.csv");
    {
        let pb = crate::bar(rows, "writing csv");
        let f = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
        let pb2 = pb.clone();
        platform::demo::write_feed(
            f,
            (0..rows).inspect(move |i| {
                if i % 10_000 == 0 {
                    pb2.set_position(*i)
                }
            }),
            seed,
            today,
            0,
        )?;
        pb.finish_and_clear();
    }

    eprintln!("baseline: plain INSERT of the same rows …");
    let baseline_rps = baseline_import(&s.target, &csv_path).await?;

    let key_dir = s._dir.path().join("keys");
    let p = platform::open::open_platform(
        &s.target,
        &key_dir,
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let bytes = std::fs::metadata(&csv_path)?.len();
    let pb = crate::bar(bytes, "importing");
    let pb2 = pb.clone();
    let start = Instant::now();
    let report = p
        .import_residents(
            &Caller::cli("bench"),
            resident::Source::Police,
            "bench",
            "bench".into(),
            Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(&csv_path)?,
            )),
            Arc::new(move |b| pb2.set_position(b)),
        )
        .await?;
    let import_secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    anyhow::ensure!(
        report.totals.inserted == rows,
        "imported {} of {rows}",
        report.totals.inserted
    );
    let import_rps = rows as f64 / import_secs;

    // Lookups over HTTP against an in-process server.
    let admin = p
        .create_operator(
            &Caller::cli("bench"),
            platform::operators::OperatorRequest {
                username: "bench".into(),
                display_name: "bench".into(),
                password: "bench-password-1".into(),
                role: store::Role::Administrator,
                department: None,
            },
        )
        .await?;
    let token = p
        .create_api_token(&Caller::cli("bench"), &admin.username, "bench", 1)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, p.clone(), async {
        let _ = stop_rx.await;
    }));
    let base = format!("http://{addr}");
    let ids: Vec<String> = (0..rows.min(100_000))
        .map(|i| {
            let i = (i * 7919) % rows;
            format!(
                "/api/v1/residents/{}",
                platform::demo::id_number(i, seed, today).as_str()
            )
        })
        .collect();
    let health = Arc::new(vec!["/healthz".to_string()]);
    eprintln!("baseline: GET /healthz …");
    let warm = load(&base, health.clone(), &token, 2_000, concurrency).await;
    let _ = warm;
    let hb = load(&base, health, &token, lookups, concurrency).await;
    eprintln!("lookups …");
    let lk = load(&base, Arc::new(ids), &token, lookups, concurrency).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    s.cleanup().await?;

    println!("| benchmark ({backend}) | result | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| import {rows} residents (validate, seal 4 fields, blind-index, provenance, audit) | {:.0} rows/s | plain INSERT of the same CSV: {:.0} rows/s | {:.2} |",
        import_rps,
        baseline_rps,
        import_rps / baseline_rps
    );
    println!(
        "| GET /api/v1/residents/{{id}} ×{lookups}, {concurrency} clients (auth, blind index, decrypt, audit) | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {} | GET /healthz: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms | {:.2} |",
        lk.rps,
        lk.p50_ms,
        lk.p99_ms,
        lk.errors,
        hb.rps,
        hb.p50_ms,
        hb.p99_ms,
        lk.rps / hb.rps
    );
    anyhow::ensure!(lk.errors == 0, "{} lookups failed", lk.errors);
    Ok(())
}
