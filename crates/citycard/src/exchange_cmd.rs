//! The data-sharing exchange on the command line: `citycard sim provider` serves one simulated
//! department provider, and `citycard bench exchange` measures calls through the platform
//! beside direct calls to the same provider in the same run.

use crate::bench::scratch;
use crate::config::Config;
use anyhow::Context;
use crypto::{Key32, Sm2PublicKey, Sm2SigningKey};
use exchange::message::HEADER_BATCH;
use exchange::{BatchCache, Envelope, MessageKind};
use exchange_link::sim::{Kind, SimProvider, dev_key};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::clock::{Clock, SystemClock};
use platform::exchange::GroupSigner;
use platform::{Caller, KeySource, StorageTarget};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Serves one simulated provider until Ctrl-C.
pub async fn run_provider(
    kind: &str,
    listen: &str,
    exchange_key: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let kind = Kind::parse(kind)
        .with_context(|| format!("--kind {kind:?}: one of police, fund, hr, civil"))?;
    let sim = SimProvider::new(kind, dev_key(kind), Arc::new(SystemClock));
    if let Some(k) = exchange_key {
        let key = Sm2PublicKey::from_sec1(&hex::decode(k.trim()).context("--exchange-key hex")?)
            .map_err(|e| anyhow::anyhow!("--exchange-key: {e}"))?;
        sim.trust(platform::exchange::PLATFORM_MEMBER, key);
    } else {
        eprintln!(
            "no --exchange-key: every request will be refused (GET /api/v1/exchange/key gives it)"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let server = sim.spawn(listener);
    println!(
        "simulated {} provider ({}) on {}{}\nmember {} public key {}",
        kind.member(),
        kind.service_code(),
        server.url(),
        exchange_link::sim::QUERY_PATH,
        kind.member(),
        hex::encode_upper(sim.public_key().to_compressed())
    );
    println!(
        "catalog entry: {}",
        serde_json::to_string(&kind.service(&server.url()))?
    );
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(std::process::ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent client connections of the throughput runs: an exchange serves many
    /// consumers at once (64, as the payments bench).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Calls, one at a time, of the latency runs.
    #[arg(long, default_value_t = 1_000)]
    pub latency_calls: u64,
    /// Residents the calls are about.
    #[arg(long, default_value_t = 1_000)]
    pub residents: u64,
}

const CONSUMER: &str = "bench-consumer";
const SERVICE: &str = "police.traffic-violations";

struct Run {
    calls: u64,
    errors: u64,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A consumer calling either the provider directly or through the exchange: each call signed
/// (in groups: the calls of the connections that wait while one signature is computed share
/// one batch signature), each answer's signature checked (a batch's root once).
struct BenchClient {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    signer: GroupSigner,
    batches: BatchCache,
    direct: bool,
    uri: String,
    /// Who signs the answer: the provider (direct) or the exchange.
    answer_key: Sm2PublicKey,
    answer_member: String,
    ids: Arc<Vec<String>>,
    seq: AtomicU64,
}

impl BenchClient {
    /// One call; whether it succeeded and its answer verified.
    async fn call(&self) -> bool {
        let i = self.seq.fetch_add(1, Ordering::Relaxed);
        let id = &self.ids[(i as usize) % self.ids.len()];
        let now_s = SystemClock.now_ms().div_euclid(1000);
        let nonce = format!("{:016x}{:016x}", std::process::id(), i);
        let (kind, body) = if self.direct {
            (
                MessageKind::Forward,
                serde_json::json!({"service": SERVICE, "consumer": CONSUMER, "id_number": id,
                    "fields": ["id_number", "violations", "points"], "purpose": "bench"}),
            )
        } else {
            (
                MessageKind::Request,
                serde_json::json!({"service": SERVICE, "id_number": id, "fields": [],
                    "purpose": "bench"}),
            )
        };
        let body = body.to_string().into_bytes();
        let env = Envelope {
            kind,
            member: CONSUMER,
            time_s: now_s,
            nonce: &nonce,
            service: SERVICE,
            reply_to: "",
            body: &body,
        };
        let Ok(signed) = self.signer.sign(&env).await else {
            return false;
        };
        let mut req = hyper::Request::builder()
            .method("POST")
            .uri(&self.uri)
            .header("content-type", "application/json")
            .header("x-exchange-member", CONSUMER)
            .header("x-exchange-time", now_s.to_string())
            .header("x-exchange-nonce", &nonce)
            .header("x-exchange-signature", signed.signature);
        if let Some(b) = signed.batch {
            req = req.header(HEADER_BATCH, b);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let Ok(resp) = self.client.request(req).await else {
            return false;
        };
        if !resp.status().is_success() {
            return false;
        }
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (member, time, r_nonce, reply_to, sig) = (
            h("x-exchange-member"),
            h("x-exchange-time"),
            h("x-exchange-nonce"),
            h("x-exchange-reply-to"),
            h("x-exchange-signature"),
        );
        let batch = resp
            .headers()
            .get(HEADER_BATCH)
            .map(|v| v.to_str().unwrap_or("-").to_string());
        let Ok(bytes) = resp.into_body().collect().await.map(|b| b.to_bytes()) else {
            return false;
        };
        let env = Envelope {
            kind: if self.direct {
                MessageKind::Response
            } else {
                MessageKind::Delivery
            },
            member: &member,
            time_s: time.parse().unwrap_or(0),
            nonce: &r_nonce,
            service: SERVICE,
            reply_to: &reply_to,
            body: &bytes,
        };
        member == self.answer_member
            && reply_to == nonce
            && env
                .verify_batched(
                    &self.answer_key,
                    &sig,
                    batch.as_deref(),
                    now_s,
                    &self.batches,
                )
                .is_ok()
    }
}

fn summarise(mut lat: Vec<Duration>, errors: u64, secs: f64) -> Run {
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Run {
        calls: lat.len() as u64,
        errors,
        per_s: lat.len() as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

async fn throughput(c: Arc<BenchClient>, connections: usize, seconds: u64) -> Run {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < end {
                let t = Instant::now();
                if c.call().await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    summarise(all, errors, start.elapsed().as_secs_f64())
}

async fn latency(c: Arc<BenchClient>, calls: u64) -> Run {
    let start = Instant::now();
    let (mut lat, mut errors) = (Vec::new(), 0u64);
    for _ in 0..calls {
        let t = Instant::now();
        if c.call().await {
            lat.push(t.elapsed());
        } else {
            errors += 1;
        }
    }
    summarise(lat, errors, start.elapsed().as_secs_f64())
}

pub async fn bench(a: BenchArgs, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.seconds > 0 && a.connections > 0 && a.residents > 0,
        "seconds, connections and residents must be positive"
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
    a: &BenchArgs,
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
    p.exchange_attach_transport(Arc::new(exchange_link::HttpProviderTransport::new()));
    let cli = Caller::cli("bench");
    let today = SystemClock.today();
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

    let consumer = Sm2SigningKey::from_secret(&Key32::from_bytes([0x61; 32]))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let exchange_key =
        Sm2PublicKey::from_sec1(&p.exchange_public_key()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sim = SimProvider::new(Kind::Police, dev_key(Kind::Police), Arc::new(SystemClock));
    sim.trust(platform::exchange::PLATFORM_MEMBER, exchange_key.clone());
    sim.trust(CONSUMER, consumer.public_key());
    let provider = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    p.exchange_member_create(
        &cli,
        "police",
        "police",
        &dev_key(Kind::Police).public_key().to_compressed(),
    )
    .await?;
    p.exchange_member_create(
        &cli,
        CONSUMER,
        "bench",
        &consumer.public_key().to_compressed(),
    )
    .await?;
    p.exchange_service_publish(&cli, &Kind::Police.service(&provider.url()))
        .await?;
    let now = SystemClock.now_ms();
    p.exchange_grant_create(
        &cli,
        CONSUMER,
        SERVICE,
        &["id_number".into(), "violations".into(), "points".into()],
        &[],
        "bench",
        "bench",
        now - 86_400_000,
        now + 86_400_000,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, p.clone(), async {
        let _ = stop_rx.await;
    }));
    let ids = Arc::new(ids);
    let make = |direct: bool| {
        Arc::new(BenchClient {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(a.connections)
                .build_http(),
            signer: {
                let k = consumer.clone();
                GroupSigner::start(CONSUMER, move |m| k.sign(m))
            },
            batches: BatchCache::new(),
            direct,
            uri: if direct {
                format!("{}{}", provider.url(), exchange_link::sim::QUERY_PATH)
            } else {
                format!("{base}/api/v1/exchange/call")
            },
            // Both clients keep the key they verify answers with, its table built, as the
            // exchange and the provider do for theirs.
            answer_key: if direct {
                let k = dev_key(Kind::Police).public_key();
                k.precompute();
                k
            } else {
                exchange_key.clone()
            },
            answer_member: if direct {
                "police".into()
            } else {
                platform::exchange::PLATFORM_MEMBER.into()
            },
            ids: ids.clone(),
            seq: AtomicU64::new(if direct { 0 } else { 1 << 40 }),
        })
    };
    let (direct, through) = (make(true), make(false));
    // Warm both paths (connections, caches).
    latency(direct.clone(), 50).await;
    latency(through.clone(), 50).await;
    eprintln!(
        "{backend}: latency, one call at a time, {} calls each …",
        a.latency_calls
    );
    let d_lat = latency(direct.clone(), a.latency_calls).await;
    let t_lat = latency(through.clone(), a.latency_calls).await;
    eprintln!(
        "{backend}: throughput, {} connections for {} s each …",
        a.connections, a.seconds
    );
    // Messages per SM2 signature of each signer during each throughput run.
    let per_sig = |before: (u64, u64), after: (u64, u64)| {
        let (sigs, msgs) = (after.0 - before.0, after.1 - before.1);
        if sigs == 0 {
            0.0
        } else {
            msgs as f64 / sigs as f64
        }
    };
    let (c0, p0) = (direct.signer.counts(), sim.signing_counts());
    let d_thr = throughput(direct.clone(), a.connections, a.seconds).await;
    let (c1, p1, x1) = (
        direct.signer.counts(),
        sim.signing_counts(),
        p.exchange_signing_counts(),
    );
    let t0 = through.signer.counts();
    let t_thr = throughput(through.clone(), a.connections, a.seconds).await;
    let (t2, p2, x2) = (
        through.signer.counts(),
        sim.signing_counts(),
        p.exchange_signing_counts(),
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(provider);
    println!("bench exchange on {backend} ({} residents)", a.residents);
    println!(
        "  latency    direct p50 {:.2} ms p99 {:.2} ms | through the exchange p50 {:.2} ms p99 {:.2} ms | overhead p50 {:.2} ms ({} / {} errors)",
        d_lat.p50_ms,
        d_lat.p99_ms,
        t_lat.p50_ms,
        t_lat.p99_ms,
        t_lat.p50_ms - d_lat.p50_ms,
        d_lat.errors,
        t_lat.errors
    );
    println!(
        "  throughput direct {:.0} calls/s ({} calls, p50 {:.2} ms) | through the exchange {:.0} calls/s ({} calls, p50 {:.2} ms) ({} / {} errors)",
        d_thr.per_s,
        d_thr.calls,
        d_thr.p50_ms,
        t_thr.per_s,
        t_thr.calls,
        t_thr.p50_ms,
        d_thr.errors,
        t_thr.errors
    );
    println!(
        "  messages per SM2 signature: direct client {:.1}, provider {:.1} | through the exchange client {:.1}, exchange {:.1}, provider {:.1}",
        per_sig(c0, c1),
        per_sig(p0, p1),
        per_sig(t0, t2),
        per_sig(x1, x2),
        per_sig(p1, p2),
    );
    Ok(())
}
