//! `citycard bench payments`: online payment authorization over HTTP at a fixed rate (issue 5:
//! p99 under 10 ms at 2,000 requests/s), beside `GET /healthz` at the same rate through the
//! same server and clients. Requests are sent open-loop on a schedule (request i at
//! start + i/rate) and each latency counts from its scheduled time, so a server that falls
//! behind shows it in the percentiles instead of slowing the client down.

use crate::bench::scratch;
use crate::config::Config;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::clock::SystemClock;
use platform::{Caller, KeySource, StorageTarget};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Requests per second, for both the baseline and the payments.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Seconds of each run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent client connections. An open-loop client keeps about rate × latency
    /// requests in flight, so it needs at least that many connections or it measures its own
    /// limit: 64 hold 2,000/s up to 32 ms per request, past the tail the target allows.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Residents whose online accounts pay (funded first).
    #[arg(long, default_value_t = 1_000)]
    pub residents: u64,
    /// Seconds at the same rate before each measured run, not counted: the server's first
    /// requests open pooled connections and prepare statements (PostgreSQL plans each new
    /// statement on each connection), which a server that has been running has done long ago.
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
}

struct Run {
    p50_ms: f64,
    p99_ms: f64,
    sent: u64,
    errors: u64,
    achieved_rps: f64,
}

type MakeBody = Arc<dyn Fn(u64) -> Option<Vec<u8>> + Send + Sync>;

