//! `citycard bench close`: closing a clearing window over millions of offline purchases (issue
//! 5: 10,000,000 in under 60 s), on SQLite and, with --database-url, on PostgreSQL.
//!
//! The window is filled through the real path, not timed: the card emulator makes purchases
//! with real TACs at a PSAM terminal, `Platform::ingest_purchases` checks and posts them in
//! uploads of 10,000 into one day's window (a clock that stands still), spread over merchants
//! registered with fee-bearing categories. Then the clock moves past the cut-off and
//! `Platform::close_window` is timed: the sums per merchant and amount in the database, the
//! fees of the schedule, the report stored with its audit entry. Beside it in the same
//! command, on the same tables: the cheapest question a close must ask, one `count(*)` and
//! `sum(amount_fen)` over the window's purchases (a scan of the window's index), timed before
//! and after the close. The report is checked against what was uploaded (count, gross) and
//! `ledger check` must pass.

use crate::config::Config;
use anyhow::Context;
use chip::fleet::Fleet;
use chip::host::RawUpload;
use chip::{BcdDate, BcdTime, TerminalId};
use platform::clock::{Clock, ManualClock};
use platform::{Caller, KeySource, Platform, StorageTarget};
use std::sync::Arc;
use std::time::Instant;

pub struct Args {
    pub purchases: u64,
    pub cards: u32,
    pub merchants: u32,
    pub concurrency: usize,
}

const BATCH: usize = 10_000;
/// Records made by the emulator at a time (generation interleaves with uploads).
const CHUNK: u64 = 200_000;

struct Figures {
    backend: &'static str,
    close_s: f64,
    scan_before_s: f64,
    scan_after_s: f64,
    fill_s: f64,
    lines: usize,
}

pub async fn run(a: Args, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.cards >= 1 && a.merchants >= 1 && a.concurrency >= 1 && a.purchases >= 1,
        "sizes must be positive"
    );
    // Each card pays at most 300 fen a tap and holds the purse cap of 100,000 fen.
    let taps_per_card = a.purchases.div_ceil(u64::from(a.cards));
    anyhow::ensure!(
        taps_per_card * 300 <= 100_000 && taps_per_card <= 65_535,
        "{taps_per_card} taps per card would empty the purses: give more --cards (at least {})",
        a.purchases.div_ceil(333)
    );
    let dir = tempfile::tempdir()?;
    let mut results = vec![
        one(
            &a,
            StorageTarget::Sqlite(dir.path().join("bench.db")),
            "sqlite",
            dir.path(),
        )
        .await?,
    ];
    if let Some(url) = &cfg.database_url {
        let schema = format!("bench_close_{}", std::process::id());
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
        "\n{} purchases in one window over {} merchants, {} cards\n",
        a.purchases, a.merchants, a.cards
    );
    println!(
        "| backend | window close | baseline: count and sum of the window (before / after) | close ÷ baseline | report lines | filling the window (not timed) |"
    );
    println!("|---|---|---|---|---|---|");
    for f in &results {
        let base = (f.scan_before_s + f.scan_after_s) / 2.0;
        println!(
            "| {} | **{:.2} s** | {:.2} s / {:.2} s | {:.1}× | {} | {:.0} s ({:.0} purchases/s) |",
            f.backend,
            f.close_s,
            f.scan_before_s,
            f.scan_after_s,
            f.close_s / base,
            f.lines,
            f.fill_s,
            a.purchases as f64 / f.fill_s
        );
    }
    Ok(())
}

