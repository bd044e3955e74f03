//! `citycard bench billrun`: a monthly bill run (issue 9) through the platform — N bills of
//! seven billers (one per biller kind) for N/7 households, each with an auto-debit agreement;
//! one resident in twenty holds no money (short of funds: retried later, notified) and one
//! bill in a hundred is above its limit (notified) — debited in chunks (money movements with
//! their ledger transfers and audit entries, the bills' settlement, the outbox's in-app and
//! SMS notices with sealed phones), on SQLite and, with --database-url, on PostgreSQL. Beside
//! it, in the same command, the baseline: the ledger's raw batch posting
//! (`LedgerStore::ledger_post_batch`) of the same number of transfers in batches of the same
//! size. Setup (residents, bills, agreements, funding) is timed apart.

use crate::config::Config;
use anyhow::Context;
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::clock::{Clock, SystemClock};
use platform::{Caller, KeySource, Platform, StorageTarget};
use std::sync::Arc;
use std::time::Instant;
use store::ledger::PostOutcome;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bills in the run (spread over seven billers).
    #[arg(long, default_value_t = 1_000_000)]
    pub bills: u64,
    /// Deliver up to this many of the run's SMS to the embedded log gateway afterwards
    /// (timed apart; 0 skips).
    #[arg(long, default_value_t = 20_000)]
    pub deliver: u64,
}

const KINDS: [&str; 7] = [
    "water",
    "electricity",
    "gas",
    "heating",
    "telephone",
    "broadband",
    "cable_tv",
];

pub async fn run(a: Args, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(a.bills >= 7, "--bills at least 7");
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    rows.push(
        one(
            &a,
            StorageTarget::Sqlite(dir.path().join("bench.db")),
            "SQLite",
            dir.path(),
            None,
        )
        .await?,
    );
    if let Some(url) = &cfg.database_url {
        let schema = format!("bench_billrun_{}", std::process::id());
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
            StorageTarget::Postgres(scoped.clone()),
            "PostgreSQL",
            dir.path(),
            Some(scoped),
        )
        .await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await?;
        rows.push(r?);
    } else {
        eprintln!("(no --database-url: PostgreSQL skipped)");
    }
    println!(
        "| backend | bills | bill run (s) | bills/s | debited / short / over limit | notices | baseline: ledger_post_batch, same count (transfers/s) | ratio | SMS to the log gateway (/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

async fn raw_exec(target: &StorageTarget, sql: &str) -> anyhow::Result<u64> {
    Ok(match target {
        StorageTarget::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
            sqlx::query(sql).execute(&pool).await?.rows_affected()
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query(sql).execute(&pool).await?.rows_affected()
        }
    })
}

async fn resident_ids(target: &StorageTarget) -> anyhow::Result<Vec<i64>> {
    let sql = "SELECT id FROM residents ORDER BY id";
    Ok(match target {
        StorageTarget::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
            sqlx::query_scalar(sql).fetch_all(&pool).await?
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query_scalar(sql).fetch_all(&pool).await?
        }
    })
}