async fn paced(base: &str, path: &str, token: &str, a: &Args, seconds: u64, body: MakeBody) -> Run {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(a.connections)
        .build_http();
    let total = a.rate * seconds;
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let step_ns = 1_000_000_000 / a.rate.max(1);
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let (client, next, body) = (client.clone(), next.clone(), body.clone());
        let (uri, token) = (format!("{base}{path}"), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let at = start + Duration::from_nanos(i * step_ns);
                tokio::time::sleep_until(at).await;
                let b = body(i);
                let mut req = hyper::Request::builder()
                    .method(if b.is_some() { "POST" } else { "GET" })
                    .uri(&uri)
                    .header("authorization", format!("Bearer {token}"));
                if b.is_some() {
                    req = req.header("content-type", "application/json");
                }
                let req = req
                    .body(Full::new(Bytes::from(b.unwrap_or_default())))
                    .expect("a valid request");
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
                lat.push(at.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
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
    Run {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        sent: all.len() as u64,
        errors,
        achieved_rps: all.len() as f64 / secs,
    }
}

pub async fn run(a: Args, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.rate > 0 && a.seconds > 0 && a.connections > 0,
        "rate, seconds and connections must be positive"
    );
    let dir = tempfile::tempdir()?;
    one(
        &a,
        StorageTarget::Sqlite(dir.path().join("bench.db")),
        "sqlite",
        dir.path(),
    )
    .await?;
    if cfg.database_url.is_some() {
        let s = scratch(cfg).await?;
        let r = one(&a, s.target.clone(), "postgres", dir.path()).await;
        s.cleanup().await?;
        r?;
    }
    Ok(())
}

async fn one(
    a: &Args,
    target: StorageTarget,
    backend: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let p = platform::open::open_platform(
        &target,
        &dir.join(format!("keys-{backend}")),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    let cli = Caller::cli("bench");
    let today = platform::clock::Clock::today(&SystemClock);
    eprintln!(
        "bench payments on {backend}: {} residents, funding …",
        a.residents
    );
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..a.residents, 5, today, 0)?;
    p.import_residents(
        &cli,
        resident::Source::Police,
        "bench",
        "bench".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await?;
    let ids: Vec<String> = (0..a.residents)
        .map(|i| platform::demo::id_number(i, 5, today).as_str().to_string())
        .collect();
    // Fund every online account from the bank float, straight through the ledger.
    let float = p
        .ledger_accounts(
            &cli,
            &[AccountKey::new(
                AccountKind::BankFloat,
                Owner::Bank("BENCH".into()),
                Unit::Cny,
            )?],
        )
        .await?[0]
        .id;
    let mut after = 0;
    let mut funds = Vec::new();
    loop {
        let page = p.store.residents_page(after, store::PAGE_MAX).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let keys: Vec<AccountKey> = page
            .iter()
            .map(|r| AccountKey::citizen_online(r.id))
            .collect();
        for acc in p.ledger_accounts(&cli, &keys).await? {
            funds.push(Transfer::simple(
                IdempotencyKey::parse(&format!("bench-fund-{}", acc.id))?,
                TransferKind::TopUp,
                "bench funding",
                float,
                acc.id,
                Unit::Cny,
                Amount(10_000_000),
            ));
        }
    }
    for chunk in funds.chunks(5_000) {
        p.transfer_batch(&cli, chunk).await?;
    }
    let officer = p
        .create_operator(
            &cli,
            platform::operators::OperatorRequest {
                username: "bench-clearing".into(),
                display_name: "bench".into(),
                password: "bench-password-1".into(),
                role: store::Role::ClearingOfficer,
                department: None,
            },
        )
        .await?;
    let token = p
        .create_api_token(&cli, &officer.username, "bench", 1)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, p.clone(), async {
        let _ = stop_rx.await;
    }));
    eprintln!(
        "{backend}: {} requests/s for {} s over {} connections; baseline GET /healthz …",
        a.rate, a.seconds, a.connections
    );
    let health = |seconds| paced(&base, "/healthz", &token, a, seconds, Arc::new(|_| None));
    health(a.warmup_seconds).await;
    let health = health(a.seconds).await;
    eprintln!("{backend}: POST /api/v1/payments …");
    let ids = Arc::new(ids);
    let stamp = platform::clock::Clock::now_ms(&SystemClock);
    // Warm-up payments have keys of their own ("w"), so the measured ones are all new.
    let payments = |round: &'static str, seconds| {
        let ids = ids.clone();
        paced(
            &base,
            "/api/v1/payments",
            &token,
            a,
            seconds,
            Arc::new(move |i| {
                Some(
                    serde_json::json!({
                        "idempotency_key": format!("bench-{stamp}-{round}{i}"),
                        "id_number": ids[(i as usize) % ids.len()],
                        "merchant": "bench-shop",
                        "amount_fen": 1,
                        "reference": "bench",
                    })
                    .to_string()
                    .into_bytes(),
                )
            }),
        )
    };
    let warm = payments("w", a.warmup_seconds).await;
    let pay = payments("", a.seconds).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    let shop = p
        .store
        .ledger_account(&AccountKey::new(
            AccountKind::MerchantPayable,
            Owner::Merchant("bench-shop".into()),
            Unit::Cny,
        )?)
        .await?
        .map_or(0, |r| r.balance);
    let check = p.ledger_check().await?;
    println!(
        "## payments on {backend} ({} req/s, {} s, {} connections)",
        a.rate, a.seconds, a.connections
    );
    for (name, r) in [
        ("warm-up payments (not counted)", &warm),
        ("GET /healthz (baseline)", &health),
        ("POST /api/v1/payments", &pay),
    ] {
        println!(
            "{name:<31} achieved {:>7.0}/s  p50 {:>6.2} ms  p99 {:>7.2} ms  ({} sent, {} errors)",
            r.achieved_rps, r.p50_ms, r.p99_ms, r.sent, r.errors
        );
    }
    println!(
        "payments p50 {:.1}× and p99 {:.1}× the baseline's; merchant credited {} fen for {} accepted payments (warm-up included); books {}",
        pay.p50_ms / health.p50_ms.max(1e-6),
        pay.p99_ms / health.p99_ms.max(1e-6),
        shop,
        pay.sent - pay.errors + warm.sent - warm.errors,
        if check.mismatch.is_none() {
            "balance"
        } else {
            "DO NOT BALANCE"
        }
    );
    anyhow::ensure!(
        check.mismatch.is_none(),
        "ledger check failed: {:?}",
        check.mismatch
    );
    Ok(())
}