async fn one(
    a: &Args,
    target: StorageTarget,
    backend: &'static str,
    dir: &std::path::Path,
) -> anyhow::Result<Figures> {
    let clock = Arc::new(ManualClock::new(platform::clock::SystemClock.now_ms()));
    let p = platform::open::open_platform(
        &target,
        &dir.join(format!("keys-{backend}")),
        &KeySource::Passphrase("bench".into()),
        false,
        clock.clone(),
    )
    .await?;
    let masters = keys::master::FileMasterKeyStore::create(
        &dir.join(format!("master-{backend}.json")),
        b"bench",
    )?;
    masters.load_test_key_set(keys::master::APP_TRANSIT)?;
    p.set_master_keys(Arc::new(masters));
    let caller = Caller::cli("bench");
    for m in 0..a.merchants {
        let category = ["transit", "shop", "canteen"][m as usize % 3];
        p.merchant_create(
            &caller,
            &format!("m{m}"),
            &format!("bench merchant {m}"),
            category,
            "6222020000000000001",
        )
        .await?;
    }
    let window = ledger::WindowCalendar::default()
        .window_of(clock.now_ms())
        .to_string();

    // The emulator's cards, loaded; their shadows seeded as the loads would have.
    let today = platform::clock::now_in_city();
    let d = BcdDate::new(today.year() as u16, u8::from(today.month()), today.day())?;
    let t = BcdTime::new(today.hour(), today.minute(), 0)?;
    let mut fleet = Fleet::new(
        600_000_000,
        a.cards,
        crypto::Algorithm::Sm4,
        TerminalId([0x10, 0, 0, 0, 0, 2]),
    );
    for c in 0..fleet.len() {
        fleet.load(c, 100_000, d, t)?;
    }
    let first: Vec<RawUpload> = (0..a.cards as usize)
        .map(|c| fleet.buy(c, 1, d, t).map(|r| r.to_raw()))
        .collect::<Result<_, _>>()?;
    crate::bench_ingest::seed(&p, &first, a.cards).await?;

    eprintln!(
        "bench close on {backend}: filling window {window} with {} purchases (not timed) …",
        a.purchases
    );
    let pb = crate::bar(a.purchases, "purchases");
    let fill = Instant::now();
    let mut made = first.len() as u64;
    let mut pending = first;
    let (mut gross, mut posted) = (0i64, 0u64);
    let (mut k, mut uploads) = (0u64, 0u32);
    loop {
        while (pending.len() as u64) < CHUNK && made < a.purchases {
            let card = (k % u64::from(a.cards)) as usize;
            let fen = 1 + (k * 7 % 300) as u32;
            pending.push(fleet.buy(card, fen, d, t)?.to_raw());
            made += 1;
            k += 1;
        }
        if pending.is_empty() {
            break;
        }
        let chunk = std::mem::take(&mut pending);
        gross += chunk.iter().map(|r| r.amount_fen).sum::<i64>();
        let n = chunk.len() as u64;
        posted += upload(&p, chunk, a, &mut uploads).await?;
        pb.inc(n);
    }
    pb.finish_and_clear();
    let fill_s = fill.elapsed().as_secs_f64();
    anyhow::ensure!(
        posted == a.purchases.max(u64::from(a.cards)),
        "posted {posted}"
    );

    let scan_before_s = scan(&target, &window, posted, gross).await?;
    // Past the cut-off: the window has ended.
    clock.advance_ms(24 * 3_600_000);
    let start = Instant::now();
    let report = p.close_window(&caller, &window).await?;
    let close_s = start.elapsed().as_secs_f64();
    let scan_after_s = scan(&target, &window, posted, gross).await?;
    eprintln!(
        "  closed in {close_s:.2} s ({} lines); baseline {scan_before_s:.2} s / {scan_after_s:.2} s",
        report.lines.len()
    );
    let count: i64 = report.lines.iter().map(|l| l.count).sum();
    let report_gross: i64 = report.lines.iter().map(|l| l.gross_fen).sum();
    anyhow::ensure!(
        count == posted as i64 && report_gross == gross,
        "the report says {count} purchases, {report_gross} fen; uploaded {posted}, {gross} fen"
    );
    anyhow::ensure!(
        report.lines.len() == a.merchants.min(uploads) as usize,
        "{} report lines for {} merchants",
        report.lines.len(),
        a.merchants.min(uploads)
    );
    let fees: i64 = report.lines.iter().map(|l| l.fee_fen).sum();
    anyhow::ensure!(fees > 0, "the schedule's fees were taken");
    let check = p.ledger_check().await?;
    anyhow::ensure!(
        check.mismatch.is_none(),
        "ledger check failed: {:?}",
        check.mismatch
    );
    Ok(Figures {
        backend,
        close_s,
        scan_before_s,
        scan_after_s,
        fill_s,
        lines: report.lines.len(),
    })
}

/// Uploads records in batches of 10,000 to the merchants in turn (`uploads` counts the
/// batches sent so far, so every merchant gets its turn), `concurrency` in flight.
async fn upload(
    p: &Platform,
    records: Vec<RawUpload>,
    a: &Args,
    uploads: &mut u32,
) -> anyhow::Result<u64> {
    let batches: Vec<(String, Vec<RawUpload>)> = records
        .chunks(BATCH)
        .map(|c| {
            *uploads += 1;
            (format!("m{}", (*uploads - 1) % a.merchants), c.to_vec())
        })
        .collect();
    crate::bench_ingest::upload_batches(p, batches, a.concurrency).await
}

/// The baseline: one count and sum over the window's purchases, on a connection of its own;
/// its answer must be what was uploaded.
async fn scan(target: &StorageTarget, window: &str, n: u64, gross: i64) -> anyhow::Result<f64> {
    const SQL: &str =
        "SELECT count(*), CAST(sum(amount_fen) AS BIGINT) FROM purchases WHERE window_id = ";
    let (r, s): ((i64, i64), f64) = match target {
        StorageTarget::Sqlite(path) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            let start = Instant::now();
            let r = sqlx::query_as(&format!("{SQL}?"))
                .bind(window)
                .fetch_one(&pool)
                .await?;
            let s = start.elapsed().as_secs_f64();
            pool.close().await;
            (r, s)
        }
        StorageTarget::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await?;
            let start = Instant::now();
            let r = sqlx::query_as(&format!("{SQL}$1"))
                .bind(window)
                .fetch_one(&pool)
                .await?;
            let s = start.elapsed().as_secs_f64();
            pool.close().await;
            (r, s)
        }
    };
    anyhow::ensure!(
        r == (n as i64, gross),
        "the baseline counted {r:?}, uploaded ({n}, {gross})"
    );
    Ok(s)
}
