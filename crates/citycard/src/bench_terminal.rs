//! `citycard bench terminal`: the terminal network (issue 6).
//!
//! 1. **Tap**: one tap at an agent (`terminal-agent`: fare engine, chip purchase flow through
//!    the in-process emulator, the record and the card and PSAM images written in one SQLite
//!    transaction with `synchronous = FULL`) — median and p99; beside it the same purchase flow
//!    on the emulator with nothing written (`chip::fleet`).
//! 2. **Upload**: many simulated terminals, each registered, activated and bound to its PSAM,
//!    upload their records concurrently over HTTP on loopback with signed requests
//!    (`POST /api/v1/terminal/uploads`, a batch id each) into the ledger, on SQLite; beside it
//!    the same number of fresh records through `Platform::ingest_purchases` in process with the
//!    same concurrency and batch size (no HTTP, no signature).
//! 3. **Deny-list delta**: 10,000 signed delta downloads (`GET /api/v1/terminal/denylist?since=`)
//!    by the simulated terminals over HTTP; beside it the same deltas built in process.

use crate::config::Config;
use chip::fleet::Fleet;
use chip::{BcdDate, BcdTime, TerminalId};
use platform::clock::SystemClock;
use platform::{Caller, KeySource};
use std::sync::Arc;
use std::time::Instant;
use terminal_agent::{Agent, Limits, PlatformClient, Ride, TapRequest};

pub struct Args {
    pub taps: u32,
    pub terminals: u32,
    pub records_per_terminal: u32,
    pub deny_downloads: u32,
    pub deny_entries: u64,
    pub concurrency: usize,
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn record_json(r: &chip::host::UploadRecord) -> String {
    let raw = r.to_raw();
    serde_json::json!({
        "card_number": raw.card_number, "algorithm_id": raw.algorithm_id,
        "key_version": raw.key_version, "offline_counter": raw.offline_counter,
        "amount_fen": raw.amount_fen, "tx_type": raw.tx_type,
        "terminal_id": raw.terminal_id, "terminal_serial": raw.terminal_serial,
        "date": raw.date, "time": raw.time,
        "balance_before_fen": raw.balance_before_fen, "tac": raw.tac,
    })
    .to_string()
}

async fn bench_tap(taps: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::open(
        &dir.path().join("terminal.sqlite"),
        TerminalId::parse("000000000901")?,
        Limits {
            queue_max: 10_000_000,
            ..Limits::default()
        },
    )
    .await?;
    let cards = agent.emulator_provision(900_000, 100, 100_000).await?;
    let now = platform::clock::now_in_city().unix_timestamp();
    let mut times = Vec::with_capacity(taps as usize);
    for i in 0..taps {
        let t = TapRequest {
            tap_ref: None,
            ride: Ride::Bus { line: "B1".into() },
            at_s: now + i64::from(i),
        };
        let start = Instant::now();
        agent
            .tap_emulated(cards[i as usize % cards.len()], &t)
            .await?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    // Baseline: the purchase flow alone on the emulator, nothing written.
    let (d, tm) = (BcdDate::new(2026, 11, 30)?, BcdTime::new(8, 0, 0)?);
    let mut fleet = Fleet::new(910_000, 100, crypto::Algorithm::Sm4, TerminalId([9; 6]));
    for c in 0..fleet.len() {
        fleet.load(c, 100_000, d, tm)?;
    }
    let mut base = Vec::with_capacity(taps as usize);
    for i in 0..taps {
        let start = Instant::now();
        fleet.buy(i as usize % fleet.len(), 100, d, tm)?;
        base.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "| tap at the agent: fare, purchase flow on the emulator, record + card + PSAM written durably (SQLite WAL, synchronous=FULL), {taps} taps | median {:.2} ms, p99 {:.2} ms | purchase flow alone, nothing written: median {:.2} ms, p99 {:.2} ms |",
        quantile(&mut times, 0.5),
        quantile(&mut times, 0.99),
        quantile(&mut base, 0.5),
        quantile(&mut base, 0.99),
    );
    Ok(())
}

struct SimTerminal {
    id: String,
    client: Arc<PlatformClient>,
    /// Records for the HTTP upload and for the in-process baseline.
    http: Vec<String>,
    direct: Vec<chip::host::RawUpload>,
}

pub async fn run(a: Args, _cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.taps >= 10 && a.terminals >= 1 && a.records_per_terminal >= 1 && a.concurrency >= 1,
        "sizes must be positive"
    );
    anyhow::ensure!(
        a.records_per_terminal <= 400,
        "at most 400 records per terminal (two cards of 1,000 yuan at 5 yuan a ride)"
    );
    bench_tap(a.taps).await?;

    let dir = tempfile::tempdir()?;
    let target = platform::StorageTarget::Sqlite(dir.path().join("bench.db"));
    let p = platform::open::open_platform(
        &target,
        &dir.path().join("keys"),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let masters =
        keys::master::FileMasterKeyStore::create(&dir.path().join("master.json"), b"bench")?;
    masters.load_test_key_set(keys::master::APP_TRANSIT)?;
    p.set_master_keys(Arc::new(masters));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, p.clone(), async {
        let _ = stopped.await;
    }));