async fn one(
    a: &Args,
    target: StorageTarget,
    backend: &'static str,
    dir: &std::path::Path,
    _pg: Option<String>,
) -> anyhow::Result<String> {
    let p: Platform = platform::open::open_platform(
        &target,
        &dir.join(format!("keys-{backend}")),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let c = Caller::cli("bench");
    let households = a.bills.div_ceil(7);
    let today = SystemClock.today().to_string();
    let period = &today[..7];
    let setup = Instant::now();
    eprintln!("bench billrun on {backend}: {households} residents …");
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..households, 11, SystemClock.today(), 0)?;
    p.import_residents(
        &c,
        resident::Source::Police,
        "bench",
        "bench".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await?;
    let ids = resident_ids(&target).await?;
    anyhow::ensure!(ids.len() as u64 >= households, "residents missing");
    for k in KINDS {
        let code = format!("b-{}", k.replace('_', "-"));
        p.merchant_create(
            &c,
            &code,
            &format!("Bench {k}"),
            "utility",
            "41050100000009",
        )
        .await?;
        p.biller_create(&c, &code, k).await?;
    }
    eprintln!("  bills …");
    let mut n = 0u64;
    for k in KINDS {
        let code = format!("b-{}", k.replace('_', "-"));
        let mut lines = Vec::new();
        for &rid in &ids[..households as usize] {
            if n >= a.bills {
                break;
            }
            n += 1;
            let amount = if rid % 100 == 0 {
                60_000
            } else {
                1_000 + rid % 9_000
            };
            lines.push(bills::BillLine {
                bill_number: format!("{k}-{rid}"),
                customer_no: format!("R{rid}"),
                period: period.to_string(),
                amount_fen: amount,
                due_date: today.clone(),
            });
            if lines.len() == 100_000 {
                p.bills_upload(&c, &code, &lines).await?;
                lines.clear();
            }
        }
        if !lines.is_empty() {
            p.bills_upload(&c, &code, &lines).await?;
        }
    }
    eprintln!("  agreements and funding …");
    let int = if matches!(target, StorageTarget::Sqlite(_)) {
        "INTEGER"
    } else {
        "BIGINT"
    };
    raw_exec(
        &target,
        &format!(
            "INSERT INTO bill_agreements (resident_id, biller, customer_no, limit_fen, status, \
             created_ms) SELECT CAST(SUBSTR(customer_no, 2) AS {int}), biller, customer_no, \
             50000, 'active', 0 FROM bills"
        ),
    )
    .await?;
    let bank = p
        .ledger_accounts(
            &c,
            &[AccountKey::new(
                AccountKind::BankFloat,
                Owner::Bank("BENCH".into()),
                Unit::Cny,
            )?],
        )
        .await?[0]
        .id;
    let funded: Vec<i64> = ids[..households as usize]
        .iter()
        .copied()
        .filter(|r| r % 20 != 0)
        .collect();
    for chunk in funded.chunks(5_000) {
        let keys: Vec<AccountKey> = chunk
            .iter()
            .map(|r| AccountKey::citizen_online(*r))
            .collect();
        let accts = p.ledger_accounts(&c, &keys).await?;
        let t: Vec<Transfer> = accts
            .iter()
            .map(|acc| {
                Transfer::simple(
                    IdempotencyKey::parse(&format!("fund-{}", acc.id)).expect("key"),
                    TransferKind::TopUp,
                    "bench funding",
                    bank,
                    acc.id,
                    Unit::Cny,
                    Amount(1_000_000),
                )
            })
            .collect();
        p.transfer_batch(&c, &t).await?;
    }
    eprintln!("  setup took {:.1} s", setup.elapsed().as_secs_f64());

    eprintln!("  the bill run …");
    let start = Instant::now();
    let run = p.bill_run(&c, &today).await?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "  {} bills in {secs:.1} s: {} debited, {} short, {} over limit, {} notices",
        run.considered, run.debited, run.short_of_funds, run.over_limit, run.notices
    );
    anyhow::ensure!(
        run.considered as u64 == a.bills,
        "not every bill was considered"
    );

    // Baseline: the same number of transfers through the ledger's raw batch posting.
    let payables: Vec<i64> = p
        .ledger_accounts(
            &c,
            &KINDS
                .iter()
                .map(|k| {
                    AccountKey::new(
                        AccountKind::MerchantPayable,
                        Owner::Merchant(format!("base-{k}")),
                        Unit::Cny,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    let transfers: Vec<Transfer> = (0..a.bills)
        .map(|i| {
            Transfer::simple(
                IdempotencyKey::parse(&format!("base-{i}")).expect("key"),
                TransferKind::Payment,
                "baseline",
                bank,
                payables[(i % 7) as usize],
                Unit::Cny,
                Amount(1_000 + (i % 9_000) as i64),
            )
        })
        .collect();
    let draft = || audit::Draft::new("system:bench", "ledger.post", "bench", "bench", "");
    let start = Instant::now();
    for chunk in transfers.chunks(platform::bills::RUN_CHUNK as usize) {
        let out = p
            .store
            .ledger_post_batch(chunk, draft(), SystemClock.now_ms())
            .await?;
        anyhow::ensure!(
            out.iter().all(|o| matches!(o, PostOutcome::Applied { .. })),
            "a baseline transfer was not applied"
        );
    }
    let base = a.bills as f64 / start.elapsed().as_secs_f64();
    let check = p.ledger_check().await?;
    anyhow::ensure!(
        check.mismatch.is_none(),
        "ledger check failed: {:?}",
        check.mismatch
    );

    // Delivery of some of the run's SMS to the embedded log gateway.
    let mut sms_rate = String::from("—");
    if a.deliver > 0 {
        let g =
            platform::notifications::LogSmsGateway::open(&dir.join(format!("sms-{backend}.log")))?;
        p.set_sms_gateway(Arc::new(g));
        let start = Instant::now();
        let mut sent = 0;
        while sent < a.deliver {
            let r = p
                .deliver_notifications(&c, platform::notifications::DELIVERY_BATCH_MAX)
                .await?;
            if r.claimed == 0 {
                break;
            }
            sent += r.sent;
        }
        sms_rate = format!(
            "{:.0} ({sent} SMS)",
            sent as f64 / start.elapsed().as_secs_f64()
        );
    }
    let rate = a.bills as f64 / secs;
    Ok(format!(
        "| {backend} | {} | {secs:.1} | {rate:.0} | {} / {} / {} | {} | {base:.0} | {:.2} | {sms_rate} |",
        a.bills,
        run.debited,
        run.short_of_funds,
        run.over_limit,
        run.notices,
        rate / base
    ))
}