    let cli = Caller::cli("bench");
    p.merchant_create(&cli, "bus", "公交", "transit", "41050100000002")
        .await?;
    eprintln!(
        "bench terminal: registering {} terminals, making {} records each twice with the emulator (not timed) …",
        a.terminals, a.records_per_terminal
    );
    let pb = crate::bar(u64::from(a.terminals), "terminals");
    let (d, tm) = (BcdDate::new(2026, 11, 30)?, BcdTime::new(8, 0, 0)?);
    let mut sims = Vec::with_capacity(a.terminals as usize);
    for k in 0..a.terminals {
        let id = format!("BUS-{k:05}");
        let psam = TerminalId([0x10, 0, 0, (k >> 16) as u8, (k >> 8) as u8, k as u8]);
        let reg = p
            .terminal_register(
                &cli,
                &id,
                "bus",
                "validator",
                "B1",
                None,
                Some(&psam.to_string()),
            )
            .await?;
        let mut secret = [0x5Au8; 32];
        secret[..4].copy_from_slice(&k.to_be_bytes());
        let key = crypto::Sm2SigningKey::from_secret(&crypto::Key32::from_bytes(secret))?;
        p.terminal_activate(
            &id,
            &reg.activation_code,
            &key.public_key().to_compressed(),
            "bench",
            None,
            "bench",
        )
        .await?;
        let mut fleet = Fleet::new(1_000_000 + 2 * k, 2, crypto::Algorithm::Sm4, psam);
        fleet.load(0, 100_000, d, tm)?;
        fleet.load(1, 100_000, d, tm)?;
        let mut http = Vec::new();
        let mut direct = Vec::new();
        for i in 0..a.records_per_terminal {
            http.push(record_json(&fleet.buy(0, 100 + i % 3 * 50, d, tm)?));
            direct.push(fleet.buy(1, 100 + i % 3 * 50, d, tm)?.to_raw());
        }
        sims.push(SimTerminal {
            client: Arc::new(PlatformClient::new(&base, &id, key)?),
            id,
            http,
            direct,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let total = u64::from(a.terminals) * u64::from(a.records_per_terminal);

    // Upload over HTTP, signed, every terminal at once (bounded by --concurrency).
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in &sims {
        let (client, sem) = (s.client.clone(), sem.clone());
        let body = format!(
            "{{\"batch_id\":\"bench-{}\",\"records\":[{}]}}",
            s.id,
            s.http.join(",")
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let a = client
                .send("POST", "/api/v1/terminal/uploads", body.into_bytes())
                .await?;
            anyhow::ensure!(a.status == 200, "upload: HTTP {}", a.status);
            let v: serde_json::Value = serde_json::from_slice(&a.body)?;
            Ok(v["posted"].as_u64().unwrap_or(0))
        }));
    }
    let mut posted = 0;
    for t in tasks {
        posted += t.await??;
    }
    let http_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(posted == total, "posted {posted} of {total}");

    // Baseline: the same count in process, same batches and concurrency.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in &mut sims {
        let (p, sem) = (p.clone(), sem.clone());
        let records = std::mem::take(&mut s.direct);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let r = p
                .ingest_purchases(&Caller::cli("bench"), "bus", records)
                .await?;
            Ok::<_, anyhow::Error>(platform::purchases::IngestCounts::of(&r).posted)
        }));
    }
    let mut posted = 0;
    for t in tasks {
        posted += t.await??;
    }
    let direct_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(posted == total, "baseline posted {posted} of {total}");
    println!(
        "| upload: {} terminals × {} records, one signed batch each over HTTP loopback, {} at a time, into the ledger (SQLite) | {:.0} records/s ({total} in {:.2} s) | Platform::ingest_purchases in process, same batches: {:.0} records/s |",
        a.terminals,
        a.records_per_terminal,
        a.concurrency,
        total as f64 / http_s,
        http_s,
        total as f64 / direct_s,
    );

    // Deny-list deltas: seed the change log, then every terminal asks for the delta.
    crate::bench_denylist::seed(&target, a.deny_entries, 100).await?;
    let since = a.deny_entries as i64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let per = a.deny_downloads.div_ceil(a.terminals);
    let mut bytes = 0usize;
    for s in &sims {
        let (client, sem) = (s.client.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            for _ in 0..per {
                let _permit = sem.acquire().await?;
                let a = client
                    .send(
                        "GET",
                        &format!("/api/v1/terminal/denylist?since={since}"),
                        Vec::new(),
                    )
                    .await?;
                anyhow::ensure!(a.status == 200, "delta: HTTP {}", a.status);
                n = a.body.len();
            }
            Ok(n)
        }));
    }
    for t in tasks {
        bytes = t.await??;
    }
    let deny_http = start.elapsed().as_secs_f64();
    let downloads = u64::from(per) * u64::from(a.terminals);
    let start = Instant::now();
    for _ in 0..downloads {
        p.deny_list_delta(since).await?;
    }
    let deny_direct = start.elapsed().as_secs_f64();
    println!(
        "| deny-list delta (100 changes since version {since}, {bytes} bytes, SM2-signed) to {} terminals: {downloads} signed downloads over HTTP | {:.2} s ({:.0}/s) | the same deltas built in process: {:.2} s |",
        a.terminals,
        deny_http,
        downloads as f64 / deny_http,
        deny_direct,
    );
    let _ = stop.send(());
    Ok(())
}
